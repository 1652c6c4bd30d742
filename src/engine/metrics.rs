//! The engine's own metrics: caches, store and ingest, registered by the
//! engine's owner into the process's registry.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::ingest::RejectReason;
use crate::metrics::{MetricsRegistry, Ratio, ReasonLabel, counter, latency_histogram, register};

/// Caches, store and ingest of one engine.
#[derive(Debug)]
pub struct EngineMetrics {
    caches: CacheMetrics,
    store: StoreMetrics,
    ingest: IngestMetrics,
}

/// The caches: creator buckets and viewer records found in memory or not.
#[derive(Debug)]
struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    hit_ratio: Ratio,
    viewer_hits: Counter,
    viewer_misses: Counter,
}

impl CacheMetrics {
    fn register(r: &mut Registry) -> CacheMetrics {
        CacheMetrics {
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

/// The store: read and commit latency, failures, the probe, degraded
/// answers, and what refuses writes.
#[derive(Debug)]
struct StoreMetrics {
    reads: Histogram,
    commits: Histogram,
    errors: Counter,
    up: Gauge,
    degraded: Counter,
    writes_blocked: WritesBlocked,
    free_bytes: Gauge,
    floor_bytes: Gauge,
}

/// `creator_boost_writes_blocked{cause}`: 1 while that cause refuses writes.
#[derive(Debug)]
struct WritesBlocked {
    disk_floor: Gauge,
    io_error: Gauge,
    unreachable: Gauge,
}

/// The `cause` label of `creator_boost_writes_blocked`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
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
            writes_blocked: {
                let family = Family::<CauseLabel, Gauge>::default();
                let cause = |cause| family.get_or_create(&CauseLabel { cause }).clone();
                let blocked = WritesBlocked {
                    disk_floor: cause("disk_floor"),
                    io_error: cause("store_io_error"),
                    unreachable: cause("store_unreachable"),
                };
                r.register(
                    "creator_boost_writes_blocked",
                    "Whether writes are refused now (1) for this cause: disk_floor (the data volume below its \
                     free-space floor), store_io_error (the embedded store reopening after an I/O error), \
                     store_unreachable (the latest probe failed).",
                    family,
                );
                blocked
            },
            free_bytes: register(
                r,
                "creator_boost_store_free_bytes",
                "Free bytes on the embedded store's data volume (-1 = not on a local volume).",
                Gauge::default(),
            ),
            floor_bytes: register(
                r,
                "creator_boost_store_free_floor_bytes",
                "The data volume's free-space floor: below it writes are refused (-1 = not on a local volume).",
                Gauge::default(),
            ),
        };
        store.free_bytes.set(-1);
        store.floor_bytes.set(-1);
        store.up.set(1);
        store
    }
}

/// Ingest: events accepted, duplicates, rejected by reason.
#[derive(Debug)]
struct IngestMetrics {
    accepted: Counter,
    duplicates: Counter,
    rejected: Vec<Counter>,
}

impl IngestMetrics {
    fn register(r: &mut Registry) -> IngestMetrics {
        let rejected = Family::<ReasonLabel, Counter>::default();
        let ingest = IngestMetrics {
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

impl EngineMetrics {
    /// The engine's families, registered into `registry`.
    pub fn register(registry: &MetricsRegistry) -> Arc<EngineMetrics> {
        Arc::new(registry.register(|r| EngineMetrics {
            caches: CacheMetrics::register(r),
            store: StoreMetrics::register(r),
            ingest: IngestMetrics::register(r),
        }))
    }

    /// Creator-bucket lookups served from memory and read from the store.
    pub fn creator_lookups(&self, hits: usize, misses: usize) {
        let caches = &self.caches;
        caches.hits.inc_by(hits as u64);
        caches.misses.inc_by(misses as u64);
        let hits = caches.hits.get();
        let lookups = hits + caches.misses.get();
        if lookups > 0 {
            caches.hit_ratio.set(hits as f64 / lookups as f64);
        }
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

    /// The outcome of the latest store probe.
    pub fn store_probe(&self, up: bool) {
        self.store.up.set(i64::from(up));
    }

    /// What the latest probe found of the write path.
    pub fn write_health(&self, health: &crate::store::WriteHealth, reachable: bool) {
        let store = &self.store;
        store.writes_blocked.disk_floor.set(i64::from(health.disk_floor));
        store.writes_blocked.io_error.set(i64::from(health.io_error));
        store.writes_blocked.unreachable.set(i64::from(!reachable));
        let bytes = |value: Option<u64>| value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        store.free_bytes.set(bytes(health.free_bytes));
        store.floor_bytes.set(bytes(health.floor_bytes));
    }

    /// One answer flagged degraded.
    pub fn degraded_answer(&self) {
        self.store.degraded.inc();
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
}
