//! Fixed little-endian encodings of the stored records, with a leading format
//! version byte so a later layout can still read old records.

use crate::model::aggregate::{ENGAGEMENT_KINDS, SUM_FIELDS, Trade};
use crate::model::params::KindWeights;
use crate::model::{CreatorAggregate, PairRelation, ViewerRecord};

use super::StoreError;

/// Creator aggregates of the per-account model (version 1 was the per-event
/// model; stores holding it are refused at open, see `store_signature`).
/// Sparse: a bit mask of the non-zero sums, those sums, then the counts as
/// varints. Sums added later (buyers, repeat buyers, refunds) take the next
/// mask bits, so a record written before them reads with them zero. A typical creator has about half its sums at zero, so a record
/// is ~110 bytes instead of 217; smaller records mean fewer B-tree pages
/// copied per commit (ingest is bound by them).
const CREATOR_V2: u8 = 2;
/// Viewer records of the per-account model: a header (creators seen, and the
/// viewer's platform shares as a mask of non-zero sums and those sums), then
/// the pairs: creator ids delta-encoded as
/// varints; the latest engagement time absolute, the other timestamps as
/// differences from it (a VIEW-only pair's view time costs one byte); absent
/// timestamps and layers take no space; intimacy is not stored but summed
/// again from the layers (a pair that only viewed: ~17 bytes).
const VIEWER_V3: u8 = 3;
/// Version 3 plus, for a pair with purchases or refunds (flag bit 7), after
/// its layers a byte of trade flags: bit 0 purchases (first and latest purchase times relative to the latest
/// engagement, the count as a varint, the money as a double), bit 1
/// refunds (the latest refund time, the count, the money). A version 3
/// record reads with no purchases or refunds recorded: its purchase layers
/// stand in full, and its accounts are not counted as buyers until they buy
/// again (the creator sums written with it hold no buyers either).
const VIEWER_V4: u8 = 4;
/// Timestamps kept per pair, in flag-bit order; the last is the reference.
const STAMPS: usize = 7;

/// Encodes a creator (or platform) aggregate.
pub fn encode_creator(aggregate: &CreatorAggregate) -> Vec<u8> {
    let sums = aggregate.sums();
    let mut out = Vec::with_capacity(1 + 4 + 8 * SUM_FIELDS + 4 * 10);
    out.push(CREATOR_V2);
    put_sums(&mut out, &sums);
    put_varint(&mut out, aggregate.followers);
    put_varint(&mut out, aggregate.fan_group_members);
    put_varint(&mut out, aggregate.evidence);
    put_varint(&mut out, zigzag(aggregate.updated_at_ms));
    out
}

/// Decodes [`encode_creator`]'s output.
///
/// # Errors
/// [`StoreError::Corrupt`] on an unknown version, truncation or trailing bytes.
pub fn decode_creator(bytes: &[u8]) -> Result<CreatorAggregate, StoreError> {
    let corrupt = || {
        StoreError::Corrupt(format!(
            "creator record of {} bytes, version {:?}",
            bytes.len(),
            bytes.first()
        ))
    };
    let Some((&CREATOR_V2, mut rest)) = bytes.split_first() else {
        return Err(corrupt());
    };
    let sums = take_sums(&mut rest).ok_or_else(corrupt)?;
    let mut aggregate = CreatorAggregate::default();
    for (index, value) in sums.into_iter().enumerate() {
        *aggregate.sum_mut(index) = value;
    }
    aggregate.followers = take_varint(&mut rest).ok_or_else(corrupt)?;
    aggregate.fan_group_members = take_varint(&mut rest).ok_or_else(corrupt)?;
    aggregate.evidence = take_varint(&mut rest).ok_or_else(corrupt)?;
    aggregate.updated_at_ms = unzigzag(take_varint(&mut rest).ok_or_else(corrupt)?);
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok(aggregate)
}

fn stamps(pair: &PairRelation) -> [i64; STAMPS] {
    [
        pair.follow_ms,
        pair.unfollow_ms,
        pair.join_ms,
        pair.leave_ms,
        pair.report_ms,
        pair.view_ms,
        pair.engaged_ms,
    ]
}

