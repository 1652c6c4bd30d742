//! Redis and Redis Cluster backend: one store shared by many replicas.
//!
//! Keys, all Cluster-safe (every script call touches one hash slot on a
//! cluster; on a single server one call carries up to [`MAX_GROUP`]
//! viewers' worth of a batch):
//!
//! | data | key | layout |
//! |---|---|---|
//! | creator bucket | `cb:{c<bucket>}` | hash; `<creator>` → snapshot, 31 big-endian doubles (updated_at, followers, members, evidence, sums 0..26; one of 27, written before buyers and refunds were counted, reads with sums 23..26 zero) |
//! | marker: event applied to a bucket | `cb:{c<bucket>}:a:<event hash>` | accepting `now_ms`; three steps only (and anonymous events): lives the dedupe window until the event is settled, then `2 × fence` (about 18 s by default) |
//! | viewer record | `cb:{v<viewer>}` | hash; `r` the encoded [`ViewerRecord`], `n` its version, `d` the packed dedupe entries (16 bytes per event), `p` pending deltas (three steps only, until settled) |
//! | platform aggregate | `cb:{g<0..15>}` | 16 shards, as a bucket's with the id `g`; merged on read |
//! | marker: event applied to it | `cb:{g<shard>}:a:<event hash>` | as for a bucket |
//! | half-lives and layout the sums were written with | `cb:{meta}` | string |
//! | invalidations | channel `cb:invalidate` | `<origin>;<buckets>;<viewers>` per batch |
//!
//! On a single server a batch is applied in one step per group of viewers
//! (`one_step.rs`): their hashes are read (`r n d p`), the pure model
//! applies each viewer's new events in order, and one script writes every
//! viewer whose version is unchanged together with its events' deltas to
//! the aggregates (summed per aggregate), atomically; viewers whose version
//! changed are read and planned again. A resend finds an event's dedupe
//! entry only if its deltas landed with it, so nothing else is kept.
//!
//! On a cluster the keys of a batch live on several masters, and no script
//! can span them: an event is applied in three idempotent steps, then
//! settled:
//!
//! 1. Viewer slot: the hash is read (`r n d p`); the pure model applies the
//!    viewer's new events of the batch in order and computes each event's
//!    [`AggregateDelta`](crate::model::aggregate::AggregateDelta); a script
//!    writes record, dedupe entries and the new events' pending deltas back
//!    only if the version is unchanged (else the viewer is redone). An event
//!    found in `d` is a duplicate; if its pending delta is still in `p`, its
//!    steps 2 and 3 may not have finished and are run again with it (by
//!    either path).
//! 2. Creator slot: per bucket, the markers are set if absent; if none was
//!    set before, the batch's deltas (summed per creator) are added to the
//!    snapshots; else nothing is written and the bucket is sent again
//!    without the events found.
//! 3. Platform slot: the same, on the event's platform shard.
//! 4. Settle: the events' pending deltas are dropped from their viewers,
//!    then their markers are given a short expiry. From then on an event
//!    costs its 16-byte dedupe entry only.
//!
//! A batch is acknowledged after steps 1-3. If a step fails the batch is
//! not acknowledged; its resend finds the dedupe entries with their pending
//! deltas and completes steps 2 and 3, which the markers keep from counting
//! anything twice. Markers outlive the pending delta (settle drops the delta
//! first), and a fence keeps a step delayed in flight from landing once
//! they are gone: every aggregate script refuses an attempt that started
//! more than `2 × redis.write_timeout_ms + 5 s` ago (Redis time). Anonymous events
//! have no viewer step; on both paths their markers (creator and platform
//! part) are their dedupe entries and keep the whole window. Event ids are
//! deduplicated per viewer (a resend always carries the same viewer).
//!
//! Reads: one `HGETALL` of the snapshots per creator bucket, one `HGET` of the
//! viewer record and of each platform shard, all sent at once (one round
//! trip; a pipeline on a single server).
//!
//! Why scripts: each step checks something (a version, a marker) and writes
//! only if the check holds. Run as one script, check and write are atomic
//! without `WATCH`/`MULTI` round trips, and work the same on a single
//! server and on a cluster.
//!
//! # Layout
//! `keys.rs` names the keys; `scripts.rs` runs the Lua scripts
//! (`scripts/*.lua`) with typed arguments; `codec.rs` holds the forms of
//! deltas and snapshots; `dedupe.rs` the packed dedupe entries and pending
//! lines; `write.rs` the batch and step 1, `one_step.rs` the single
//! server's one step, `aggregates.rs` steps 2-3 and settle;
//! `invalidation.rs` the channel between replicas; `connection.rs` one
//! connection type over a server and a cluster.

