//! Fixed little-endian encodings of the stored records, with a leading format
//! version byte so a later layout can still read old records.

use crate::model::aggregate::SUM_FIELDS;
use crate::model::{CreatorAggregate, PairRelation, ViewerRecord};

use super::StoreError;

const CREATOR_V1: u8 = 1;
const VIEWER_V1: u8 = 1;
/// Compact viewer records: most pairs carry only intimacy, so creator ids
/// are delta-encoded varints and absent timestamps take no space (a typical
/// pair: ~12 bytes instead of 48). Smaller records mean fewer B-tree pages
/// copied per commit.
const VIEWER_V2: u8 = 2;
const CREATOR_LEN: usize = 1 + 8 * SUM_FIELDS + 8 * 4;
const PAIR_LEN: usize = 8 * 6;

/// Encodes a creator (or platform) aggregate.
pub fn encode_creator(aggregate: &CreatorAggregate) -> Vec<u8> {
    let mut out = Vec::with_capacity(CREATOR_LEN);
    out.push(CREATOR_V1);
    for value in aggregate.fan.iter().chain(aggregate.non_fan.iter()).chain(
        [
            aggregate.exposure_fan,
            aggregate.exposure_non_fan,
            aggregate.unfollows,
            aggregate.reports,
            aggregate.views,
        ]
        .iter(),
    ) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&aggregate.followers.to_le_bytes());
    out.extend_from_slice(&aggregate.fan_group_members.to_le_bytes());
    out.extend_from_slice(&aggregate.evidence.to_le_bytes());
    out.extend_from_slice(&aggregate.updated_at_ms.to_le_bytes());
    debug_assert_eq!(out.len(), CREATOR_LEN);
    out
}

/// Decodes [`encode_creator`]'s output.
///
/// # Errors
/// [`StoreError::Corrupt`] on an unknown version or wrong length.
pub fn decode_creator(bytes: &[u8]) -> Result<CreatorAggregate, StoreError> {
    if bytes.len() != CREATOR_LEN || bytes[0] != CREATOR_V1 {
        return Err(StoreError::Corrupt(format!("creator record of {} bytes", bytes.len())));
    }
    let mut reader = Reader { bytes: &bytes[1..] };
    let mut aggregate = CreatorAggregate::default();
    for value in aggregate.fan.iter_mut().chain(aggregate.non_fan.iter_mut()) {
        *value = reader.f64();
    }
    aggregate.exposure_fan = reader.f64();
    aggregate.exposure_non_fan = reader.f64();
    aggregate.unfollows = reader.f64();
    aggregate.reports = reader.f64();
    aggregate.views = reader.f64();
    aggregate.followers = reader.u64();
    aggregate.fan_group_members = reader.u64();
    aggregate.evidence = reader.u64();
    aggregate.updated_at_ms = reader.u64() as i64;
    Ok(aggregate)
}

/// Encodes a viewer record (compact format).
pub fn encode_viewer(record: &ViewerRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 14 * record.relations.len());
    out.push(VIEWER_V2);
    let mut previous = 0u64;
    for pair in &record.relations {
        put_varint(&mut out, pair.creator_id - previous);
        previous = pair.creator_id;
        let stamps = [pair.follow_ms, pair.unfollow_ms, pair.join_ms, pair.leave_ms];
        let mut flags = 0u8;
        for (bit, stamp) in stamps.iter().enumerate() {
            if *stamp != 0 {
                flags |= 1 << bit;
            }
        }
        out.push(flags);
        for stamp in stamps.iter().filter(|s| **s != 0) {
            put_varint(&mut out, zigzag(*stamp));
        }
        out.extend_from_slice(&pair.intimacy.to_le_bytes());
    }
    out
}

/// Decodes [`encode_viewer`]'s output (and the older fixed-width format).
///
/// # Errors
/// [`StoreError::Corrupt`] on an unknown version, truncation or unsorted pairs.
pub fn decode_viewer(bytes: &[u8]) -> Result<ViewerRecord, StoreError> {
    match bytes.first() {
        Some(&VIEWER_V2) => decode_viewer_v2(&bytes[1..]),
        Some(&VIEWER_V1) if (bytes.len() - 1).is_multiple_of(PAIR_LEN) => decode_viewer_v1(&bytes[1..]),
        _ => Err(StoreError::Corrupt(format!("viewer record of {} bytes", bytes.len()))),
    }
}

