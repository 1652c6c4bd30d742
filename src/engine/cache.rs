//! moka caches in front of the store: creator buckets (see
//! [`crate::store::creator_bucket`]; an empty bucket is cached too, so unknown
//! creators cost one store read per TTL, not one per call), viewer records,
//! and the platform aggregate.
//!
//! Values sit behind `Arc`, so a hit clones a pointer, not a record. Creators
//! are cached by bucket because moka's fixed cost per entry (about 300 bytes
//! with a TTL) would otherwise exceed the aggregate itself; the creator
//! capacity is enforced by weighing each bucket by its creators.
//!
//! In front of the moka creator cache sits a small per-thread map (L1): a
//! Rank touches about a hundred buckets, and a moka hit costs ~115 ns (read
//! recording, clock, policy) against ~15 ns here. An L1 entry is trusted only
//! while no commit happened on this replica since it was copied (generation)
//! and for at most [`L1_MAX_AGE`], so it adds at most that much to the
//! cross-replica staleness bound and never hides a local write.
//! Coherence on this node: after a commit the store's hook refreshes entries
//! already cached (with a shared store it drops them instead: only the store
//! knows their new values, which other replicas write too). A read that raced with a commit is not cached: the
//! generation counter tells the reader a commit happened while it was reading,
//! and it is checked again after the insert, because the commit's refresh may
//! have run between the first check and the insert.
//!
//! Beside the L1 sits a per-thread memo of creators' final scores
//! ([`ScoreScope`]): a Rank of creators it has seen does no bucket lookup
//! and no exp/ln, only one hash probe per creator. A memoized score is
//! reused only under the same parameters (variant), platform aggregate,
//! scoring instant and commit generation, and no longer than the L1 would
//! have trusted the bucket it was computed from, so it is exactly the score
//! the same call would compute from the L1.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::config::{CacheConfig, Variant};
use crate::engine::clock::Clock;
use crate::model::rank::CreatorSlot;
use crate::model::{CreatorAggregate, CreatorScore, ViewerRecord};
use crate::store::{Changes, CreatorBucket, Touched, creator_bucket};
/// A cached viewer: `None` = known not to exist in the store.
pub type CachedViewer = Option<Arc<ViewerRecord>>;

/// Longest an L1 entry is trusted.
pub const L1_MAX_AGE: Duration = Duration::from_millis(250);
/// L1 entries per thread before it is cleared.
const L1_CAPACITY: usize = 16_384;

/// A cached value and when it was read from the store: fresh for
/// `cache.ttl_ms`, then kept (stale) until `cache.stale_ttl_ms` only to
/// answer while the store is unreachable.
#[derive(Clone)]
struct Timed<V> {
    value: V,
    loaded: Instant,
}

impl<V> Timed<V> {
    fn younger_than(&self, age: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.loaded) < age
    }
}

/// Distinguishes `Caches` instances (several live in one test process).
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

struct L1Entry {
    generation: u64,
    expires: Instant,
    value: Arc<CreatorBucket>,
}

/// SplitMix64 finaliser as a hasher for small integer keys.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        crate::store::hash::splitmix64(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = self.0.rotate_left(32) ^ u64::from(n);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(32) ^ n;
    }
}

type L1Map = HashMap<(u64, u32), L1Entry, BuildHasherDefault<IdHasher>>;

thread_local! {
    static L1: RefCell<L1Map> = RefCell::new(L1Map::default());
    static MEMO: RefCell<Vec<MemoTable>> = const { RefCell::new(Vec::new()) };
}

/// Score scopes a thread memoizes at once: a few variants in an A/B test
/// each keep their scores.
const MEMO_SCOPES: usize = 4;
/// Scores memoized per scope and thread before the scope is cleared: at
/// about 170 bytes each, at most `MEMO_SCOPES × MEMO_CAPACITY × 170` bytes
/// (about 2.8 MB) per worker thread.
const MEMO_CAPACITY: usize = 4_096;

/// What a creator's score depends on besides its aggregate: the parameters,
/// the platform aggregate (priors), the scoring instant and the caches'
/// commit generation when the call began. Scopes hold their `Arc`s, so two
/// scopes with the same pointers are the same values (no address reuse).
#[derive(Clone)]
pub struct ScoreScope {
    /// The variant scored with.
    pub variant: Arc<Variant>,
    /// The platform aggregate the priors come from.
    pub global: Arc<CreatorAggregate>,
    /// The scoring instant, unix milliseconds.
    pub as_of_ms: i64,
    /// [`Caches::generation`] before the call read anything.
    pub generation: u64,
}

