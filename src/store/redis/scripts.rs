//! The scripts (`scripts/*.lua`) and their calls. A script makes a check
//! and the writes it guards one atomic step: no other writer can slip
//! between "this record is unchanged" or "this event is new" and the write.
//! Each call touches one hash slot on a cluster; on a single server one
//! call carries a whole batch's step (one script call costs Redis ~20 µs
//! whatever it carries, so a call per viewer was the ingest limit).
//! The KEYS/ARGV layout of each lives here, beside its typed arguments.

use std::collections::BTreeMap;

use ::redis::Script;

use super::codec::{SNAPSHOT_FIELDS, add_delta_text, pack_doubles};
use super::connection::Connection;
use super::keys;
use crate::store::StoreError;

/// The scripts, loaded once per store (a node that lacks one gets it on first use).
pub(super) struct Scripts {
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
        let apply_deltas =
            include_str!("scripts/apply_deltas.lua").replace("SNAPSHOT_FIELDS", &SNAPSHOT_FIELDS.to_string());
        Scripts {
            apply_deltas: Script::new(&apply_deltas),
            write_viewers: Script::new(include_str!("scripts/write_viewers.lua")),
            settle: Script::new(include_str!("scripts/settle.lua")),
            shorten: Script::new(include_str!("scripts/shorten.lua")),
        }
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
            .map_err(StoreError::Redis)?;
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
            .map_err(StoreError::Redis)?;
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
            .map_err(StoreError::Redis)?;
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
            .map_err(StoreError::Redis)?;
        Ok(())
    }
}
