//! moka caches in front of the store: creator aggregates (including "never
//! seen", so cold creators cost one store read per TTL, not one per call) and
//! viewer records, plus the platform aggregate.
//!
//! Values sit behind `Arc`, so a hit clones a pointer, not a record.
//! Coherence on this node: after a commit the store's hook refreshes entries
//! already cached. A read that raced with a commit is not cached: the
//! generation counter tells the reader a commit happened while it was reading,
//! and it is checked again after the insert, because the commit's refresh may
//! have run between the first check and the insert.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::CacheConfig;
use crate::model::{CreatorAggregate, ViewerRecord};
use crate::store::Changes;

/// A cached creator: `None` = known not to exist in the store.
pub type CachedCreator = Option<Arc<CreatorAggregate>>;
/// A cached viewer: `None` = known not to exist in the store.
pub type CachedViewer = Option<Arc<ViewerRecord>>;

/// The caches of one replica.
pub struct Caches {
    creators: Cache<u64, CachedCreator>,
    viewers: Cache<u64, CachedViewer>,
    global: RwLock<Option<(Arc<CreatorAggregate>, Instant)>>,
    ttl: Duration,
    generation: AtomicU64,
}

impl Caches {
    /// Empty caches sized and timed by `config`.
    pub fn new(config: &CacheConfig) -> Caches {
        let ttl = Duration::from_millis(config.ttl_ms);
        Caches {
            creators: Cache::builder().max_capacity(config.creators).time_to_live(ttl).build(),
            viewers: Cache::builder().max_capacity(config.viewers).time_to_live(ttl).build(),
            global: RwLock::new(None),
            ttl,
            generation: AtomicU64::new(0),
        }
    }

    /// Current commit generation; pass it to the `insert_*` calls of a read
    /// that started now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A cached creator, if present.
    pub fn creator(&self, creator_id: u64) -> Option<CachedCreator> {
        self.creators.get(&creator_id)
    }

    /// A cached viewer, if present.
    pub fn viewer(&self, viewer_id: u64) -> Option<CachedViewer> {
        self.viewers.get(&viewer_id)
    }

    /// The platform aggregate, if cached and fresh.
    pub fn global(&self) -> Option<Arc<CreatorAggregate>> {
        let guard = self.global.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .as_ref()
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(value, _)| Arc::clone(value))
    }

    /// Caches a creator read from the store, unless a commit happened since `generation`.
    pub fn insert_creator(&self, generation: u64, creator_id: u64, value: CachedCreator) {
        insert_unless_raced(&self.creators, &self.generation, generation, creator_id, value);
    }

    /// Caches a viewer read from the store, unless a commit happened since `generation`.
    pub fn insert_viewer(&self, generation: u64, viewer_id: u64, value: CachedViewer) {
        insert_unless_raced(&self.viewers, &self.generation, generation, viewer_id, value);
    }

    /// Caches the platform aggregate read from the store, unless a commit happened since `generation`.
    pub fn insert_global(&self, generation: u64, value: Arc<CreatorAggregate>) {
        if self.generation() == generation {
            self.set_global(value);
        }
    }

    fn set_global(&self, value: Arc<CreatorAggregate>) {
        let mut guard = self.global.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some((value, Instant::now()));
    }

    /// Applies a commit: refreshes the entries this replica already caches
    /// (entries not cached stay out, so ingest does not flush the hot set).
    pub fn apply_commit(&self, changes: &Changes) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for (id, aggregate) in &changes.creators {
            if self.creators.contains_key(id) {
                self.creators.insert(*id, Some(Arc::clone(aggregate)));
            }
        }
        for (id, record) in &changes.viewers {
            if self.viewers.contains_key(id) {
                self.viewers.insert(*id, Some(Arc::clone(record)));
            }
        }
        self.set_global(Arc::clone(&changes.global));
    }

    /// Entries currently cached (creators, viewers), after pending maintenance.
    pub fn entry_counts(&self) -> (u64, u64) {
        self.creators.run_pending_tasks();
        self.viewers.run_pending_tasks();
        (self.creators.entry_count(), self.viewers.entry_count())
    }
}

fn insert_unless_raced<V: Clone + Send + Sync + 'static>(
    cache: &Cache<u64, V>,
    current: &AtomicU64,
    generation: u64,
    key: u64,
    value: V,
) {
    if current.load(Ordering::Acquire) != generation {
        return;
    }
    cache.insert(key, value);
    if current.load(Ordering::Acquire) != generation {
        cache.invalidate(&key);
    }
}
