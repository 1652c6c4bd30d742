//! Applying a batch: step 1 for its viewers, steps 2 and 3 for its
//! aggregate hashes, then the settle step (see the module doc of [`super`]).
//! Each step is one script call per group: the whole batch on a single
//! server, one hash slot on a cluster.

use std::collections::{BTreeMap, HashSet};

use ::redis::{Cmd, Value};
use futures_util::future::try_join_all;

use super::RedisStore;
use super::codec::EventDeltaText;
use super::dedupe::{DedupeWindow, find_pending, pending_line};
use super::scripts::{AggregateTimes, ViewerWrite};
use crate::model::aggregate::event_delta;
use crate::model::{Event, ViewerRecord};
use crate::store::codec::{decode_viewer, encode_viewer};
use crate::store::{Applied, StoreError, Touched, creator_bucket, event_key};

/// How often step 1 is redone for viewers whose records other writers keep
/// changing before this one lands.
const MAX_VIEWER_ATTEMPTS: usize = 64;

/// What step 1 decided for one event.
enum Outcome {
    /// New: counted now with these deltas.
    Fresh(EventDeltaText),
    /// Accepted before, but its steps 2 and 3 may not have finished: done
    /// again with the deltas stored then (the markers keep them exact).
    Recovered(EventDeltaText),
    /// Accepted and completed before.
    Duplicate,
}

/// An event on its way to steps 2 and 3.
pub(super) struct Counted {
    /// Its index in the batch.
    pub(super) index: usize,
    /// Its deltas.
    pub(super) delta: EventDeltaText,
}

/// One viewer's part of step 1: what it will write, what it decided.
struct ViewerPlan {
    viewer_id: u64,
    /// `None` when nothing is new (only duplicates).
    write: Option<ViewerWrite>,
    outcomes: Vec<(usize, Outcome)>,
}

/// The batch, with each event's dedupe hash when it has an id.
pub(super) struct Batch<'a> {
    pub(super) events: &'a [Event],
    pub(super) hashes: &'a [Option<u128>],
    pub(super) now_ms: i64,
}

