//! Fixed little-endian encodings of the stored records, with a leading format
//! version byte so a later layout can still read old records.

use crate::model::aggregate::ENGAGEMENT_KINDS;
use crate::model::{CreatorAggregate, PairRelation, ViewerRecord};

use super::StoreError;

const CREATOR_V1: u8 = 1;
const VIEWER_V1: u8 = 1;
const CREATOR_LEN: usize = 1 + 8 * (2 * ENGAGEMENT_KINDS + 5) + 8 * 4;
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

/// Encodes a viewer record.
pub fn encode_viewer(record: &ViewerRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + PAIR_LEN * record.relations.len());
    out.push(VIEWER_V1);
    for pair in &record.relations {
        out.extend_from_slice(&pair.creator_id.to_le_bytes());
        out.extend_from_slice(&pair.follow_ms.to_le_bytes());
        out.extend_from_slice(&pair.unfollow_ms.to_le_bytes());
        out.extend_from_slice(&pair.join_ms.to_le_bytes());
        out.extend_from_slice(&pair.leave_ms.to_le_bytes());
        out.extend_from_slice(&pair.intimacy.to_le_bytes());
    }
    out
}

/// Decodes [`encode_viewer`]'s output.
///
/// # Errors
/// [`StoreError::Corrupt`] on an unknown version, a ragged length or unsorted pairs.
pub fn decode_viewer(bytes: &[u8]) -> Result<ViewerRecord, StoreError> {
    if bytes.is_empty() || bytes[0] != VIEWER_V1 || !(bytes.len() - 1).is_multiple_of(PAIR_LEN) {
        return Err(StoreError::Corrupt(format!("viewer record of {} bytes", bytes.len())));
    }
    let mut reader = Reader { bytes: &bytes[1..] };
    let count = (bytes.len() - 1) / PAIR_LEN;
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
    fn rejects_garbage() {
        assert!(decode_creator(&[1, 2, 3]).is_err());
        assert!(decode_viewer(&[]).is_err());
        assert!(decode_viewer(&[9]).is_err());
        assert!(decode_viewer(&[1, 0]).is_err());
    }
}
