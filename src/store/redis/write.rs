//! Applying a batch: step 1 per viewer, then steps 2 and 3 per aggregate
//! hash (see the module doc of [`super`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::future::try_join_all;

use super::RedisStore;
use super::codec::EventDeltaText;
use super::keys::GLOBAL_ID;
use super::scripts::{AggregateItem, AggregateWrite, DedupeEntry, StoredDuplicate, ViewerAnswer, ViewerWrite};
use crate::model::aggregate::event_delta;
use crate::model::{Event, ViewerRecord};
use crate::store::codec::{decode_viewer, encode_viewer};
use crate::store::{Applied, StoreError, Touched, creator_bucket, event_key};

/// How often a viewer step is redone when other writers keep changing the
/// same viewer record before this one lands.
const MAX_VIEWER_ATTEMPTS: usize = 64;

/// An event on its way to steps 2 and 3.
struct Counted {
    /// Its index in the batch.
    index: usize,
    /// Its deltas.
    delta: EventDeltaText,
}

/// What step 1 decided for one event.
struct ViewerStep {
    /// The event's index in the batch.
    index: usize,
    /// Its deltas: computed now, or stored when it was first applied.
    delta: EventDeltaText,
    /// Whether it was applied before (a resend).
    applied_before: bool,
}

/// A viewer's record with a batch's events applied, as step 1 will write it.
struct Replayed {
    /// The version the record was read at (`None` = absent).
    version: Option<String>,
    /// The record after the events.
    record: ViewerRecord,
    /// Each event's deltas, in order.
    deltas: Vec<EventDeltaText>,
}

/// One viewer's events of a batch, for step 1.
struct ViewerEvents<'a> {
    viewer_id: u64,
    /// The whole batch.
    events: &'a [Event],
    /// Each event's dedupe hash, when it has an id.
    hashes: &'a [Option<u128>],
    /// Indices of this viewer's events, in order.
    indices: Vec<usize>,
}

