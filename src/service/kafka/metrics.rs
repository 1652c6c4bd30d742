//! Kafka ingest's own metrics: messages consumed, committed and
//! dead-lettered, lag, whether the consumer is connected or paused, and the
//! client errors a broker outage produces.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{MetricsRegistry, ReasonLabel, counter, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

/// The consumer's families.
#[derive(Debug)]
pub struct KafkaMetrics {
    consumed: Counter,
    committed: Counter,
    dead_lettered: Family<ReasonLabel, Counter>,
    lag: Family<PartitionLabel, Gauge>,
    paused: Gauge,
    connected: Gauge,
    client_errors: Counter,
    assigned: Gauge,
}

impl KafkaMetrics {
    /// Kafka ingest's families, registered into `registry` (every
    /// dead-letter reason at 0 from the start).
    pub fn register(registry: &MetricsRegistry) -> Arc<KafkaMetrics> {
        let kafka = registry.register(|r| KafkaMetrics {
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
            client_errors: counter(
                r,
                "creator_boost_kafka_client_errors",
                "Errors the Kafka client reported (a broker unreachable, a failed fetch); each is retried.",
            ),
            assigned: register(
                r,
                "creator_boost_kafka_assigned_partitions",
                "Partitions of the topic assigned to this replica by its consumer group.",
                Gauge::default(),
            ),
        });
        for reason in super::dead_letter_reasons() {
            let _ = kafka.dead_lettered.get_or_create(&ReasonLabel { reason });
        }
        Arc::new(kafka)
    }

    /// Kafka messages received.
    pub fn consumed(&self, messages: usize) {
        self.consumed.inc_by(messages as u64);
    }

    /// Kafka messages covered by a successful offset commit.
    pub fn committed(&self, messages: u64) {
        self.committed.inc_by(messages);
    }

    /// One Kafka message sent to the dead-letter topic; `reason` is one of
    /// [`super::dead_letter_reasons`].
    pub fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Consumer lag of one assigned partition.
    pub fn lag(&self, partition: i32, lag: i64) {
        self.lag.get_or_create(&PartitionLabel { partition }).set(lag);
    }

    /// Forgets the lag series and notes how many partitions are assigned
    /// now (before those report their lag).
    pub fn assigned(&self, partitions: usize) {
        self.lag.clear();
        self.assigned.set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    /// Whether consumption is paused for the store.
    pub fn paused(&self, paused: bool) {
        self.paused.set(i64::from(paused));
    }

    /// Whether the consumer reaches a broker.
    pub fn connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    /// One error reported by the Kafka client (it retries by itself).
    pub fn client_error(&self) {
        self.client_errors.inc();
    }
}
