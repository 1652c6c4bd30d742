//! The text forms the scripts read and write: an event's deltas (summed
//! by `HINCRBYFLOAT`, kept in dedupe entries) and aggregate snapshots.

use ::redis::Value;

use crate::model::CreatorAggregate;
use crate::model::aggregate::{AggregateDelta, EventDelta, SUM_FIELDS};
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

/// Parses a snapshot: `t,f,m,e,sum 0..22`, an empty value meaning 0.
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
        let corrupt = || StoreError::Corrupt(format!("aggregate snapshot {}", String::from_utf8_lossy(bytes)));
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
        let mut values = text.split(',');
        let mut next = || values.next().ok_or_else(corrupt);
        let int = |value: &str| -> Result<i64, StoreError> {
            if value.is_empty() {
                return Ok(0);
            }
            value.parse::<i64>().map_err(|_| corrupt())
        };
        let mut raw = RawSnapshot {
            updated_at_ms: int(next()?)?,
            followers: int(next()?)?,
            members: int(next()?)?,
            evidence: int(next()?)?,
            sums: [0.0; SUM_FIELDS],
        };
        for sum in &mut raw.sums {
            let value = next()?;
            if !value.is_empty() {
                *sum = value.parse().map_err(|_| corrupt())?;
            }
        }
        if values.next().is_some() {
            return Err(corrupt());
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
}
