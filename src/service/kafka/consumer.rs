//! The consumer loop: take a batch of messages, make its events durable
//! through the engine (the same path as RecordEvents, with its per-event
//! dedupe), dead-letter what cannot be applied, and only then store the
//! batch's offsets for the next commit.
//!
//! Offsets are committed by librdkafka's auto-commit, which commits only
//! offsets stored by this loop (`enable.auto.offset.store=false`), on its
//! interval, on a rebalance and on close. A message is therefore committed
//! only after its event is durable (or its dead letter delivered); a crash
//! or a rebalance replays from the last commit, and the replay is
//! deduplicated by event id.
//!
//! Before the first batch the dead-letter topic is made sure of (created
//! when missing); consumption waits for it rather than meet a bad message
//! it could not set aside.
//!
//! Batches are pipelined: up to [`IN_FLIGHT`] batches are being made
//! durable at once (the embedded store commits them together, Redis takes
//! them on separate connections) while the next is fetched and decoded.
//! They are finished — dead letters sent, offsets stored — in the order
//! they were taken, so an offset is stored only once every message before
//! it in its partition is durable. Applying a partition's batches out of
//! order changes nothing: a pair's state, and so every sum, is the same
//! whatever order its events arrive in, and an event id counts once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::config::KafkaConfig;
use crate::engine::ingest::RawEvent;
use crate::engine::{Engine, RecordOutcome};
use crate::error::Error;
use crate::service::kafka::dead_letter::{DeadLetter, DeadLetters, TopicReady};
use crate::service::kafka::decode::{Position, decode};
use crate::service::kafka::metrics::KafkaMetrics;
use crate::service::kafka::state::{IngestContext, IngestState};
use crate::service::kafka::{Backoff, KafkaIngestError};

/// How long a batch waits for more messages once its first one is in.
const LINGER: Duration = Duration::from_millis(5);

/// Most batches being made durable at once: as many as StreamEvents'
/// usual writers keep in flight, so that a group commit carries several.
const IN_FLIGHT: usize = 4;

/// A batch taken from the topic and handed to the engine, not yet finished.
struct InFlight {
    messages: Vec<OwnedMessage>,
    /// The events sent to the engine (kept for a retry), and for each the
    /// index of its message.
    events: Vec<RawEvent>,
    origins: Vec<usize>,
    /// Messages that did not decode.
    dead: Vec<DeadLetter>,
    /// The engine's first attempt.
    attempt: Attempt,
}

/// The engine's first attempt at a batch: running, or its result.
enum Attempt {
    Running(tokio::task::JoinHandle<Result<RecordOutcome, Error>>),
    Done(Result<Result<RecordOutcome, Error>, tokio::task::JoinError>),
}

impl Attempt {
    fn is_finished(&self) -> bool {
        match self {
            Attempt::Running(task) => task.is_finished(),
            Attempt::Done(_) => true,
        }
    }

    async fn result(self) -> Result<Result<RecordOutcome, Error>, tokio::task::JoinError> {
        match self {
            Attempt::Running(task) => task.await,
            Attempt::Done(result) => result,
        }
    }
}

/// What the loop waits for next.
enum Next {
    /// A batch's first message.
    First(Result<OwnedMessage, KafkaError>),
    OldestDone(Result<Result<RecordOutcome, Error>, tokio::task::JoinError>),
    Stop,
}

/// A consumer in its group, the dead-letter producer, and the engine.
pub struct KafkaIngest {
    consumer: StreamConsumer<IngestContext>,
    dead_letters: DeadLetters,
    engine: Arc<Engine>,
    config: KafkaConfig,
    state: Arc<IngestState>,
    /// Next offset to commit, per partition: what this process made durable.
    durable: BTreeMap<i32, i64>,
}

