//! Redis and Redis Cluster backend: one store shared by many replicas.
//!
//! Keys, all Cluster-safe (every script touches one hash slot):
//!
//! | data | key | layout |
//! |---|---|---|
//! | creator bucket | `cb:{c<bucket>}` | hash; `<creator>` → snapshot `t,f,m,e,sum 0..22` |
//! | its counters | `cb:{c<bucket>}:n` | hash; `<creator>:<n>` sum n, `<creator>:f/m/e/t` followers, members, evidence, updated_at |
//! | marker: event applied to a bucket | `cb:{c<bucket>}:a:<event hash>` | accepting `now_ms`, expires with the dedupe window |
//! | viewer record | `cb:{v<viewer>}` | hash; `r` the encoded [`ViewerRecord`], `n` its version |
//! | dedupe entry | `cb:{v<viewer>}:e:<event hash>` | `<now_ms>;<delta>`, expires with the dedupe window |
//! | platform aggregate | `cb:{g}`, `cb:{g}:n` | as a bucket's, with the id `g` |
//! | marker: event applied to it | `cb:{g}:a:<event hash>` | as for a bucket |
//! | half-lives the sums were written with | `cb:{meta}` | string |
//!
//! An event is applied in three idempotent steps, one script each:
//!
//! 1. Viewer slot: the relation record is read, the pure model applies the
//!    viewer's events of the batch in order and computes each event's
//!    [`AggregateDelta`]; a script writes the record back only if its version
//!    is unchanged (else the step is redone) and only if no event id is in the
//!    dedupe window, storing each event's delta in its dedupe entry.
//! 2. Creator slot: per event, a marker `SET` if absent; when new, the delta
//!    goes in with `HINCRBYFLOAT` / `HINCRBY` and `updated_at` is raised;
//!    then the snapshot of each creator touched is rebuilt from its counters.
//! 3. Platform slot: the same with its own markers.
//!
//! A batch is acknowledged after all three steps. If a step fails the batch
//! is not acknowledged; its resend finds the dedupe entries (now answered as
//! duplicates), takes the stored deltas and completes steps 2 and 3, which
//! the markers keep from counting anything twice. Anonymous events have no
//! viewer step; the creator marker is their dedupe entry. Event ids are
//! deduplicated per viewer (a resend always carries the same viewer).
//!
//! Reads: one `HGETALL` of the snapshots per creator bucket, one `HGET` of the
//! viewer record and of the platform snapshot, all sent at once (one round
//! trip; a pipeline on a single server).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use futures_util::future::try_join_all;

use super::codec::{decode_viewer, encode_viewer};
use super::url::RedisTarget;
use super::{
    Applied, CreatorBucket, InvalidateHook, Operation, Store, StoreError, StoreUrl, Touched, creator_bucket,
    decay_signature, event_key,
};
use crate::model::aggregate::{AggregateDelta, EventDelta, SUM_FIELDS, event_delta};
use crate::model::{CreatorAggregate, Decay, Event, IngestParams, ViewerRecord};

/// How often a viewer step is redone when other writers keep changing the
/// same viewer record before this one lands.
const MAX_VIEWER_ATTEMPTS: usize = 64;
/// Buckets read at once by [`RedisStore::scan_creators`].
const SCAN_CHUNK: usize = 1024;
/// Longest expiry set on a key (Redis refuses larger ones).
const MAX_EXPIRY_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

