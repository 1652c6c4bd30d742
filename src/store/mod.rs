//! The store: per-creator aggregates, one relation record per viewer, the
//! platform aggregate and the event-id dedupe window.
//!
//! [`Store`] is what the engine needs; [`embedded::EmbeddedStore`] (redb, on
//! disk, one node) is the default backend.

pub mod codec;
pub mod embedded;

use std::future::Future;
use std::sync::Arc;

use crate::model::{CreatorAggregate, Event, ViewerRecord};

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, disk full, read-only, connection lost).
    #[error("store backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
}

/// What happened to one event handed to [`Store::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Counted, and durable.
    Accepted,
    /// Its `event_id` was already seen inside the dedupe window; nothing changed.
    Duplicate,
}

/// Records changed by one durable commit, for keeping caches coherent.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Creators whose aggregates changed, with their new values, sorted by id.
    pub creators: Vec<(u64, CreatorAggregate)>,
    /// Viewers whose records changed, with their new values.
    pub viewers: Vec<(u64, Arc<ViewerRecord>)>,
    /// The new platform aggregate.
    pub global: Arc<CreatorAggregate>,
}

/// Called after each durable commit, before any of its writes are acknowledged.
pub type CommitHook = Arc<dyn Fn(&Changes) + Send + Sync>;

/// Number of creator buckets. Creators are stored and cached by bucket (a
/// hash of the id), so one cache entry carries many creators: at a million
/// creators a bucket holds about 15, and the cache's fixed per-entry cost is
/// shared between them (docs/performance.md, memory).
pub const CREATOR_BUCKETS: u32 = 1 << 16;

/// The bucket of a creator: the top 16 bits of a SplitMix64 hash of its id,
/// so dense and sparse id spaces spread evenly.
pub fn creator_bucket(creator_id: u64) -> u32 {
    let mut z = creator_id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 48) as u32
}

/// The creators of one bucket, sorted by id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreatorBucket {
    /// `(creator_id, aggregate)`, sorted by id.
    pub creators: Vec<(u64, CreatorAggregate)>,
}

impl CreatorBucket {
    /// The aggregate of `creator_id`, if the bucket holds it.
    pub fn get(&self, creator_id: u64) -> Option<&CreatorAggregate> {
        self.creators
            .binary_search_by_key(&creator_id, |(id, _)| *id)
            .ok()
            .map(|i| &self.creators[i].1)
    }

    /// Inserts or replaces one creator, keeping the order (and the capacity
    /// exact: cached buckets are copied on every change anyway).
    pub fn upsert(&mut self, creator_id: u64, aggregate: CreatorAggregate) {
        match self.creators.binary_search_by_key(&creator_id, |(id, _)| *id) {
            Ok(i) => self.creators[i].1 = aggregate,
            Err(i) => {
                self.creators.reserve_exact(1);
                self.creators.insert(i, (creator_id, aggregate));
            }
        }
    }
}

/// The operations the engine needs from a backend.
pub trait Store: Send + Sync + 'static {
    /// Whole creator buckets, in the order asked (an empty bucket = no creators).
    fn creator_buckets(&self, buckets: Vec<u32>)
    -> impl Future<Output = Result<Vec<CreatorBucket>, StoreError>> + Send;

    /// The relation record of one viewer (`None` = never seen).
    fn viewer(&self, viewer_id: u64) -> impl Future<Output = Result<Option<ViewerRecord>, StoreError>> + Send;

    /// The platform-wide aggregate.
    fn global(&self) -> impl Future<Output = Result<CreatorAggregate, StoreError>> + Send;

    /// Deduplicates and applies validated events; resolves once the accepted
    /// ones are durable. `now_ms` stamps the dedupe window.
    fn apply(&self, events: Vec<Event>, now_ms: i64) -> impl Future<Output = Result<Vec<Applied>, StoreError>> + Send;
}
