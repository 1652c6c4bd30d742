//! The domain core: rank, creator scores and event recording over the store
//! and the caches, with what every edge shares — event validation
//! ([`ingest`]), the JSON Lines event format ([`jsonl`]), the caches
//! ([`cache`]), the one clock ([`clock`]), the engine's own metrics
//! ([`metrics`]) and opening the configured store ([`open_engine`]).
//!
//! The gRPC and Kafka edge ([`crate::service`]) and the offline tools
//! ([`crate::offline`]) both stand on it, never on each other. No proto types
//! here; [`crate::service::grpc`] converts.

pub mod cache;
pub mod clock;
pub mod ingest;
pub mod jsonl;
pub mod metrics;
mod open;

pub use clock::Clock;
pub use open::open_engine;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Limits, Variant, Variants};
use crate::engine::cache::Caches;
use crate::engine::ingest::{RawEvent, RejectReason, validate};
use crate::engine::metrics::EngineMetrics;
use crate::error::Error;
use crate::model::rank::score_batch;
pub use crate::model::rank::{Candidate, CreatorSlot};
use crate::model::score::Scorer;
use crate::model::{CreatorAggregate, CreatorScore, Decay, IngestParams, RankedItem, ScoreSpace, ViewerRecord};
use crate::store::{AnyStore, Applied, CreatorBucket, Store, StoreError, creator_bucket};

/// Creator buckets fetched for one call.
struct BucketSet {
    /// Sorted distinct bucket numbers.
    buckets: Vec<u32>,
    /// `values[i]` holds `buckets[i]`; `None` when it could not be read.
    values: Vec<Option<Arc<CreatorBucket>>>,
}

impl BucketSet {
    fn get(&self, creator_id: u64) -> Option<&CreatorAggregate> {
        let index = self.buckets.binary_search(&creator_bucket(creator_id)).ok()?;
        self.values[index].as_deref()?.get(creator_id)
    }
}

/// A Rank call.
#[derive(Clone, Debug, Default)]
pub struct RankQuery {
    /// 0 = anonymous.
    pub viewer_id: u64,
    /// The batch.
    pub candidates: Vec<Candidate>,
    /// "" = default.
    pub variant: String,
    /// 0 = all.
    pub top_k: usize,
    /// How boost and base combine.
    pub score_space: ScoreSpace,
    /// Longest the store reads may take (from the caller's deadline); past
    /// it the call answers with what it has, degraded. `None` = the store's
    /// own timeout only.
    pub read_budget: Option<Duration>,
}

/// A Rank answer: sorted items pointing into the table of distinct creators.
#[derive(Clone, Debug)]
pub struct RankOutcome {
    /// Sorted, cut to `top_k`.
    pub items: Vec<RankedItem>,
    /// One entry per distinct creator, indexed by `RankedItem::creator_slot`.
    pub slots: Vec<CreatorSlot>,
    /// The variant used.
    pub variant: Arc<Variant>,
    /// Some boosts are neutral or stale because the store failed.
    pub degraded: bool,
}

/// A GetCreatorScores answer.
#[derive(Clone, Debug)]
pub struct ScoresOutcome {
    /// In request order.
    pub scores: Vec<(u64, CreatorScore)>,
    /// The variant used.
    pub variant: Arc<Variant>,
    /// Some scores are neutral because the store failed.
    pub degraded: bool,
}

/// A RecordEvents answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordOutcome {
    /// Events counted (durable).
    pub accepted: u32,
    /// Events whose id was seen before.
    pub duplicates: u32,
    /// Rejected events: index in the request, reason.
    pub rejected: Vec<(u32, RejectReason)>,
}

/// The engine's fixed settings.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Request limits.
    pub limits: Limits,
    /// What is stored per event.
    pub ingest: IngestParams,
    /// Scoring parameter sets.
    pub variants: Variants,
}