/// Step 2 and 3: apply deltas to one aggregate hash, once per event
/// (markers): the new events' deltas are summed per aggregate first (in
/// doubles, like the embedded store), then added with one increment per
/// field, and the snapshot of every aggregate touched is rebuilt.
/// KEYS: the snapshot hash, the counter hash, then one marker per event that has one.
/// ARGV: now_ms, window_ms, then per event: has-marker (1/0), aggregate id, delta.
/// Counters are fields `<id>:t/f/m/e/<n>`; the snapshot field `<id>` holds
/// them as one comma-separated string (t,f,m,e,sum 0..22), so a read parses
/// two strings per creator instead of ~46.
const APPLY_DELTAS: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
local acc = {}
local order = {}
local k = 3
for i = 3, #ARGV, 3 do
  local fresh = 1
  if ARGV[i] == '1' then
    local seen = redis.call('GET', KEYS[k])
    if seen and now - tonumber(seen) < window then
      fresh = 0
    else
      redis.call('SET', KEYS[k], ARGV[1], 'PX', ARGV[2])
    end
    k = k + 1
  end
  if fresh == 1 then
    local id = ARGV[i + 1]
    local a = acc[id]
    if not a then
      a = {t = 0, f = 0, m = 0, e = 0, s = {}}
      acc[id] = a
      order[#order + 1] = id
    end
    local j = 0
    for token in string.gmatch(ARGV[i + 2], '[^|]+') do
      if j == 0 then
        local t = tonumber(token)
        if t > a.t then a.t = t end
      elseif j == 1 then
        a.f = a.f + tonumber(token)
      elseif j == 2 then
        a.m = a.m + tonumber(token)
      else
        local field, value = string.match(token, '^(%d+)=(.+)$')
        a.s[field] = (a.s[field] or 0) + tonumber(value)
      end
      j = j + 1
    end
    a.e = a.e + 1
  end
  out[#out + 1] = fresh
end
for _, id in ipairs(order) do
  local a = acc[id]
  local p = id .. ':'
  local old = redis.call('HGET', KEYS[2], p .. 't')
  if not old or a.t > tonumber(old) then
    redis.call('HSET', KEYS[2], p .. 't', string.format('%.0f', a.t))
  end
  if a.f ~= 0 then redis.call('HINCRBY', KEYS[2], p .. 'f', string.format('%.0f', a.f)) end
  if a.m ~= 0 then redis.call('HINCRBY', KEYS[2], p .. 'm', string.format('%.0f', a.m)) end
  redis.call('HINCRBY', KEYS[2], p .. 'e', string.format('%.0f', a.e))
  for field, value in pairs(a.s) do
    redis.call('HINCRBYFLOAT', KEYS[2], p .. field, string.format('%.17g', value))
  end
  local names = {p .. 't', p .. 'f', p .. 'm', p .. 'e'}
  for n = 0, LAST_SUM do names[#names + 1] = p .. n end
  local values = redis.call('HMGET', KEYS[2], unpack(names))
  for n = 1, #values do
    if not values[n] then values[n] = '' end
  end
  redis.call('HSET', KEYS[1], id, table.concat(values, ','))
end
return out
";

/// Step 1: write a viewer record if unchanged and no event is a duplicate.
/// KEYS: the viewer hash, then the dedupe entries of the events with ids.
/// ARGV: expected version, now_ms, window_ms, record, then one delta per entry.
/// Returns {0} written, {1} version changed, {2, {pos, delta, ...}} duplicates.
const WRITE_VIEWER: &str = r"
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local dups = {}
for i = 2, #KEYS do
  local seen = redis.call('GET', KEYS[i])
  if seen then
    local at, delta = string.match(seen, '^(%-?%d+);(.*)$')
    if at and now - tonumber(at) < window then
      dups[#dups + 1] = i - 1
      dups[#dups + 1] = delta
    end
  end
end
if #dups > 0 then return {2, dups} end
local version = redis.call('HGET', KEYS[1], 'n') or '0'
if version ~= ARGV[1] then return {1} end
redis.call('HSET', KEYS[1], 'r', ARGV[4], 'n', tostring(tonumber(version) + 1))
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2] .. ';' .. ARGV[3 + i], 'PX', ARGV[3])
end
return {0}
";

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
}

/// A multiplexed connection to one server or to a cluster; clones share it.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Connection::Single(connection) => cmd.query_async(&mut connection.clone()).await,
            Connection::Cluster(connection) => cmd.query_async(&mut connection.clone()).await,
        }
    }

    /// Sends `cmds` at once: one pipeline to a single server; to a cluster,
    /// each command to its node, all in flight together.
    async fn query_all<T: FromRedisValue>(&self, cmds: &[Cmd]) -> Result<Vec<T>, RedisError> {
        match self {
            Connection::Single(connection) => {
                let mut pipeline = ::redis::pipe();
                for cmd in cmds {
                    pipeline.add_command(cmd.clone());
                }
                pipeline.query_async(&mut connection.clone()).await
            }
            Connection::Cluster(connection) => {
                try_join_all(cmds.iter().map(|cmd| {
                    let mut connection = connection.clone();
                    async move { cmd.query_async(&mut connection).await }
                }))
                .await
            }
        }
    }

    /// Runs `script` (loading it on a node that does not know it yet).
    /// Arguments are bytes: a viewer record is binary, and Lua strings are
    /// binary-safe.
    async fn invoke<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<T, RedisError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        match self {
            Connection::Single(connection) => invocation.invoke_async(&mut connection.clone()).await,
            Connection::Cluster(connection) => invocation.invoke_async(&mut connection.clone()).await,
        }
    }
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
    apply_deltas: std::sync::Arc<Script>,
    write_viewer: std::sync::Arc<Script>,
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
        let connect_timeout = settings.write_timeout.max(Duration::from_secs(1));
        let connection = match settings.url.target() {
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(settings.write_timeout)
                    .retries(2)
                    .build()
                    .map_err(StoreError::Redis)?;
                let connection = tokio::time::timeout(connect_timeout, client.get_async_connection())
                    .await
                    .map_err(|_| StoreError::Timeout {
                        operation: Operation::Connect,
                        limit: connect_timeout,
                    })?
                    .map_err(StoreError::Redis)?;
                Connection::Cluster(connection)
            }
            RedisTarget::Server(server) => {
                let client = ::redis::Client::open(server.clone()).map_err(StoreError::Redis)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(settings.write_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let connection = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(StoreError::Redis)?;
                Connection::Single(connection)
            }
        };
        if settings.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Backend(format!(
                "key prefix `{}` must not contain braces (they choose the Cluster hash slot)",
                settings.key_prefix
            )));
        }
        let store = RedisStore {
            connection,
            keys: Keys {
                prefix: settings.key_prefix,
            },
            decay: settings.ingest.decay(),
            ingest: settings.ingest,
            window_ms: settings.dedupe_window_ms.clamp(1, MAX_EXPIRY_MS),
            read_timeout: settings.read_timeout,
            write_timeout: settings.write_timeout,
            on_write: settings.on_write,
            apply_deltas: std::sync::Arc::new(Script::new(
                &APPLY_DELTAS.replace("LAST_SUM", &(SUM_FIELDS - 1).to_string()),
            )),
            write_viewer: std::sync::Arc::new(Script::new(WRITE_VIEWER)),
        };
        store.check_decay().await?;
        Ok(store)
    }

    async fn check_decay(&self) -> Result<(), StoreError> {
        let wanted = decay_signature(&self.ingest);
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
                fresh_store: "another Redis database (or this one after FLUSHDB)",
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
        let all: Vec<u32> = (0..super::CREATOR_BUCKETS).collect();
        for chunk in all.chunks(SCAN_CHUNK) {
            for bucket in self.read_buckets(chunk, self.write_timeout).await? {
                creators.extend(bucket.creators);
            }
        }
        creators.sort_unstable_by_key(|(id, _)| *id);
        Ok(creators)
    }

    async fn read_buckets(&self, buckets: &[u32], timeout: Duration) -> Result<Vec<CreatorBucket>, StoreError> {
        let reads: Vec<Cmd> = buckets
            .iter()
            .map(|bucket| ::redis::cmd("HGETALL").arg(self.keys.bucket(*bucket)).clone())
            .collect();
        let replies: Vec<Value> = within(Operation::Read, timeout, self.connection.query_all(&reads)).await?;
        replies.iter().map(parse_bucket).collect()
    }

    /// Step 1 for one viewer's events (`indices` into `events`, in order).
    async fn apply_viewer(
        &self,
        viewer_id: u64,
        events: &[Event],
        indices: Vec<usize>,
        hashes: &[Option<u128>],
        now_ms: i64,
    ) -> Result<Vec<(usize, ViewerStep)>, StoreError> {
        let key = self.keys.viewer(viewer_id);
        let mut pending = indices;
        let mut done = Vec::with_capacity(pending.len());
        for _ in 0..MAX_VIEWER_ATTEMPTS {
            if pending.is_empty() {
                return Ok(done);
            }
            let (stored, version): (Option<Vec<u8>>, Option<String>) = self
                .connection
                .query(::redis::cmd("HMGET").arg(&key).arg("r").arg("n"))
                .await
                .map_err(StoreError::Redis)?;
            let mut record = match stored {
                Some(bytes) => decode_viewer(&bytes, &self.ingest.intimacy_weights)?,
                None => ViewerRecord::default(),
            };
            let deltas: Vec<String> = pending
                .iter()
                .map(|i| encode_event_delta(&event_delta(&events[*i], &self.ingest, &self.decay, Some(&mut record))))
                .collect();
            let keyed: Vec<usize> = (0..pending.len()).filter(|p| hashes[pending[*p]].is_some()).collect();
            let mut keys = Vec::with_capacity(1 + keyed.len());
            keys.push(key.clone());
            keys.extend(
                keyed
                    .iter()
                    .map(|p| self.keys.dedupe(viewer_id, hashes[pending[*p]].unwrap_or_default())),
            );
            let mut args = Vec::with_capacity(4 + keyed.len());
            args.push(version.unwrap_or_else(|| "0".to_owned()).into_bytes());
            args.push(now_ms.to_string().into_bytes());
            args.push(self.window_ms.to_string().into_bytes());
            args.push(encode_viewer(&record));
            args.extend(keyed.iter().map(|p| deltas[*p].clone().into_bytes()));
            let answer: Value = self
                .connection
                .invoke(&self.write_viewer, &keys, &args)
                .await
                .map_err(StoreError::Redis)?;
            match parse_viewer_answer(answer)? {
                ViewerAnswer::Written => {
                    done.extend(pending.into_iter().zip(deltas).map(|(i, d)| (i, ViewerStep::New(d))));
                    return Ok(done);
                }
                ViewerAnswer::Conflict => {}
                ViewerAnswer::Duplicates(found) => {
                    let mut duplicate = HashSet::new();
                    for (position, delta) in found {
                        let p = *keyed
                            .get(position.wrapping_sub(1))
                            .ok_or_else(|| StoreError::Corrupt(format!("dedupe answer position {position}")))?;
                        duplicate.insert(pending[p]);
                        done.push((pending[p], ViewerStep::Duplicate(delta)));
                    }
                    pending.retain(|i| !duplicate.contains(i));
                }
            }
        }
        Err(StoreError::Backend(format!(
            "viewer {viewer_id}: record changed by other writers {MAX_VIEWER_ATTEMPTS} times in a row"
        )))
    }

    /// Steps 2 and 3: `work` is (event index, delta) for events to apply.
    async fn apply_aggregates(
        &self,
        events: &[Event],
        hashes: &[Option<u128>],
        work: &[(usize, String)],
        now_ms: i64,
    ) -> Result<HashMap<usize, bool>, StoreError> {
        let mut by_bucket: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (position, (index, _)) in work.iter().enumerate() {
            by_bucket
                .entry(creator_bucket(events[*index].creator_id))
                .or_default()
                .push(position);
        }
        let item = |position: usize, prefix: String, global: bool| {
            let (index, delta) = &work[position];
            (hashes[*index], prefix, delta_part(delta, global).to_owned())
        };
        let creator_calls = by_bucket.iter().map(|(bucket, positions)| {
            let items = positions
                .iter()
                .map(|p| item(*p, events[work[*p].0].creator_id.to_string(), false))
                .collect();
            self.apply_to_hash(self.keys.bucket(*bucket), items, now_ms)
        });
        let global_items = (0..work.len()).map(|p| item(p, GLOBAL_ID.to_owned(), true)).collect();
        let global_call = self.apply_to_hash(self.keys.global(), global_items, now_ms);
        let (creators, _) = tokio::try_join!(try_join_all(creator_calls), global_call)?;
        let mut fresh = HashMap::with_capacity(work.len());
        for (positions, flags) in by_bucket.values().zip(creators) {
            for (position, flag) in positions.iter().zip(flags) {
                fresh.insert(work[*position].0, flag);
            }
        }
        Ok(fresh)
    }

    /// One script call applying `items` (event hash, aggregate id, delta) to
    /// the hash `hash_key`; returns, per item, whether it was applied now
    /// (not by an earlier attempt).
    async fn apply_to_hash(
        &self,
        hash_key: String,
        items: Vec<(Option<u128>, String, String)>,
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let count = items.len();
        let mut keys = vec![hash_key.clone(), format!("{hash_key}:n")];
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(2 + 3 * count);
        args.push(now_ms.to_string().into_bytes());
        args.push(self.window_ms.to_string().into_bytes());
        for (hash, id, delta) in items {
            match hash {
                Some(hash) => {
                    keys.push(format!("{hash_key}:a:{hash:032x}"));
                    args.push(b"1".to_vec());
                }
                None => args.push(b"0".to_vec()),
            }
            args.push(id.into_bytes());
            args.push(delta.into_bytes());
        }
        let flags: Vec<i64> = self
            .connection
            .invoke(&self.apply_deltas, &keys, &args)
            .await
            .map_err(StoreError::Redis)?;
        if flags.len() != count {
            return Err(StoreError::Corrupt(format!("{} flags for {count} events", flags.len())));
        }
        Ok(flags.into_iter().map(|flag| flag == 1).collect())
    }

    async fn apply_batch(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
        let mut statuses = vec![Applied::Accepted; events.len()];
        let hashes: Vec<Option<u128>> = events
            .iter()
            .map(|event| (!event.event_id.is_empty()).then(|| event_key(event)))
            .collect();
        let mut seen = HashSet::new();
        let mut by_viewer: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut work: Vec<(usize, String)> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if let Some(hash) = hashes[index]
                && !seen.insert(hash)
            {
                statuses[index] = Applied::Duplicate;
                continue;
            }
            if event.viewer_id == 0 {
                work.push((
                    index,
                    encode_event_delta(&event_delta(event, &self.ingest, &self.decay, None)),
                ));
            } else {
                by_viewer.entry(event.viewer_id).or_default().push(index);
            }
        }
        let viewers: Vec<u64> = by_viewer.keys().copied().collect();
        let viewer_steps = by_viewer
            .into_iter()
            .map(|(viewer, indices)| self.apply_viewer(viewer, &events, indices, &hashes, now_ms));
        for (index, step) in try_join_all(viewer_steps).await?.into_iter().flatten() {
            match step {
                ViewerStep::New(delta) => work.push((index, delta)),
                ViewerStep::Duplicate(delta) => {
                    // Counted before; completing steps 2-3 again is a no-op
                    // unless an earlier attempt stopped half-way.
                    statuses[index] = Applied::Duplicate;
                    work.push((index, delta));
                }
            }
        }
        let fresh = self.apply_aggregates(&events, &hashes, &work, now_ms).await?;
        for (index, _) in &work {
            if events[*index].viewer_id == 0 && fresh.get(index) == Some(&false) {
                statuses[*index] = Applied::Duplicate;
            }
        }
        if let Some(hook) = &self.on_write {
            let mut buckets: Vec<u32> = work
                .iter()
                .map(|(index, _)| creator_bucket(events[*index].creator_id))
                .collect();
            buckets.sort_unstable();
            buckets.dedup();
            hook(&Touched { buckets, viewers });
        }
        Ok(statuses)
    }
}

