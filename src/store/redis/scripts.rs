//! The scripts (`scripts/*.lua`) and their calls. A script makes a check
//! and the writes it guards one atomic step: no other writer can slip
//! between "this record is unchanged" or "this event is new" and the write.
//! Each call touches one hash slot on a cluster; on a single server one
//! call carries a whole batch's step (one script call costs Redis ~20 µs
//! whatever it carries, so a call per viewer was the ingest limit).
//! The KEYS/ARGV layout of each lives here, beside its typed arguments.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use ::redis::Script;

use super::codec::{SNAPSHOT_FIELDS, SNAPSHOT_FIELDS_BEFORE_TRUST, add_delta_text, pack_doubles};
use super::connection::Connection;
use super::keys;
use crate::store::StoreError;

/// The scripts, loaded once per store (a node that lacks one gets it on first use).
pub(super) struct Scripts {
    one_step: Script,
    apply_deltas: Script,
    write_viewers: Script,
    settle: Script,
    shorten: Script,
}

/// Step 1 for one viewer: its new record and dedupe entries, and the
/// pending lines of its new events.
pub(super) struct ViewerWrite {
    /// The viewer's hash.
    pub(super) record_key: String,
    /// The version the record was read at (`0` = absent).
    pub(super) expected_version: String,
    /// The encoded record after the viewer's events.
    pub(super) record: Vec<u8>,
    /// The packed dedupe entries, pruned, with the new events.
    pub(super) dedupe: Vec<u8>,
    /// Pending lines to append.
    pub(super) pending: String,
    /// Whether the viewer had no pending lines when read (then, the
    /// version being unchanged, it still has none: lines are added only
    /// with a new version, and the settle step only removes them).
    pub(super) none_pending: bool,
}

/// Steps 2 and 3 for one aggregate hash (a creator bucket, or a platform shard).
pub(super) struct AggregateWrite<'a> {
    /// The snapshot hash; its markers are named after it.
    pub(super) snapshot_key: String,
    /// The events to add.
    pub(super) items: Vec<AggregateItem<'a>>,
}

/// One event's delta to one aggregate.
pub(super) struct AggregateItem<'a> {
    /// The event's hash, when it has an id (then a marker keeps it from counting twice).
    pub(super) marker: Option<u128>,
    /// The creator id, or [`super::keys::GLOBAL_ID`].
    pub(super) aggregate_id: String,
    /// This aggregate's part of the event's deltas.
    pub(super) delta: &'a str,
}

/// One call of the one-step script (`scripts/one_step.lua`): units, each
/// a check and the deltas it brings, and the aggregates (rows) they touch.
#[derive(Default)]
pub(super) struct OneStepCall {
    pub(super) units: Vec<Unit>,
    /// Per row: its snapshot hash and aggregate id.
    rows: Vec<(String, String)>,
    row_of: HashMap<(String, String), usize>,
}

/// What decides whether a unit is applied.
pub(super) enum UnitCheck {
    /// A viewer's hash, written if its version is unchanged.
    Viewer(ViewerWrite),
    /// The marker of an anonymous event's part, applied if not set.
    Marker(String),
    /// An anonymous event without an id: always applied.
    Always,
}

/// A unit: its check, and per event the deltas it adds to rows.
pub(super) struct Unit {
    pub(super) check: UnitCheck,
    /// `(row, delta text)`, in event order.
    deltas: Vec<(usize, String)>,
}

impl OneStepCall {
    /// Starts a unit; its deltas are added with [`OneStepCall::add`].
    pub(super) fn unit(&mut self, check: UnitCheck) {
        self.units.push(Unit {
            check,
            deltas: Vec::new(),
        });
    }

    /// Adds `delta` to the aggregate `aggregate_id` of `snapshot_key`, in
    /// the unit started last.
    pub(super) fn add(&mut self, snapshot_key: String, aggregate_id: String, delta: &str) {
        let next = self.rows.len();
        let row = *self
            .row_of
            .entry((snapshot_key.clone(), aggregate_id.clone()))
            .or_insert(next);
        if row == next {
            self.rows.push((snapshot_key, aggregate_id));
        }
        if let Some(unit) = self.units.last_mut() {
            unit.deltas.push((row, delta.to_owned()));
        }
    }
}

