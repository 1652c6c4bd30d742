//! The dead-letter topic: a malformed or rejected message is copied there
//! (same key and payload) with why in its headers, so its partition moves on.
//! A dead letter is delivered before the offset that covers it is stored,
//! so none is lost; a replay can deliver one twice (at least once).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Header naming the reason code (a metrics label: `invalid_json`,
/// `self_interaction`, …).
pub const REASON_HEADER: &str = "creator-boost-reason";
/// Header with the reason in words.
pub const DETAIL_HEADER: &str = "creator-boost-detail";
/// Header with where the message came from: `TOPIC/PARTITION/OFFSET`.
pub const SOURCE_HEADER: &str = "creator-boost-source";

/// How long one delivery may take before it is retried.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A message bound for the dead-letter topic, and why.
#[derive(Debug)]
pub struct DeadLetter {
    /// Index of the message in its batch.
    pub index: usize,
    /// Reason code.
    pub reason: &'static str,
    /// Reason in words.
    pub detail: String,
}

/// The producer of dead letters.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    /// An idempotent producer to `topic` on `brokers`.
    ///
    /// # Errors
    /// The client's error when the configuration is refused.
    pub fn new(brokers: &str, topic: &str) -> Result<DeadLetters, KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("client.id", "creator-boost-dead-letters")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
            .create()?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Sends `message` with `letter`'s reason and waits for the broker's
    /// acknowledgement.
    ///
    /// # Errors
    /// The delivery error (the broker is unreachable or refused it).
    pub async fn send(&self, message: &OwnedMessage, letter: &DeadLetter) -> Result<(), KafkaError> {
        let source = format!("{}/{}/{}", message.topic(), message.partition(), message.offset());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: REASON_HEADER,
                value: Some(letter.reason),
            })
            .insert(Header {
                key: DETAIL_HEADER,
                value: Some(&letter.detail),
            })
            .insert(Header {
                key: SOURCE_HEADER,
                value: Some(&source),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer
            .send(record, DELIVERY_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}