/// What step 1 decided for one event.
enum ViewerStep {
    /// Applied now; its delta.
    New(String),
    /// Applied before; the delta stored then.
    Duplicate(String),
}

enum ViewerAnswer {
    Written,
    Conflict,
    /// (1-based position among the keyed events, stored delta).
    Duplicates(Vec<(usize, String)>),
}

fn parse_viewer_answer(answer: Value) -> Result<ViewerAnswer, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("viewer script answered {what}"));
    let Value::Array(items) = answer else {
        return Err(corrupt("a non-array"));
    };
    match items.as_slice() {
        [Value::Int(0)] => Ok(ViewerAnswer::Written),
        [Value::Int(1)] => Ok(ViewerAnswer::Conflict),
        [Value::Int(2), Value::Array(found)] => found
            .chunks(2)
            .map(|pair| match pair {
                [Value::Int(position), Value::BulkString(delta)] => Ok((
                    usize::try_from(*position).map_err(|_| corrupt("a negative position"))?,
                    String::from_utf8(delta.clone()).map_err(|_| corrupt("a non-UTF-8 delta"))?,
                )),
                _ => Err(corrupt("a malformed duplicate")),
            })
            .collect::<Result<_, _>>()
            .map(ViewerAnswer::Duplicates),
        _ => Err(corrupt("an unknown shape")),
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
        let cmd = ::redis::cmd("HGET").arg(self.keys.global()).arg(GLOBAL_ID).clone();
        let snapshot: Option<Vec<u8>> = within(Operation::Read, self.read_timeout, self.connection.query(&cmd)).await?;
        snapshot.map_or_else(|| Ok(CreatorAggregate::default()), |bytes| parse_snapshot(&bytes))
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
        let _: String = within(
            Operation::Read,
            self.read_timeout,
            self.connection.query(&::redis::cmd("PING")),
        )
        .await?;
        Ok(())
    }
}