/// Times shared by the aggregate writes of one batch attempt.
#[derive(Clone, Copy)]
pub(super) struct AggregateTimes {
    /// Stamp of the markers (service clock).
    pub(super) now_ms: i64,
    /// How long markers live until settled.
    pub(super) window_ms: i64,
    /// Redis time when the attempt started.
    pub(super) fence_from_ms: i64,
    /// How long after that its steps may still land.
    pub(super) fence_ms: i64,
}

impl Scripts {
    /// The scripts, with the sum count filled in.
    pub(super) fn load() -> Scripts {
        // The aggregate scripts start with the shared snapshot functions.
        let aggregate_script = |body: &str| {
            format!("{}{body}", include_str!("scripts/snapshot.lua"))
                .replace(
                    "SNAPSHOT_FIELDS_BEFORE_TRUST",
                    &SNAPSHOT_FIELDS_BEFORE_TRUST.to_string(),
                )
                .replace("SNAPSHOT_FIELDS", &SNAPSHOT_FIELDS.to_string())
        };
        let apply_deltas = aggregate_script(include_str!("scripts/apply_deltas.lua"));
        let one_step = aggregate_script(include_str!("scripts/one_step.lua"));
        Scripts {
            one_step: Script::new(&one_step),
            apply_deltas: Script::new(&apply_deltas),
            write_viewers: Script::new(include_str!("scripts/write_viewers.lua")),
            settle: Script::new(include_str!("scripts/settle.lua")),
            shorten: Script::new(include_str!("scripts/shorten.lua")),
        }
    }

    /// Runs one call of the one-step script; returns the positions (in
    /// `call.units`) of the units not applied: viewers whose version
    /// changed, anonymous parts whose marker was set.
    pub(super) async fn one_step(
        &self,
        connection: &Connection,
        now_ms: i64,
        window_ms: i64,
        call: &OneStepCall,
    ) -> Result<Vec<usize>, StoreError> {
        let mut keys: Vec<String> = Vec::with_capacity(call.units.len() + call.rows.len());
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(3 + 6 * call.units.len() + 3 * call.rows.len());
        for value in [call.units.len() as i64, now_ms, window_ms] {
            args.push(value.to_string().into_bytes());
        }
        // Per row, the sum of every unit's deltas (the script takes out
        // those of the units it does not apply).
        let mut sums = vec![[0.0; SNAPSHOT_FIELDS]; call.rows.len()];
        for unit in &call.units {
            let (kind, key) = match &unit.check {
                UnitCheck::Viewer(write) => ("v", Some(write.record_key.clone())),
                UnitCheck::Marker(key) => ("m", Some(key.clone())),
                UnitCheck::Always => ("a", None),
            };
            args.push(kind.as_bytes().to_vec());
            args.push(match key {
                Some(key) => {
                    keys.push(key);
                    keys.len().to_string().into_bytes()
                }
                None => b"0".to_vec(),
            });
            let mut text = String::new();
            for (row, delta) in &unit.deltas {
                add_delta_text(&mut sums[*row], delta)?;
                let separator = if text.is_empty() { "" } else { " " };
                let _ = write!(text, "{separator}{}:{delta}", row + 1);
            }
            args.push(text.into_bytes());
            if let UnitCheck::Viewer(write) = &unit.check {
                args.push(write.expected_version.as_bytes().to_vec());
                args.push(write.record.clone());
                args.push(write.dedupe.clone());
            }
        }
        let mut snapshots: HashMap<&str, usize> = HashMap::new();
        for ((snapshot_key, aggregate_id), sum) in call.rows.iter().zip(&sums) {
            let number = *snapshots.entry(snapshot_key.as_str()).or_insert_with(|| {
                keys.push(snapshot_key.clone());
                keys.len()
            });
            args.push(number.to_string().into_bytes());
            args.push(aggregate_id.as_bytes().to_vec());
            args.push(pack_doubles(sum));
        }
        let failed: Vec<usize> = connection
            .invoke(&self.one_step, &keys, &args)
            .await
            .map_err(StoreError::redis)?;
        failed
            .into_iter()
            .map(|unit| {
                unit.checked_sub(1)
                    .filter(|position| *position < call.units.len())
                    .ok_or_else(|| StoreError::Corrupt(format!("one-step answer: unit {unit}")))
            })
            .collect()
    }