impl KafkaIngest {
    /// Creates the clients and joins the group (asynchronously: a broker
    /// that is down now is retried with back-off).
    ///
    /// # Errors
    /// [`KafkaIngestError::Client`] when librdkafka refuses the configuration.
    pub fn start(
        config: &KafkaConfig,
        engine: Arc<Engine>,
        metrics: Arc<KafkaMetrics>,
    ) -> Result<KafkaIngest, KafkaIngestError> {
        let state = Arc::new(IngestState::new(metrics));
        let consumer: StreamConsumer<IngestContext> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("client.id", "creator-boost")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", config.commit_interval_ms.to_string())
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout_ms / 3).max(100).to_string(),
            )
            .set("reconnect.backoff.max.ms", config.retry_backoff_max_ms.to_string())
            .set("statistics.interval.ms", "1000")
            .create_with_context(IngestContext::new(Arc::clone(&state)))
            .map_err(KafkaIngestError::Client)?;
        consumer.subscribe(&[&config.topic]).map_err(KafkaIngestError::Client)?;
        let dead_letters =
            DeadLetters::new(&config.brokers, &config.dead_letter_topic).map_err(KafkaIngestError::Client)?;
        Ok(KafkaIngest {
            consumer,
            dead_letters,
            engine,
            config: config.clone(),
            state,
            durable: BTreeMap::new(),
        })
    }

    /// What the health watcher reads.
    pub fn state(&self) -> Arc<IngestState> {
        Arc::clone(&self.state)
    }

    /// Makes sure of the dead-letter topic, then consumes until `stop`
    /// turns true, then commits what is durable and leaves the group.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if !self.ensure_dead_letter_topic(&mut stop).await {
            self.close().await;
            return;
        }
        let mut backoff = Backoff::new(Duration::from_millis(self.config.retry_backoff_max_ms));
        let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(IN_FLIGHT);
        'consume: loop {
            // Finish, in order, what is done, and the oldest when the
            // pipeline is full.
            while let Some(front) = in_flight.front()
                && (front.attempt.is_finished() || in_flight.len() >= IN_FLIGHT)
            {
                let Some(front) = in_flight.pop_front() else { break };
                if !self.finish(front, &mut stop).await {
                    // Stopped while this batch was not durable: no later
                    // offset may be stored past it.
                    in_flight.clear();
                    break 'consume;
                }
            }
            let oldest = in_flight.front_mut().and_then(|front| match &mut front.attempt {
                Attempt::Running(task) => Some(task),
                Attempt::Done(_) => None,
            });
            // Only the wait for a batch's first message races the others:
            // `recv` is cancel-safe, a batch being gathered would not be
            // (its messages would be lost with it).
            let next = tokio::select! {
                biased;
                () = stopped(&mut stop) => Next::Stop,
                // While the topic is quiet, the oldest batch's offsets are
                // stored as soon as it is durable (the loop finishes it).
                done = finished(oldest) => Next::OldestDone(done),
                first = self.consumer.recv() => Next::First(first.map(|message| message.detach())),
            };
            let first = match next {
                Next::Stop => break,
                Next::OldestDone(done) => {
                    if let Some(front) = in_flight.front_mut() {
                        front.attempt = Attempt::Done(done);
                    }
                    continue;
                }
                Next::First(first) => first,
            };
            match first {
                Ok(first) => {
                    backoff.reset();
                    let batch = self.gather(first).await;
                    in_flight.push_back(self.hand_over(batch));
                }
                // An error event librdkafka reports and retries by itself
                // (a broker unreachable, a failed fetch; the context's
                // error callback has logged and counted it): poll on at
                // once. Backing off here drained the errors queued during
                // a broker outage one back-off at a time, holding
                // consumption for seconds after the broker was back.
                Err(KafkaError::MessageConsumption(code)) => {
                    tracing::debug!(%code, "kafka consumer error event; librdkafka retries");
                    // A queued event comes back without a pause: let the
                    // runtime's other tasks run between two.
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "kafka consume failed; retrying with back-off");
                    if sleep_or_stop(backoff.next_delay(), &mut stop).await {
                        break;
                    }
                }
            }
        }
        // Stopping: what is already durable is finished in order, so its
        // offsets are committed at close; the first batch that is not ends
        // it (it and those after it replay for the next owner, deduplicated).
        while let Some(front) = in_flight.pop_front() {
            if !self.finish_when_stopping(front).await {
                break;
            }
        }
        self.close().await;
    }

    /// Creates the dead-letter topic if it is missing, retrying with
    /// back-off while the broker cannot be reached or refuses; nothing is
    /// consumed (and Ingest is NOT_SERVING) until then. False when `stop`
    /// came first.
    async fn ensure_dead_letter_topic(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let topic = &self.config.dead_letter_topic;
        let mut backoff = Backoff::new(Duration::from_millis(self.config.retry_backoff_max_ms));
        loop {
            match self.dead_letters.ensure_topic(&self.config.topic).await {
                Ok(TopicReady::Existed) => tracing::debug!(%topic, "dead-letter topic exists"),
                Ok(TopicReady::Created { replication }) => {
                    tracing::info!(%topic, replication, "dead-letter topic was missing: created");
                }
                Err(error) => {
                    self.state.metrics().client_error();
                    tracing::error!(
                        %error, %topic,
                        "dead-letter topic missing and not created (broker unreachable, or no right to create \
                         topics): consumption waits for it; create it by hand if the broker keeps refusing"
                    );
                    if sleep_or_stop(backoff.next_delay(), stop).await {
                        return false;
                    }
                    continue;
                }
            }
            self.state.set_ready();
            return true;
        }
    }

    /// A batch: `first` and what else arrives within [`LINGER`], up to
    /// `max_batch`. Not to be cancelled once started.
    async fn gather(&self, first: OwnedMessage) -> Vec<OwnedMessage> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < self.config.max_batch {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "kafka consume failed mid-batch; applying what arrived");
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Decodes a batch and hands its events to the engine, without waiting.
    fn hand_over(&self, messages: Vec<OwnedMessage>) -> InFlight {
        self.state.metrics().consumed(messages.len());
        let mut events = Vec::with_capacity(messages.len());
        let mut origins = Vec::with_capacity(messages.len());
        let mut dead = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            self.state.seen(message.partition(), message.offset());
            let position = Position {
                topic: message.topic(),
                partition: message.partition(),
                offset: message.offset(),
            };
            match decode(self.config.format, message.payload(), position) {
                Ok(event) => {
                    events.push(event);
                    origins.push(index);
                }
                Err(error) => dead.push(DeadLetter {
                    index,
                    reason: error.code(),
                    detail: error.to_string(),
                }),
            }
        }
        let engine = Arc::clone(&self.engine);
        let sent = events.clone();
        InFlight {
            messages,
            events,
            origins,
            dead,
            attempt: Attempt::Running(tokio::spawn(async move { engine.record(sent).await })),
        }
    }

    /// Finishes the oldest batch: waits until it is durable (retrying while
    /// the store fails), sends its dead letters, stores its offsets. False
    /// when `stop` came first (nothing of it is then committed, and it is
    /// replayed by the next owner).
    async fn finish(&mut self, batch: InFlight, stop: &mut watch::Receiver<bool>) -> bool {
        let InFlight {
            messages,
            events,
            origins,
            mut dead,
            attempt,
        } = batch;
        let outcome = match attempt.result().await {
            Ok(Ok(outcome)) => outcome,
            first => {
                if let Ok(Err(error)) = &first {
                    tracing::debug!(%error, "kafka batch not durable on its first attempt; retrying");
                }
                match self.record_until_durable(events, stop).await {
                    Some(outcome) => outcome,
                    None => return false,
                }
            }
        };
        dead.extend(outcome.rejected.into_iter().map(|(index, reason)| DeadLetter {
            index: origins[index as usize],
            reason: reason.code(),
            detail: reason.to_string(),
        }));
        if !self.dead_letter_all(&messages, &dead, stop).await {
            return false;
        }
        self.store_offsets(&messages);
        true
    }

    /// At a stop: finishes `batch` if its first attempt made it durable and
    /// it has no dead letter to send; false otherwise (no retry now).
    async fn finish_when_stopping(&mut self, batch: InFlight) -> bool {
        let Ok(Ok(outcome)) = batch.attempt.result().await else {
            return false;
        };
        if !batch.dead.is_empty() || !outcome.rejected.is_empty() {
            return false;
        }
        self.store_offsets(&batch.messages);
        true
    }

    /// Records `events`, retrying while the store fails; consumption is
    /// paused meanwhile. `None` when `stop` came first.
    async fn record_until_durable(
        &self,
        events: Vec<RawEvent>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<RecordOutcome> {
        let mut backoff = Backoff::new(Duration::from_millis(self.config.retry_backoff_max_ms));
        let mut paused = false;
        loop {
            match self.engine.record(events.clone()).await {
                Ok(outcome) => {
                    if paused {
                        self.pause(false);
                        tracing::info!("store durable again: kafka consumption resumed");
                    }
                    return Some(outcome);
                }
                Err(error) => {
                    if !paused {
                        paused = true;
                        self.pause(true);
                        tracing::error!(%error, "store cannot make events durable: kafka consumption paused, nothing committed");
                    }
                    if sleep_or_stop(backoff.next_delay(), stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Pauses (or resumes) fetching on every assigned partition.
    fn pause(&self, pause: bool) {
        self.state.set_paused(pause);
        let result = self.consumer.assignment().and_then(|assigned| {
            if pause {
                self.consumer.pause(&assigned)
            } else {
                self.consumer.resume(&assigned)
            }
        });
        if let Err(error) = result {
            tracing::warn!(%error, pause, "cannot pause or resume the assigned partitions");
        }
    }

    /// Delivers every dead letter, retrying while the broker fails. False
    /// when `stop` came first.
    async fn dead_letter_all(
        &self,
        batch: &[OwnedMessage],
        dead: &[DeadLetter],
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        for letter in dead {
            let mut backoff = Backoff::new(Duration::from_millis(self.config.retry_backoff_max_ms));
            while let Err(error) = self.dead_letters.send(&batch[letter.index], letter).await {
                tracing::warn!(%error, topic = %self.config.dead_letter_topic, "dead letter not delivered; retrying");
                if sleep_or_stop(backoff.next_delay(), stop).await {
                    return false;
                }
            }
            self.state.metrics().dead_lettered(letter.reason);
            tracing::debug!(reason = letter.reason, detail = %letter.detail, "message dead-lettered");
        }
        true
    }

    /// Stores, per partition, the offset after the batch's last message:
    /// the next auto-commit commits it.
    fn store_offsets(&mut self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let offset = next.entry(message.partition()).or_insert(0);
            *offset = (*offset).max(message.offset() + 1);
        }
        for (partition, offset) in next {
            let durable = self.durable.entry(partition).or_insert(offset);
            *durable = (*durable).max(offset);
            // `store_offsets` takes the next offset to consume, as committed;
            // `store_offset` would add one to it (it takes the last message's).
            let mut offsets = TopicPartitionList::new();
            let stored = offsets
                .add_partition_offset(&self.config.topic, partition, Offset::Offset(*durable))
                .and_then(|()| self.consumer.store_offsets(&offsets));
            if let Err(error) = stored {
                // The partition moved to another replica meanwhile; it
                // replays from the last commit and dedupes.
                tracing::debug!(%error, partition, "offset not stored: partition no longer assigned");
            }
        }
    }

    /// Commits what is durable, then closes the consumer (leaving the
    /// group) off the runtime: librdkafka's commit and close block.
    async fn close(self) {
        let KafkaIngest {
            consumer,
            dead_letters,
            durable,
            config,
            engine,
            state: _,
        } = self;
        // Everything applied is durable: the store may close now, whatever
        // the broker does with the goodbye.
        drop(engine);
        let (closed, closing) = tokio::sync::oneshot::channel();
        // A thread of its own rather than the runtime's blocking pool: a
        // broker that never answers the goodbye must not hold the runtime's
        // shutdown; the group then drops this member at its session timeout.
        let spawned = std::thread::Builder::new()
            .name("kafka-close".to_owned())
            .spawn(move || {
                commit_durable(&consumer, &config.topic, &durable);
                consumer.unsubscribe();
                drop(consumer);
                drop(dead_letters);
                let _ = closed.send(());
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the kafka close thread");
            return;
        }
        match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
            Ok(_) => tracing::info!("kafka consumer closed"),
            Err(_) => tracing::warn!("kafka consumer close unfinished; the group drops it at its session timeout"),
        }
    }
}

/// Longest shutdown waits for the consumer to leave its group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Commits `durable` for the partitions still assigned (one that moved is
/// the new owner's to commit), synchronously.
fn commit_durable(consumer: &StreamConsumer<IngestContext>, topic: &str, durable: &BTreeMap<i32, i64>) {
    let assigned = consumer.assignment().unwrap_or_default();
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in durable {
        if assigned.find_partition(topic, *partition).is_some() {
            let _ = offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
    }
    if offsets.count() == 0 {
        return;
    }
    match consumer.commit(&offsets, CommitMode::Sync) {
        Ok(()) => tracing::info!(partitions = offsets.count(), "kafka offsets committed at shutdown"),
        Err(error) => tracing::warn!(%error, "final kafka commit failed; the next owner replays and dedupes"),
    }
}

/// The output of `task` (never resolves without one).
async fn finished<T>(task: Option<&mut tokio::task::JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps `delay`; true if `stop` came first.
async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = stopped(stop) => true,
        () = tokio::time::sleep(delay) => false,
    }
}
