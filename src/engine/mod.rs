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
use crate::engine::cache::{BucketHit, CachedViewer, Caches, ScoreScope};
use crate::engine::ingest::{RawEvent, RejectReason, validate};
use crate::engine::metrics::EngineMetrics;
use crate::error::Error;
use crate::model::rank::{BatchCreators, rank_scored};
pub use crate::model::rank::{Candidate, CreatorSlot};
use crate::model::score::Scorer;
use crate::model::{
    CreatorAggregate, CreatorScore, Decay, IngestParams, PrivateScore, RankedItem, ScoreSpace, ViewerRecord,
};
use crate::store::{AnyStore, Applied, CreatorBucket, ReadSet, Store, StoreError, WriteHealth, creator_bucket};

/// What a Rank call found in memory before reading the store.
struct Cached {
    global: Option<Arc<CreatorAggregate>>,
    /// `Some(None)`: known not to exist (or anonymous).
    viewer: Option<CachedViewer>,
    /// [`Caches::generation`] before anything was read.
    generation: u64,
}

/// Resolution of the instant the service scores as of. Scores are
/// computed as of the clock rounded down to it, so a creator's score stays
/// the same number for that long and is computed once per thread (the
/// memo in [`crate::engine::cache`]), not once per call. Against half-lives
/// of days, a second moves a decayed sum by about 6e-7 of itself, far less
/// than the cache TTL's staleness already allows.
pub const SCORING_QUANTUM_MS: i64 = 1_000;

/// The instant a call scores as of: `now_ms` rounded down to [`SCORING_QUANTUM_MS`].
pub fn scoring_instant(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(SCORING_QUANTUM_MS)
}

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

/// What one probe of the store found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreProbe {
    /// The store answered.
    pub reachable: bool,
    /// What the backend itself knows of its write path.
    pub writes: WriteHealth,
}

impl StoreProbe {
    /// Whether a batch would be written now: the store answers and nothing
    /// it knows of refuses writes.
    pub fn writable(&self) -> bool {
        self.reachable && !self.writes.disk_floor && !self.writes.io_error
    }
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

