//! Applying a batch: its own duplicates, then one step per group of
//! viewers on a single server (`one_step.rs`), or on a cluster step 1 for
//! its viewers, steps 2 and 3 for its aggregate hashes, then the settle step
//! (see the module doc of [`super`]). Each of those steps is one script
//! call per hash slot.

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
pub(super) const MAX_VIEWER_ATTEMPTS: usize = 64;

/// The failure of a batch whose `viewers` kept changing under it for
/// [`MAX_VIEWER_ATTEMPTS`] reads in a row.
pub(super) fn contended(viewers: usize) -> StoreError {
    StoreError::Backend(format!(
        "{viewers} viewers: records changed by other writers {MAX_VIEWER_ATTEMPTS} times in a row"
    ))
}

/// What step 1 decided for one event.
pub(super) enum Outcome {
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

impl Outcome {
    /// The deltas to apply for the event at `index` (`None`: nothing to
    /// do), marking it a duplicate in `statuses` unless it is new.
    pub(super) fn counted(self, index: usize, statuses: &mut [Applied]) -> Option<EventDeltaText> {
        match self {
            Outcome::Fresh(delta) => Some(delta),
            Outcome::Recovered(delta) => {
                statuses[index] = Applied::Duplicate;
                Some(delta)
            }
            Outcome::Duplicate => {
                statuses[index] = Applied::Duplicate;
                None
            }
        }
    }
}

/// One viewer's part of step 1: what it will write, what it decided.
pub(super) struct ViewerPlan {
    pub(super) viewer_id: u64,
    /// `None` when nothing is new (only duplicates).
    pub(super) write: Option<ViewerWrite>,
    pub(super) outcomes: Vec<(usize, Outcome)>,
}

/// Whether a plan keeps the pending deltas of its new events in the
/// viewer's hash (steps that may be left half done need them; one atomic
/// step does not).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    Kept,
    None,
}

/// A batch's events past its own duplicates: those with a viewer, by
/// viewer, and the anonymous ones (batch indices, in order).
#[derive(Default)]
pub(super) struct BatchParts {
    pub(super) by_viewer: BTreeMap<u64, Vec<usize>>,
    pub(super) anonymous: Vec<usize>,
}

/// The batch, with each event's dedupe hash when it has an id.
pub(super) struct Batch<'a> {
    pub(super) events: &'a [Event],
    pub(super) hashes: &'a [Option<u128>],
    pub(super) now_ms: i64,
}

impl RedisStore {
    /// Deduplicates the batch inside itself, then applies it: in one
    /// atomic step per group of viewers on a single server
    /// ([`super::one_step`]), in three steps and a settle on a cluster
    /// (module doc of [`super`]).
    pub(super) async fn apply_batch(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
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
        let mut parts = BatchParts::default();
        for (index, event) in events.iter().enumerate() {
            if let Some(hash) = hashes[index]
                && !seen.insert(hash)
            {
                statuses[index] = Applied::Duplicate;
            } else if event.viewer_id == 0 {
                parts.anonymous.push(index);
            } else {
                parts.by_viewer.entry(event.viewer_id).or_default().push(index);
            }
        }
        let viewers: Vec<u64> = parts.by_viewer.keys().copied().collect();
        let counted = if self.connection.is_cluster() {
            self.apply_in_steps(&batch, parts, &mut statuses).await?
        } else {
            self.apply_in_one_step(&batch, parts, &mut statuses).await?
        };
        let mut buckets: Vec<u32> = counted
            .iter()
            .map(|index| creator_bucket(events[*index].creator_id))
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        self.written(&Touched { buckets, viewers }).await;
        Ok(statuses)
    }

