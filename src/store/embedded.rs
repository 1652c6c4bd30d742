//! The embedded backend: one redb file, written by one thread with group
//! commit, read from the blocking pool.
//!
//! Writers hand batches to the writer thread over a bounded channel; it takes
//! every batch waiting, applies them all in one write transaction, commits
//! durably (fsync), runs the commit hook, then acknowledges each batch. Many
//! small concurrent batches thus share one fsync.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode_creator, decode_viewer, encode_creator, encode_viewer};
use super::{
    Applied, Changes, CommitHook, CreatorBucket, Store, StoreError, creator_bucket, decay_signature, event_key,
};
use crate::model::aggregate::apply_event;
use crate::model::{CreatorAggregate, Decay, Event, IngestParams, ViewerRecord};

/// `bucket << 64 | creator_id` → aggregate: a bucket is one contiguous range.
const CREATORS: TableDefinition<u128, &[u8]> = TableDefinition::new("creators_v2");
const VIEWERS: TableDefinition<u64, &[u8]> = TableDefinition::new("viewers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// 128-bit hash of an event_id → acceptance time (unix ms). Fixed-size keys
/// keep the table compact; a collision needs ~2^64 ids.
const DEDUPE: TableDefinition<u128, i64> = TableDefinition::new("dedupe_v2");
const SWEEP_KEY: &str = "dedupe_sweep_cursor";
const GLOBAL_KEY: &str = "global";
const DECAY_KEY: &str = "decay";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "creator-boost.redb";
/// How long the writer waits for more batches before committing a group.
const GROUP_LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// Most events applied in one group commit.
const MAX_GROUP_EVENTS: usize = 200_000;
/// Dedupe entries examined for expiry per commit: at least this many, and
/// twice the ids the commit added, so the sweep outruns the table's growth.
const MIN_SWEEP_PER_COMMIT: usize = 1_000;

/// Handle to the embedded store; cheap to clone. When the last clone is
/// dropped the writer finishes its queue and the file is closed, so the same
/// directory can be opened again at once (a restart in tests).
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
    /// What viewer records' intimacy is summed with when they are read.
    intimacy_weights: crate::model::params::KindWeights,
}