impl RedisStore {
    /// Deduplicates the batch, then applies it in three steps (module doc).
    pub(super) async fn apply_batch(&self, events: Vec<Event>, now_ms: i64) -> Result<Vec<Applied>, StoreError> {
        let mut statuses = vec![Applied::Accepted; events.len()];
        let hashes: Vec<Option<u128>> = events
            .iter()
            .map(|event| (!event.event_id.is_empty()).then(|| event_key(event)))
            .collect();
        let mut seen = HashSet::new();
        let mut by_viewer: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut work: Vec<Counted> = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if let Some(hash) = hashes[index]
                && !seen.insert(hash)
            {
                statuses[index] = Applied::Duplicate;
                continue;
            }
            if event.viewer_id == 0 {
                let delta = EventDeltaText::encode(&event_delta(event, &self.ingest, &self.decay, None));
                work.push(Counted { index, delta });
            } else {
                by_viewer.entry(event.viewer_id).or_default().push(index);
            }
        }
        let viewers: Vec<u64> = by_viewer.keys().copied().collect();
        let viewer_steps = by_viewer.into_iter().map(|(viewer_id, indices)| {
            let batch = ViewerEvents {
                viewer_id,
                events: &events,
                hashes: &hashes,
                indices,
            };
            self.apply_viewer(batch, now_ms)
        });
        for step in try_join_all(viewer_steps).await?.into_iter().flatten() {
            if step.applied_before {
                // Counted before; completing steps 2-3 again is a no-op
                // unless an earlier attempt stopped half-way.
                statuses[step.index] = Applied::Duplicate;
            }
            work.push(Counted {
                index: step.index,
                delta: step.delta,
            });
        }
        let fresh = self.apply_aggregates(&events, &hashes, &work, now_ms).await?;
        for counted in &work {
            if events[counted.index].viewer_id == 0 && fresh.get(&counted.index) == Some(&false) {
                statuses[counted.index] = Applied::Duplicate;
            }
        }
        if let Some(hook) = &self.on_write {
            let mut buckets: Vec<u32> = work
                .iter()
                .map(|counted| creator_bucket(events[counted.index].creator_id))
                .collect();
            buckets.sort_unstable();
            buckets.dedup();
            hook(&Touched { buckets, viewers });
        }
        Ok(statuses)
    }

    /// Step 1 for one viewer's events: read the record, apply the events,
    /// write it back unless it changed meanwhile (then again) or an event
    /// is a duplicate (then without it).
    async fn apply_viewer(&self, batch: ViewerEvents<'_>, now_ms: i64) -> Result<Vec<ViewerStep>, StoreError> {
        let record_key = self.keys.viewer(batch.viewer_id);
        let mut pending = batch.indices;
        let mut done = Vec::with_capacity(pending.len());
        for _ in 0..MAX_VIEWER_ATTEMPTS {
            if pending.is_empty() {
                return Ok(done);
            }
            let Replayed {
                version,
                record,
                deltas,
            } = self.replay_viewer(&record_key, batch.events, &pending).await?;
            // Positions in `pending` of the events with an id (one dedupe entry each).
            let keyed: Vec<(usize, u128)> = pending
                .iter()
                .enumerate()
                .filter_map(|(position, index)| batch.hashes[*index].map(|hash| (position, hash)))
                .collect();
            let write = ViewerWrite {
                record_key: &record_key,
                expected_version: version.as_deref().unwrap_or("0"),
                now_ms,
                window_ms: self.window_ms,
                record: encode_viewer(&record),
                entries: keyed
                    .iter()
                    .map(|(position, hash)| DedupeEntry {
                        key: self.keys.dedupe(batch.viewer_id, *hash),
                        delta: &deltas[*position],
                    })
                    .collect(),
            };
            match self.scripts.write_viewer(&self.connection, &write).await? {
                ViewerAnswer::Written => {
                    let steps = pending.into_iter().zip(deltas).map(|(index, delta)| ViewerStep {
                        index,
                        delta,
                        applied_before: false,
                    });
                    done.extend(steps);
                    return Ok(done);
                }
                ViewerAnswer::Conflict => {}
                ViewerAnswer::Duplicates(found) => {
                    let mut duplicate = HashSet::new();
                    for StoredDuplicate { position, delta } in found {
                        let (p, _) = *keyed
                            .get(position.wrapping_sub(1))
                            .ok_or_else(|| StoreError::Corrupt(format!("dedupe answer position {position}")))?;
                        duplicate.insert(pending[p]);
                        done.push(ViewerStep {
                            index: pending[p],
                            delta,
                            applied_before: true,
                        });
                    }
                    pending.retain(|i| !duplicate.contains(i));
                }
            }
        }
        Err(StoreError::Backend(format!(
            "viewer {}: record changed by other writers {MAX_VIEWER_ATTEMPTS} times in a row",
            batch.viewer_id
        )))
    }

    /// Reads a viewer's record and applies the events `pending` (indices
    /// into `events`) to it, in order.
    async fn replay_viewer(
        &self,
        record_key: &str,
        events: &[Event],
        pending: &[usize],
    ) -> Result<Replayed, StoreError> {
        let (stored, version): (Option<Vec<u8>>, Option<String>) = self
            .connection
            .query(::redis::cmd("HMGET").arg(record_key).arg("r").arg("n"))
            .await
            .map_err(StoreError::Redis)?;
        let mut record = match stored {
            Some(bytes) => decode_viewer(&bytes, &self.ingest.intimacy_weights)?,
            None => ViewerRecord::default(),
        };
        let deltas = pending
            .iter()
            .map(|i| EventDeltaText::encode(&event_delta(&events[*i], &self.ingest, &self.decay, Some(&mut record))))
            .collect();
        Ok(Replayed {
            version,
            record,
            deltas,
        })
    }

    /// Steps 2 and 3 for the events in `work`; returns, per event index,
    /// whether its creator's script applied it now.
    async fn apply_aggregates(
        &self,
        events: &[Event],
        hashes: &[Option<u128>],
        work: &[Counted],
        now_ms: i64,
    ) -> Result<HashMap<usize, bool>, StoreError> {
        let mut by_bucket: BTreeMap<u32, Vec<&Counted>> = BTreeMap::new();
        for counted in work {
            by_bucket
                .entry(creator_bucket(events[counted.index].creator_id))
                .or_default()
                .push(counted);
        }
        let creator_calls = by_bucket.iter().map(|(bucket, counted)| {
            let items = counted
                .iter()
                .map(|counted| AggregateItem {
                    marker: hashes[counted.index],
                    aggregate_id: events[counted.index].creator_id.to_string(),
                    delta: counted.delta.creator(),
                })
                .collect();
            let write = self.aggregate_write(self.keys.bucket(*bucket), items, now_ms);
            self.scripts.apply_deltas(&self.connection, write)
        });
        let global_items = work
            .iter()
            .map(|counted| AggregateItem {
                marker: hashes[counted.index],
                aggregate_id: GLOBAL_ID.to_owned(),
                delta: counted.delta.platform(),
            })
            .collect();
        let global_call = self.scripts.apply_deltas(
            &self.connection,
            self.aggregate_write(self.keys.global(), global_items, now_ms),
        );
        let (creators, _) = tokio::try_join!(try_join_all(creator_calls), global_call)?;
        let mut fresh = HashMap::with_capacity(work.len());
        for (counted, flags) in by_bucket.values().zip(creators) {
            for (counted, flag) in counted.iter().zip(flags) {
                fresh.insert(counted.index, flag);
            }
        }
        Ok(fresh)
    }

    fn aggregate_write<'a>(
        &self,
        snapshot_key: String,
        items: Vec<AggregateItem<'a>>,
        now_ms: i64,
    ) -> AggregateWrite<'a> {
        AggregateWrite {
            snapshot_key,
            now_ms,
            window_ms: self.window_ms,
            items,
        }
    }
}