    /// Steps 1-3 and the settle step; returns the indices of the events
    /// whose deltas reached the aggregates now.
    async fn apply_in_steps(
        &self,
        batch: &Batch<'_>,
        parts: BatchParts,
        statuses: &mut [Applied],
    ) -> Result<Vec<usize>, StoreError> {
        let fence_from_ms = self.redis_time_ms().await?;
        let mut work: Vec<Counted> = parts
            .anonymous
            .iter()
            .map(|&index| Counted {
                index,
                delta: EventDeltaText::encode(&event_delta(&batch.events[index], &self.ingest, &self.decay, None)),
            })
            .collect();
        let mut settle: Vec<usize> = Vec::new();
        for (index, outcome) in self.apply_viewers(batch, parts.by_viewer).await? {
            let Some(delta) = outcome.counted(index, statuses) else {
                continue;
            };
            if batch.hashes[index].is_some() {
                settle.push(index);
            }
            work.push(Counted { index, delta });
        }
        let fresh = self
            .apply_aggregates(batch, &work, self.aggregate_times(batch, fence_from_ms))
            .await?;
        for counted in &work {
            if batch.events[counted.index].viewer_id == 0 && fresh.get(&counted.index) == Some(&false) {
                statuses[counted.index] = Applied::Duplicate;
            }
        }
        self.settle(batch, &settle).await;
        Ok(work.into_iter().map(|counted| counted.index).collect())
    }

    /// Steps 2 and 3 and the settle step for events accepted before whose
    /// pending deltas are still in their viewers' hashes (a resend after
    /// a half-done batch). Durable when this returns.
    pub(super) async fn recover(&self, batch: &Batch<'_>, recovered: Vec<Counted>) -> Result<(), StoreError> {
        if recovered.is_empty() {
            return Ok(());
        }
        let fence_from_ms = self.redis_time_ms().await?;
        self.apply_aggregates(batch, &recovered, self.aggregate_times(batch, fence_from_ms))
            .await?;
        let settle: Vec<usize> = recovered.iter().map(|counted| counted.index).collect();
        self.settle(batch, &settle).await;
        Ok(())
    }

    fn aggregate_times(&self, batch: &Batch<'_>, fence_from_ms: i64) -> AggregateTimes {
        AggregateTimes {
            now_ms: batch.now_ms,
            window_ms: self.window_ms,
            fence_from_ms,
            fence_ms: self.fence_ms(),
        }
    }

    /// Redis's clock, in ms: where the fence of this attempt starts.
    async fn redis_time_ms(&self) -> Result<i64, StoreError> {
        let (seconds, micros): (i64, i64) = self
            .connection
            .query(&::redis::cmd("TIME"))
            .await
            .map_err(StoreError::redis)?;
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
            let plans = self.plan_viewers(batch, &pending).await?;
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
        Err(contended(pending.len()))
    }

    /// Reads the hashes of the `pending` viewers (one pipelined round trip)
    /// and plans each.
    async fn plan_viewers(
        &self,
        batch: &Batch<'_>,
        pending: &BTreeMap<u64, Vec<usize>>,
    ) -> Result<Vec<ViewerPlan>, StoreError> {
        let stored = self.read_viewers(pending).await?;
        pending
            .iter()
            .zip(stored)
            .map(|((viewer_id, indices), stored)| self.plan_viewer(batch, *viewer_id, indices, stored, Pending::Kept))
            .collect()
    }

    /// The stored hashes (`HMGET r n d p`) of the `pending` viewers, in
    /// order, in one pipelined round trip.
    pub(super) async fn read_viewers(&self, pending: &BTreeMap<u64, Vec<usize>>) -> Result<Vec<Value>, StoreError> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let reads: Vec<Cmd> = pending
            .keys()
            .map(|viewer| {
                let mut cmd = ::redis::cmd("HMGET");
                cmd.arg(self.keys.viewer(*viewer)).arg("r").arg("n").arg("d").arg("p");
                cmd
            })
            .collect();
        self.connection.query_all(&reads).await.map_err(StoreError::redis)
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
    pub(super) fn plan_viewer(
        &self,
        batch: &Batch<'_>,
        viewer_id: u64,
        indices: &[usize],
        stored: Value,
        lines: Pending,
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
        let mut new_lines = String::new();
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
                if lines == Pending::Kept {
                    new_lines.push_str(&pending_line(hash, batch.now_ms, &delta));
                }
            }
            changed = true;
            outcomes.push((index, Outcome::Fresh(delta)));
        }
        let write = changed.then(|| ViewerWrite {
            record_key: self.keys.viewer(viewer_id),
            expected_version: version,
            record: encode_viewer(&record),
            dedupe: window.encode(),
            pending: new_lines,
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
