//! The metrics registry of one process, and the building blocks its owners
//! register their families with. `serve` makes one [`MetricsRegistry`] and
//! hands it down; each component (the engine, the transport, Kafka ingest,
//! reload) registers its own families into it and keeps the handles, and the
//! `/metrics` endpoint ([`crate::service::metrics`]) only renders it. No
//! global statics, and no arrow from here up into the components.
//!
//! The hot path touches plain atomics: every labelled series a call can reach
//! is created up front and its handle kept, so recording is one atomic add,
//! and every series is exported from the start (at 0) for alerts that compare
//! rates. The registry's lock is taken only to register (at start) and to
//! render (a scrape).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The families of one process, registered by their owners.
#[derive(Debug, Default)]
pub struct MetricsRegistry(Mutex<Registry>);

impl MetricsRegistry {
    /// An empty registry.
    pub fn new() -> Arc<MetricsRegistry> {
        Arc::new(MetricsRegistry::default())
    }

    /// Lets an owner register its families; returns what `register` built.
    pub fn register<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        register(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The OpenMetrics text exposition of every registered family.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let registry = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A latency histogram with the buckets every latency family shares.
pub fn latency_histogram() -> Histogram {
    Histogram::new(BOUNDS)
}

/// A gauge holding a share in [0, 1].
pub type Ratio = Gauge<f64, AtomicU64>;

/// Label of a family counted by reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason's stable code.
    pub reason: &'static str,
}

/// Registers `metric` under `name` (without `_total`: the client adds it to
/// counters) and hands it back.
pub fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Registers a counter under `name` and hands it back.
pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    register(registry, name, help, Counter::default())
}
