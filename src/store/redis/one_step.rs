//! A batch on a single server: one atomic script call per group of at most
//! [`MAX_GROUP`] viewers (`scripts/one_step.lua`) writes their records and
//! dedupe entries and adds their new events' deltas to the aggregates. A
//! call lands whole or not at all, so a resend finds either every event of
//! a viewer counted (its dedupe entries) or none: no pending deltas,
//! markers or settle step, which cost a cluster's three steps about half
//! their Redis time.
//!
//! Anonymous events have no viewer hash to hold their dedupe entries: each
//! part (creator, platform) keeps a marker for the window, as on a cluster.
//! Events accepted by three steps that did not finish (a cluster writer's
//! layout, or a writer that stopped half way) are found by their pending
//! deltas and completed by those steps' markers ([`RedisStore::recover`]).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::codec::EventDeltaText;
use super::keys::{GLOBAL_ID, global_shard, marker};
use super::scripts::{OneStepCall, UnitCheck};
use super::write::{Batch, BatchParts, Counted, MAX_VIEWER_ATTEMPTS, Outcome, Pending, ViewerPlan, contended};
use super::{MAX_GROUP, RedisStore};
use crate::model::aggregate::event_delta;
use crate::store::{Applied, StoreError, creator_bucket};

/// A call on its way: the positions of its units not applied.
type Sent = JoinHandle<Result<Vec<usize>, StoreError>>;

/// What a unit of a call stands for.
enum UnitOf {
    /// A viewer, with what its plan decided for its events.
    Viewer(u64, Vec<(usize, Outcome)>),
    /// The creator part of the anonymous event at this index.
    CreatorPart(usize),
    /// Its platform part.
    PlatformPart,
    /// An anonymous event without an id.
    Always(usize),
}

/// What the calls of a batch decided so far.
#[derive(Default)]
struct Decided {
    /// Events whose deltas reached the aggregates.
    counted: Vec<usize>,
    /// Events accepted before whose earlier steps may not have finished.
    recovered: Vec<Counted>,
}

impl Decided {
    fn viewer_outcomes(&mut self, outcomes: Vec<(usize, Outcome)>, statuses: &mut [Applied]) {
        for (index, outcome) in outcomes {
            let recovered = matches!(outcome, Outcome::Recovered(_));
            let Some(delta) = outcome.counted(index, statuses) else {
                continue;
            };
            self.counted.push(index);
            if recovered {
                self.recovered.push(Counted { index, delta });
            }
        }
    }
}