/// Encodes a viewer record.
pub fn encode_viewer(record: &ViewerRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + 32 * record.relations.len());
    out.push(VIEWER_V4);
    put_varint(&mut out, record.pairs_seen);
    put_sums(&mut out, record.platform.as_deref().unwrap_or(&[0.0; SUM_FIELDS]));
    let mut previous = 0u64;
    for pair in &record.relations {
        put_varint(&mut out, pair.creator_id - previous);
        previous = pair.creator_id;
        let stamps = stamps(pair);
        let mut flags = 0u8;
        for (bit, stamp) in stamps.iter().enumerate() {
            if *stamp != 0 {
                flags |= 1 << bit;
            }
        }
        if pair.trade.is_some() {
            flags |= TRADE_FLAG;
        }
        out.push(flags);
        let reference = pair.engaged_ms;
        for (bit, stamp) in stamps.iter().enumerate().filter(|(_, s)| **s != 0) {
            let encoded = if bit == STAMPS - 1 {
                *stamp
            } else {
                stamp.wrapping_sub(reference)
            };
            put_varint(&mut out, zigzag(encoded));
        }
        let mut layers = 0u8;
        for (bit, value) in pair.layers.iter().enumerate() {
            if *value != 0.0 {
                layers |= 1 << bit;
            }
        }
        out.push(layers);
        for value in pair.layers.iter().filter(|v| **v != 0.0) {
            out.extend_from_slice(&value.to_le_bytes());
        }
        if let Some(trade) = pair.trade.as_deref() {
            put_trade(&mut out, trade, reference);
        }
    }
    out
}

/// Pair flag bit (version 4): trade fields follow the layers.
const TRADE_FLAG: u8 = 1 << STAMPS;
const TRADE_PURCHASES: u8 = 1;
const TRADE_REFUNDS: u8 = 2;

/// A pair's trade: which halves it holds (purchases, refunds), then those.
fn put_trade(out: &mut Vec<u8>, trade: &Trade, reference: i64) {
    let purchases = trade.purchases != 0
        || trade.first_purchase_ms != 0
        || trade.last_purchase_ms != 0
        || trade.purchased.to_bits() != 0;
    let refunds = trade.refunds != 0 || trade.refund_ms != 0 || trade.refunded.to_bits() != 0;
    out.push((u8::from(purchases) * TRADE_PURCHASES) | (u8::from(refunds) * TRADE_REFUNDS));
    if purchases {
        put_varint(out, zigzag(trade.first_purchase_ms.wrapping_sub(reference)));
        put_varint(out, zigzag(trade.last_purchase_ms.wrapping_sub(reference)));
        put_varint(out, u64::from(trade.purchases));
        out.extend_from_slice(&trade.purchased.to_le_bytes());
    }
    if refunds {
        put_varint(out, zigzag(trade.refund_ms.wrapping_sub(reference)));
        put_varint(out, u64::from(trade.refunds));
        out.extend_from_slice(&trade.refunded.to_le_bytes());
    }
}

/// Reads [`put_trade`]'s output; `None` when malformed.
fn take_trade(bytes: &mut &[u8], reference: i64) -> Option<Trade> {
    let (&flags, rest) = bytes.split_first()?;
    *bytes = rest;
    if flags & !(TRADE_PURCHASES | TRADE_REFUNDS) != 0 {
        return None;
    }
    let time = |bytes: &mut &[u8]| Some(unzigzag(take_varint(bytes)?).wrapping_add(reference));
    let mut trade = Trade::default();
    if flags & TRADE_PURCHASES != 0 {
        trade.first_purchase_ms = time(bytes)?;
        trade.last_purchase_ms = time(bytes)?;
        trade.purchases = u32::try_from(take_varint(bytes)?).ok()?;
        trade.purchased = take_f64(bytes)?;
    }
    if flags & TRADE_REFUNDS != 0 {
        trade.refund_ms = time(bytes)?;
        trade.refunds = u32::try_from(take_varint(bytes)?).ok()?;
        trade.refunded = take_f64(bytes)?;
    }
    Some(trade)
}

