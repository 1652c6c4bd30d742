//! What the consumer's callbacks, its loop and the health watcher share:
//! whether the dead-letter topic is there, whether a broker answers,
//! whether consumption is paused for the store, and the offsets behind the
//! `committed` count. librdkafka calls the
//! context from its own threads, hence atomics and a short-held mutex.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::service::kafka::metrics::KafkaMetrics;

/// Health service name that reports whether the Kafka consumer reaches a
/// broker and is making progress (its dead-letter topic there, not paused
/// for the store).
pub const INGEST_HEALTH_SERVICE: &str = "creatorboost.v1.Ingest";

/// Shared state of one consumer.
#[derive(Debug)]
pub struct IngestState {
    metrics: Arc<KafkaMetrics>,
    /// The dead-letter topic exists (consumption starts only then).
    ready: AtomicBool,
    connected: AtomicBool,
    paused: AtomicBool,
    /// Per partition, the offset up to which messages are counted as
    /// committed (the first offset seen, then each commit's).
    counted_up_to: Mutex<HashMap<i32, i64>>,
}

impl IngestState {
    /// Not ready, not connected, not paused.
    pub fn new(metrics: Arc<KafkaMetrics>) -> IngestState {
        metrics.connected(false);
        IngestState {
            metrics,
            ready: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            counted_up_to: Mutex::new(HashMap::new()),
        }
    }

    /// The registry.
    pub fn metrics(&self) -> &KafkaMetrics {
        &self.metrics
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.metrics.connected(connected);
    }

    /// Marks consumption paused (the store failed) or running again.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        self.metrics.paused(paused);
    }

    /// Marks the dead-letter topic as there: consumption starts.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Ready, connected and not paused.
    pub fn serving(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self.connected.load(Ordering::Relaxed)
            && !self.paused.load(Ordering::Relaxed)
    }

    /// Notes a consumed message, so that the first commit of its partition
    /// counts from here rather than from the start of the log.
    pub fn seen(&self, partition: i32, offset: i64) {
        let mut counted = self.counted_up_to.lock().unwrap_or_else(|p| p.into_inner());
        counted.entry(partition).or_insert(offset);
    }

    fn committed(&self, offsets: &TopicPartitionList) {
        let mut counted = self.counted_up_to.lock().unwrap_or_else(|p| p.into_inner());
        for element in offsets.elements() {
            let Offset::Offset(offset) = element.offset() else {
                continue;
            };
            let from = counted.entry(element.partition()).or_insert(offset);
            if offset > *from {
                self.metrics.committed((offset - *from) as u64);
                *from = offset;
            }
        }
    }
}

/// The consumer's librdkafka context: logs through `tracing`, turns
/// statistics into the lag and connection metrics, counts commits.
pub struct IngestContext {
    state: Arc<IngestState>,
}

impl IngestContext {
    /// A context reporting into `state`.
    pub fn new(state: Arc<IngestState>) -> IngestContext {
        IngestContext { state }
    }
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(facility, "librdkafka: {message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|broker| broker.state == "UP");
        self.state.set_connected(up);
        let metrics = &self.state.metrics;
        let assigned: Vec<_> = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.values())
            .filter(|partition| partition.partition >= 0 && partition.desired)
            .collect();
        metrics.assigned(assigned.len());
        for partition in assigned {
            if partition.consumer_lag >= 0 {
                metrics.lag(partition.partition, partition.consumer_lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.state.metrics.client_error();
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.state.set_connected(false);
        }
        tracing::warn!(%error, reason, "kafka client error; librdkafka retries with back-off");
    }
}

impl ConsumerContext for IngestContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.state.committed(offsets),
            // Nothing to commit since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "offset commit failed; the next commit carries the same offsets"),
        }
    }
}

/// How often the health watcher looks.
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);

/// Reports [`INGEST_HEALTH_SERVICE`] SERVING while the consumer has its
/// dead-letter topic, reaches a broker and is not paused for the store,
/// NOT_SERVING otherwise.
pub async fn report_health(state: Arc<IngestState>, reporter: HealthReporter) {
    let mut last = None;
    let mut ticks = tokio::time::interval(HEALTH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let serving = state.serving();
        if last != Some(serving) {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(INGEST_HEALTH_SERVICE, status).await;
            last = Some(serving);
        }
    }
}
