//! The two scripts (`scripts/*.lua`) and their calls. A script makes a
//! check and the writes it guards one atomic step on one hash slot: no other
//! writer can slip between "this event id is new" and "count it".
//! The KEYS/ARGV layout of each lives here, beside its typed arguments.

use ::redis::{Script, Value};

use super::codec::EventDeltaText;
use super::connection::Connection;
use super::keys;
use crate::model::aggregate::SUM_FIELDS;
use crate::store::StoreError;

/// The scripts, loaded once per store (a node that lacks one gets it on first use).
pub(super) struct Scripts {
    apply_deltas: Script,
    write_viewer: Script,
}

/// Step 1 for one viewer: the new record and one dedupe entry per event with an id.
pub(super) struct ViewerWrite<'a> {
    /// The viewer's hash.
    pub(super) record_key: &'a str,
    /// The version the record was read at (`0` = absent).
    pub(super) expected_version: &'a str,
    /// Stamp of the dedupe entries.
    pub(super) now_ms: i64,
    /// How long dedupe entries live.
    pub(super) window_ms: i64,
    /// The encoded record after the viewer's events.
    pub(super) record: Vec<u8>,
    /// The dedupe entries, in the order of the viewer's events.
    pub(super) entries: Vec<DedupeEntry<'a>>,
}

/// One event's dedupe entry: where, and the deltas it keeps.
pub(super) struct DedupeEntry<'a> {
    /// Its key.
    pub(super) key: String,
    /// The deltas counted for the event.
    pub(super) delta: &'a EventDeltaText,
}

/// What the viewer script did.
pub(super) enum ViewerAnswer {
    /// Record and entries written.
    Written,
    /// The record changed since it was read; nothing written.
    Conflict,
    /// Some events were seen before; nothing written.
    Duplicates(Vec<StoredDuplicate>),
}

/// An event found in the dedupe window by the viewer script.
pub(super) struct StoredDuplicate {
    /// 1-based position among the entries of the [`ViewerWrite`].
    pub(super) position: usize,
    /// The deltas stored when it was first applied.
    pub(super) delta: EventDeltaText,
}

/// Steps 2 and 3 for one aggregate hash (a creator bucket, or the platform's).
pub(super) struct AggregateWrite<'a> {
    /// The snapshot hash; its counters and markers are named after it.
    pub(super) snapshot_key: String,
    /// Stamp of the markers.
    pub(super) now_ms: i64,
    /// How long markers live.
    pub(super) window_ms: i64,
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

impl Scripts {
    /// Both scripts, with the sum count filled in.
    pub(super) fn load() -> Scripts {
        let apply_deltas = include_str!("scripts/apply_deltas.lua").replace("LAST_SUM", &(SUM_FIELDS - 1).to_string());
        Scripts {
            apply_deltas: Script::new(&apply_deltas),
            write_viewer: Script::new(include_str!("scripts/write_viewer.lua")),
        }
    }

    /// Runs step 1 for one viewer.
    pub(super) async fn write_viewer(
        &self,
        connection: &Connection,
        write: &ViewerWrite<'_>,
    ) -> Result<ViewerAnswer, StoreError> {
        let mut keys = Vec::with_capacity(1 + write.entries.len());
        keys.push(write.record_key.to_owned());
        keys.extend(write.entries.iter().map(|entry| entry.key.clone()));
        let mut args = Vec::with_capacity(4 + write.entries.len());
        args.push(write.expected_version.as_bytes().to_vec());
        args.push(write.now_ms.to_string().into_bytes());
        args.push(write.window_ms.to_string().into_bytes());
        args.push(write.record.clone());
        args.extend(
            write
                .entries
                .iter()
                .map(|entry| entry.delta.as_str().as_bytes().to_vec()),
        );
        let answer: Value = connection
            .invoke(&self.write_viewer, &keys, &args)
            .await
            .map_err(StoreError::Redis)?;
        parse_viewer_answer(answer)
    }

    /// Runs steps 2 or 3 on one aggregate hash; returns, per item, whether
    /// it was applied now (not by an earlier attempt).
    pub(super) async fn apply_deltas(
        &self,
        connection: &Connection,
        write: AggregateWrite<'_>,
    ) -> Result<Vec<bool>, StoreError> {
        let count = write.items.len();
        let snapshot = write.snapshot_key;
        let mut keys = vec![snapshot.clone(), keys::counters(&snapshot)];
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(2 + 3 * count);
        args.push(write.now_ms.to_string().into_bytes());
        args.push(write.window_ms.to_string().into_bytes());
        for item in write.items {
            match item.marker {
                Some(hash) => {
                    keys.push(keys::marker(&snapshot, hash));
                    args.push(b"1".to_vec());
                }
                None => args.push(b"0".to_vec()),
            }
            args.push(item.aggregate_id.into_bytes());
            args.push(item.delta.as_bytes().to_vec());
        }
        let flags: Vec<i64> = connection
            .invoke(&self.apply_deltas, &keys, &args)
            .await
            .map_err(StoreError::Redis)?;
        if flags.len() != count {
            return Err(StoreError::Corrupt(format!("{} flags for {count} events", flags.len())));
        }
        Ok(flags.into_iter().map(|flag| flag == 1).collect())
    }
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
                [Value::Int(position), Value::BulkString(delta)] => Ok(StoredDuplicate {
                    position: usize::try_from(*position).map_err(|_| corrupt("a negative position"))?,
                    delta: EventDeltaText::stored(
                        String::from_utf8(delta.clone()).map_err(|_| corrupt("a non-UTF-8 delta"))?,
                    ),
                }),
                _ => Err(corrupt("a malformed duplicate")),
            })
            .collect::<Result<_, _>>()
            .map(ViewerAnswer::Duplicates),
        _ => Err(corrupt("an unknown shape")),
    }
}
