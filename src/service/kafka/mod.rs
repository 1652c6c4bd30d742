//! Kafka ingest: `serve` consumes a topic of fan events in a consumer group
//! and applies them through the engine, with the same exactly-once effect as
//! RecordEvents: offsets are committed only after the events they cover are
//! durable, and a replay (after a crash or a rebalance) is deduplicated by
//! event id — a message without one gets an id derived from its topic,
//! partition and offset.
//!
//! - [`decode`]: a message → an event (JSON Lines format or protobuf `Event`).
//! - [`consumer`]: the loop: batch, make durable, dead-letter, store offsets;
//!   pause while the store fails.
//! - [`dead_letter`]: malformed or rejected messages, with their reason in
//!   headers, to `<topic>.dlq`, so no partition is ever blocked.
//! - [`state`]: metrics from librdkafka's statistics (lag per partition,
//!   connection), commit counts, and the `creatorboost.v1.Ingest` health.

pub mod consumer;
pub mod dead_letter;
pub mod decode;
pub mod metrics;
pub mod state;

use std::time::Duration;

pub use consumer::KafkaIngest;
pub use state::INGEST_HEALTH_SERVICE;

use crate::engine::ingest::RejectReason;

/// Why Kafka ingest could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaIngestError {
    /// librdkafka refused the configuration or the subscription.
    #[error("kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
}

/// Every dead-letter reason code: decoding's, then validation's.
pub fn dead_letter_reasons() -> impl Iterator<Item = &'static str> {
    decode::DECODE_REASONS
        .into_iter()
        .chain(RejectReason::ALL.into_iter().map(RejectReason::code))
}

/// Exponential back-off from 50 ms, doubling up to a ceiling.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

/// First delay of a [`Backoff`].
const BACKOFF_START: Duration = Duration::from_millis(50);

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            next: BACKOFF_START.min(max),
            max,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = BACKOFF_START.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(300));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 300, 300]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_START);
    }

    #[test]
    fn every_reason_is_listed_once() {
        let reasons: Vec<&str> = dead_letter_reasons().collect();
        let mut distinct = reasons.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(reasons.len(), distinct.len());
    }
}