mod aggregates;
mod codec;
mod connection;
mod dedupe;
mod invalidation;
mod keys;
mod one_step;
mod scripts;
mod write;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Cmd, RedisError, Value};

use self::codec::{merge_snapshots, parse_bucket};
use self::connection::Connection;
pub use self::invalidation::InvalidationHooks;
use self::invalidation::{Listener, listen};
use self::keys::{GLOBAL_ID, GLOBAL_SHARDS, Keys, tag};
use self::scripts::Scripts;
use super::codec::decode_viewer;
use super::url::RedisTarget;
use super::{
    Applied, CREATOR_BUCKETS, CreatorBucket, InvalidateHook, Operation, Store, StoreError, StoreUrl, Touched,
    decay_signature,
};
use crate::model::{CreatorAggregate, Decay, Event, IngestParams, ViewerRecord};

/// Buckets read at once by [`RedisStore::scan_creators`].
const SCAN_CHUNK: usize = 1024;
/// Longest expiry set on a key (Redis refuses larger ones).
const MAX_EXPIRY_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// Most keys' worth of work in one script call: a script blocks Redis
/// while it runs (reads included), so a huge batch is cut into calls of
/// at most this many viewers or aggregate hashes (~1-5 ms each).
const MAX_GROUP: usize = 256;
/// What this backend adds to the store signature: the key layout (2 =
/// dedupe entries packed in the viewer hash, platform aggregate in
/// [`GLOBAL_SHARDS`] shards).
const REDIS_LAYOUT: &str = "redis_layout=2";

/// Where the store lives and how long it may take.
#[derive(Clone)]
pub struct RedisSettings {
    /// The server or cluster.
    pub url: StoreUrl,
    /// Start of every key name (no `{` or `}`).
    pub key_prefix: String,
    /// What is stored per event.
    pub ingest: IngestParams,
    /// How long an event id is remembered, in milliseconds.
    pub dedupe_window_ms: i64,
    /// Longest a read may take before the caller answers degraded.
    pub read_timeout: Duration,
    /// Longest a batch may take before it fails (unacknowledged).
    pub write_timeout: Duration,
    /// Called after each applied batch with what it touched.
    pub on_write: Option<InvalidateHook>,
    /// Where what other replicas write is reported; `None` = no
    /// subscription (and nothing published): staleness is then bounded
    /// by the cache TTL alone.
    pub invalidation: Option<InvalidationHooks>,
}

/// The shared store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
    ingest: IngestParams,
    decay: Decay,
    window_ms: i64,
    read_timeout: Duration,
    write_timeout: Duration,
    on_write: Option<InvalidateHook>,
    scripts: Arc<Scripts>,
    /// This store's id in invalidation messages (its own are ignored).
    origin: u64,
    /// Where batches are published for other replicas (`None` = not published).
    publisher: Option<Connection>,
    /// The invalidation subscription, stopped with the last clone.
    _listener: Option<Arc<Listener>>,
}

