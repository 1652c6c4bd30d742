//! The store: per-creator aggregates, one relation record per viewer, the
//! platform aggregate and the event-id dedupe window.
//!
//! [`Store`] is what the engine needs; [`embedded::EmbeddedStore`] (redb, on
//! disk, one node) is the default backend, [`RedisStore`](self::redis::RedisStore) (Redis
//! or Redis Cluster) the one shared by many replicas; [`AnyStore`] is either,
//! as chosen at start.

pub mod codec;
pub mod embedded;
mod error;
pub(crate) mod hash;
pub mod redis;
pub mod url;

use std::future::Future;
use std::sync::Arc;

pub use error::{Operation, StoreError};
pub use hash::event_key;
pub use url::{StoreUrl, StoreUrlError};

use crate::model::{CreatorAggregate, Event, ViewerRecord};

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

/// What one batch written to a shared store touched: cached copies of these
/// are stale (the new values live in the store, which other replicas write too).
#[derive(Clone, Debug, Default)]
pub struct Touched {
    /// Creator buckets changed, sorted.
    pub buckets: Vec<u32>,
    /// Viewers whose records changed, sorted.
    pub viewers: Vec<u64>,
}

/// Called after each batch applied to a shared store, before it is acknowledged.
pub type InvalidateHook = Arc<dyn Fn(&Touched) + Send + Sync>;

/// Number of creator buckets. Creators are stored and cached by bucket (a
/// hash of the id), so one cache entry carries many creators: at a million
/// creators a bucket holds about 15, and the cache's fixed per-entry cost is
/// shared between them (docs/performance.md, memory).
pub const CREATOR_BUCKETS: u32 = 1 << 16;

/// The bucket of a creator: the top 16 bits of a SplitMix64 hash of its id,
/// so dense and sparse id spaces spread evenly. Persisted: it must never change (`hash.rs`).
pub fn creator_bucket(creator_id: u64) -> u32 {
    (hash::splitmix64(creator_id) >> 48) as u32
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

/// What one call needs from the store beyond its caches: read together, so
/// a call costs one store round (one read transaction and one blocking task
/// on the embedded store, one round trip on Redis) however much it misses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadSet {
    /// Creator buckets, in the order wanted.
    pub buckets: Vec<u32>,
    /// A viewer's record.
    pub viewer: Option<u64>,
    /// The platform aggregate.
    pub global: bool,
}

impl ReadSet {
    /// Whether nothing is wanted.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.viewer.is_none() && !self.global
    }
}

/// What a [`ReadSet`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadResult {
    /// The buckets, in the order asked (an empty bucket = no creators).
    pub buckets: Vec<CreatorBucket>,
    /// The viewer's record (`None` = never seen, or not asked).
    pub viewer: Option<ViewerRecord>,
    /// The platform aggregate, if asked.
    pub global: Option<CreatorAggregate>,
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

    /// Everything in `wanted`, in one store round. The default sends the
    /// three reads at once (a backend that pipelines them answers in one
    /// round trip).
    fn read_set(&self, wanted: ReadSet) -> impl Future<Output = Result<ReadResult, StoreError>> + Send {
        async move {
            let ReadSet {
                buckets,
                viewer,
                global,
            } = wanted;
            let buckets = async {
                if buckets.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.creator_buckets(buckets).await
                }
            };
            let viewer = async {
                match viewer {
                    Some(viewer_id) => self.viewer(viewer_id).await,
                    None => Ok(None),
                }
            };
            let global = async {
                if global {
                    self.global().await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let (buckets, viewer, global) = tokio::join!(buckets, viewer, global);
            Ok(ReadResult {
                buckets: buckets?,
                viewer: viewer?,
                global: global?,
            })
        }
    }

    /// Deduplicates and applies validated events; resolves once the accepted
    /// ones are durable. `now_ms` stamps the dedupe window.
    fn apply(&self, events: Vec<Event>, now_ms: i64) -> impl Future<Output = Result<Vec<Applied>, StoreError>> + Send;

    /// Whether the backend answers now (health); a local store always does.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Why writes are refused now, if the backend itself knows, and its
    /// volume's free space (as of the latest write or probe).
    fn write_health(&self) -> WriteHealth {
        WriteHealth::default()
    }
}

/// What a backend knows of its own write path: faults that refuse writes
/// while reads go on, and the data volume's free space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteHealth {
    /// The data volume is below its free-space floor.
    pub disk_floor: bool,
    /// An I/O error latched and the store is being reopened.
    pub io_error: bool,
    /// Free bytes on the data volume (`None` = not on a local volume).
    pub free_bytes: Option<u64>,
    /// The free-space floor, in bytes (`None` = not on a local volume).
    pub floor_bytes: Option<u64>,
}

/// The backend chosen at start: `--data-dir` (embedded) or `--store URL` (Redis).
pub enum AnyStore {
    /// On disk, one node.
    Embedded(embedded::EmbeddedStore),
    /// Redis or Redis Cluster, shared by replicas.
    Redis(Box<self::redis::RedisStore>),
}

impl AnyStore {
    /// Every creator in the store, sorted by id (offline scoring).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub async fn scan_creators(&self) -> Result<Vec<(u64, CreatorAggregate)>, StoreError> {
        match self {
            AnyStore::Embedded(store) => store.scan_creators(),
            AnyStore::Redis(store) => store.scan_creators().await,
        }
    }
}

impl Store for AnyStore {
    async fn creator_buckets(&self, buckets: Vec<u32>) -> Result<Vec<CreatorBucket>, StoreError> {
        match self {
            AnyStore::Embedded(store) => store.creator_buckets(buckets).await,
            AnyStore::Redis(store) => store.creator_buckets(buckets).await,
        }
    }

    async fn viewer(&self, viewer_id: u64) -> Result<Option<ViewerRecord>, StoreError> {
        match self {
            AnyStore::Embedded(store) => store.viewer(viewer_id).await,
            AnyStore::Redis(store) => store.viewer(viewer_id).await,
        }
    }

    async fn global(&self) -> Result<CreatorAggregate, StoreError> {
        match self {
            AnyStore::Embedded(store) => store.global().await,
            AnyStore::Redis(store) => store.global().await,
        }
    }

    async fn read_set(&self, wanted: ReadSet) -> Result<ReadResult, StoreError> {
        match self {
            AnyStore::Embedded(store) => store.read_set(wanted).await,
            AnyStore::Redis(store) => store.read_set(wanted).await,
        }
    }

    async fn apply(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
        match self {
            AnyStore::Embedded(store) => store.apply(events, now_ms).await,
            AnyStore::Redis(store) => store.apply(events, now_ms).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Embedded(store) => store.ping().await,
            AnyStore::Redis(store) => store.ping().await,
        }
    }

    fn write_health(&self) -> WriteHealth {
        match self {
            AnyStore::Embedded(store) => store.write_health(),
            AnyStore::Redis(store) => store.write_health(),
        }
    }
}

/// The layout of the stored records: 2 = evidence counted per account.
/// Stores written before (layout 1, per event, whose signature has no
/// `layout=`) hold sums that cannot be turned into per-account ones.
pub(crate) const STORE_LAYOUT: u32 = 2;

/// What the stored sums were written with: a store refuses to open with
/// another layout or other half-lives, because its sums would be read
/// against the wrong model or decay.
pub(crate) fn decay_signature(ingest: &crate::model::IngestParams) -> String {
    format!(
        "layout={STORE_LAYOUT} engagement_half_life_days={} negative_half_life_days={}",
        ingest.engagement_half_life_days, ingest.negative_half_life_days
    )
}