/// Decodes [`encode_viewer`]'s output; each pair's intimacy is summed from
/// its layers with `intimacy_weights` (the `[ingest]` ones it was kept with).
///
/// # Errors
/// [`StoreError::Corrupt`] on an unknown version, truncation or unsorted pairs.
pub fn decode_viewer(bytes: &[u8], intimacy_weights: &KindWeights) -> Result<ViewerRecord, StoreError> {
    match bytes.split_first() {
        Some((&VIEWER_V3, rest)) => decode_viewer_v3(rest, &intimacy_weights.as_array(), false),
        Some((&VIEWER_V4, rest)) => decode_viewer_v3(rest, &intimacy_weights.as_array(), true),
        _ => Err(StoreError::Corrupt(format!(
            "viewer record of {} bytes, version {:?}",
            bytes.len(),
            bytes.first()
        ))),
    }
}

/// Versions 3 and 4 (`trade`: each pair ends with its purchases and refunds).
fn decode_viewer_v3(
    mut bytes: &[u8],
    weights: &[f64; ENGAGEMENT_KINDS],
    trade: bool,
) -> Result<ViewerRecord, StoreError> {
    let corrupt = || StoreError::Corrupt("truncated or malformed viewer record".into());
    let pairs_seen = take_varint(&mut bytes).ok_or_else(corrupt)?;
    let platform = take_sums(&mut bytes).ok_or_else(corrupt)?;
    let platform = platform.iter().any(|v| v.to_bits() != 0).then(|| Box::new(platform));
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
        let known = if trade { flags & !TRADE_FLAG } else { flags };
        if known >> STAMPS != 0 {
            return Err(corrupt());
        }
        let mut stamps = [0i64; STAMPS];
        for (bit, stamp) in stamps.iter_mut().enumerate() {
            if flags & (1 << bit) != 0 {
                *stamp = unzigzag(take_varint(&mut bytes).ok_or_else(corrupt)?);
            }
        }
        // All but the latest engagement time are stored relative to it.
        let reference = stamps[STAMPS - 1];
        for (bit, stamp) in stamps[..STAMPS - 1].iter_mut().enumerate() {
            if flags & (1 << bit) != 0 {
                *stamp = stamp.wrapping_add(reference);
            }
        }
        let (&present, rest) = bytes.split_first().ok_or_else(corrupt)?;
        bytes = rest;
        let mut layers = [0.0; ENGAGEMENT_KINDS];
        for (bit, layer) in layers.iter_mut().enumerate() {
            if present & (1 << bit) != 0 {
                *layer = take_f64(&mut bytes).ok_or_else(corrupt)?;
            }
        }
        let mut pair = PairRelation {
            creator_id,
            follow_ms: stamps[0],
            unfollow_ms: stamps[1],
            join_ms: stamps[2],
            leave_ms: stamps[3],
            report_ms: stamps[4],
            view_ms: stamps[5],
            engaged_ms: stamps[6],
            layers,
            ..PairRelation::default()
        };
        if flags & TRADE_FLAG != 0 && trade {
            pair.trade = Some(Box::new(take_trade(&mut bytes, reference).ok_or_else(corrupt)?));
        }
        pair.intimacy = pair.intimacy_from_layers(weights);
        relations.push(pair);
    }
    // Cached as is: no spare capacity (the viewer cache weighs it).
    relations.shrink_to_fit();
    Ok(ViewerRecord {
        relations,
        pairs_seen,
        platform,
    })
}

