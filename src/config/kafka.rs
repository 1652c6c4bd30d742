//! The `[kafka]` table: declared once in [`settings!`], then checked into a
//! [`KafkaConfig`] when brokers and a topic turn ingest on.

use serde::Deserialize;

use super::ConfigError;
use super::sections::Limits;
use super::settings::{Shown, settings};

/// Payload format of the Kafka topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// One JSON object per message, as a line of the JSON Lines import format.
    #[default]
    Json,
    /// One protobuf `creatorboost.v1.Event` per message.
    Protobuf,
}

impl Shown for KafkaFormat {
    fn shown(&self) -> String {
        match self {
            KafkaFormat::Json => "json",
            KafkaFormat::Protobuf => "protobuf",
        }
        .to_owned()
    }
}

/// Default consumer group.
pub const DEFAULT_KAFKA_GROUP: &str = "creator-boost";

settings! {
    /// The `[kafka]` table as written; `brokers` and `topic` turn ingest on.
    KafkaSettings / KafkaFlags, section "kafka", heading "Kafka ingest ([kafka])" {
        /// Consume events from Kafka: bootstrap brokers HOST:PORT[,HOST:PORT...]
        /// (with topic); empty = off.
        brokers: String = String::new(), flag "kafka-brokers", env "CREATOR_BOOST_KAFKA_BROKERS";
        /// The Kafka topic of events.
        topic: String = String::new(), flag "kafka-topic", env "CREATOR_BOOST_KAFKA_TOPIC";
        /// Consumer group; replicas on one shared store share it.
        group: String = DEFAULT_KAFKA_GROUP.to_owned(), flag "kafka-group", env "CREATOR_BOOST_KAFKA_GROUP";
        /// Message payload format: json or protobuf.
        format: KafkaFormat = KafkaFormat::Json, flag "kafka-format", env "CREATOR_BOOST_KAFKA_FORMAT",
            arg(value_enum);
        /// Where malformed and rejected messages go; empty = `<topic>.dlq`.
        dead_letter_topic: String = String::new(),
            flag "kafka-dead-letter-topic", env "CREATOR_BOOST_KAFKA_DEAD_LETTER_TOPIC";
        /// Most messages applied to the store in one batch (capped at
        /// limits.max_events_per_batch).
        max_batch: usize = 4_000, flag "kafka-max-batch", env "CREATOR_BOOST_KAFKA_MAX_BATCH";
        /// A replica silent for this many milliseconds leaves the group and its
        /// partitions move.
        session_timeout_ms: u64 = 10_000,
            flag "kafka-session-timeout-ms", env "CREATOR_BOOST_KAFKA_SESSION_TIMEOUT_MS";
        /// How often durable offsets are committed to the broker, in milliseconds.
        commit_interval_ms: u64 = 500,
            flag "kafka-commit-interval-ms", env "CREATOR_BOOST_KAFKA_COMMIT_INTERVAL_MS";
        /// Longest wait between two retries while the store or the broker
        /// fails, in milliseconds.
        retry_backoff_max_ms: u64 = 5_000,
            flag "kafka-retry-backoff-max-ms", env "CREATOR_BOOST_KAFKA_RETRY_BACKOFF_MAX_MS";
    }
}

/// Kafka ingest: `serve` consumes `topic` in consumer group `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// The topic of events.
    pub topic: String,
    /// Consumer group: replicas on one shared store use the same one.
    pub group: String,
    /// Message payload format.
    pub format: KafkaFormat,
    /// Where malformed and rejected messages go (default `<topic>.dlq`).
    pub dead_letter_topic: String,
    /// Most messages applied to the store in one batch (capped by
    /// `limits.max_events_per_batch`).
    pub max_batch: usize,
    /// A replica silent for this long leaves the group and its partitions move.
    pub session_timeout_ms: u64,
    /// How often durable offsets are committed to the broker.
    pub commit_interval_ms: u64,
    /// Longest wait between two retries while the store or the broker fails.
    pub retry_backoff_max_ms: u64,
}

/// The Kafka ingest `settings` turn on; `None` when brokers and topic are
/// both empty.
pub(super) fn kafka_config(settings: KafkaSettings, limits: &Limits) -> Result<Option<KafkaConfig>, ConfigError> {
    let KafkaSettings {
        brokers,
        topic,
        group,
        format,
        dead_letter_topic,
        max_batch,
        session_timeout_ms,
        commit_interval_ms,
        retry_backoff_max_ms,
    } = settings;
    let (brokers, topic) = match (brokers.is_empty(), topic.is_empty()) {
        (false, false) => (brokers, topic),
        (true, true) => return Ok(None),
        _ => {
            return Err(ConfigError::Invalid(
                "kafka: brokers and topic must be given together".into(),
            ));
        }
    };
    if max_batch == 0 {
        return Err(ConfigError::Invalid("kafka.max_batch must be at least 1".into()));
    }
    // Capped, not refused: a deployment that lowered the batch limit keeps
    // starting whatever this default becomes.
    let max_batch = max_batch.min(limits.max_events_per_batch);
    let config = KafkaConfig {
        dead_letter_topic: if dead_letter_topic.is_empty() {
            format!("{topic}.dlq")
        } else {
            dead_letter_topic
        },
        group: if group.is_empty() {
            DEFAULT_KAFKA_GROUP.to_owned()
        } else {
            group
        },
        format,
        max_batch,
        session_timeout_ms,
        commit_interval_ms,
        retry_backoff_max_ms,
        brokers,
        topic,
    };
    if config.dead_letter_topic == config.topic {
        return Err(ConfigError::Invalid(
            "kafka.dead_letter_topic must differ from kafka.topic".into(),
        ));
    }
    if config.commit_interval_ms == 0 || config.retry_backoff_max_ms < 10 || config.session_timeout_ms < 1_000 {
        return Err(ConfigError::Invalid(
            "kafka: commit_interval_ms must be > 0, retry_backoff_max_ms >= 10, session_timeout_ms >= 1000".into(),
        ));
    }
    Ok(Some(config))
}