impl ScoreScope {
    fn same(&self, other: &ScoreScope) -> bool {
        Arc::ptr_eq(&self.variant, &other.variant)
            && Arc::ptr_eq(&self.global, &other.global)
            && self.as_of_ms == other.as_of_ms
            && self.generation == other.generation
    }
}

struct Memoized {
    /// When the bucket it was computed from stops being trusted.
    trusted_until: Instant,
    score: CreatorScore,
}

struct MemoTable {
    instance: u64,
    scope: ScoreScope,
    /// Calls since the thread started, when this table was last used (LRU).
    last_used: u64,
    scores: HashMap<u64, Memoized, BuildHasherDefault<IdHasher>>,
}

impl MemoTable {
    /// Whether this table holds the scores of `instance`'s caches under `scope`.
    fn holds(&self, instance: u64, scope: &ScoreScope) -> bool {
        self.instance == instance && self.scope.same(scope)
    }
}

/// A creator bucket in memory, and until when it may be trusted.
#[derive(Clone)]
pub struct BucketHit {
    /// The bucket.
    pub value: Arc<CreatorBucket>,
    /// Past this, the bucket must be looked up again (L1 age or TTL).
    pub trusted_until: Instant,
}

/// The caches of one replica.
pub struct Caches {
    instance: u64,
    l1_age: Duration,
    /// Keyed by bucket (fewer than 2^16 keys, none chosen by a caller), so
    /// hashed by [`IdHasher`], not SipHash: a cold Rank looks up and
    /// inserts a hundred.
    creators: Cache<u32, Timed<Arc<CreatorBucket>>, BuildHasherDefault<IdHasher>>,
    viewers: Cache<u64, Timed<CachedViewer>>,
    global: RwLock<Option<Timed<Arc<CreatorAggregate>>>>,
    ttl: Duration,
    stale_ttl: Duration,
    generation: AtomicU64,
    clock: Clock,
}

impl Caches {
    /// Empty caches sized and timed by `config`, on the system clock.
    pub fn new(config: &CacheConfig) -> Caches {
        Caches::with_clock(config, Clock::system())
    }

    /// Empty caches judging ages by `clock`. moka still evicts by its own
    /// clock at the stale TTL (memory); every freshness decision is this
    /// clock's.
    pub fn with_clock(config: &CacheConfig, clock: Clock) -> Caches {
        let ttl = Duration::from_millis(config.ttl_ms);
        let stale_ttl = Duration::from_millis(config.stale_ttl_ms).max(ttl);
        Caches {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            l1_age: L1_MAX_AGE.min(ttl),
            creators: Cache::builder()
                .max_capacity(config.creators)
                .weigher(|_, bucket: &Timed<Arc<CreatorBucket>>| {
                    u32::try_from(bucket.value.creators.len().max(1)).unwrap_or(u32::MAX)
                })
                .time_to_live(stale_ttl)
                .build_with_hasher(BuildHasherDefault::default()),
            viewers: Cache::builder()
                .max_capacity(config.viewer_bytes())
                .weigher(|_, viewer: &Timed<CachedViewer>| viewer_weight(&viewer.value))
                .time_to_live(stale_ttl)
                .build(),
            global: RwLock::new(None),
            ttl,
            stale_ttl,
            generation: AtomicU64::new(0),
            clock,
        }
    }

    /// The caches' clock reading, to pass to [`Caches::creator_bucket`].
    pub fn now(&self) -> Instant {
        self.clock.instant()
    }

    /// Current commit generation; pass it to the `insert_*` calls of a read
    /// that started now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A cached creator bucket, if present; `now` is the caller's clock
    /// reading, taken once per call rather than once per bucket.
    pub fn creator_bucket(&self, bucket: u32, now: Instant) -> Option<Arc<CreatorBucket>> {
        self.creator_bucket_hit(bucket, now).map(|hit| hit.value)
    }