/// The sums as a mask of the non-zero ones (bit-exact: -0.0 and tiny
/// residues are kept as they are) and those values.
fn put_sums(out: &mut Vec<u8>, sums: &[f64; SUM_FIELDS]) {
    let mut mask = 0u32;
    for (bit, value) in sums.iter().enumerate() {
        if value.to_bits() != 0 {
            mask |= 1 << bit;
        }
    }
    out.extend_from_slice(&mask.to_le_bytes());
    for value in sums.iter().filter(|v| v.to_bits() != 0) {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn take_sums(bytes: &mut &[u8]) -> Option<[f64; SUM_FIELDS]> {
    if bytes.len() < 4 {
        return None;
    }
    let (mask, rest) = bytes.split_at(4);
    *bytes = rest;
    let mask = u32::from_le_bytes([mask[0], mask[1], mask[2], mask[3]]);
    if mask >> SUM_FIELDS != 0 {
        return None;
    }
    let mut sums = [0.0; SUM_FIELDS];
    for (index, value) in sums.iter_mut().enumerate() {
        if mask & (1 << index) != 0 {
            *value = take_f64(bytes)?;
        }
    }
    Some(sums)
}

fn take_f64(bytes: &mut &[u8]) -> Option<f64> {
    if bytes.len() < 8 {
        return None;
    }
    let (head, rest) = bytes.split_at(8);
    *bytes = rest;
    let mut word = [0u8; 8];
    word.copy_from_slice(head);
    Some(f64::from_le_bytes(word))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn weights() -> KindWeights {
        crate::model::IngestParams::default().intimacy_weights
    }

    #[test]
    fn round_trips() {
        let mut aggregate = CreatorAggregate::default();
        aggregate.fan[3] = 1.5;
        aggregate.non_fan[7] = 2.25e200;
        aggregate.shown = 7.0;
        aggregate.reports_unshown = -0.0;
        aggregate.unfollows = 4.9e-324;
        aggregate.followers = 42;
        aggregate.updated_at_ms = -3;
        assert_eq!(decode_creator(&encode_creator(&aggregate)).expect("creator"), aggregate);

        let mut layers = [0.0; ENGAGEMENT_KINDS];
        layers[0] = 0.5;
        layers[7] = 1e300;
        let same_time = PairRelation {
            creator_id: 7,
            view_ms: 1_650_812_741_436,
            engaged_ms: 1_650_812_741_436,
            follow_ms: 1_650_812_741_436,
            ..Default::default()
        };
        let mut platform = [0.0; SUM_FIELDS];
        platform[3] = 2.5;
        platform[SUM_FIELDS - 1] = -1e-300;
        let record = ViewerRecord {
            pairs_seen: 123_456,
            platform: Some(Box::new(platform)),
            relations: vec![
                PairRelation {
                    creator_id: 0,
                    follow_ms: 5,
                    view_ms: i64::MIN,
                    engaged_ms: i64::MAX,
                    layers,
                    intimacy: 0.5,
                    ..Default::default()
                },
                same_time,
                PairRelation {
                    creator_id: 1_650_812_741,
                    report_ms: 1_650_812_741_436,
                    leave_ms: -1,
                    intimacy: -0.0,
                    ..Default::default()
                },
                PairRelation {
                    creator_id: u64::MAX - 1,
                    view_ms: 1_650_812_741_436,
                    engaged_ms: 1_650_812_741_436,
                    trade: Some(Box::new(Trade {
                        first_purchase_ms: 1_650_000_000_000,
                        last_purchase_ms: 1_650_812_741_436,
                        purchases: 23,
                        purchased: 460.5,
                        refund_ms: 1_651_000_000_000,
                        refunds: u32::MAX,
                        refunded: -0.0,
                    })),
                    ..Default::default()
                },
                PairRelation {
                    creator_id: u64::MAX,
                    unfollow_ms: 9,
                    join_ms: 3,
                    trade: Some(Box::new(Trade {
                        refunds: 1,
                        refund_ms: 4,
                        ..Trade::default()
                    })),
                    ..Default::default()
                },
            ],
        };
        let mut record = record;
        for pair in &mut record.relations {
            pair.intimacy = pair.layers.iter().zip(weights().as_array()).map(|(l, w)| w * l).sum();
        }
        assert_eq!(
            decode_viewer(&encode_viewer(&record), &weights()).expect("viewer"),
            record
        );
    }

    #[test]
    fn a_pair_that_only_viewed_is_small() {
        let mut layers = [0.0; ENGAGEMENT_KINDS];
        layers[0] = 3.7;
        let typical = ViewerRecord {
            pairs_seen: 10,
            platform: None,
            relations: (0..10)
                .map(|i| PairRelation {
                    creator_id: 1_000_000 + i * 977,
                    view_ms: 1_650_812_741_436,
                    engaged_ms: 1_650_812_741_436,
                    layers,
                    intimacy: 0.3,
                    ..Default::default()
                })
                .collect(),
        };
        let bytes = encode_viewer(&typical).len();
        assert!(bytes < 1 + 1 + 4 + 20 * 10, "{bytes} bytes");
        let mut creator = CreatorAggregate::default();
        creator.non_fan[0] = 12.5;
        creator.non_fan[1] = 0.63;
        creator.audience_non_fan = 40.0;
        creator.engaged = 0.63;
        creator.shown = 4.0e10;
        creator.evidence = 45;
        creator.updated_at_ms = 1_650_812_741_436;
        let bytes = encode_creator(&creator).len();
        assert!(bytes <= 1 + 4 + 5 * 8 + 1 + 1 + 1 + 7, "{bytes} bytes");
    }

    /// A record written before purchases and refunds were kept (version 3)
    /// reads with none recorded, and is written back as version 4.
    #[test]
    fn reads_records_written_before_trade() {
        // Version 3: no platform sums, one pair (creator 5) that viewed at
        // t = 8 and bought (purchase layer 2.0).
        let mut v3 = vec![3, 1, 0, 0, 0, 0, 5, 1 << 5 | 1 << 6];
        v3.extend([zigzag(0) as u8, zigzag(8) as u8, 1 << 4 | 1]);
        v3.extend(1.0f64.to_le_bytes());
        v3.extend(2.0f64.to_le_bytes());
        let record = decode_viewer(&v3, &weights()).expect("version 3");
        let pair = &record.relations[0];
        assert_eq!((pair.creator_id, pair.view_ms, pair.engaged_ms), (5, 8, 8));
        assert_eq!((pair.layers[4], pair.trade.is_none()), (2.0, true));
        assert_eq!(pair.standing_share(), 1.0, "its purchase layer stands");
        let again = encode_viewer(&record);
        assert_eq!(again[0], VIEWER_V4);
        assert_eq!(decode_viewer(&again, &weights()).expect("version 4"), record);
        assert_eq!(again.len(), v3.len(), "a pair without trade costs nothing more");
        // Trade flags beyond the known ones are refused.
        let mut record = record;
        record.relations[0].trade = Some(Box::new(Trade {
            refunds: 1,
            ..Trade::default()
        }));
        let mut bad = encode_viewer(&record);
        let at = bad.len() - 1 - 8 - 1 - 1;
        assert_eq!(bad[at], TRADE_REFUNDS);
        bad[at] = 4;
        assert!(decode_viewer(&bad, &weights()).is_err());
    }

    #[test]
    fn rejects_garbage_and_old_layouts() {
        assert!(decode_creator(&[1, 2, 3]).is_err());
        let mut old = encode_creator(&CreatorAggregate::default());
        old[0] = 1;
        assert!(decode_creator(&old).is_err());
        assert!(decode_viewer(&[], &weights()).is_err());
        assert!(decode_viewer(&[9], &weights()).is_err());
        assert!(
            decode_viewer(&[2, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], &weights()).is_err(),
            "the per-event layout"
        );
        // Truncated, bad flags, repeated creator, overlong varint.
        assert!(decode_viewer(&[3, 0, 0, 0, 0, 0, 5], &weights()).is_err());
        assert!(decode_viewer(&[3, 0, 0, 0, 0, 0, 5, 0x80, 0], &weights()).is_err());
        assert!(
            decode_viewer(
                &[3, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &weights()
            )
            .is_err()
        );
        assert!(
            decode_viewer(
                &[
                    3, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
                ],
                &weights()
            )
            .is_err()
        );
        assert!(
            decode_viewer(&[3, 0, 0, 0, 0, 0, 5, 0, 0x01, 0, 0, 0], &weights()).is_err(),
            "a layer without its value"
        );
        assert_eq!(
            decode_viewer(&[3, 0, 0, 0, 0, 0], &weights()).expect("empty record"),
            ViewerRecord::default()
        );
        assert!(decode_viewer(&[3], &weights()).is_err(), "no header");
        assert!(
            decode_viewer(&[3, 0, 0, 0, 0x80, 0], &weights()).is_err(),
            "a mask beyond the sums"
        );
    }
}