/// Rank, scores and ingest over the store; share it behind an `Arc`.
///
/// Concrete over [`AnyStore`]: the service runs on exactly the backends that
/// enum names, and the tests run it on those same backends (real Redis,
/// killed or frozen, for the failure paths), so a type parameter would buy
/// nothing but bounds on every caller.
pub struct Engine {
    store: AnyStore,
    caches: Arc<Caches>,
    limits: Limits,
    decay: Decay,
    clock: Clock,
    metrics: Arc<EngineMetrics>,
    /// Swapped whole by a config reload; a call clones the `Arc` of the
    /// variant it uses, so calls in flight finish with the parameters they began with.
    variants: RwLock<Arc<Variants>>,
    /// When the store last failed a probe or a read, in milliseconds since
    /// `epoch` plus one; 0 = not failing (a probe succeeded since). For
    /// [`STORE_BREAKER`] after a failure, reads are not attempted (answers
    /// come from the cache, stale entries included, else neutral) and every
    /// answer is flagged degraded, so a hung store costs calls nothing.
    store_failed_at: AtomicU64,
    epoch: Instant,
}

/// How long after a store failure reads are skipped, unless a probe (every
/// second while serving) finds the store back sooner.
pub const STORE_BREAKER: Duration = Duration::from_secs(2);

impl Engine {
    /// An engine over `store`; `caches` must be the ones the store's commit hook refreshes.
    pub fn new(
        store: AnyStore,
        caches: Arc<Caches>,
        settings: EngineSettings,
        clock: Clock,
        metrics: Arc<EngineMetrics>,
    ) -> Engine {
        let EngineSettings {
            limits,
            ingest,
            variants,
        } = settings;
        let epoch = clock.instant();
        Engine {
            store,
            caches,
            limits,
            decay: ingest.decay(),
            clock,
            metrics,
            variants: RwLock::new(Arc::new(variants)),
            store_failed_at: AtomicU64::new(0),
            epoch,
        }
    }

    /// Replaces the scoring parameter sets atomically (config hot reload).
    pub fn replace_variants(&self, variants: Variants) {
        let mut guard = self.variants.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Arc::new(variants);
    }