impl RedisStore {
    /// Connects and checks that the stored sums were written with the same
    /// half-lives (the first replica to connect records them).
    ///
    /// # Errors
    /// [`StoreError::Redis`] or [`StoreError::Timeout`] when the server cannot
    /// be reached, [`StoreError::Incompatible`] when it holds sums written
    /// with another layout or other half-lives.
    pub async fn connect(settings: RedisSettings) -> Result<RedisStore, StoreError> {
        if settings.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Backend(format!(
                "key prefix `{}` must not contain braces (they choose the Cluster hash slot)",
                settings.key_prefix
            )));
        }
        let connect_timeout = settings.write_timeout.max(Duration::from_secs(1));
        let connection = Connection::open(settings.url.target(), connect_timeout, settings.write_timeout).await?;
        let origin = replica_origin();
        let nodes = match settings.url.target() {
            RedisTarget::Server(node) => vec![node.clone()],
            RedisTarget::Cluster(nodes) => nodes.clone(),
        };
        let publisher = settings.invalidation.as_ref().map(|_| connection.clone());
        let listener = settings.invalidation.map(|hooks| {
            Arc::new(listen(
                nodes,
                Keys::new(settings.key_prefix.clone()).channel(),
                origin,
                hooks,
            ))
        });
        let store = RedisStore {
            connection,
            keys: Keys::new(settings.key_prefix),
            decay: settings.ingest.decay(),
            ingest: settings.ingest,
            window_ms: settings.dedupe_window_ms.clamp(1, MAX_EXPIRY_MS),
            read_timeout: settings.read_timeout,
            write_timeout: settings.write_timeout,
            on_write: settings.on_write,
            scripts: Arc::new(Scripts::load()),
            origin,
            publisher,
            _listener: listener,
        };
        store.check_decay().await?;
        Ok(store)
    }

    async fn check_decay(&self) -> Result<(), StoreError> {
        let wanted = format!("{} {REDIS_LAYOUT}", decay_signature(&self.ingest));
        // The first replica to connect writes it; everyone reads what won.
        let _: Option<String> = within(
            Operation::Connect,
            self.write_timeout,
            self.connection
                .query(::redis::cmd("SET").arg(self.keys.meta()).arg(&wanted).arg("NX")),
        )
        .await?;
        let stored: String = within(
            Operation::Connect,
            self.write_timeout,
            self.connection.query(::redis::cmd("GET").arg(self.keys.meta())),
        )
        .await?;
        if stored != wanted {
            return Err(StoreError::Incompatible {
                stored,
                wanted,
                fresh_store: "another Redis database (or this one after FLUSHDB), then re-import the events (`creator-boost import FILE --store URL`)",
            });
        }
        Ok(())
    }

    /// Every creator in the store, sorted by id (reads all buckets).
    ///
    /// # Errors
    /// [`StoreError`] when a read fails.
    pub async fn scan_creators(&self) -> Result<Vec<(u64, CreatorAggregate)>, StoreError> {
        let mut creators = Vec::new();
        let all: Vec<u32> = (0..CREATOR_BUCKETS).collect();
        for chunk in all.chunks(SCAN_CHUNK) {
            for bucket in self.read_buckets(chunk, self.write_timeout).await? {
                creators.extend(bucket.creators);
            }
        }
        creators.sort_unstable_by_key(|(id, _)| *id);
        Ok(creators)
    }

    /// How long after its batch started a step may still land (the fence
    /// of `apply_deltas.lua`): well past the write timeout, after which
    /// the batch has failed anyway.
    fn fence_ms(&self) -> i64 {
        i64::try_from(self.write_timeout.as_millis()).unwrap_or(i64::MAX / 4) * 2 + 5_000
    }

    /// How long a settled event's markers stay: past the fence of any
    /// attempt that could still be in flight (twice, for clock skew between
    /// Redis nodes), then they go; the event's dedupe entry stays.
    fn settled_marker_ms(&self) -> i64 {
        (2 * self.fence_ms()).min(self.window_ms)
    }

    /// Splits keyed work into script calls: on a cluster one call per hash
    /// slot (a script may touch one), on a single server as few as
    /// [`MAX_GROUP`] allows.
    fn group_by_slot<T>(&self, items: impl IntoIterator<Item = (String, T)>) -> Vec<Vec<T>> {
        let groups: Vec<Vec<T>> = if self.connection.is_cluster() {
            let mut by_tag: std::collections::BTreeMap<String, Vec<T>> = std::collections::BTreeMap::new();
            for (key, item) in items {
                by_tag.entry(tag(&key).to_owned()).or_default().push(item);
            }
            by_tag.into_values().collect()
        } else {
            vec![items.into_iter().map(|(_, item)| item).collect()]
        };
        let mut calls = Vec::with_capacity(groups.len());
        for mut group in groups {
            while group.len() > MAX_GROUP {
                let rest = group.split_off(MAX_GROUP);
                calls.push(std::mem::replace(&mut group, rest));
            }
            if !group.is_empty() {
                calls.push(group);
            }
        }
        calls
    }

    /// After a batch: drops this replica's cached copies of what it
    /// touched, and tells the other replicas to drop theirs.
    async fn written(&self, touched: &Touched) {
        if let Some(hook) = &self.on_write {
            hook(touched);
        }
        let Some(publisher) = &self.publisher else {
            return;
        };
        let publish = ::redis::cmd("PUBLISH")
            .arg(self.keys.channel())
            .arg(invalidation::message(self.origin, touched))
            .clone();
        // The batch is durable whatever happens here; a lost message
        // leaves the other replicas within their cache TTL.
        if let Err(error) = within(Operation::Write, self.write_timeout, publisher.query::<i64>(&publish)).await {
            tracing::warn!(%error, "publishing an invalidation failed");
        }
    }

    async fn read_buckets(&self, buckets: &[u32], timeout: Duration) -> Result<Vec<CreatorBucket>, StoreError> {
        let reads: Vec<Cmd> = buckets
            .iter()
            .map(|bucket| ::redis::cmd("HGETALL").arg(self.keys.bucket(*bucket)).clone())
            .collect();
        let replies: Vec<Value> = within(Operation::Read, timeout, self.connection.query_all(&reads)).await?;
        replies.iter().map(parse_bucket).collect()
    }
}

