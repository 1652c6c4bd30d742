//! The embedded backend: one redb file, written by one thread with group
//! commit, read from the blocking pool.
//!
//! Writers hand batches to the writer thread over a bounded channel; it takes
//! every batch waiting, applies them all in one write transaction, commits
//! durably (fsync), runs the commit hook, then acknowledges each batch. Many
//! small concurrent batches thus share one fsync. The writer thread is in
//! `commit.rs`; reads and the tables are here.
//!
//! Two faults are handled without a restart. Below a free-space floor on the
//! data volume (`space.rs`) writes are refused at once, before the database
//! meets a full disk. And after an I/O error (redb then refuses every write
//! until it is closed and opened again) the writer closes and reopens the
//! file, with a bounded back-off, refusing writes meanwhile.

mod commit;
mod space;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

pub use self::space::DiskFloor;
use self::space::Volume;
use super::codec::{decode_creator, decode_viewer};
use super::{
    Applied, CommitHook, CreatorBucket, ReadResult, ReadSet, Store, StoreError, WriteHealth, creator_bucket,
    decay_signature,
};
use crate::model::{CreatorAggregate, Event, IngestParams, ViewerRecord};

/// `bucket << 64 | creator_id` → aggregate: a bucket is one contiguous range.
const CREATORS: TableDefinition<u128, &[u8]> = TableDefinition::new("creators_v2");
const VIEWERS: TableDefinition<u64, &[u8]> = TableDefinition::new("viewers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// 128-bit hash of an event_id → acceptance time (unix ms). Fixed-size keys
/// keep the table compact; a collision needs ~2^64 ids.
const DEDUPE: TableDefinition<u128, i64> = TableDefinition::new("dedupe_v2");
const GLOBAL_KEY: &str = "global";
const DECAY_KEY: &str = "decay";
/// When the write path was last proven after an I/O error (unix ms).
const WRITE_PROBE_KEY: &str = "write_probe";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "creator-boost.redb";

/// First wait before reopening again after a failed reopen; it doubles up
/// to [`REOPEN_BACKOFF_MAX`].
const REOPEN_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two reopen attempts.
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After running out of space, the free space that must come back before
/// the file is reopened.
const REOPEN_SPACE_BACK: u64 = 16 << 20;
/// How long a reopen waits for reads in flight to let go of the old file.
const REOPEN_DRAIN: Duration = Duration::from_millis(200);

/// Handle to the embedded store; cheap to clone. When the last clone is
/// dropped the writer finishes its queue and the file is closed, so the same
/// directory can be opened again at once (a restart in tests).
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: Arc<Writer>,
    /// What viewer records' intimacy is summed with when they are read.
    intimacy_weights: crate::model::params::KindWeights,
}

/// What readers, the writer and the probe share: the open database
/// (replaced when it is reopened), the data volume, and the I/O failure
/// being recovered from, if any.
struct Shared {
    /// `None` only inside a reopen, between closing the file and opening it.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    page_cache_bytes: usize,
    volume: Volume,
    /// Whether an I/O error latched and the file is not reopened yet.
    failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
}

/// An I/O failure being recovered from: it ends with the first commit
/// that succeeds after the file was reopened.
struct Failure {
    cause: String,
    since: Instant,
    /// Reopens tried.
    attempts: u32,
    /// Reopened since the latest I/O error.
    reopened: bool,
    /// The disk was full (ENOSPC or a quota).
    out_of_space: bool,
    /// Free bytes on the volume at the latest failure.
    free_at_failure: Option<u64>,
    /// Wait before the next reopen; doubles each time.
    backoff: Duration,
    next_attempt: Instant,
}

/// The writer thread's queue and handle.
struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
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

