//! The dead-letter topic: a malformed or rejected message is copied there
//! (same key and payload) with why in its headers, so its partition moves on.
//! A dead letter is delivered before the offset that covers it is stored,
//! so none is lost; a replay can deliver one twice (at least once). The
//! topic is created before consumption starts when it is missing, so a
//! dead letter never waits on a topic nobody made.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

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

/// Partitions of a dead-letter topic this service creates: dead letters
/// are rare and read by people, in order.
const CREATED_PARTITIONS: i32 = 1;

/// How long the broker may take to answer a metadata or create request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`DeadLetters::ensure_topic`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicReady {
    /// The topic was there already.
    Existed,
    /// The topic was missing and has been created, with the source topic's
    /// replication factor.
    Created {
        /// Its replication factor.
        replication: i32,
    },
}

/// The producer of dead letters.
pub struct DeadLetters {
    producer: FutureProducer,
    brokers: String,
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
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
        })
    }

    /// Makes sure the dead-letter topic exists: creates it when missing
    /// (one partition, replicated as `source` is), so that no dead letter
    /// waits on a topic nobody made. An existing topic is not touched (no
    /// right to create topics is needed then).
    ///
    /// # Errors
    /// The client's error when the broker cannot be reached, `source` has
    /// no metadata ([`KafkaError::MetadataFetch`]) or the broker refuses the
    /// creation ([`KafkaError::AdminOp`], e.g. no right to create topics).
    pub async fn ensure_topic(&self, source: &str) -> Result<TopicReady, KafkaError> {
        if self.replicas_of(&self.topic).await?.is_some() {
            return Ok(TopicReady::Existed);
        }
        let replication = self
            .replicas_of(source)
            .await?
            .ok_or(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition))?;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "creator-boost-dead-letters-admin")
            .create()?;
        let topic = NewTopic::new(&self.topic, CREATED_PARTITIONS, TopicReplication::Fixed(replication));
        let options = AdminOptions::new()
            .operation_timeout(Some(ADMIN_TIMEOUT))
            .request_timeout(Some(ADMIN_TIMEOUT));
        let results = admin.create_topics([&topic], &options).await?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(TopicReady::Created { replication }),
            // Another replica made it meanwhile.
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(TopicReady::Existed),
            Some(Err((_, code))) => Err(KafkaError::AdminOp(code)),
        }
    }

    /// The replication factor of `topic` (its first partition's replicas),
    /// `None` when the broker does not know the topic. Read off the
    /// runtime: librdkafka's metadata call blocks.
    async fn replicas_of(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        let fetched = tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(Some(&topic), ADMIN_TIMEOUT)?;
            let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
                return Ok(None);
            };
            match found.error().map(RDKafkaErrorCode::from) {
                None if !found.partitions().is_empty() => {
                    let replicas = found.partitions()[0].replicas().len().max(1);
                    Ok(Some(i32::try_from(replicas).unwrap_or(1)))
                }
                None | Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => Ok(None),
                Some(code) => Err(KafkaError::MetadataFetch(code)),
            }
        })
        .await;
        fetched.map_err(|_| KafkaError::MetadataFetch(RDKafkaErrorCode::Fail))?
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