    /// Runs step 1 for viewers of one group; returns, per viewer, whether
    /// it was written (`false`: its version changed, redo it).
    pub(super) async fn write_viewers(
        &self,
        connection: &Connection,
        times: (i64, i64),
        writes: &[&ViewerWrite],
    ) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<String> = writes.iter().map(|write| write.record_key.clone()).collect();
        let mut args = Vec::with_capacity(2 + 5 * writes.len());
        args.push(times.0.to_string().into_bytes());
        args.push(times.1.to_string().into_bytes());
        for write in writes {
            args.push(write.expected_version.as_bytes().to_vec());
            args.push(write.record.clone());
            args.push(write.dedupe.clone());
            args.push(write.pending.as_bytes().to_vec());
            args.push(if write.none_pending {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            });
        }
        let flags: Vec<i64> = connection
            .invoke(&self.write_viewers, &keys, &args)
            .await
            .map_err(StoreError::redis)?;
        if flags.len() != writes.len() {
            return Err(StoreError::Corrupt(format!(
                "{} flags for {} viewers",
                flags.len(),
                writes.len()
            )));
        }
        Ok(flags.into_iter().map(|flag| flag == 0).collect())
    }

    /// Runs steps 2 or 3 on the aggregate hashes of one group, each
    /// hash's events summed per aggregate first. Returns the items, as
    /// `(write, item)` positions, found applied before: a write holding
    /// one was not applied at all, and is to be sent again without them.
    pub(super) async fn apply_deltas(
        &self,
        connection: &Connection,
        times: AggregateTimes,
        writes: &[&AggregateWrite<'_>],
    ) -> Result<Vec<(usize, usize)>, StoreError> {
        let mut keys = Vec::new();
        let mut args: Vec<Vec<u8>> = Vec::new();
        for time in [times.now_ms, times.window_ms, times.fence_from_ms, times.fence_ms] {
            args.push(time.to_string().into_bytes());
        }
        // Per write, the item index of each marker sent.
        let mut marked: Vec<Vec<usize>> = Vec::with_capacity(writes.len());
        for write in writes {
            keys.push(write.snapshot_key.clone());
            let mut sums: BTreeMap<&str, [f64; SNAPSHOT_FIELDS]> = BTreeMap::new();
            let mut positions = Vec::new();
            for (position, item) in write.items.iter().enumerate() {
                if let Some(hash) = item.marker {
                    keys.push(keys::marker(&write.snapshot_key, hash));
                    positions.push(position);
                }
                let total = sums.entry(item.aggregate_id.as_str()).or_insert([0.0; SNAPSHOT_FIELDS]);
                add_delta_text(total, item.delta)?;
            }
            args.push(positions.len().to_string().into_bytes());
            args.push(sums.len().to_string().into_bytes());
            for (id, total) in sums {
                args.push(id.as_bytes().to_vec());
                args.push(pack_doubles(&total));
            }
            marked.push(positions);
        }
        let found: Vec<usize> = connection
            .invoke(&self.apply_deltas, &keys, &args)
            .await
            .map_err(StoreError::redis)?;
        found
            .chunks(2)
            .map(|pair| match pair {
                [write, marker] => marked
                    .get(write.wrapping_sub(1))
                    .and_then(|positions| positions.get(marker.wrapping_sub(1)))
                    .map(|item| (write - 1, *item))
                    .ok_or_else(|| StoreError::Corrupt(format!("marker answer {write}/{marker}"))),
                _ => Err(StoreError::Corrupt("odd marker answer".to_owned())),
            })
            .collect()
    }

    /// Settle, first half: drops the pending lines of `hashes` (per viewer
    /// key, the event hashes) from viewers of one group.
    pub(super) async fn settle(
        &self,
        connection: &Connection,
        viewers: &[(String, Vec<u128>)],
    ) -> Result<(), StoreError> {
        let keys: Vec<String> = viewers.iter().map(|(key, _)| key.clone()).collect();
        let args: Vec<Vec<u8>> = viewers
            .iter()
            .map(|(_, hashes)| {
                let names: Vec<String> = hashes.iter().map(|hash| format!("{hash:032x}")).collect();
                names.join(" ").into_bytes()
            })
            .collect();
        let _: i64 = connection
            .invoke(&self.settle, &keys, &args)
            .await
            .map_err(StoreError::redis)?;
        Ok(())
    }

    /// Settle, second half: markers of one group expire `after_ms` from now.
    pub(super) async fn shorten(
        &self,
        connection: &Connection,
        markers: &[String],
        after_ms: i64,
    ) -> Result<(), StoreError> {
        let _: i64 = connection
            .invoke(&self.shorten, markers, &[after_ms.to_string().into_bytes()])
            .await
            .map_err(StoreError::redis)?;
        Ok(())
    }
}