/// What the writer thread is asked to do.
enum Job {
    /// Apply a batch.
    Write(WriteJob),
    /// Reopen the file if an I/O error latched (sent by the probe, so the
    /// store recovers while no batch arrives).
    Recover,
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
    /// Bytes of the data file redb keeps in memory.
    pub page_cache_bytes: usize,
    /// Free space the data volume keeps; below it writes are refused.
    pub disk_floor: DiskFloor,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir` and starts its writer thread.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the directory or file cannot be opened,
    /// [`StoreError::Incompatible`] when it was written with another layout
    /// or other half-lives.
    pub fn open(data_dir: &Path, settings: WriterSettings) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| StoreError::Open {
            path: data_dir.to_owned(),
            source: Arc::new(error.into()),
        })?;
        let path = data_dir.join(DB_FILE);
        let db = open_database(&path, settings.page_cache_bytes)?;
        create_tables(&db)?;
        check_decay(&db, &settings.ingest)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            page_cache_bytes: settings.page_cache_bytes,
            volume: Volume::new(data_dir, settings.disk_floor),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        });
        let intimacy_weights = settings.ingest.intimacy_weights;
        let (sender, jobs) = mpsc::channel(1024);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || commit::writer_loop(&thread_shared, &settings, jobs))
            .map_err(|e| StoreError::Task {
                task: "cannot start the writer thread",
                source: Arc::new(e),
            })?;
        let writer = Arc::new(Writer {
            jobs: Some(sender),
            thread: Some(thread),
        });
        Ok(EmbeddedStore {
            shared,
            writer,
            intimacy_weights,
        })
    }

    /// Every creator and its aggregate, in id order (for offline scoring).
    ///
    /// # Errors
    /// [`StoreError`] on a read failure or a corrupt record.
    pub fn scan_creators(&self) -> Result<Vec<(u64, CreatorAggregate)>, StoreError> {
        let txn = self.shared.database()?.begin_read().map_err(backend)?;
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
        read_global(&*self.shared.database()?)
    }

    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.shared.database()?;
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
            read_buckets(&txn, &buckets)
        })
        .await
    }

    async fn read_set(&self, wanted: ReadSet) -> Result<ReadResult, StoreError> {
        let weights = self.intimacy_weights;
        // One blocking task and one read transaction (one consistent
        // snapshot) for everything a call misses, where three reads cost
        // three tasks, three transactions and three wake-ups.
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let buckets = if wanted.buckets.is_empty() {
                Vec::new()
            } else {
                read_buckets(&txn, &wanted.buckets)?
            };
            let viewer = match wanted.viewer {
                Some(viewer_id) => read_viewer(&txn, viewer_id, &weights)?,
                None => None,
            };
            let global = if wanted.global {
                Some(read_global_in(&txn)?)
            } else {
                None
            };
            Ok(ReadResult {
                buckets,
                viewer,
                global,
            })
        })
        .await
    }

    async fn viewer(&self, viewer_id: u64) -> Result<Option<ViewerRecord>, StoreError> {
        let weights = self.intimacy_weights;
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            read_viewer(&txn, viewer_id, &weights)
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
        // Below the floor a batch is refused here, at once; the volume is
        // measured again so that writes resume as soon as space returns.
        if self.shared.volume.below() {
            self.shared.volume.check()?;
        }
        let (reply, answer) = oneshot::channel();
        let jobs = self.writer.jobs.as_ref().ok_or(StoreError::Closed)?;
        jobs.send(Job::Write(WriteJob { events, now_ms, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Keeps the volume's figures (and the floor) current while no
        // batch arrives, and has the writer retry a pending reopen.
        let _ = self.shared.volume.check();
        if self.shared.failed.load(Ordering::Relaxed)
            && let Some(jobs) = &self.writer.jobs
        {
            let _ = jobs.try_send(Job::Recover);
        }
        self.shared.database().map(drop)
    }

    fn write_health(&self) -> WriteHealth {
        let (free_bytes, floor_bytes) = match self.shared.volume.last() {
            Some((free, floor)) => (Some(free), Some(floor)),
            None => (None, None),
        };
        WriteHealth {
            disk_floor: self.shared.volume.below(),
            io_error: self.shared.failed.load(Ordering::Relaxed),
            free_bytes,
            floor_bytes,
        }
    }
}

impl Shared {
    /// The open database.
    ///
    /// # Errors
    /// [`StoreError::Reopening`] inside a reopen.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        // The lock is let go before `reopening` takes the failure's.
        let db = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        db.ok_or_else(|| self.reopening())
    }

    /// The error for a read or write that finds the file closed. Never
    /// waits for the failure's lock: the writer holds it for the whole
    /// reopen (a repair can take long), and readers call this on the runtime.
    fn reopening(&self) -> StoreError {
        let cause = match self.failure.try_lock() {
            Ok(failure) => failure.as_ref().map(|failure| failure.cause.clone()),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().as_ref().map(|failure| failure.cause.clone())
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        StoreError::Reopening {
            cause: cause.unwrap_or_else(|| "the file is being opened again".to_owned()),
        }
    }

    /// The database a group of batches may be written to now: the volume is
    /// above its floor, and after an I/O error the file has been reopened
    /// (when its back-off allows). The failure stands until a commit succeeds.
    ///
    /// # Errors
    /// [`StoreError::DiskFloor`] or [`StoreError::Reopening`].
    fn writable(&self) -> Result<Arc<Database>, StoreError> {
        self.volume.check()?;
        if self.failed.load(Ordering::Relaxed) {
            self.reopen_if_due()?;
        }
        self.database()
    }

    /// Records what a commit did. An I/O error latches in redb (every later
    /// write fails until the file is reopened), so it starts a recovery; a
    /// success ends one.
    fn committed(&self, outcome: Result<(), &StoreError>) {
        let error = match outcome {
            Ok(()) => {
                if self.failed.load(Ordering::Relaxed) {
                    let mut failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(ended) = failure.take() {
                        tracing::info!(
                            reopens = ended.attempts,
                            down_ms = ended.since.elapsed().as_millis() as u64,
                            "embedded store writes again after an I/O error"
                        );
                    }
                    self.failed.store(false, Ordering::Relaxed);
                }
                return;
            }
            Err(error) => error,
        };
        let StoreError::Embedded(inner) = error else {
            return;
        };
        let out_of_space = match &**inner {
            redb::Error::Io(io) => matches!(io.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded),
            redb::Error::PreviousIo => false,
            _ => return,
        };
        // Measured now, so that a reopen after running out of space waits
        // for space to come back.
        let _ = self.volume.check();
        let free_at_failure = self.volume.last().map(|(free, _)| free);
        let mut failure = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match failure.as_mut() {
            // Failed again after a reopen: the next one waits longer.
            Some(failure) => {
                failure.cause = error.to_string();
                failure.reopened = false;
                failure.out_of_space |= out_of_space;
                failure.free_at_failure = free_at_failure;
            }
            None => {
                tracing::error!(%error, "embedded store I/O error: closing and reopening it; writes refused meanwhile");
                let now = Instant::now();
                *failure = Some(Failure {
                    cause: error.to_string(),
                    since: now,
                    attempts: 0,
                    reopened: false,
                    out_of_space,
                    free_at_failure,
                    backoff: REOPEN_BACKOFF_FIRST,
                    next_attempt: now,
                });
                self.failed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// After an I/O error, proves the write path with one small commit once
    /// the file is reopened (the probe asks for it, so the store recovers
    /// while no batch arrives).
    fn recover(&self) {
        if !self.failed.load(Ordering::Relaxed) {
            return;
        }
        let outcome = self.writable().and_then(|db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut meta = txn.open_table(META).map_err(backend)?;
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_millis() as u64);
                meta.insert(WRITE_PROBE_KEY, now_ms.to_le_bytes().as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        });
        self.committed(outcome.as_ref().map(|_| ()));
    }

    /// Closes and reopens the file after an I/O error, unless that was done
    /// since the error or its back-off has not passed. Called on the writer
    /// thread only, so no write transaction is open meanwhile.
    ///
    /// # Errors
    /// [`StoreError::Reopening`] when it is not time yet or the open failed.
    fn reopen_if_due(&self) -> Result<(), StoreError> {
        let mut guard = self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(failure) = guard.as_mut() else {
            return Ok(());
        };
        if failure.reopened {
            return Ok(());
        }
        let now = Instant::now();
        // Closing the file stops reads too until it opens again, and after
        // running out of space it would not open (redb writes as it opens an
        // uncleanly closed file): so wait for space to come back first.
        let space_back = match (failure.out_of_space, failure.free_at_failure, self.volume.last()) {
            (true, Some(then), Some((free, _))) => free >= then.saturating_add(REOPEN_SPACE_BACK),
            _ => true,
        };
        if now < failure.next_attempt || !space_back {
            return Err(StoreError::Reopening {
                cause: failure.cause.clone(),
            });
        }
        failure.attempts += 1;
        failure.next_attempt = now + failure.backoff;
        failure.backoff = (failure.backoff * 2).min(REOPEN_BACKOFF_MAX);
        // The file's lock must be let go before it can be opened again:
        // take the database out and wait briefly for reads still using it.
        let old = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(old) = old {
            let drained_by = now + REOPEN_DRAIN;
            while Arc::strong_count(&old) > 1 && Instant::now() < drained_by {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(old);
        }
        match open_database(&self.path, self.page_cache_bytes) {
            Ok(db) => {
                *self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(db));
                failure.reopened = true;
                tracing::info!(
                    attempts = failure.attempts,
                    "embedded store reopened after an I/O error"
                );
                Ok(())
            }
            Err(error) => {
                failure.cause = error.to_string();
                tracing::warn!(%error, attempts = failure.attempts, "embedded store reopen failed");
                Err(StoreError::Reopening {
                    cause: failure.cause.clone(),
                })
            }
        }
    }
}

/// Opens (or creates) the database file with a page cache of `page_cache_bytes`.
fn open_database(path: &Path, page_cache_bytes: usize) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(page_cache_bytes)
        .create(path)
        .map_err(|error| StoreError::Open {
            path: path.to_owned(),
            source: Arc::new(error.into()),
        })
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

fn read_buckets(txn: &ReadTransaction, buckets: &[u32]) -> Result<Vec<CreatorBucket>, StoreError> {
    let table = txn.open_table(CREATORS).map_err(backend)?;
    // Gathered in one scratch vector, then moved out at their exact
    // count: a bucket is cached as is (no spare capacity), with one
    // allocation, and none for an empty bucket.
    let mut scratch = Vec::new();
    buckets
        .iter()
        .map(|bucket| {
            let low = u128::from(*bucket) << 64;
            let high = low | u128::from(u64::MAX);
            for entry in table.range(low..=high).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                scratch.push((key.value() as u64, decode_creator(value.value())?));
            }
            let mut creators = Vec::with_capacity(scratch.len());
            creators.append(&mut scratch);
            Ok(CreatorBucket { creators })
        })
        .collect()
}

fn read_viewer(
    txn: &ReadTransaction,
    viewer_id: u64,
    weights: &crate::model::params::KindWeights,
) -> Result<Option<ViewerRecord>, StoreError> {
    let table = txn.open_table(VIEWERS).map_err(backend)?;
    match table.get(viewer_id).map_err(backend)? {
        Some(value) => decode_viewer(value.value(), weights).map(Some),
        None => Ok(None),
    }
}

fn read_global(db: &Database) -> Result<CreatorAggregate, StoreError> {
    read_global_in(&db.begin_read().map_err(backend)?)
}

fn read_global_in(txn: &ReadTransaction) -> Result<CreatorAggregate, StoreError> {
    let table = txn.open_table(META).map_err(backend)?;
    match table.get(GLOBAL_KEY).map_err(backend)? {
        Some(value) => decode_creator(value.value()),
        None => Ok(CreatorAggregate::default()),
    }
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
            page_cache_bytes: 1 << 20,
            disk_floor: DiskFloor::NONE,
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