/// The writer thread's queue and handle.
struct Writer {
    jobs: Option<mpsc::Sender<WriteJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop once it is drained.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

struct WriteJob {
    events: Vec<Event>,
    now_ms: i64,
    reply: oneshot::Sender<Result<Vec<Applied>, StoreError>>,
}

/// Settings of the writer.
#[derive(Clone)]
pub struct WriterSettings {
    /// What is stored per event.
    pub ingest: IngestParams,
    /// Dedupe window, in milliseconds.
    pub dedupe_window_ms: i64,
    /// Called after each commit, before acknowledging it.
    pub on_commit: Option<CommitHook>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir` and starts its writer thread.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the directory or file cannot be opened,
    /// [`StoreError::Incompatible`] when it was written with another layout
    /// or other half-lives.
    pub fn open(data_dir: &Path, settings: WriterSettings) -> Result<EmbeddedStore, StoreError> {
        let cannot_open = |path: &Path, error: redb::Error| StoreError::Open {
            path: path.to_owned(),
            source: Arc::new(error),
        };
        std::fs::create_dir_all(data_dir).map_err(|e| cannot_open(data_dir, e.into()))?;
        let path = data_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| cannot_open(&path, e.into()))?;
        let db = Arc::new(db);
        create_tables(&db)?;
        check_decay(&db, &settings.ingest)?;
        let intimacy_weights = settings.ingest.intimacy_weights;
        let (sender, jobs) = mpsc::channel(1024);
        let thread_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&thread_db, &settings, jobs))
            .map_err(|e| StoreError::Task {
                task: "cannot start the writer thread",
                source: Arc::new(e),
            })?;
        let writer = Arc::new(Writer {
            jobs: Some(sender),
            thread: Some(thread),
        });
        Ok(EmbeddedStore {
            db,
            writer,
            intimacy_weights,
        })
    }

    /// Every creator and its aggregate, in id order (for offline scoring).
    ///
    /// # Errors
    /// [`StoreError`] on a read failure or a corrupt record.
    pub fn scan_creators(&self) -> Result<Vec<(u64, CreatorAggregate)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(CREATORS).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            out.push((key.value() as u64, decode_creator(value.value())?));
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        Ok(out)
    }

    /// The platform aggregate, read synchronously (for offline tools).
    ///
    /// # Errors
    /// [`StoreError`] on a read failure or a corrupt record.
    pub fn global_blocking(&self) -> Result<CreatorAggregate, StoreError> {
        read_global(&self.db)
    }

    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .map_err(|e| StoreError::Task {
                task: "read task failed",
                source: Arc::new(e),
            })?
    }
}

impl Store for EmbeddedStore {
    async fn creator_buckets(&self, buckets: Vec<u32>) -> Result<Vec<CreatorBucket>, StoreError> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(CREATORS).map_err(backend)?;
            buckets
                .iter()
                .map(|bucket| {
                    let low = u128::from(*bucket) << 64;
                    let high = low | u128::from(u64::MAX);
                    let mut creators = Vec::new();
                    for entry in table.range(low..=high).map_err(backend)? {
                        let (key, value) = entry.map_err(backend)?;
                        creators.push((key.value() as u64, decode_creator(value.value())?));
                    }
                    // Cached as is: no spare capacity.
                    creators.shrink_to_fit();
                    Ok(CreatorBucket { creators })
                })
                .collect()
        })
        .await
    }

    async fn viewer(&self, viewer_id: u64) -> Result<Option<ViewerRecord>, StoreError> {
        let weights = self.intimacy_weights;
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(VIEWERS).map_err(backend)?;
            match table.get(viewer_id).map_err(backend)? {
                Some(value) => decode_viewer(value.value(), &weights).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn global(&self) -> Result<CreatorAggregate, StoreError> {
        self.read(read_global).await
    }

    async fn apply(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let jobs = self.writer.jobs.as_ref().ok_or(StoreError::Closed)?;
        jobs.send(WriteJob { events, now_ms, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn creator_key(creator_id: u64) -> u128 {
    (u128::from(creator_bucket(creator_id)) << 64) | u128::from(creator_id)
}

fn backend(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Embedded(Arc::new(error.into()))
}

fn create_tables(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    txn.open_table(CREATORS).map_err(backend)?;
    txn.open_table(VIEWERS).map_err(backend)?;
    txn.open_table(META).map_err(backend)?;
    txn.open_table(DEDUPE).map_err(backend)?;
    txn.commit().map_err(backend)
}

/// Stored sums are only meaningful with the half-lives they were written
/// with: the first open records them, later opens must match.
fn check_decay(db: &Database, ingest: &IngestParams) -> Result<(), StoreError> {
    let wanted = decay_signature(ingest);
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let stored = meta
            .get(DECAY_KEY)
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned());
        match stored {
            Some(stored) if stored != wanted => {
                return Err(StoreError::Incompatible {
                    stored,
                    wanted,
                    fresh_store: "a new data dir",
                });
            }
            Some(_) => {}
            None => {
                meta.insert(DECAY_KEY, wanted.as_bytes()).map_err(backend)?;
            }
        }
    }
    txn.commit().map_err(backend)
}

fn read_global(db: &Database) -> Result<CreatorAggregate, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(META).map_err(backend)?;
    match table.get(GLOBAL_KEY).map_err(backend)? {
        Some(value) => decode_creator(value.value()),
        None => Ok(CreatorAggregate::default()),
    }
}

fn writer_loop(db: &Database, settings: &WriterSettings, mut jobs: mpsc::Receiver<WriteJob>) {
    let decay = settings.ingest.decay();
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        let mut events = group[0].events.len();
        // Writers that were waiting for the previous commit send their next
        // batches within a fraction of a millisecond: linger briefly so they
        // share this commit instead of each paying for one.
        let linger_until = std::time::Instant::now() + GROUP_LINGER;
        while events < MAX_GROUP_EVENTS {
            match jobs.try_recv() {
                Ok(job) => {
                    events += job.events.len();
                    group.push(job);
                }
                Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < linger_until => {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
                Err(_) => break,
            }
        }
        let outcome = commit_group(db, settings, &decay, &group);
        match outcome {
            Ok((statuses, changes)) => {
                if let Some(hook) = &settings.on_commit {
                    hook(&changes);
                }
                for (job, status) in group.into_iter().zip(statuses) {
                    // A caller that went away still had its events committed.
                    let _ = job.reply.send(Ok(status));
                }
            }
            Err(error) => {
                tracing::error!(%error, batches = group.len(), events, "store commit failed");
                for job in group {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

type GroupOutcome = (Vec<Vec<Applied>>, Changes);

fn commit_group(
    db: &Database,
    settings: &WriterSettings,
    decay: &Decay,
    group: &[WriteJob],
) -> Result<GroupOutcome, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let mut statuses = Vec::with_capacity(group.len());
    let changes;
    {
        let mut creators_table = txn.open_table(CREATORS).map_err(backend)?;
        let mut viewers_table = txn.open_table(VIEWERS).map_err(backend)?;
        let mut meta = txn.open_table(META).map_err(backend)?;
        let mut dedupe = txn.open_table(DEDUPE).map_err(backend)?;

        let mut global = match meta.get(GLOBAL_KEY).map_err(backend)? {
            Some(value) => decode_creator(value.value())?,
            None => CreatorAggregate::default(),
        };
        let mut creators: HashMap<u64, CreatorAggregate> = HashMap::new();
        let mut viewers: HashMap<u64, ViewerRecord> = HashMap::new();
        let mut seen: HashSet<u128> = HashSet::new();
        let mut newest_ms = i64::MIN;

        for job in group {
            newest_ms = newest_ms.max(job.now_ms);
            let mut job_statuses = Vec::with_capacity(job.events.len());
            for event in &job.events {
                if !event.event_id.is_empty() {
                    let id = event_key(event);
                    if seen.contains(&id) || dedupe.get(id).map_err(backend)?.is_some() {
                        job_statuses.push(Applied::Duplicate);
                        continue;
                    }
                    seen.insert(id);
                    dedupe.insert(id, job.now_ms).map_err(backend)?;
                }
                let creator = match creators.entry(event.creator_id) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        let loaded = match creators_table.get(creator_key(event.creator_id)).map_err(backend)? {
                            Some(value) => decode_creator(value.value())?,
                            None => CreatorAggregate::default(),
                        };
                        entry.insert(loaded)
                    }
                };
                let viewer = if event.viewer_id == 0 {
                    None
                } else {
                    Some(match viewers.entry(event.viewer_id) {
                        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                        std::collections::hash_map::Entry::Vacant(entry) => {
                            let loaded = match viewers_table.get(event.viewer_id).map_err(backend)? {
                                Some(value) => decode_viewer(value.value(), &settings.ingest.intimacy_weights)?,
                                None => ViewerRecord::default(),
                            };
                            entry.insert(loaded)
                        }
                    })
                };
                apply_event(event, &settings.ingest, decay, creator, &mut global, viewer);
                job_statuses.push(Applied::Accepted);
            }
            statuses.push(job_statuses);
        }

        // Written in key order: neighbouring keys share B-tree pages, so a
        // page is copied once per commit rather than once per scattered insert.
        let mut creators: Vec<(u64, CreatorAggregate)> = creators.into_iter().collect();
        creators.sort_unstable_by_key(|(id, _)| creator_key(*id));
        let mut viewers: Vec<(u64, ViewerRecord)> = viewers.into_iter().collect();
        viewers.sort_unstable_by_key(|(id, _)| *id);
        for (id, aggregate) in &creators {
            creators_table
                .insert(creator_key(*id), encode_creator(aggregate).as_slice())
                .map_err(backend)?;
        }
        for (id, record) in &viewers {
            viewers_table
                .insert(id, encode_viewer(record).as_slice())
                .map_err(backend)?;
        }
        meta.insert(GLOBAL_KEY, encode_creator(&global).as_slice())
            .map_err(backend)?;
        sweep_dedupe(
            &mut dedupe,
            &mut meta,
            newest_ms.saturating_sub(settings.dedupe_window_ms),
            (2 * seen.len()).max(MIN_SWEEP_PER_COMMIT),
        )?;

        changes = Changes {
            creators: {
                creators.sort_unstable_by_key(|(id, _)| *id);
                creators
            },
            viewers: viewers.into_iter().map(|(id, r)| (id, Arc::new(r))).collect(),
            global: Arc::new(global),
        };
    }
    txn.commit().map_err(backend)?;
    Ok((statuses, changes))
}

/// Forgets event ids accepted before `cutoff_ms`. Keys are uniform hashes,
/// so a cursor sweeping `budget` keys per commit around the key space visits
/// every entry regularly without a second, time-ordered index to maintain.
fn sweep_dedupe(
    dedupe: &mut redb::Table<u128, i64>,
    meta: &mut redb::Table<&str, &[u8]>,
    cutoff_ms: i64,
    budget: usize,
) -> Result<(), StoreError> {
    let cursor = match meta.get(SWEEP_KEY).map_err(backend)? {
        Some(value) => value.value().try_into().map(u128::from_le_bytes).unwrap_or(0),
        None => 0,
    };
    let mut expired: Vec<u128> = Vec::new();
    let mut last = None;
    let mut scanned = 0;
    for entry in dedupe.range(cursor..).map_err(backend)?.take(budget) {
        let (key, accepted_at) = entry.map_err(backend)?;
        scanned += 1;
        last = Some(key.value());
        if accepted_at.value() < cutoff_ms {
            expired.push(key.value());
        }
    }
    for key in &expired {
        dedupe.remove(key).map_err(backend)?;
    }
    // Past the end (fewer keys than the budget): start again from the beginning.
    let next = match last {
        Some(key) if scanned == budget => key.saturating_add(1),
        _ => 0,
    };
    meta.insert(SWEEP_KEY, next.to_le_bytes().as_slice()).map_err(backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data dir written by the per-event model (its signature has no
    /// `layout=`) is refused with a message saying what to do, never read.
    #[test]
    fn a_store_of_the_previous_layout_is_refused() {
        let temp = tempfile::tempdir().expect("temp");
        {
            let db = Database::create(temp.path().join(DB_FILE)).expect("db");
            create_tables(&db).expect("tables");
            let txn = db.begin_write().expect("txn");
            {
                let mut meta = txn.open_table(META).expect("meta");
                meta.insert(
                    DECAY_KEY,
                    b"engagement_half_life_days=365 negative_half_life_days=30".as_slice(),
                )
                .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let settings = WriterSettings {
            ingest: IngestParams::default(),
            dedupe_window_ms: 1,
            on_commit: None,
        };
        let Err(error) = EmbeddedStore::open(temp.path(), settings) else {
            panic!("a layout-1 store must not open");
        };
        let message = error.to_string();
        assert!(
            message.contains("earlier version") && message.contains("creator-boost import"),
            "{message}"
        );
    }
}
