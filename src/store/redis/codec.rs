//! The text forms the scripts read and write: an event's deltas (summed
//! by `HINCRBYFLOAT`, kept in dedupe entries) and aggregate snapshots.

use ::redis::Value;

use crate::model::CreatorAggregate;
use crate::model::aggregate::{AggregateDelta, EventDelta, SUM_FIELDS, SUM_FIELDS_BEFORE_TRUST};
use crate::store::{CreatorBucket, StoreError};

/// An event's two deltas, creator's and platform's, as `<creator>~<platform>`:
/// one string, kept whole in the event's dedupe entry, so that a resent
/// batch completes steps 2 and 3 with exactly what was counted the first time.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EventDeltaText(String);

impl EventDeltaText {
    /// The text of a delta computed now.
    pub(super) fn encode(delta: &EventDelta) -> EventDeltaText {
        EventDeltaText(format!(
            "{}~{}",
            encode_delta(&delta.creator),
            encode_delta(&delta.global)
        ))
    }

    /// The text found in a dedupe entry, written by an earlier attempt.
    pub(super) fn stored(text: String) -> EventDeltaText {
        EventDeltaText(text)
    }

    /// The whole text, as a dedupe entry holds it.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// The creator's part.
    pub(super) fn creator(&self) -> &str {
        self.parts().0
    }

    /// The platform's part.
    pub(super) fn platform(&self) -> &str {
        self.parts().1
    }

    fn parts(&self) -> (&str, &str) {
        self.0.split_once('~').unwrap_or((&self.0, &self.0))
    }
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

/// Values in a snapshot: updated_at, followers, members, evidence, the sums.
pub(super) const SNAPSHOT_FIELDS: usize = 4 + SUM_FIELDS;
/// Values in a snapshot written before buyers and refunds were counted: it
/// reads (here and in `snapshot.lua`) with those sums zero.
pub(super) const SNAPSHOT_FIELDS_BEFORE_TRUST: usize = 4 + SUM_FIELDS_BEFORE_TRUST;

/// Parses a snapshot: [`SNAPSHOT_FIELDS`] big-endian doubles (`apply_deltas.lua`).
pub(super) fn parse_snapshot(bytes: &[u8]) -> Result<CreatorAggregate, StoreError> {
    Ok(RawSnapshot::parse(bytes)?.into_aggregate())
}

/// The platform aggregate from its shards' snapshots (absent = empty):
/// counts are summed signed (a follow in one shard, its unfollow in
/// another), then read as [`parse_snapshot`] reads one.
pub(super) fn merge_snapshots(shards: &[Option<Vec<u8>>]) -> Result<CreatorAggregate, StoreError> {
    let mut total = RawSnapshot::default();
    for bytes in shards.iter().flatten() {
        let shard = RawSnapshot::parse(bytes)?;
        total.updated_at_ms = total.updated_at_ms.max(shard.updated_at_ms);
        total.followers += shard.followers;
        total.members += shard.members;
        total.evidence += shard.evidence;
        for (sum, add) in total.sums.iter_mut().zip(shard.sums) {
            *sum += add;
        }
    }
    Ok(total.into_aggregate())
}

/// A snapshot's values as stored, counts signed.
#[derive(Default)]
struct RawSnapshot {
    updated_at_ms: i64,
    followers: i64,
    members: i64,
    evidence: i64,
    sums: [f64; SUM_FIELDS],
}

impl RawSnapshot {
    fn parse(bytes: &[u8]) -> Result<RawSnapshot, StoreError> {
        if bytes.len() != SNAPSHOT_FIELDS * 8 && bytes.len() != SNAPSHOT_FIELDS_BEFORE_TRUST * 8 {
            return Err(StoreError::Corrupt(format!(
                "aggregate snapshot of {} bytes",
                bytes.len()
            )));
        }
        let mut values = bytes
            .chunks_exact(8)
            .map(|chunk| f64::from_be_bytes(chunk.try_into().unwrap_or_default()));
        let mut next = || values.next().unwrap_or_default();
        // Counts are whole doubles (exact below 2^53); `as` saturates.
        let mut raw = RawSnapshot {
            updated_at_ms: next() as i64,
            followers: next() as i64,
            members: next() as i64,
            evidence: next() as i64,
            sums: [0.0; SUM_FIELDS],
        };
        for sum in &mut raw.sums {
            *sum = next();
        }
        Ok(raw)
    }

