//! Prometheus metrics: a registry made once in `serve` and passed down (no
//! global statics), plain atomics on the hot path, text exposition on a
//! separate HTTP port (`--metrics-listen`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::service::ingest::RejectReason;

/// The RPCs measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Rank.
    Rank = 0,
    /// GetCreatorScores.
    GetCreatorScores = 1,
    /// RecordEvents.
    RecordEvents = 2,
    /// StreamEvents (one observation per message).
    StreamEvents = 3,
}

const METHODS: [(Method, &str); 4] = [
    (Method::Rank, "Rank"),
    (Method::GetCreatorScores, "GetCreatorScores"),
    (Method::RecordEvents, "RecordEvents"),
    (Method::StreamEvents, "StreamEvents"),
];

/// gRPC status code names, indexed by code.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let separator = if labels.is_empty() { "" } else { "," };
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = BOUNDS.get(i).map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Every metric of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; 17]; 4],
    latency: [Histogram; 4],
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    viewer_hits: AtomicU64,
    viewer_misses: AtomicU64,
    store_reads: Histogram,
    store_commits: Histogram,
    store_errors: AtomicU64,
    ingest_accepted: AtomicU64,
    ingest_duplicates: AtomicU64,
    ingest_rejected: [AtomicU64; RejectReason::ALL.len()],
    degraded: AtomicU64,
    in_flight: AtomicU64,
    deadline_exceeded: AtomicU64,
    /// 1 while the last store probe failed.
    store_down: AtomicU64,
    accept_errors: AtomicU64,
    connections: AtomicU64,
    connection_timeouts: AtomicU64,
    message_timeouts: AtomicU64,
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a call as in flight until dropped.
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Marks a call in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// One finished call.
    pub fn observe_call(&self, method: Method, code: tonic::Code, elapsed: Duration) {
        let code = (code as usize).min(CODES.len() - 1);
        self.requests[method as usize][code].fetch_add(1, Ordering::Relaxed);
        self.latency[method as usize].observe(elapsed);
    }

    /// Creator-bucket lookups served from memory and read from the store.
    pub fn creator_lookups(&self, hits: usize, misses: usize) {
        self.cache_hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.cache_misses.fetch_add(misses as u64, Ordering::Relaxed);
    }

    /// One viewer-record lookup.
    pub fn viewer_lookup(&self, hit: bool) {
        let counter = if hit { &self.viewer_hits } else { &self.viewer_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One store read (any kind).
    pub fn store_read(&self, elapsed: Duration, ok: bool) {
        self.store_reads.observe(elapsed);
        if !ok {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One durable write of a batch (from hand-off to acknowledgement).
    pub fn store_commit(&self, elapsed: Duration, ok: bool) {
        self.store_commits.observe(elapsed);
        if !ok {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events accepted and deduplicated by one batch.
    pub fn ingested(&self, accepted: u32, duplicates: u32) {
        self.ingest_accepted.fetch_add(u64::from(accepted), Ordering::Relaxed);
        self.ingest_duplicates
            .fetch_add(u64::from(duplicates), Ordering::Relaxed);
    }

    /// One rejected event.
    pub fn rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.ingest_rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One failed `accept` (descriptors or buffers exhausted).
    pub fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a client connection open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// One connection closed because the peer sent nothing for too long.
    pub fn connection_timed_out(&self) {
        self.connection_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// One request message that did not arrive in time, or one idle stream closed.
    pub fn message_timed_out(&self) {
        self.message_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// One call cut short by its deadline.
    pub fn deadline_exceeded(&self) {
        self.deadline_exceeded.fetch_add(1, Ordering::Relaxed);
    }

    /// The outcome of the latest store probe.
    pub fn store_probe(&self, up: bool) {
        self.store_down.store(u64::from(!up), Ordering::Relaxed);
    }

    /// One answer flagged degraded.
    pub fn degraded_answer(&self) {
        self.degraded.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP creator_boost_requests_total gRPC calls by method and status code.\n");
        out.push_str("# TYPE creator_boost_requests_total counter\n");
        for (method, name) in METHODS {
            for (code, code_name) in CODES.iter().enumerate() {
                let count = self.requests[method as usize][code].load(Ordering::Relaxed);
                if count > 0 || code == 0 {
                    let _ = writeln!(
                        out,
                        "creator_boost_requests_total{{method=\"{name}\",code=\"{code_name}\"}} {count}"
                    );
                }
            }
        }
        out.push_str("# HELP creator_boost_request_duration_seconds gRPC call latency by method.\n");
        out.push_str("# TYPE creator_boost_request_duration_seconds histogram\n");
        for (method, name) in METHODS {
            self.latency[method as usize].render(
                &mut out,
                "creator_boost_request_duration_seconds",
                &format!("method=\"{name}\""),
            );
        }
        let hits = self.cache_hits.load(Ordering::Relaxed);
        let misses = self.cache_misses.load(Ordering::Relaxed);
        let counters = [
            (
                "creator_boost_cache_hits_total",
                "Creator-bucket lookups served from memory.",
                hits,
            ),
            (
                "creator_boost_cache_misses_total",
                "Creator-bucket lookups read from the store.",
                misses,
            ),
            (
                "creator_boost_viewer_cache_hits_total",
                "Viewer-record lookups served from memory.",
                self.viewer_hits.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_viewer_cache_misses_total",
                "Viewer-record lookups read from the store.",
                self.viewer_misses.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_store_errors_total",
                "Failed store operations.",
                self.store_errors.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_ingest_accepted_total",
                "Events accepted (durable).",
                self.ingest_accepted.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_ingest_duplicates_total",
                "Events ignored as duplicates.",
                self.ingest_duplicates.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_degraded_answers_total",
                "Answers flagged degraded (store unreachable).",
                self.degraded.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_deadline_exceeded_total",
                "Calls abandoned at their deadline (any method).",
                self.deadline_exceeded.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_accept_errors_total",
                "Failed accepts of new connections (e.g. out of file descriptors); the loop backs off.",
                self.accept_errors.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_connection_timeouts_total",
                "Connections closed for sending nothing (no handshake, or idle).",
                self.connection_timeouts.load(Ordering::Relaxed),
            ),
            (
                "creator_boost_message_timeouts_total",
                "Request messages that did not arrive in time, and idle event streams closed.",
                self.message_timeouts.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP creator_boost_in_flight Calls being served now.\n# TYPE creator_boost_in_flight gauge\ncreator_boost_in_flight {}",
            self.in_flight()
        );
        let _ = writeln!(
            out,
            "# HELP creator_boost_connections Open client connections.\n# TYPE creator_boost_connections gauge\ncreator_boost_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP creator_boost_store_up Whether the store answered its latest probe (1) or not (0).\n\
             # TYPE creator_boost_store_up gauge\ncreator_boost_store_up {}",
            1 - self.store_down.load(Ordering::Relaxed)
        );
        let ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        let _ = writeln!(
            out,
            "# HELP creator_boost_cache_hit_ratio Share of creator-bucket lookups served from memory.\n\
             # TYPE creator_boost_cache_hit_ratio gauge\ncreator_boost_cache_hit_ratio {ratio}"
        );
        out.push_str("# HELP creator_boost_ingest_rejected_total Events rejected, by reason.\n");
        out.push_str("# TYPE creator_boost_ingest_rejected_total counter\n");
        for (i, reason) in RejectReason::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "creator_boost_ingest_rejected_total{{reason=\"{}\"}} {}",
                reason.code(),
                self.ingest_rejected[i].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP creator_boost_store_read_duration_seconds Store read latency.\n");
        out.push_str("# TYPE creator_boost_store_read_duration_seconds histogram\n");
        self.store_reads
            .render(&mut out, "creator_boost_store_read_duration_seconds", "");
        out.push_str("# HELP creator_boost_store_commit_duration_seconds Durable batch write latency.\n");
        out.push_str("# TYPE creator_boost_store_commit_duration_seconds histogram\n");
        self.store_commits
            .render(&mut out, "creator_boost_store_commit_duration_seconds", "");
        out
    }
}

/// Serves `GET /metrics` (anything else: 404) until the task is dropped.
/// A minimal HTTP/1.1 responder: one request per connection, then close.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut request = [0u8; 2048];
            let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut request)).await;
            let Ok(Ok(length)) = read else {
                return;
            };
            let head = String::from_utf8_lossy(&request[..length]);
            let (status, body) = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "not found; try /metrics\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics.observe_call(Method::Rank, tonic::Code::Ok, Duration::from_micros(300));
        metrics.observe_call(Method::Rank, tonic::Code::ResourceExhausted, Duration::from_micros(5));
        metrics.creator_lookups(3, 1);
        metrics.rejected(RejectReason::SelfInteraction);
        let text = metrics.render();
        assert!(text.contains("creator_boost_requests_total{method=\"Rank\",code=\"OK\"} 1"));
        assert!(text.contains("creator_boost_requests_total{method=\"Rank\",code=\"RESOURCE_EXHAUSTED\"} 1"));
        assert!(text.contains("creator_boost_request_duration_seconds_bucket{method=\"Rank\",le=\"0.0005\"} 2"));
        assert!(text.contains("creator_boost_request_duration_seconds_count{method=\"Rank\"} 2"));
        assert!(text.contains("creator_boost_cache_hit_ratio 0.75"));
        assert!(text.contains("creator_boost_ingest_rejected_total{reason=\"self_interaction\"} 1"));
    }
}