    /// [`Caches::creator_bucket`], with how long the bucket may be trusted.
    pub fn creator_bucket_hit(&self, bucket: u32, now: Instant) -> Option<BucketHit> {
        let generation = self.generation();
        let key = (self.instance, bucket);
        let hit = L1.with(|l1| {
            l1.borrow()
                .get(&key)
                .filter(|entry| entry.generation == generation && now < entry.expires)
                .map(|entry| BucketHit {
                    value: Arc::clone(&entry.value),
                    trusted_until: entry.expires,
                })
        });
        if hit.is_some() {
            return hit;
        }
        let entry = self.creators.get(&bucket)?;
        if !entry.younger_than(self.ttl, now) {
            return None;
        }
        let value = entry.value;
        let expires = self.trusted_until(now);
        L1.with(|l1| {
            let mut l1 = l1.borrow_mut();
            if l1.len() >= L1_CAPACITY {
                l1.clear();
            }
            // Stamped with the generation read before the moka lookup: if a
            // commit slipped in between, the entry is simply never trusted.
            l1.insert(
                key,
                L1Entry {
                    generation,
                    expires,
                    value: Arc::clone(&value),
                },
            );
        });
        Some(BucketHit {
            value,
            trusted_until: expires,
        })
    }

    /// How long a bucket read from the store at `read_at` may be trusted
    /// by this thread without a new lookup: as long as an L1 copy made then.
    pub fn trusted_until(&self, read_at: Instant) -> Instant {
        read_at + self.l1_age
    }