/// Key names under one prefix (several deployments can share a Redis).
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn bucket(&self, bucket: u32) -> String {
        format!("{}:{{c{bucket}}}", self.prefix)
    }

    fn viewer(&self, viewer_id: u64) -> String {
        format!("{}:{{v{viewer_id}}}", self.prefix)
    }

    fn dedupe(&self, viewer_id: u64, hash: u128) -> String {
        format!("{}:{{v{viewer_id}}}:e:{hash:032x}", self.prefix)
    }

    fn global(&self) -> String {
        format!("{}:{{g}}", self.prefix)
    }

    fn meta(&self) -> String {
        format!("{}:{{meta}}", self.prefix)
    }
}

/// An event's two deltas, creator's and platform's, as `<creator>~<platform>`
/// (one string, kept whole in the event's dedupe entry).
fn encode_event_delta(delta: &EventDelta) -> String {
    format!("{}~{}", encode_delta(&delta.creator), encode_delta(&delta.global))
}

/// The creator's (`false`) or the platform's (`true`) part of [`encode_event_delta`]'s output.
fn delta_part(encoded: &str, global: bool) -> &str {
    let (creator, platform) = encoded.split_once('~').unwrap_or((encoded, encoded));
    if global { platform } else { creator }
}

/// `timestamp|followers|members|index=value...`, values in shortest
/// round-trip exponent form (what `HINCRBYFLOAT` parses).
fn encode_delta(delta: &AggregateDelta) -> String {
    use std::fmt::Write;
    let mut out = format!("{}|{}|{}", delta.timestamp_ms, delta.followers, delta.fan_group_members);
    for (index, value) in delta.sums.iter().enumerate() {
        if *value != 0.0 {
            let _ = write!(out, "|{index}={value:e}");
        }
    }
    out
}

