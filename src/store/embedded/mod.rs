//! The embedded backend: one redb file, written by one thread with group
//! commit, read from the blocking pool.
//!
//! Writers hand batches to the writer thread over a bounded channel; it takes
//! every batch waiting, applies them all in one write transaction, commits
//! durably (fsync), runs the commit hook, then acknowledges each batch. Many
//! small concurrent batches thus share one fsync. The writer thread is in
//! `commit.rs`; reads and the tables are here.

mod commit;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode_creator, decode_viewer};
use super::{
    Applied, CommitHook, CreatorBucket, ReadResult, ReadSet, Store, StoreError, creator_bucket, decay_signature,
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

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "creator-boost.redb";

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
    /// Bytes of the data file redb keeps in memory.
    pub page_cache_bytes: usize,
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
        let db = Database::builder()
            .set_cache_size(settings.page_cache_bytes)
            .create(&path)
            .map_err(|e| cannot_open(&path, e.into()))?;
        let db = Arc::new(db);
        create_tables(&db)?;
        check_decay(&db, &settings.ingest)?;
        let intimacy_weights = settings.ingest.intimacy_weights;
        let (sender, jobs) = mpsc::channel(1024);
        let thread_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || commit::writer_loop(&thread_db, &settings, jobs))
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

fn read_buckets(txn: &ReadTransaction, buckets: &[u32]) -> Result<Vec<CreatorBucket>, StoreError> {
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