    /// Sets `slots[i].creator` to the memoized score of `slots[i].creator_id`
    /// under `scope` where this thread has one still trusted at `now`; pushes
    /// the positions it has none for onto `misses`. Returns the number of hits.
    pub fn memoized_scores(
        &self,
        scope: &ScoreScope,
        now: Instant,
        slots: &mut [CreatorSlot],
        misses: &mut Vec<usize>,
    ) -> usize {
        if scope.generation != self.generation() {
            misses.extend(0..slots.len());
            return 0;
        }
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            let tick = next_tick(&memo);
            let Some(table) = memo.iter_mut().find(|table| table.holds(self.instance, scope)) else {
                misses.extend(0..slots.len());
                return 0;
            };
            table.last_used = tick;
            let mut hits = 0;
            for (i, slot) in slots.iter_mut().enumerate() {
                match table.scores.get(&slot.creator_id) {
                    Some(memoized) if now < memoized.trusted_until => {
                        slot.creator = memoized.score;
                        hits += 1;
                    }
                    _ => misses.push(i),
                }
            }
            hits
        })
    }

    /// Memoizes scores computed under `scope`: `(creator_id, score, trusted_until)`.
    pub fn memoize_scores(&self, scope: &ScoreScope, scores: impl Iterator<Item = (u64, CreatorScore, Instant)>) {
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            let tick = next_tick(&memo);
            let position = memo.iter().position(|table| table.holds(self.instance, scope));
            let position = match position {
                Some(position) => position,
                None if memo.len() < MEMO_SCOPES => {
                    memo.push(MemoTable {
                        instance: self.instance,
                        scope: scope.clone(),
                        last_used: tick,
                        scores: HashMap::default(),
                    });
                    memo.len() - 1
                }
                None => {
                    // The least recently used scope makes room; its map's
                    // allocation is kept.
                    let position = memo
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, table)| table.last_used)
                        .map_or(0, |(position, _)| position);
                    let table = &mut memo[position];
                    table.instance = self.instance;
                    table.scope = scope.clone();
                    table.scores.clear();
                    position
                }
            };
            let table = &mut memo[position];
            table.last_used = tick;
            for (creator_id, score, trusted_until) in scores {
                if table.scores.len() >= MEMO_CAPACITY {
                    table.scores.clear();
                }
                table.scores.insert(creator_id, Memoized { trusted_until, score });
            }
        });
    }

    /// A cached creator bucket past its TTL but within the stale TTL, for
    /// answering while the store is unreachable.
    pub fn stale_creator_bucket(&self, bucket: u32) -> Option<Arc<CreatorBucket>> {
        self.creators
            .get(&bucket)
            .filter(|entry| entry.younger_than(self.stale_ttl, self.clock.instant()))
            .map(|entry| entry.value)
    }

    /// A cached viewer, if present and fresh.
    pub fn viewer(&self, viewer_id: u64) -> Option<CachedViewer> {
        self.viewers
            .get(&viewer_id)
            .filter(|entry| entry.younger_than(self.ttl, self.clock.instant()))
            .map(|entry| entry.value)
    }

    /// A cached viewer within the stale TTL (see [`Caches::stale_creator_bucket`]).
    pub fn stale_viewer(&self, viewer_id: u64) -> Option<CachedViewer> {
        self.viewers
            .get(&viewer_id)
            .filter(|entry| entry.younger_than(self.stale_ttl, self.clock.instant()))
            .map(|entry| entry.value)
    }

    /// The platform aggregate, if cached and fresh.
    pub fn global(&self) -> Option<Arc<CreatorAggregate>> {
        self.global_younger_than(self.ttl)
    }

    /// The platform aggregate within the stale TTL (see [`Caches::stale_creator_bucket`]).
    pub fn stale_global(&self) -> Option<Arc<CreatorAggregate>> {
        self.global_younger_than(self.stale_ttl)
    }

    fn global_younger_than(&self, age: Duration) -> Option<Arc<CreatorAggregate>> {
        let guard = self.global.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .as_ref()
            .filter(|entry| entry.younger_than(age, self.clock.instant()))
            .map(|entry| Arc::clone(&entry.value))
    }

    /// Caches a creator bucket read from the store, unless a commit happened since `generation`.
    pub fn insert_creator_bucket(&self, generation: u64, bucket: u32, value: Arc<CreatorBucket>) {
        insert_unless_raced(&self.creators, &self.generation, generation, bucket, self.timed(value));
    }

    /// Caches a viewer read from the store, unless a commit happened since `generation`.
    pub fn insert_viewer(&self, generation: u64, viewer_id: u64, value: CachedViewer) {
        insert_unless_raced(
            &self.viewers,
            &self.generation,
            generation,
            viewer_id,
            self.timed(value),
        );
    }

    /// Caches the platform aggregate read from the store, unless a commit happened since `generation`.
    pub fn insert_global(&self, generation: u64, value: Arc<CreatorAggregate>) {
        if self.generation() == generation {
            self.set_global(value);
        }
    }

    fn set_global(&self, value: Arc<CreatorAggregate>) {
        let mut guard = self.global.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = Some(self.timed(value));
    }

    fn timed<V>(&self, value: V) -> Timed<V> {
        Timed {
            value,
            loaded: self.clock.instant(),
        }
    }

    /// Applies a commit: refreshes the entries this replica already caches
    /// (entries not cached stay out, so ingest does not flush the hot set).
    pub fn apply_commit(&self, changes: &Changes) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Changed creators grouped by bucket; a cached bucket is copied,
        // updated and replaced whole (readers keep the old copy they hold).
        let mut by_bucket: Vec<(u32, u64, &CreatorAggregate)> = changes
            .creators
            .iter()
            .map(|(id, a)| (creator_bucket(*id), *id, a))
            .collect();
        by_bucket.sort_unstable_by_key(|(bucket, id, _)| (*bucket, *id));
        for group in by_bucket.chunk_by(|a, b| a.0 == b.0) {
            let bucket = group[0].0;
            if let Some(cached) = self.creators.get(&bucket) {
                let mut updated = CreatorBucket::clone(&cached.value);
                for (_, id, aggregate) in group {
                    updated.upsert(*id, CreatorAggregate::clone(aggregate));
                }
                // Keeps its load time: the refresh covers this replica's
                // writes only, not what the TTL bounds.
                self.creators.insert(
                    bucket,
                    Timed {
                        value: Arc::new(updated),
                        loaded: cached.loaded,
                    },
                );
            }
        }
        for (id, record) in &changes.viewers {
            if let Some(cached) = self.viewers.get(id) {
                self.viewers.insert(
                    *id,
                    Timed {
                        value: Some(Arc::clone(record)),
                        loaded: cached.loaded,
                    },
                );
            }
        }
        self.set_global(Arc::clone(&changes.global));
    }

    /// Forgets what a write to a shared store touched, so the next read
    /// fetches the new values (this replica does not know them: other
    /// replicas write the same records).
    pub fn invalidate(&self, touched: &Touched) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for bucket in &touched.buckets {
            self.creators.invalidate(bucket);
        }
        for viewer in &touched.viewers {
            self.viewers.invalidate(viewer);
        }
        let mut guard = self.global.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = None;
    }

    /// Forgets every cached copy, fresh or stale: for a replica that may
    /// have missed invalidations (its subscription was down).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.creators.invalidate_all();
        self.viewers.invalidate_all();
        let mut guard = self.global.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = None;
    }

    /// Creators and viewers currently cached, after pending maintenance.
    pub fn entry_counts(&self) -> (u64, u64) {
        self.creators.run_pending_tasks();
        self.viewers.run_pending_tasks();
        (self.creators.weighted_size(), self.viewers.entry_count())
    }

    /// Bytes the cached viewer records weigh (what `cache.viewers_mb`
    /// bounds), after pending maintenance.
    pub fn viewer_bytes(&self) -> u64 {
        self.viewers.run_pending_tasks();
        self.viewers.weighted_size()
    }
}