/// The aggregate id of the platform aggregate in its hashes.
const GLOBAL_ID: &str = "g";

/// Parses a snapshot: `t,f,m,e,sum 0..22`, an empty value meaning 0.
fn parse_snapshot(bytes: &[u8]) -> Result<CreatorAggregate, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("aggregate snapshot {}", String::from_utf8_lossy(bytes)));
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
    let mut values = text.split(',');
    let mut next = || values.next().ok_or_else(corrupt);
    let count = |value: &str| -> Result<u64, StoreError> {
        if value.is_empty() {
            return Ok(0);
        }
        // A count below zero means records were lost; it reads as zero.
        Ok(value.parse::<i64>().map_err(|_| corrupt())?.max(0).unsigned_abs())
    };
    let mut aggregate = CreatorAggregate::default();
    let updated = next()?;
    aggregate.updated_at_ms = if updated.is_empty() {
        0
    } else {
        updated.parse().map_err(|_| corrupt())?
    };
    aggregate.followers = count(next()?)?;
    aggregate.fan_group_members = count(next()?)?;
    aggregate.evidence = count(next()?)?;
    for index in 0..SUM_FIELDS {
        let value = next()?;
        if !value.is_empty() {
            *aggregate.sum_mut(index) = value.parse().map_err(|_| corrupt())?;
        }
    }
    if values.next().is_some() {
        return Err(corrupt());
    }
    Ok(aggregate)
}