impl Store for RedisStore {
    async fn creator_buckets(&self, buckets: Vec<u32>) -> Result<Vec<CreatorBucket>, StoreError> {
        self.read_buckets(&buckets, self.read_timeout).await
    }

    async fn viewer(&self, viewer_id: u64) -> Result<Option<ViewerRecord>, StoreError> {
        let cmd = ::redis::cmd("HGET").arg(self.keys.viewer(viewer_id)).arg("r").clone();
        let stored: Option<Vec<u8>> = within(Operation::Read, self.read_timeout, self.connection.query(&cmd)).await?;
        stored
            .map(|bytes| decode_viewer(&bytes, &self.ingest.intimacy_weights))
            .transpose()
    }

    async fn global(&self) -> Result<CreatorAggregate, StoreError> {
        let reads: Vec<Cmd> = (0..GLOBAL_SHARDS)
            .map(|shard| ::redis::cmd("HGET").arg(self.keys.global(shard)).arg(GLOBAL_ID).clone())
            .collect();
        let shards: Vec<Option<Vec<u8>>> =
            within(Operation::Read, self.read_timeout, self.connection.query_all(&reads)).await?;
        merge_snapshots(&shards)
    }

    async fn apply(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match tokio::time::timeout(self.write_timeout, self.apply_batch(events, now_ms)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout {
                operation: Operation::Write,
                limit: self.write_timeout,
            }),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Every platform shard: keyed reads that reach every master of a
        // cluster (a `PING` would too, but one slow node fails it whole).
        // Given the write timeout, not the read one: the probe is off the
        // request path. On a cluster a failed probe rebuilds the connection:
        // the client's own reconnection was seen to leave a restarted master
        // unreachable for good, holding the read breaker open.
        let reads: Vec<::redis::Cmd> = (0..GLOBAL_SHARDS)
            .map(|shard| ::redis::cmd("EXISTS").arg(self.keys.global(shard)).clone())
            .collect();
        let probe: Result<Vec<i64>, StoreError> =
            within(Operation::Read, self.write_timeout, self.connection.query_all(&reads)).await;
        if let Err(error) = probe {
            if self.connection.is_cluster() {
                match self.connection.reconnect().await {
                    Ok(()) => tracing::warn!(%error, "store probe failed; cluster connection rebuilt"),
                    Err(again) => tracing::debug!(%again, "cluster connection could not be rebuilt yet"),
                }
            }
            return Err(error);
        }
        Ok(())
    }
}

/// An id for this store in invalidation messages, different per process
/// and per connect.
fn replica_origin() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    super::hash::splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
}

/// `request`, cut off after `limit`.
async fn within<T>(
    operation: Operation,
    limit: Duration,
    request: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(StoreError::redis),
        Err(_) => Err(StoreError::Timeout { operation, limit }),
    }
}
