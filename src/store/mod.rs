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
    /// Creators whose aggregates changed, with their new values.
    pub creators: Vec<(u64, Arc<CreatorAggregate>)>,
    /// Viewers whose records changed, with their new values.
    pub viewers: Vec<(u64, Arc<ViewerRecord>)>,
    /// The new platform aggregate.
    pub global: Arc<CreatorAggregate>,
}

/// Called after each durable commit, before any of its writes are acknowledged.
pub type CommitHook = Arc<dyn Fn(&Changes) + Send + Sync>;

/// The operations the engine needs from a backend.
pub trait Store: Send + Sync + 'static {
    /// Aggregates of `creator_ids`, in the same order (`None` = never seen).
    fn creators(
        &self,
        creator_ids: Vec<u64>,
    ) -> impl Future<Output = Result<Vec<Option<CreatorAggregate>>, StoreError>> + Send;

    /// The relation record of one viewer (`None` = never seen).
    fn viewer(&self, viewer_id: u64) -> impl Future<Output = Result<Option<ViewerRecord>, StoreError>> + Send;

    /// The platform-wide aggregate.
    fn global(&self) -> impl Future<Output = Result<CreatorAggregate, StoreError>> + Send;

    /// Deduplicates and applies validated events; resolves once the accepted
    /// ones are durable. `now_ms` stamps the dedupe window.
    fn apply(&self, events: Vec<Event>, now_ms: i64) -> impl Future<Output = Result<Vec<Applied>, StoreError>> + Send;
}