/// Parses a bucket's `HGETALL` reply: creator id → snapshot.
fn parse_bucket(reply: &Value) -> Result<CreatorBucket, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("creator bucket: {what}"));
    let items: &[Value] = match reply {
        Value::Array(items) => items,
        Value::Map(_) => return Err(corrupt("RESP3 maps are not used")),
        Value::Nil => &[],
        _ => return Err(corrupt("not an array")),
    };
    let mut creators = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let [Value::BulkString(id), Value::BulkString(snapshot)] = pair else {
            return Err(corrupt("not field/value pairs"));
        };
        let id: u64 = std::str::from_utf8(id)
            .ok()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| corrupt("a non-numeric creator id"))?;
        creators.push((id, parse_snapshot(snapshot)?));
    }
    creators.sort_unstable_by_key(|(id, _)| *id);
    Ok(CreatorBucket { creators })
}

/// `request`, cut off after `limit`.
async fn within<T>(
    operation: Operation,
    limit: Duration,
    request: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(StoreError::Redis),
        Err(_) => Err(StoreError::Timeout { operation, limit }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_encode_with_round_trip_values() {
        let mut delta = AggregateDelta {
            timestamp_ms: 1_700_000_000_123,
            followers: -1,
            fan_group_members: 1,
            ..AggregateDelta::default()
        };
        delta.sums[3] = 1.234_567_890_123_456_7e45;
        delta.sums[SUM_FIELDS - 1] = 0.1;
        let text = encode_delta(&delta);
        assert!(text.starts_with("1700000000123|-1|1|"), "{text}");
        let mut sums = [0.0; SUM_FIELDS];
        for token in text.split('|').skip(3) {
            let (index, value) = token.split_once('=').expect("index=value");
            sums[index.parse::<usize>().expect("index")] = value.parse().expect("value");
        }
        assert_eq!(sums, delta.sums);
        let both = encode_event_delta(&EventDelta {
            creator: delta.clone(),
            global: AggregateDelta::default(),
        });
        assert_eq!(delta_part(&both, false), text);
        assert_eq!(delta_part(&both, true), "0|0|0");
    }

    #[test]
    fn snapshots_parse_and_refuse_garbage() {
        let mut fields = vec!["1700000000123", "3", "-1", "7"];
        fields.extend(std::iter::repeat_n("", SUM_FIELDS));
        fields[4] = "2.5";
        fields[4 + SUM_FIELDS - 1] = "43559896473.36862000077962875";
        let text = fields.join(",");
        let aggregate = parse_snapshot(text.as_bytes()).expect("valid");
        assert_eq!(
            (
                aggregate.updated_at_ms,
                aggregate.followers,
                aggregate.fan_group_members,
                aggregate.evidence
            ),
            (1_700_000_000_123, 3, 0, 7)
        );
        assert_eq!((aggregate.fan[0], aggregate.shown), (2.5, 43_559_896_473.368_62));
        assert!(
            parse_snapshot(format!("{text},1").as_bytes()).is_err(),
            "too many values"
        );
        assert!(parse_snapshot(b"1,2,3").is_err(), "too few values");
        assert!(parse_snapshot(text.replace("2.5", "many").as_bytes()).is_err());

        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![bulk("9"), bulk(&text), bulk("5"), bulk(&text)]);
        let bucket = parse_bucket(&reply).expect("valid bucket");
        assert_eq!(
            bucket.creators.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![5, 9]
        );
        assert!(parse_bucket(&Value::Array(vec![bulk("x"), bulk(&text)])).is_err());
        assert_eq!(
            parse_bucket(&Value::Array(Vec::new())).expect("empty").creators.len(),
            0
        );
    }

    #[test]
    fn keys_of_one_operation_share_a_hash_slot() {
        let keys = Keys {
            prefix: "cb".to_owned(),
        };
        let viewer = keys.viewer(42);
        let entry = keys.dedupe(42, 0xabc);
        let tag = |key: &str| key[key.find('{').unwrap_or(0)..=key.find('}').unwrap_or(0)].to_owned();
        assert_eq!(tag(&viewer), tag(&entry));
        assert_eq!(tag(&keys.bucket(9)), "{c9}");
        assert_eq!(keys.global(), "cb:{g}");
        assert!(format!("{}:n", keys.bucket(9)).starts_with("cb:{c9}"));
    }
}