    /// Probes the store: whether it answers (health, `creator_boost_store_up`)
    /// and what refuses writes now (`creator_boost_writes_blocked`).
    pub async fn probe_store(&self) -> StoreProbe {
        let reachable = match self.store.ping().await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "store probe failed");
                false
            }
        };
        self.metrics.store_probe(reachable);
        if reachable {
            self.store_failed_at.store(0, Ordering::Relaxed);
        } else {
            self.store_failed();
        }
        let probe = StoreProbe {
            reachable,
            writes: self.store.write_health(),
        };
        self.metrics.write_health(&probe.writes, reachable);
        probe
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
        self.check_rank(query)?;
        if query.candidates.is_empty() {
            return Ok(RankOutcome {
                items: Vec::new(),
                slots: Vec::new(),
                variant,
                degraded: false,
            });
        }
        let creators = BatchCreators::of(&query.candidates);
        let as_of_ms = scoring_instant(self.clock.now_ms());
        let now = self.caches.now();
        let generation = self.caches.generation();

        // From memory: the platform aggregate, the viewer, and every creator
        // whose score this thread has memoized under the same scope.
        let cached_global = self.caches.global();
        let cached_viewer = match query.viewer_id {
            0 => Some(None),
            viewer_id => self.caches.viewer(viewer_id),
        };
        let scope = |global: &Arc<CreatorAggregate>| ScoreScope {
            variant: Arc::clone(&variant),
            global: Arc::clone(global),
            as_of_ms,
            generation,
        };
        let (mut slots, misses, memo_hits) = self.memoized_slots(&creators, cached_global.as_ref().map(scope), now);
        // The buckets of the creators still to score: from memory, else one
        // store round for all of them, the viewer and the platform aggregate.
        let (buckets, mut found, wanted) =
            self.plan_reads(query, &creators, &misses, now, &cached_viewer, &cached_global);
        self.metrics
            .creator_lookups(memo_hits + buckets.len() - wanted.buckets.len(), wanted.buckets.len());
        if query.viewer_id != 0 {
            self.metrics.viewer_lookup(cached_viewer.is_some());
        }
        let cached = Cached {
            global: cached_global,
            viewer: cached_viewer,
            generation,
        };
        let (global, viewer, fresh) = if wanted.is_empty() {
            (cached.global.unwrap_or_default(), cached.viewer.flatten(), true)
        } else {
            self.read_missing(query, wanted, &buckets, &mut found, cached).await
        };
        let degraded = !fresh || self.store_down();

        let scorer = Scorer::new(&variant.params, &self.decay, &global, as_of_ms);
        // Only scores from fresh data are memoized; the stale or neutral
        // scores of a degraded call are computed again by the next one.
        let memoize = fresh.then(|| scope(&global));
        self.score_misses(&scorer, (&creators, &misses), (&buckets, &found), memoize, &mut slots);
        if let Some(viewer) = viewer.as_deref() {
            for slot in &mut slots {
                slot.private = scorer.private(viewer.relation(slot.creator_id));
            }
        }
        let items = rank_scored(&query.candidates, &creators, &slots, query.score_space, query.top_k);
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

    /// Refuses a Rank over the candidate limit or with a base score its
    /// score space cannot take.
    fn check_rank(&self, query: &RankQuery) -> Result<(), Error> {
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
        Ok(())
    }

    /// One slot per distinct creator, neutral or filled from this thread's
    /// memo under `scope`; the indices left to score, and the memo's hits.
    fn memoized_slots(
        &self,
        creators: &BatchCreators,
        scope: Option<ScoreScope>,
        now: Instant,
    ) -> (Vec<CreatorSlot>, Vec<usize>, usize) {
        let mut slots: Vec<CreatorSlot> = creators
            .ids
            .iter()
            .map(|&creator_id| CreatorSlot {
                creator_id,
                creator: CreatorScore::NEUTRAL,
                private: PrivateScore::NEUTRAL,
            })
            .collect();
        let mut misses: Vec<usize> = Vec::new();
        let memo_hits = match scope {
            Some(scope) => self.caches.memoized_scores(&scope, now, &mut slots, &mut misses),
            None => {
                misses.extend(0..creators.ids.len());
                0
            }
        };
        (slots, misses, memo_hits)
    }

    /// The sorted buckets the `misses` live in, those found in memory, and
    /// what is left to read from the store.
    fn plan_reads(
        &self,
        query: &RankQuery,
        creators: &BatchCreators,
        misses: &[usize],
        now: Instant,
        cached_viewer: &Option<CachedViewer>,
        cached_global: &Option<Arc<CreatorAggregate>>,
    ) -> (Vec<u32>, Vec<Option<BucketHit>>, ReadSet) {
        let mut buckets: Vec<u32> = misses.iter().map(|i| creator_bucket(creators.ids[*i])).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let found: Vec<Option<BucketHit>> = buckets
            .iter()
            .map(|bucket| self.caches.creator_bucket_hit(*bucket, now))
            .collect();
        let wanted = ReadSet {
            buckets: buckets
                .iter()
                .zip(&found)
                .filter(|(_, hit)| hit.is_none())
                .map(|(bucket, _)| *bucket)
                .collect(),
            viewer: if cached_viewer.is_none() {
                Some(query.viewer_id)
            } else {
                None
            },
            global: cached_global.is_none(),
        };
        (buckets, found, wanted)
    }

    /// Scores the creators at `misses` from their buckets, and memoizes the
    /// scores under `memoize` (fresh data only).
    fn score_misses(
        &self,
        scorer: &Scorer,
        (creators, misses): (&BatchCreators, &[usize]),
        (buckets, found): (&[u32], &[Option<BucketHit>]),
        memoize: Option<ScoreScope>,
        slots: &mut [CreatorSlot],
    ) {
        let mut fresh_scores = Vec::with_capacity(if memoize.is_some() { misses.len() } else { 0 });
        for &i in misses {
            let creator_id = creators.ids[i];
            let hit = buckets
                .binary_search(&creator_bucket(creator_id))
                .ok()
                .and_then(|b| found[b].as_ref());
            let score = scorer.creator(hit.and_then(|hit| hit.value.get(creator_id)));
            slots[i].creator = score;
            if let (true, Some(hit)) = (memoize.is_some(), hit) {
                fresh_scores.push((creator_id, score, hit.trusted_until));
            }
        }
        if let (Some(scope), false) = (memoize, fresh_scores.is_empty()) {
            self.caches.memoize_scores(&scope, fresh_scores.into_iter());
        }
    }

    /// One store round for what a Rank call found in no cache; what it read
    /// is cached, and `found` completed. On failure the missing values come
    /// from expired cache entries still held (stale), else are neutral.
    /// Returns the platform aggregate, the viewer, and whether everything
    /// is fresh (else the call is degraded).
    async fn read_missing(
        &self,
        query: &RankQuery,
        wanted: ReadSet,
        buckets: &[u32],
        found: &mut [Option<BucketHit>],
        cached: Cached,
    ) -> (Arc<CreatorAggregate>, Option<Arc<ViewerRecord>>, bool) {
        let Cached {
            global: cached_global,
            viewer: cached_viewer,
            generation,
        } = cached;
        let viewer_id = query.viewer_id;
        let missing: Vec<usize> = (0..buckets.len()).filter(|i| found[*i].is_none()).collect();
        let read_at = self.caches.now();
        // Boxed: the backends' read futures are large (the Redis one holds
        // three pipelined reads), and inline they would make every Rank
        // call's future as large, copied whole when the call is boxed and
        // spawned, even when everything is in memory.
        let read = Box::pin(self.store.read_set(wanted));
        match self.read(query.read_budget, read).await {
            Ok(result) => {
                let trusted_until = self.caches.trusted_until(read_at);
                for (i, bucket) in missing.into_iter().zip(result.buckets) {
                    let bucket = Arc::new(bucket);
                    self.caches
                        .insert_creator_bucket(generation, buckets[i], Arc::clone(&bucket));
                    found[i] = Some(BucketHit {
                        value: bucket,
                        trusted_until,
                    });
                }
                let viewer = match cached_viewer {
                    Some(viewer) => viewer,
                    None => {
                        let viewer = result.viewer.map(Arc::new);
                        self.caches.insert_viewer(generation, viewer_id, viewer.clone());
                        viewer
                    }
                };
                let global = match (cached_global, result.global) {
                    (Some(global), _) => global,
                    (None, global) => {
                        let global = Arc::new(global.unwrap_or_default());
                        self.caches.insert_global(generation, Arc::clone(&global));
                        global
                    }
                };
                (global, viewer, true)
            }
            Err(error) => {
                tracing::debug!(%error, misses = missing.len(), "rank read failed; stale or neutral boosts");
                // Stale copies stand in (never memoized: the call is not fresh).
                for i in missing {
                    if let Some(bucket) = self.caches.stale_creator_bucket(buckets[i]) {
                        found[i] = Some(BucketHit {
                            value: bucket,
                            trusted_until: read_at,
                        });
                    }
                }
                let viewer = match cached_viewer {
                    Some(viewer) => viewer,
                    None => self.caches.stale_viewer(viewer_id).flatten(),
                };
                let global = cached_global.or_else(|| self.caches.stale_global()).unwrap_or_default();
                (global, viewer, false)
            }
        }
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
        let scorer = Scorer::new(
            &variant.params,
            &self.decay,
            &global,
            scoring_instant(self.clock.now_ms()),
        );
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
