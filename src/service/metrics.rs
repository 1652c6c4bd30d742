//! Prometheus metrics: a registry made once in `serve` and passed down (no
//! global statics), exposed in the OpenMetrics text format by the Prometheus
//! project's own client (`prometheus-client`) on a separate HTTP port
//! (`--metrics-listen`), served by hyper.
//!
//! The hot path touches plain atomics: every labelled series a call can
//! reach (method × status code, reject reason) is created up front and its
//! handle kept, so recording is one atomic add, and every series is exported
//! from the start (at 0) for alerts that compare rates.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
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

const METHODS: [&str; 4] = ["Rank", "GetCreatorScores", "RecordEvents", "StreamEvents"];

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

fn latency_histogram() -> Histogram {
    Histogram::new(BOUNDS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

type Ratio = Gauge<f64, AtomicU64>;

/// Registers `metric` under `name` (without `_total`: the client adds it to
/// counters) and hands it back.
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    register(registry, name, help, Counter::default())
}

/// The calls: by method and code, their latency, how many run now.
#[derive(Debug)]
struct Calls {
    requests: Vec<[Counter; CODES.len()]>,
    latency: Vec<Histogram>,
    in_flight: Gauge,
    deadline_exceeded: Counter,
}

impl Calls {
    fn register(r: &mut Registry) -> Calls {
        let requests = Family::<CallLabels, Counter>::default();
        let latency = Family::<MethodLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let calls = Calls {
            requests: METHODS
                .iter()
                .map(|method| CODES.map(|code| requests.get_or_create(&CallLabels { method, code }).clone()))
                .collect(),
            latency: METHODS
                .iter()
                .map(|method| latency.get_or_create(&MethodLabel { method }).clone())
                .collect(),
            in_flight: register(
                r,
                "creator_boost_in_flight",
                "Calls being served now.",
                Gauge::default(),
            ),
            deadline_exceeded: counter(
                r,
                "creator_boost_deadline_exceeded",
                "Calls abandoned at their deadline (any method).",
            ),
        };
        r.register(
            "creator_boost_requests",
            "gRPC calls by method and status code.",
            requests,
        );
        r.register(
            "creator_boost_request_duration_seconds",
            "gRPC call latency by method.",
            latency,
        );
        calls
    }
}

/// The caches: creator buckets and viewer records found in memory or not.
#[derive(Debug)]
struct Caches {
    hits: Counter,
    misses: Counter,
    hit_ratio: Ratio,
    viewer_hits: Counter,
    viewer_misses: Counter,
}

impl Caches {
    fn register(r: &mut Registry) -> Caches {
        Caches {
            hits: counter(
                r,
                "creator_boost_cache_hits",
                "Creator-bucket lookups served from memory.",
            ),
            misses: counter(
                r,
                "creator_boost_cache_misses",
                "Creator-bucket lookups read from the store.",
            ),
            hit_ratio: register(
                r,
                "creator_boost_cache_hit_ratio",
                "Share of creator-bucket lookups served from memory.",
                Ratio::default(),
            ),
            viewer_hits: counter(
                r,
                "creator_boost_viewer_cache_hits",
                "Viewer-record lookups served from memory.",
            ),
            viewer_misses: counter(
                r,
                "creator_boost_viewer_cache_misses",
                "Viewer-record lookups read from the store.",
            ),
        }
    }
}

/// The store: read and commit latency, failures, the probe, degraded answers.
#[derive(Debug)]
struct StoreMetrics {
    reads: Histogram,
    commits: Histogram,
    errors: Counter,
    up: Gauge,
    degraded: Counter,
}

impl StoreMetrics {
    fn register(r: &mut Registry) -> StoreMetrics {
        let store = StoreMetrics {
            reads: register(
                r,
                "creator_boost_store_read_duration_seconds",
                "Store read latency.",
                latency_histogram(),
            ),
            commits: register(
                r,
                "creator_boost_store_commit_duration_seconds",
                "Durable batch write latency.",
                latency_histogram(),
            ),
            errors: counter(r, "creator_boost_store_errors", "Failed store operations."),
            up: register(
                r,
                "creator_boost_store_up",
                "Whether the store answered its latest probe (1) or not (0).",
                Gauge::default(),
            ),
            degraded: counter(
                r,
                "creator_boost_degraded_answers",
                "Answers flagged degraded (store unreachable).",
            ),
        };
        store.up.set(1);
        store
    }
}

/// Ingest: events accepted, duplicates, rejected by reason.
#[derive(Debug)]
struct Ingest {
    accepted: Counter,
    duplicates: Counter,
    rejected: Vec<Counter>,
}

impl Ingest {
    fn register(r: &mut Registry) -> Ingest {
        let rejected = Family::<ReasonLabel, Counter>::default();
        let ingest = Ingest {
            accepted: counter(r, "creator_boost_ingest_accepted", "Events accepted (durable)."),
            duplicates: counter(r, "creator_boost_ingest_duplicates", "Events ignored as duplicates."),
            rejected: RejectReason::ALL
                .iter()
                .map(|reason| rejected.get_or_create(&ReasonLabel { reason: reason.code() }).clone())
                .collect(),
        };
        r.register("creator_boost_ingest_rejected", "Events rejected, by reason.", rejected);
        ingest
    }
}

/// The edge: connections, their timeouts, failed accepts.
#[derive(Debug)]
struct Edge {
    accept_errors: Counter,
    connections: Gauge,
    connection_timeouts: Counter,
    message_timeouts: Counter,
}

impl Edge {
    fn register(r: &mut Registry) -> Edge {
        Edge {
            accept_errors: counter(
                r,
                "creator_boost_accept_errors",
                "Failed accepts of new connections (e.g. out of file descriptors); the loop backs off.",
            ),
            connections: register(
                r,
                "creator_boost_connections",
                "Open client connections.",
                Gauge::default(),
            ),
            connection_timeouts: counter(
                r,
                "creator_boost_connection_timeouts",
                "Connections closed for sending nothing (no handshake, or idle).",
            ),
            message_timeouts: counter(
                r,
                "creator_boost_message_timeouts",
                "Request messages that did not arrive in time, and idle event streams closed.",
            ),
        }
    }
}

/// SIGHUP reloads: by outcome, and settings waiting for a restart.
#[derive(Debug)]
struct Reloads {
    outcomes: [Counter; 2],
    restart_pending: Gauge,
}

impl Reloads {
    fn register(r: &mut Registry) -> Reloads {
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        let reloads = Reloads {
            outcomes: ["applied", "refused"].map(|outcome| outcomes.get_or_create(&OutcomeLabel { outcome }).clone()),
            restart_pending: register(
                r,
                "creator_boost_restart_pending",
                "Settings changed in the config file that need a restart to apply (the log names them).",
                Gauge::default(),
            ),
        };
        r.register(
            "creator_boost_reloads",
            "SIGHUP reloads of the config and TLS files, by outcome (refused: what was in force stays).",
            outcomes,
        );
        reloads
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// Kafka ingest: messages consumed, committed and dead-lettered, lag.
#[derive(Debug)]
struct Kafka {
    consumed: Counter,
    committed: Counter,
    dead_lettered: Family<ReasonLabel, Counter>,
    lag: Family<PartitionLabel, Gauge>,
    paused: Gauge,
    connected: Gauge,
    assigned: Gauge,
}

impl Kafka {
    fn register(r: &mut Registry) -> Kafka {
        let kafka = Kafka {
            consumed: counter(r, "creator_boost_kafka_consumed", "Kafka messages received."),
            committed: counter(
                r,
                "creator_boost_kafka_committed",
                "Kafka messages whose offsets were committed (applied durably or dead-lettered first).",
            ),
            dead_lettered: register(
                r,
                "creator_boost_kafka_dead_lettered",
                "Kafka messages sent to the dead-letter topic, by reason.",
                Family::default(),
            ),
            lag: register(
                r,
                "creator_boost_kafka_lag",
                "Messages between the committed offset and the end of each assigned partition.",
                Family::default(),
            ),
            paused: register(
                r,
                "creator_boost_kafka_paused",
                "Whether consumption is paused (1) because the store cannot make events durable.",
                Gauge::default(),
            ),
            connected: register(
                r,
                "creator_boost_kafka_connected",
                "Whether the consumer reaches a broker (1) or not (0).",
                Gauge::default(),
            ),
            assigned: register(
                r,
                "creator_boost_kafka_assigned_partitions",
                "Partitions of the topic assigned to this replica by its consumer group.",
                Gauge::default(),
            ),
        };
        for reason in crate::service::kafka::dead_letter_reasons() {
            let _ = kafka.dead_lettered.get_or_create(&ReasonLabel { reason });
        }
        kafka
    }
}

/// Every metric of one server, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Calls,
    caches: Caches,
    store: StoreMetrics,
    ingest: Ingest,
    edge: Edge,
    reloads: Reloads,
    kafka: Kafka,
}

impl Metrics {
    /// A fresh registry.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let r = &mut registry;
        let (calls, caches, store) = (Calls::register(r), Caches::register(r), StoreMetrics::register(r));
        let (ingest, edge, reloads) = (Ingest::register(r), Edge::register(r), Reloads::register(r));
        let kafka = Kafka::register(r);
        Arc::new(Metrics {
            registry,
            calls,
            caches,
            store,
            ingest,
            edge,
            reloads,
            kafka,
        })
    }

    /// Marks a call in flight until the guard is dropped.
    pub fn enter(&self) -> InFlight<'_> {
        self.calls.in_flight.inc();
        InFlight(&self.calls.in_flight)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.calls.in_flight.get()).unwrap_or(0)
    }

    /// One finished call.
    pub fn observe_call(&self, method: Method, code: tonic::Code, elapsed: Duration) {
        let code = (code as usize).min(CODES.len() - 1);
        self.calls.requests[method as usize][code].inc();
        self.calls.latency[method as usize].observe(elapsed.as_secs_f64());
    }

    /// Creator-bucket lookups served from memory and read from the store.
    pub fn creator_lookups(&self, hits: usize, misses: usize) {
        self.caches.hits.inc_by(hits as u64);
        self.caches.misses.inc_by(misses as u64);
    }

    /// One viewer-record lookup.
    pub fn viewer_lookup(&self, hit: bool) {
        if hit {
            &self.caches.viewer_hits
        } else {
            &self.caches.viewer_misses
        }
        .inc();
    }

    /// One store read (any kind).
    pub fn store_read(&self, elapsed: Duration, ok: bool) {
        self.store.reads.observe(elapsed.as_secs_f64());
        if !ok {
            self.store.errors.inc();
        }
    }

    /// One durable write of a batch (from hand-off to acknowledgement).
    pub fn store_commit(&self, elapsed: Duration, ok: bool) {
        self.store.commits.observe(elapsed.as_secs_f64());
        if !ok {
            self.store.errors.inc();
        }
    }

    /// Events accepted and deduplicated by one batch.
    pub fn ingested(&self, accepted: u32, duplicates: u32) {
        self.ingest.accepted.inc_by(u64::from(accepted));
        self.ingest.duplicates.inc_by(u64::from(duplicates));
    }

    /// One rejected event.
    pub fn rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.ingest.rejected[i].inc();
        }
    }

    /// One failed `accept` (descriptors or buffers exhausted).
    pub fn accept_error(&self) {
        self.edge.accept_errors.inc();
    }

    /// Marks a client connection open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.edge.connections.inc();
        OpenConnection(Arc::clone(self))
    }

    /// One connection closed because the peer sent nothing for too long.
    pub fn connection_timed_out(&self) {
        self.edge.connection_timeouts.inc();
    }

    /// One request message that did not arrive in time, or one idle stream closed.
    pub fn message_timed_out(&self) {
        self.edge.message_timeouts.inc();
    }

    /// One call cut short by its deadline.
    pub fn deadline_exceeded(&self) {
        self.calls.deadline_exceeded.inc();
    }

    /// The outcome of the latest store probe.
    pub fn store_probe(&self, up: bool) {
        self.store.up.set(i64::from(up));
    }

    /// One answer flagged degraded.
    pub fn degraded_answer(&self) {
        self.store.degraded.inc();
    }

    /// One SIGHUP reload: applied, or refused (what was in force stays).
    pub fn reloaded(&self, applied: bool) {
        self.reloads.outcomes[usize::from(!applied)].inc();
    }

    /// The settings of the config file that differ from the running ones
    /// and need a restart (none = the file matches the process).
    pub fn restart_pending(&self, settings: &[&str]) {
        self.reloads
            .restart_pending
            .set(i64::try_from(settings.len()).unwrap_or(i64::MAX));
    }

    /// Kafka messages received.
    pub fn kafka_consumed(&self, messages: usize) {
        self.kafka.consumed.inc_by(messages as u64);
    }

    /// Kafka messages covered by a successful offset commit.
    pub fn kafka_committed(&self, messages: u64) {
        self.kafka.committed.inc_by(messages);
    }

    /// One Kafka message sent to the dead-letter topic; `reason` is one of
    /// [`crate::service::kafka::dead_letter_reasons`].
    pub fn kafka_dead_lettered(&self, reason: &'static str) {
        self.kafka.dead_lettered.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Consumer lag of one assigned partition.
    pub fn kafka_lag(&self, partition: i32, lag: i64) {
        self.kafka.lag.get_or_create(&PartitionLabel { partition }).set(lag);
    }

    /// Forgets the lag series and notes how many partitions are assigned
    /// now (before those report their lag).
    pub fn kafka_assigned(&self, partitions: usize) {
        self.kafka.lag.clear();
        self.kafka.assigned.set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    /// Whether consumption is paused for the store.
    pub fn kafka_paused(&self, paused: bool) {
        self.kafka.paused.set(i64::from(paused));
    }

    /// Whether the consumer reaches a broker.
    pub fn kafka_connected(&self, connected: bool) {
        self.kafka.connected.set(i64::from(connected));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let hits = self.caches.hits.get();
        let lookups = hits + self.caches.misses.get();
        self.caches.hit_ratio.set(if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        });
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.edge.connections.dec();
    }
}