impl RedisStore {
    /// Deduplicates the batch, then applies it in three steps and settles it (module doc).
    pub(super) async fn apply_batch(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
        let fence_from_ms = self.redis_time_ms().await?;
        let mut statuses = vec![Applied::Accepted; events.len()];
        let hashes: Vec<Option<u128>> = events
            .iter()
            .map(|event| (!event.event_id.is_empty()).then(|| event_key(event)))
            .collect();
        let batch = Batch {
            events: &events,
            hashes: &hashes,
            now_ms,
        };
        let mut seen = HashSet::new();
        let mut by_viewer: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut work: Vec<Counted> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if let Some(hash) = hashes[index]
                && !seen.insert(hash)
            {
                statuses[index] = Applied::Duplicate;
            } else if event.viewer_id == 0 {
                let delta = EventDeltaText::encode(&event_delta(event, &self.ingest, &self.decay, None));
                work.push(Counted { index, delta });
            } else {
                by_viewer.entry(event.viewer_id).or_default().push(index);
            }
        }
        let viewers: Vec<u64> = by_viewer.keys().copied().collect();
        let mut settle: Vec<usize> = Vec::new();
        for (index, outcome) in self.apply_viewers(&batch, by_viewer).await? {
            let delta = match outcome {
                Outcome::Fresh(delta) => delta,
                Outcome::Recovered(delta) => {
                    statuses[index] = Applied::Duplicate;
                    delta
                }
                Outcome::Duplicate => {
                    statuses[index] = Applied::Duplicate;
                    continue;
                }
            };
            if hashes[index].is_some() {
                settle.push(index);
            }
            work.push(Counted { index, delta });
        }
        let times = AggregateTimes {
            now_ms,
            window_ms: self.window_ms,
            fence_from_ms,
            fence_ms: self.fence_ms(),
        };
        let fresh = self.apply_aggregates(&batch, &work, times).await?;
        for counted in &work {
            if events[counted.index].viewer_id == 0 && fresh.get(&counted.index) == Some(&false) {
                statuses[counted.index] = Applied::Duplicate;
            }
        }
        if let Err(error) = self.settle(&batch, &settle).await {
            // Durable already; what stays unsettled expires with the window.
            tracing::warn!(%error, events = settle.len(), "settling a batch failed");
        }
        let mut buckets: Vec<u32> = work
            .iter()
            .map(|counted| creator_bucket(events[counted.index].creator_id))
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        self.written(&Touched { buckets, viewers }).await;
        Ok(statuses)
    }

    /// Redis's clock, in ms: where the fence of this attempt starts.
    async fn redis_time_ms(&self) -> Result<i64, StoreError> {
        let (seconds, micros): (i64, i64) = self
            .connection
            .query(&::redis::cmd("TIME"))
            .await
            .map_err(StoreError::Redis)?;
        Ok(seconds * 1000 + micros / 1000)
    }

    /// Step 1 for every viewer of the batch: read all records, plan each,
    /// write them in one call per group; viewers whose record changed
    /// meanwhile are read and planned again.
    async fn apply_viewers(
        &self,
        batch: &Batch<'_>,
        mut pending: BTreeMap<u64, Vec<usize>>,
    ) -> Result<Vec<(usize, Outcome)>, StoreError> {
        let mut decided = Vec::with_capacity(batch.events.len());
        for _ in 0..MAX_VIEWER_ATTEMPTS {
            if pending.is_empty() {
                return Ok(decided);
            }
            let reads: Vec<Cmd> = pending
                .keys()
                .map(|viewer| {
                    let mut cmd = ::redis::cmd("HMGET");
                    cmd.arg(self.keys.viewer(*viewer)).arg("r").arg("n").arg("d").arg("p");
                    cmd
                })
                .collect();
            let stored: Vec<Value> = self.connection.query_all(&reads).await.map_err(StoreError::Redis)?;
            let mut plans = Vec::with_capacity(pending.len());
            for ((viewer_id, indices), stored) in pending.iter().zip(stored) {
                plans.push(self.plan_viewer(batch, *viewer_id, indices, stored)?);
            }
            let (writing, done): (Vec<ViewerPlan>, Vec<ViewerPlan>) =
                plans.into_iter().partition(|plan| plan.write.is_some());
            for plan in done {
                pending.remove(&plan.viewer_id);
                decided.extend(plan.outcomes);
            }
            for (plan, written) in self.write_viewers(batch, writing).await? {
                if written {
                    pending.remove(&plan.viewer_id);
                    decided.extend(plan.outcomes);
                }
            }
        }
        Err(StoreError::Backend(format!(
            "{} viewers: records changed by other writers {MAX_VIEWER_ATTEMPTS} times in a row",
            pending.len()
        )))
    }

    /// Writes the planned viewers, one script call per group; returns each
    /// plan with whether it was written.
    async fn write_viewers(
        &self,
        batch: &Batch<'_>,
        plans: Vec<ViewerPlan>,
    ) -> Result<Vec<(ViewerPlan, bool)>, StoreError> {
        let groups = self.group_by_slot(plans.into_iter().map(|plan| {
            let key = plan
                .write
                .as_ref()
                .map_or_else(String::new, |write| write.record_key.clone());
            (key, plan)
        }));
        let times = (batch.now_ms, self.window_ms);
        let calls = groups.into_iter().map(|group| async move {
            let writes: Vec<&ViewerWrite> = group.iter().filter_map(|plan| plan.write.as_ref()).collect();
            let flags = self.scripts.write_viewers(&self.connection, times, &writes).await?;
            Ok::<_, StoreError>(group.into_iter().zip(flags).collect::<Vec<_>>())
        });
        Ok(try_join_all(calls).await?.into_iter().flatten().collect())
    }

    /// Decides one viewer's events from its stored hash (`HMGET r n d p`):
    /// duplicates (recovered when their deltas are still pending), and the
    /// new ones applied to the record in order.
    fn plan_viewer(
        &self,
        batch: &Batch<'_>,
        viewer_id: u64,
        indices: &[usize],
        stored: Value,
    ) -> Result<ViewerPlan, StoreError> {
        let [record, version, dedupe, pending] = hash_fields(stored)?;
        let mut record = match record {
            Some(bytes) => decode_viewer(&bytes, &self.ingest.intimacy_weights)?,
            None => ViewerRecord::default(),
        };
        let version = version
            .map_or_else(|| Ok("0".to_owned()), String::from_utf8)
            .map_err(|_| StoreError::Corrupt(format!("viewer {viewer_id}: version")))?;
        let mut window = DedupeWindow::parse(dedupe.as_deref().unwrap_or_default(), batch.now_ms, self.window_ms)?;
        let mut outcomes = Vec::with_capacity(indices.len());
        let mut lines = String::new();
        let mut changed = false;
        for &index in indices {
            let hash = batch.hashes[index];
            if let Some(hash) = hash
                && window.contains(hash)
            {
                let outcome = match find_pending(pending.as_deref().unwrap_or_default(), hash) {
                    Some(delta) => Outcome::Recovered(delta),
                    None => Outcome::Duplicate,
                };
                outcomes.push((index, outcome));
                continue;
            }
            let delta = EventDeltaText::encode(&event_delta(
                &batch.events[index],
                &self.ingest,
                &self.decay,
                Some(&mut record),
            ));
            if let Some(hash) = hash {
                window.push(hash, batch.now_ms);
                lines.push_str(&pending_line(hash, batch.now_ms, &delta));
            }
            changed = true;
            outcomes.push((index, Outcome::Fresh(delta)));
        }
        let write = changed.then(|| ViewerWrite {
            record_key: self.keys.viewer(viewer_id),
            expected_version: version,
            record: encode_viewer(&record),
            dedupe: window.encode(),
            pending: lines,
            none_pending: pending.is_none(),
        });
        Ok(ViewerPlan {
            viewer_id,
            write,
            outcomes,
        })
    }
}

/// The four fields of an `HMGET r n d p` reply.
fn hash_fields(reply: Value) -> Result<[Option<Vec<u8>>; 4], StoreError> {
    let corrupt = || StoreError::Corrupt("viewer hash: unexpected reply".to_owned());
    let Value::Array(items) = reply else {
        return Err(corrupt());
    };
    let fields: Vec<Option<Vec<u8>>> = items
        .into_iter()
        .map(|item| match item {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => Ok(Some(bytes)),
            _ => Err(corrupt()),
        })
        .collect::<Result<_, _>>()?;
    fields.try_into().map_err(|_| corrupt())
}