fn decode_viewer_v2(mut bytes: &[u8]) -> Result<ViewerRecord, StoreError> {
    let corrupt = || StoreError::Corrupt("truncated or malformed viewer record".into());
    let mut relations = Vec::new();
    let mut previous = 0u64;
    while !bytes.is_empty() {
        let delta = take_varint(&mut bytes).ok_or_else(corrupt)?;
        if delta == 0 && !relations.is_empty() {
            return Err(StoreError::Corrupt("viewer record relations out of order".into()));
        }
        let creator_id = previous.checked_add(delta).ok_or_else(corrupt)?;
        previous = creator_id;
        let (&flags, rest) = bytes.split_first().ok_or_else(corrupt)?;
        bytes = rest;
        if flags > 0b1111 {
            return Err(corrupt());
        }
        let mut stamps = [0i64; 4];
        for (bit, stamp) in stamps.iter_mut().enumerate() {
            if flags & (1 << bit) != 0 {
                *stamp = unzigzag(take_varint(&mut bytes).ok_or_else(corrupt)?);
            }
        }
        if bytes.len() < 8 {
            return Err(corrupt());
        }
        let (intimacy, rest) = bytes.split_at(8);
        bytes = rest;
        let mut word = [0u8; 8];
        word.copy_from_slice(intimacy);
        relations.push(PairRelation {
            creator_id,
            follow_ms: stamps[0],
            unfollow_ms: stamps[1],
            join_ms: stamps[2],
            leave_ms: stamps[3],
            intimacy: f64::from_le_bytes(word),
        });
    }
    Ok(ViewerRecord { relations })
}

fn decode_viewer_v1(bytes: &[u8]) -> Result<ViewerRecord, StoreError> {
    let mut reader = Reader { bytes };
    let count = bytes.len() / PAIR_LEN;
    let mut relations = Vec::with_capacity(count);
    for _ in 0..count {
        relations.push(PairRelation {
            creator_id: reader.u64(),
            follow_ms: reader.u64() as i64,
            unfollow_ms: reader.u64() as i64,
            join_ms: reader.u64() as i64,
            leave_ms: reader.u64() as i64,
            intimacy: reader.f64(),
        });
    }
    if !relations.windows(2).all(|w| w[0].creator_id < w[1].creator_id) {
        return Err(StoreError::Corrupt("viewer record relations out of order".into()));
    }
    Ok(ViewerRecord { relations })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self) -> [u8; 8] {
        // Lengths are checked by the callers before reading.
        let (head, rest) = self.bytes.split_at(8);
        self.bytes = rest;
        let mut word = [0u8; 8];
        word.copy_from_slice(head);
        word
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut aggregate = CreatorAggregate::default();
        aggregate.fan[3] = 1.5;
        aggregate.non_fan[6] = 2.25e200;
        aggregate.views = 7.0;
        aggregate.followers = 42;
        aggregate.updated_at_ms = -3;
        assert_eq!(decode_creator(&encode_creator(&aggregate)).expect("creator"), aggregate);

        let record = ViewerRecord {
            relations: vec![
                PairRelation {
                    creator_id: 1,
                    follow_ms: 5,
                    intimacy: 0.5,
                    ..Default::default()
                },
                PairRelation {
                    creator_id: u64::MAX,
                    leave_ms: 9,
                    ..Default::default()
                },
            ],
        };
        assert_eq!(decode_viewer(&encode_viewer(&record)).expect("viewer"), record);
    }

    #[test]
    fn compact_viewer_round_trips_extremes_and_is_small() {
        let record = ViewerRecord {
            relations: vec![
                PairRelation {
                    creator_id: 0,
                    intimacy: -0.0,
                    ..Default::default()
                },
                PairRelation {
                    creator_id: 3,
                    follow_ms: i64::MAX,
                    unfollow_ms: i64::MIN,
                    ..Default::default()
                },
                PairRelation {
                    creator_id: 1_650_812_741,
                    join_ms: 1_650_812_741_436,
                    leave_ms: -1,
                    intimacy: 2.5,
                    ..Default::default()
                },
                PairRelation {
                    creator_id: u64::MAX,
                    intimacy: f64::MAX,
                    ..Default::default()
                },
            ],
        };
        assert_eq!(decode_viewer(&encode_viewer(&record)).expect("viewer"), record);
        let typical = ViewerRecord {
            relations: (0..10)
                .map(|i| PairRelation {
                    creator_id: 1_000_000 + i * 977,
                    intimacy: 0.3,
                    ..Default::default()
                })
                .collect(),
        };
        assert!(
            encode_viewer(&typical).len() < 1 + 12 * 10,
            "{} bytes",
            encode_viewer(&typical).len()
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_creator(&[1, 2, 3]).is_err());
        assert!(decode_viewer(&[]).is_err());
        assert!(decode_viewer(&[9]).is_err());
        assert!(decode_viewer(&[1, 0]).is_err());
        // Compact format: truncated, bad flags, repeated creator, overlong varint.
        assert!(decode_viewer(&[2, 5]).is_err());
        assert!(decode_viewer(&[2, 5, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_viewer(&[2, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_viewer(&[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert_eq!(decode_viewer(&[2]).expect("empty record"), ViewerRecord::default());
    }
}
