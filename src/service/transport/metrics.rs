//! The transport's own metrics: calls by method and code, their latency, the
//! calls in flight and cut short, and the connections. Registered by
//! [`crate::service::server::run`] into the process's registry and shared by
//! the layers and the tonic adapter.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{MetricsRegistry, counter, latency_histogram, register};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// Calls and connections of one server.
#[derive(Debug)]
pub struct TransportMetrics {
    calls: Calls,
    edge: Edge,
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

impl TransportMetrics {
    /// The transport's families, registered into `registry`.
    pub fn register(registry: &MetricsRegistry) -> Arc<TransportMetrics> {
        Arc::new(registry.register(|r| TransportMetrics {
            calls: Calls::register(r),
            edge: Edge::register(r),
        }))
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

    /// One call cut short by its deadline.
    pub fn deadline_exceeded(&self) {
        self.calls.deadline_exceeded.inc();
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
}

/// Counts a connection as open until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<TransportMetrics>);

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