    /// Probes the store (health, `creator_boost_store_up`).
    pub async fn store_reachable(&self) -> bool {
        let up = match self.store.ping().await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "store probe failed");
                false
            }
        };
        self.metrics.store_probe(up);
        if up {
            self.store_failed_at.store(0, Ordering::Relaxed);
        } else {
            self.store_failed();
        }
        up
    }

    fn elapsed_ms(&self) -> u64 {
        let elapsed = self.clock.instant().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the store failed within [`STORE_BREAKER`] and no probe has
    /// succeeded since.
    fn store_down(&self) -> bool {
        let failed_at = self.store_failed_at.load(Ordering::Relaxed);
        failed_at != 0 && (self.elapsed_ms() + 1).saturating_sub(failed_at) < STORE_BREAKER.as_millis() as u64
    }

    fn store_failed(&self) {
        self.store_failed_at.store(self.elapsed_ms() + 1, Ordering::Relaxed);
    }

    /// One store read: skipped while the store is down, cut off at the
    /// call's budget, timed, and noted as a failure when it fails.
    async fn read<T>(
        &self,
        budget: Option<Duration>,
        read: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.store_down() {
            return Err(StoreError::BreakerOpen { window: STORE_BREAKER });
        }
        let started = Instant::now();
        let result = within_budget(budget, read).await;
        self.metrics.store_read(started.elapsed(), result.is_ok());
        if result.is_err() {
            self.store_failed();
        }
        result
    }

    /// The store (offline commands read it directly).
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.metrics
    }

    fn variant(&self, name: &str) -> Result<Arc<Variant>, Error> {
        let variants = self.variants.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        variants
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownVariant(name.to_owned()))
    }

    /// Boosts and orders one viewer's candidates.
    ///
    /// # Errors
    /// [`Error::TooManyCandidates`], [`Error::BadBaseScore`] naming the
    /// offending index, or [`Error::UnknownVariant`]. A store failure is not an error: it degrades.
    pub async fn rank(&self, query: &RankQuery) -> Result<RankOutcome, Error> {
        let variant = self.variant(&query.variant)?;
        let limit = self.limits.max_candidates;
        if query.candidates.len() > limit {
            return Err(Error::TooManyCandidates {
                count: query.candidates.len(),
                limit,
            });
        }
        for (index, candidate) in query.candidates.iter().enumerate() {
            if !query.score_space.accepts(candidate.base_score) {
                return Err(Error::BadBaseScore {
                    index,
                    value: candidate.base_score,
                    space: query.score_space,
                });
            }
        }
        if query.candidates.is_empty() {
            return Ok(RankOutcome {
                items: Vec::new(),
                slots: Vec::new(),
                variant,
                degraded: false,
            });
        }

        let mut creator_ids: Vec<u64> = query.candidates.iter().map(|c| c.creator_id).collect();
        creator_ids.sort_unstable();
        creator_ids.dedup();
        // The three reads go out together: on a cold cache over Redis they
        // share one round trip.
        let budget = query.read_budget;
        let viewer = async {
            if query.viewer_id == 0 {
                (None, false)
            } else {
                self.viewer_record(query.viewer_id, budget).await
            }
        };
        let ((buckets, buckets_degraded), (viewer, viewer_degraded), (global, global_degraded)) =
            tokio::join!(self.creator_buckets(&creator_ids, budget), viewer, self.global(budget));
        let degraded = buckets_degraded || viewer_degraded || global_degraded || self.store_down();
        let aggregates: Vec<Option<&CreatorAggregate>> = creator_ids.iter().map(|id| buckets.get(*id)).collect();

        let scorer = Scorer::new(&variant.params, &self.decay, &global, self.clock.now_ms());
        let (items, slots) = score_batch(
            &scorer,
            &query.candidates,
            &creator_ids,
            &aggregates,
            viewer.as_deref(),
            query.score_space,
            query.top_k,
        );
        if degraded {
            self.metrics.degraded_answer();
            tracing::debug!(
                viewer_id = query.viewer_id,
                "rank answered with neutral or cached boosts: store unavailable"
            );
        }
        Ok(RankOutcome {
            items,
            slots,
            variant,
            degraded,
        })
    }

    /// Scores of the given creators, in request order; `read_budget` as for
    /// [`RankQuery::read_budget`].
    ///
    /// # Errors
    /// [`Error::TooManyCreatorIds`], [`Error::UnknownVariant`].
    pub async fn creator_scores(
        &self,
        creator_ids: &[u64],
        variant: &str,
        read_budget: Option<Duration>,
    ) -> Result<ScoresOutcome, Error> {
        let variant = self.variant(variant)?;
        let limit = self.limits.max_creator_ids;
        if creator_ids.len() > limit {
            return Err(Error::TooManyCreatorIds {
                count: creator_ids.len(),
                limit,
            });
        }
        let mut distinct = creator_ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let ((buckets, degraded), (global, global_degraded)) =
            tokio::join!(self.creator_buckets(&distinct, read_budget), self.global(read_budget));
        let scorer = Scorer::new(&variant.params, &self.decay, &global, self.clock.now_ms());
        let scores = creator_ids
            .iter()
            .map(|id| (*id, scorer.creator(buckets.get(*id))))
            .collect();
        let degraded = degraded || global_degraded || self.store_down();
        if degraded {
            self.metrics.degraded_answer();
        }
        Ok(ScoresOutcome {
            scores,
            variant,
            degraded,
        })
    }

    /// Validates and stores a batch; answers once accepted events are durable.
    ///
    /// # Errors
    /// [`Error::TooManyEvents`]; [`Error::Store`] when
    /// the store cannot make the batch durable (nothing was acknowledged).
    pub async fn record(&self, events: Vec<RawEvent>) -> Result<RecordOutcome, Error> {
        let limit = self.limits.max_events_per_batch;
        if events.len() > limit {
            return Err(Error::TooManyEvents {
                count: events.len(),
                limit,
            });
        }
        let now_ms = self.clock.now_ms();
        let mut outcome = RecordOutcome::default();
        let mut valid = Vec::with_capacity(events.len());
        for (index, raw) in events.into_iter().enumerate() {
            match validate(raw, now_ms, &self.limits, &self.decay) {
                Ok(event) => valid.push(event),
                Err(reason) => {
                    self.metrics.rejected(reason);
                    outcome.rejected.push((index as u32, reason));
                }
            }
        }
        let started = Instant::now();
        let applied = self.store.apply(valid, now_ms).await;
        self.metrics.store_commit(started.elapsed(), applied.is_ok());
        for status in applied? {
            match status {
                Applied::Accepted => outcome.accepted += 1,
                Applied::Duplicate => outcome.duplicates += 1,
            }
        }
        self.metrics.ingested(outcome.accepted, outcome.duplicates);
        Ok(outcome)
    }

    /// The buckets holding sorted distinct `creator_ids`: from cache, else
    /// one store read for every bucket missing. On store failure the missing
    /// buckets come from expired cache entries still held (stale), else are
    /// empty (neutral scores), and the flag is set.
    async fn creator_buckets(&self, creator_ids: &[u64], budget: Option<Duration>) -> (BucketSet, bool) {
        let mut buckets: Vec<u32> = creator_ids.iter().map(|id| creator_bucket(*id)).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let now = self.caches.now();
        let mut values: Vec<Option<Arc<CreatorBucket>>> =
            buckets.iter().map(|b| self.caches.creator_bucket(*b, now)).collect();
        let missing: Vec<usize> = (0..buckets.len()).filter(|i| values[*i].is_none()).collect();
        self.metrics
            .creator_lookups(buckets.len() - missing.len(), missing.len());
        let mut degraded = false;
        if !missing.is_empty() {
            let generation = self.caches.generation();
            let wanted: Vec<u32> = missing.iter().map(|i| buckets[*i]).collect();
            match self.read(budget, self.store.creator_buckets(wanted)).await {
                Ok(loaded) => {
                    for (i, bucket) in missing.into_iter().zip(loaded) {
                        let bucket = Arc::new(bucket);
                        self.caches
                            .insert_creator_bucket(generation, buckets[i], Arc::clone(&bucket));
                        values[i] = Some(bucket);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, misses = missing.len(), "creator read failed; stale or neutral boosts");
                    for i in missing {
                        values[i] = self.caches.stale_creator_bucket(buckets[i]);
                    }
                    degraded = true;
                }
            }
        }
        (BucketSet { buckets, values }, degraded)
    }

    async fn viewer_record(&self, viewer_id: u64, budget: Option<Duration>) -> (Option<Arc<ViewerRecord>>, bool) {
        if let Some(cached) = self.caches.viewer(viewer_id) {
            self.metrics.viewer_lookup(true);
            return (cached, false);
        }
        self.metrics.viewer_lookup(false);
        let generation = self.caches.generation();
        match self.read(budget, self.store.viewer(viewer_id)).await {
            Ok(record) => {
                let value = record.map(Arc::new);
                self.caches.insert_viewer(generation, viewer_id, value.clone());
                (value, false)
            }
            Err(error) => {
                tracing::debug!(%error, viewer_id, "viewer read failed; stale or neutral private boosts");
                (self.caches.stale_viewer(viewer_id).flatten(), true)
            }
        }
    }

    async fn global(&self, budget: Option<Duration>) -> (Arc<CreatorAggregate>, bool) {
        if let Some(global) = self.caches.global() {
            return (global, false);
        }
        let generation = self.caches.generation();
        match self.read(budget, self.store.global()).await {
            Ok(global) => {
                let global = Arc::new(global);
                self.caches.insert_global(generation, Arc::clone(&global));
                (global, false)
            }
            Err(error) => {
                tracing::debug!(%error, "platform aggregate read failed; stale or default priors");
                let global = self.caches.stale_global().unwrap_or_default();
                (global, true)
            }
        }
    }
}

/// A store read cut off at `budget`, if any.
async fn within_budget<T>(
    budget: Option<Duration>,
    read: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match budget {
        Some(budget) => tokio::time::timeout(budget, read).await.unwrap_or_else(|_| {
            Err(StoreError::Timeout {
                operation: crate::store::Operation::CallRead,
                limit: budget,
            })
        }),
        None => read.await,
    }
}