    fn into_aggregate(self) -> CreatorAggregate {
        // A count below zero means records were lost; it reads as zero.
        let count = |value: i64| value.max(0).unsigned_abs();
        let mut aggregate = CreatorAggregate {
            updated_at_ms: self.updated_at_ms,
            followers: count(self.followers),
            fan_group_members: count(self.members),
            evidence: count(self.evidence),
            ..CreatorAggregate::default()
        };
        for (index, value) in self.sums.into_iter().enumerate() {
            *aggregate.sum_mut(index) = value;
        }
        aggregate
    }
}

/// Adds one delta text (`timestamp|followers|members|index=value...`) to
/// a packed sum of deltas laid out as a snapshot: the timestamp raised,
/// the counts and sums added, evidence counted once.
///
/// # Errors
/// [`StoreError::Corrupt`] when the text is not a delta.
pub(super) fn add_delta_text(total: &mut [f64; SNAPSHOT_FIELDS], text: &str) -> Result<(), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("delta {text}"));
    let mut tokens = text.split('|');
    let mut int = || -> Result<f64, StoreError> {
        let token = tokens.next().ok_or_else(corrupt)?;
        Ok(token.parse::<i64>().map_err(|_| corrupt())? as f64)
    };
    total[0] = total[0].max(int()?);
    total[1] += int()?;
    total[2] += int()?;
    total[3] += 1.0;
    for token in tokens {
        let (index, value) = token.split_once('=').ok_or_else(corrupt)?;
        let index: usize = index.parse().map_err(|_| corrupt())?;
        let value: f64 = value.parse().map_err(|_| corrupt())?;
        *total.get_mut(4 + index).ok_or_else(corrupt)? += value;
    }
    Ok(())
}

/// The packed form of a snapshot or a summed delta: big-endian doubles.
pub(super) fn pack_doubles(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_be_bytes()).collect()
}

/// Parses a bucket's `HGETALL` reply: creator id → snapshot.
pub(super) fn parse_bucket(reply: &Value) -> Result<CreatorBucket, StoreError> {
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
        let both = EventDeltaText::encode(&EventDelta {
            creator: delta.clone(),
            global: AggregateDelta::default(),
        });
        assert_eq!(both.creator(), text);
        assert_eq!(both.platform(), "0|0|0");
        assert_eq!(both.as_str(), format!("{text}~0|0|0"));
        let stored = EventDeltaText::stored(both.as_str().to_owned());
        assert_eq!((stored.creator(), stored.platform()), (both.creator(), both.platform()));
    }

    #[test]
    fn delta_texts_sum_like_snapshots() {
        let mut delta = AggregateDelta {
            timestamp_ms: 9,
            followers: -1,
            ..AggregateDelta::default()
        };
        delta.sums[2] = 0.25;
        let mut total = [0.0; SNAPSHOT_FIELDS];
        add_delta_text(&mut total, &encode_delta(&delta)).expect("valid");
        delta.timestamp_ms = 4;
        add_delta_text(&mut total, &encode_delta(&delta)).expect("valid");
        assert_eq!(total[..4], [9.0, -2.0, 0.0, 2.0]);
        assert_eq!(total[4 + 2], 0.5);
        assert!(add_delta_text(&mut total, "1|2").is_err());
        assert!(add_delta_text(&mut total, "1|2|3|99=1").is_err());
    }

    #[test]
    fn snapshots_parse_and_refuse_garbage() {
        let mut values = [0.0; SNAPSHOT_FIELDS];
        values[..4].copy_from_slice(&[1_700_000_000_123.0, 3.0, -1.0, 7.0]);
        values[4] = 2.5;
        values[SNAPSHOT_FIELDS_BEFORE_TRUST - 1] = 43_559_896_473.368_62;
        values[SNAPSHOT_FIELDS - 1] = 3.0;
        let pack = pack_doubles;
        let text = pack(&values);
        let aggregate = parse_snapshot(&text).expect("valid");
        assert_eq!(
            (
                aggregate.updated_at_ms,
                aggregate.followers,
                aggregate.fan_group_members,
                aggregate.evidence
            ),
            (1_700_000_000_123, 3, 0, 7)
        );
        assert_eq!(
            (aggregate.fan[0], aggregate.shown, aggregate.refunders),
            (2.5, 43_559_896_473.368_62, 3.0)
        );
        assert!(parse_snapshot(&text[1..]).is_err(), "too short");
        let old = pack(&values[..SNAPSHOT_FIELDS_BEFORE_TRUST]);
        let before_trust = parse_snapshot(&old).expect("a snapshot written before buyers were counted");
        assert_eq!(
            (before_trust.fan[0], before_trust.buyers, before_trust.refunders),
            (2.5, 0.0, 0.0)
        );
        let mut other = values;
        other[2] = 2.0;
        let merged = merge_snapshots(&[Some(text.clone()), None, Some(pack(&other))]).expect("valid");
        assert_eq!(
            (merged.followers, merged.fan_group_members, merged.evidence),
            (6, 1, 14)
        );
        assert_eq!(merged.fan[0], 5.0);

        let bulk = |s: &[u8]| Value::BulkString(s.to_vec());
        let reply = Value::Array(vec![bulk(b"9"), bulk(&text), bulk(b"5"), bulk(&text)]);
        let bucket = parse_bucket(&reply).expect("valid bucket");
        assert_eq!(
            bucket.creators.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![5, 9]
        );
        assert!(parse_bucket(&Value::Array(vec![bulk(b"x"), bulk(&text)])).is_err());
        assert_eq!(
            parse_bucket(&Value::Array(Vec::new())).expect("empty").creators.len(),
            0
        );
    }
}