/// Counts a call as in flight until dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Longest a scraper may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one metrics connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (descriptors exhausted), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `GET /metrics` (anything else: 404) over HTTP/1.1 until the task
/// is dropped.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&metrics, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
        });
    }
}

fn respond<B>(metrics: &Metrics, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
        (
            http::StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        )
    } else {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_owned(),
        )
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
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
        metrics.reloaded(false);
        let text = metrics.render();
        assert!(text.contains("creator_boost_requests_total{method=\"Rank\",code=\"OK\"} 1\n"));
        assert!(text.contains("creator_boost_requests_total{method=\"Rank\",code=\"RESOURCE_EXHAUSTED\"} 1\n"));
        assert!(text.contains("creator_boost_requests_total{method=\"RecordEvents\",code=\"UNAVAILABLE\"} 0\n"));
        assert!(text.contains("creator_boost_request_duration_seconds_bucket{le=\"0.0005\",method=\"Rank\"} 2\n"));
        assert!(text.contains("creator_boost_request_duration_seconds_count{method=\"Rank\"} 2\n"));
        assert!(text.contains("creator_boost_cache_hit_ratio 0.75\n"));
        assert!(text.contains("creator_boost_ingest_rejected_total{reason=\"self_interaction\"} 1\n"));
        assert!(text.contains("creator_boost_reloads_total{outcome=\"refused\"} 1\n"));
        assert!(text.contains("creator_boost_store_up 1\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