/// What one cached viewer costs beyond its record: moka's entry (key, hash,
/// timestamps, its place in the eviction order), the [`Timed`] wrapper and
/// the `Arc`'s counts: 381-397 bytes of RSS per viewer beyond its record
/// (`cargo run --release --example cache_memory -- viewers 200000 4`).
const VIEWER_ENTRY_BYTES: usize = 400;

/// The memory a cached viewer takes, in bytes: the record, its relations'
/// buffer (by capacity), its platform shares and the entry itself.
fn viewer_weight(viewer: &CachedViewer) -> u32 {
    let record = viewer.as_deref().map_or(0, |record| {
        std::mem::size_of::<ViewerRecord>()
            + record.relations.capacity() * std::mem::size_of::<crate::model::PairRelation>()
            + record
                .platform
                .as_ref()
                .map_or(0, |platform| std::mem::size_of_val(&**platform))
    });
    u32::try_from(VIEWER_ENTRY_BYTES + record).unwrap_or(u32::MAX)
}

/// A use counter for the memo's LRU: one past the latest use.
fn next_tick(memo: &[MemoTable]) -> u64 {
    memo.iter()
        .map(|table| table.last_used)
        .max()
        .map_or(0, |latest| latest + 1)
}

fn insert_unless_raced<K, V, S>(cache: &Cache<K, V, S>, current: &AtomicU64, generation: u64, key: K, value: V)
where
    K: std::hash::Hash + Eq + Copy + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: std::hash::BuildHasher + Clone + Send + Sync + 'static,
{
    if current.load(Ordering::Acquire) != generation {
        return;
    }
    cache.insert(key, value);
    if current.load(Ordering::Acquire) != generation {
        cache.invalidate(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ttl_ms: u64, stale_ttl_ms: u64) -> CacheConfig {
        CacheConfig {
            ttl_ms,
            stale_ttl_ms,
            ..CacheConfig::default()
        }
    }

    #[test]
    fn expired_entries_answer_only_as_stale_until_the_stale_ttl() {
        let clock = Clock::frozen(0);
        let caches = Caches::with_clock(&config(20_000, 200_000), clock.clone());
        let bucket = Arc::new(CreatorBucket::default());
        caches.insert_creator_bucket(caches.generation(), 7, Arc::clone(&bucket));
        caches.insert_viewer(caches.generation(), 9, None);
        caches.insert_global(caches.generation(), Arc::new(CreatorAggregate::default()));
        clock.advance(Duration::from_millis(19_999));
        assert!(caches.creator_bucket(7, caches.now()).is_some());
        assert!(caches.viewer(9).is_some() && caches.global().is_some());
        clock.advance(Duration::from_millis(1));
        // At the TTL: a miss for normal reads (the thread's L1 copy too), still there as stale.
        assert!(caches.creator_bucket(7, caches.now() + L1_MAX_AGE).is_none());
        assert!(caches.viewer(9).is_none() && caches.global().is_none());
        assert!(caches.stale_creator_bucket(7).is_some());
        assert!(caches.stale_viewer(9).is_some() && caches.stale_global().is_some());
        clock.advance(Duration::from_millis(179_999));
        assert!(caches.stale_creator_bucket(7).is_some());
        clock.advance(Duration::from_millis(1));
        assert!(caches.stale_creator_bucket(7).is_none());
        assert!(caches.stale_viewer(9).is_none() && caches.stale_global().is_none());
    }

    #[test]
    fn invalidation_drops_fresh_and_stale_copies() {
        let caches = Caches::new(&config(5_000, 60_000));
        caches.insert_creator_bucket(caches.generation(), 3, Arc::new(CreatorBucket::default()));
        caches.insert_viewer(caches.generation(), 4, None);
        caches.invalidate(&Touched {
            buckets: vec![3],
            viewers: vec![4],
        });
        assert!(caches.creator_bucket(3, Instant::now()).is_none());
        assert!(caches.stale_creator_bucket(3).is_none() && caches.stale_viewer(4).is_none());
        assert!(caches.global().is_none());
    }
}