impl RedisStore {
    /// Applies the batch in one step per group; returns the indices of the
    /// events whose deltas reached the aggregates now.
    pub(super) async fn apply_in_one_step(
        &self,
        batch: &Batch<'_>,
        parts: BatchParts,
        statuses: &mut [Applied],
    ) -> Result<Vec<usize>, StoreError> {
        let BatchParts {
            by_viewer: mut pending,
            mut anonymous,
        } = parts;
        let mut decided = Decided::default();
        for _ in 0..MAX_VIEWER_ATTEMPTS {
            if pending.is_empty() && anonymous.is_empty() {
                self.recover(batch, decided.recovered).await?;
                return Ok(decided.counted);
            }
            // Each group's call is sent as soon as it is planned (and the
            // connection given a turn to write it), so Redis runs it while
            // the next group is planned.
            let stored = self.read_viewers(&pending).await?;
            let mut sent = Vec::new();
            let mut call = (OneStepCall::default(), Vec::new());
            for &index in &anonymous {
                self.add_anonymous(batch, index, &mut call);
            }
            anonymous.clear();
            for ((viewer_id, indices), stored) in pending.iter().zip(stored) {
                let ViewerPlan { write, outcomes, .. } =
                    self.plan_viewer(batch, *viewer_id, indices, stored, Pending::None)?;
                let Some(write) = write else {
                    decided.viewer_outcomes(outcomes, statuses);
                    continue;
                };
                call.0.unit(UnitCheck::Viewer(write));
                for (index, outcome) in &outcomes {
                    if let Outcome::Fresh(delta) = outcome {
                        self.add_parts(batch, *index, delta, &mut call.0);
                    }
                }
                call.1.push(UnitOf::Viewer(*viewer_id, outcomes));
                if call.1.len() >= MAX_GROUP {
                    sent.push(self.send(batch.now_ms, std::mem::take(&mut call)));
                    tokio::task::yield_now().await;
                }
            }
            if !call.1.is_empty() {
                sent.push(self.send(batch.now_ms, call));
            }
            let mut redo = HashSet::new();
            for (answer, units) in sent {
                let failed: HashSet<usize> = answer
                    .await
                    .map_err(|error| StoreError::Task {
                        task: "a one-step script call",
                        source: Arc::new(error),
                    })??
                    .into_iter()
                    .collect();
                for (position, unit) in units.into_iter().enumerate() {
                    let applied = !failed.contains(&position);
                    match unit {
                        UnitOf::Viewer(_, outcomes) if applied => decided.viewer_outcomes(outcomes, statuses),
                        UnitOf::Viewer(viewer, _) => {
                            redo.insert(viewer);
                        }
                        UnitOf::CreatorPart(index) if !applied => statuses[index] = Applied::Duplicate,
                        UnitOf::CreatorPart(index) | UnitOf::Always(index) => decided.counted.push(index),
                        UnitOf::PlatformPart => {}
                    }
                }
            }
            pending.retain(|viewer, _| redo.contains(viewer));
        }
        Err(contended(pending.len()))
    }

    /// Starts one call: its own task, so that it reaches Redis while the
    /// caller plans the next; answers the positions of the units not applied.
    fn send(&self, now_ms: i64, call: (OneStepCall, Vec<UnitOf>)) -> (Sent, Vec<UnitOf>) {
        let (call, units) = call;
        let scripts = Arc::clone(&self.scripts);
        let connection = self.connection.clone();
        let window_ms = self.window_ms;
        let task = tokio::spawn(async move { scripts.one_step(&connection, now_ms, window_ms, &call).await });
        (task, units)
    }

    /// An anonymous event's units: with an id, one per part, each kept
    /// from counting twice by its marker; without, one always applied.
    fn add_anonymous(&self, batch: &Batch<'_>, index: usize, call: &mut (OneStepCall, Vec<UnitOf>)) {
        let event = &batch.events[index];
        let delta = EventDeltaText::encode(&event_delta(event, &self.ingest, &self.decay, None));
        let bucket = creator_bucket(event.creator_id);
        let Some(hash) = batch.hashes[index] else {
            call.0.unit(UnitCheck::Always);
            self.add_parts(batch, index, &delta, &mut call.0);
            call.1.push(UnitOf::Always(index));
            return;
        };
        let creator = self.keys.bucket(bucket);
        call.0.unit(UnitCheck::Marker(marker(&creator, hash)));
        call.0.add(creator, event.creator_id.to_string(), delta.creator());
        call.1.push(UnitOf::CreatorPart(index));
        let platform = self.keys.global(global_shard(bucket));
        call.0.unit(UnitCheck::Marker(marker(&platform, hash)));
        call.0.add(platform, GLOBAL_ID.to_owned(), delta.platform());
        call.1.push(UnitOf::PlatformPart);
    }

    /// Adds both parts of an event's deltas to the unit started last.
    fn add_parts(&self, batch: &Batch<'_>, index: usize, delta: &EventDeltaText, call: &mut OneStepCall) {
        let creator_id = batch.events[index].creator_id;
        let bucket = creator_bucket(creator_id);
        call.add(self.keys.bucket(bucket), creator_id.to_string(), delta.creator());
        call.add(
            self.keys.global(global_shard(bucket)),
            GLOBAL_ID.to_owned(),
            delta.platform(),
        );
    }
}
