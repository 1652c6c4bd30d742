//! Final scores for a batch: combine base score and boost, sort, cut.

use super::aggregate::{CreatorAggregate, ViewerRecord};
use super::score::{CreatorScore, PrivateScore, Scorer};

/// One candidate of a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The item (carried, not used for scoring).
    pub item_id: u64,
    /// Its creator.
    pub creator_id: u64,
    /// The caller's score.
    pub base_score: f64,
}

/// The scores of one distinct creator of a batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CreatorSlot {
    /// The creator.
    pub creator_id: u64,
    /// Creator-level scores.
    pub creator: CreatorScore,
    /// The viewer's relation to the creator.
    pub private: PrivateScore,
}

/// How the boost combines with the caller's base score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScoreSpace {
    /// `final = base × boost`; base must be finite and ≥ 0.
    #[default]
    Linear,
    /// `final = base + ln(boost)`; any finite base.
    Log,
}

impl ScoreSpace {
    /// Whether `base_score` is acceptable in this space.
    pub fn accepts(self, base_score: f64) -> bool {
        match self {
            ScoreSpace::Linear => base_score.is_finite() && base_score >= 0.0,
            ScoreSpace::Log => base_score.is_finite(),
        }
    }

    /// The final score of a candidate.
    pub fn combine(self, base_score: f64, boost: f64) -> f64 {
        match self {
            ScoreSpace::Linear => base_score * boost,
            ScoreSpace::Log => base_score + boost.ln(),
        }
    }
}

/// One candidate's boost, before and after ranking.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankedItem {
    /// Position in the request.
    pub index: u32,
    /// Position of the candidate's creator in the caller's table of distinct creators.
    pub creator_slot: u32,
    /// The caller's base score.
    pub base_score: f64,
    /// `public_boost × private_boost`.
    pub boost: f64,
    /// Base and boost combined in the requested score space.
    pub final_score: f64,
}

/// The distinct creators of a batch, in order of first appearance, and the
/// slot (position among them) of every candidate's creator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchCreators {
    /// Distinct creator ids, first appearance first.
    pub ids: Vec<u64>,
    /// `slot_of[i]` = position in `ids` of candidate `i`'s creator.
    pub slot_of: Vec<u32>,
}

impl BatchCreators {
    /// Deduplicates the creators of `candidates` with one small
    /// open-addressing table (linear probing, Fibonacci hashing): one probe
    /// per candidate in the common case, where sorting the ids costs
    /// `n log n` comparisons and every candidate a binary search after it.
    pub fn of(candidates: &[Candidate]) -> BatchCreators {
        // At most half full, so probes stay short; a power of two, so the
        // hash's top bits index it. It holds slot + 1 (0 = empty) and the
        // key is compared in `ids`: 4 bytes an entry to clear, not 16.
        let bits = (2 * candidates.len()).max(2).next_power_of_two().trailing_zeros();
        let mask = (1usize << bits) - 1;
        let mut table: Vec<u32> = vec![0; 1 << bits];
        let mut ids: Vec<u64> = Vec::with_capacity(candidates.len());
        let mut slot_of = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let id = candidate.creator_id;
            let mut at = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize;
            let slot = loop {
                let stored = table[at];
                if stored == 0 {
                    ids.push(id);
                    table[at] = ids.len() as u32;
                    break ids.len() as u32 - 1;
                }
                if ids[stored as usize - 1] == id {
                    break stored - 1;
                }
                at = (at + 1) & mask;
            };
            slot_of.push(slot);
        }
        BatchCreators { ids, slot_of }
    }
}

/// Orders a batch whose creators are scored: `slots[s]` holds the scores of
/// `creators.ids[s]`. Each creator's boost (and its log in `LOG` space) is
/// computed once; every candidate gets one integer sort key (the final
/// score's order-preserving bits, inverted) beside its index; `top_k` keeps
/// the best by selection before only the kept part is sorted. Allocates the
/// answer, a boost per creator and a key per candidate, nothing per comparison.
pub fn rank_scored(
    candidates: &[Candidate],
    creators: &BatchCreators,
    slots: &[CreatorSlot],
    space: ScoreSpace,
    top_k: usize,
) -> Vec<RankedItem> {
    debug_assert_eq!(candidates.len(), creators.slot_of.len());
    debug_assert_eq!(slots.len(), creators.ids.len());
    // Per creator: the boost and what it adds to a base score in this space.
    let boosts: Vec<(f64, f64)> = slots
        .iter()
        .map(|slot| {
            let boost = slot.creator.public_boost * slot.private.private_boost;
            let term = match space {
                ScoreSpace::Linear => boost,
                ScoreSpace::Log => boost.ln(),
            };
            (boost, term)
        })
        .collect();
    let final_score = |base_score: f64, term: f64| match space {
        ScoreSpace::Linear => base_score * term,
        ScoreSpace::Log => base_score + term,
    };
    let mut keys: Vec<(u64, u32)> = candidates
        .iter()
        .zip(&creators.slot_of)
        .enumerate()
        .map(|(index, (candidate, slot))| {
            let (boost, term) = boosts[*slot as usize];
            let score = final_score(candidate.base_score, term);
            debug_assert_eq!(score.to_bits(), space.combine(candidate.base_score, boost).to_bits());
            (descending_bits(score), index as u32)
        })
        .collect();
    sort_keys(&mut keys, top_k);
    keys.iter()
        .map(|&(_, index)| {
            let slot = creators.slot_of[index as usize];
            let base_score = candidates[index as usize].base_score;
            let (boost, term) = boosts[slot as usize];
            RankedItem {
                index,
                creator_slot: slot,
                base_score,
                boost,
                final_score: final_score(base_score, term),
            }
        })
        .collect()
}

/// Puts `(key, index)` pairs in the ranking's order (key ascending, ties by
/// index) and keeps the first `top_k` (0 = all): the kept part is found by
/// selection, and only it is sorted. The sort compares the 64-bit keys
/// alone; equal keys (equal final scores, rare) are put back in index
/// order afterwards.
fn sort_keys(keys: &mut Vec<(u64, u32)>, top_k: usize) {
    if top_k > 0 && top_k < keys.len() {
        // The whole pair: which of equal scores are kept depends on the index.
        keys.select_nth_unstable(top_k - 1);
        keys.truncate(top_k);
    }
    keys.sort_unstable_by_key(|(key, _)| *key);
    for ties in keys.chunk_by_mut(|a, b| a.0 == b.0) {
        if ties.len() > 1 {
            ties.sort_unstable_by_key(|(_, index)| *index);
        }
    }
}

/// Maps an f64 to a u64 whose ascending order is the float's descending
/// total order (`f64::total_cmp`).
fn descending_bits(value: f64) -> u64 {
    let bits = value.to_bits();
    // Standard trick: flip all bits of negatives, only the sign bit of
    // positives; that orders like total_cmp. Inverting gives descending.
    let ascending = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    !ascending
}

/// Scores a batch from scratch: each distinct creator once (public and
/// private), then each candidate, then sorts and cuts. The service reuses
/// creators' scores across calls instead ([`rank_scored`] is the part they
/// share); this is the reference and the benchmark of the whole computation.
///
/// `aggregate_of` finds a creator's aggregate (`None` = unknown). Validating
/// base scores is the caller's job. The slots are in `BatchCreators::of`
/// order.
pub fn score_batch<'a>(
    scorer: &Scorer<'_>,
    candidates: &[Candidate],
    aggregate_of: impl Fn(u64) -> Option<&'a CreatorAggregate>,
    viewer: Option<&ViewerRecord>,
    space: ScoreSpace,
    top_k: usize,
) -> (Vec<RankedItem>, Vec<CreatorSlot>) {
    let creators = BatchCreators::of(candidates);
    let slots: Vec<CreatorSlot> = creators
        .ids
        .iter()
        .map(|&creator_id| CreatorSlot {
            creator_id,
            creator: scorer.creator(aggregate_of(creator_id)),
            private: scorer.private(viewer.and_then(|v| v.relation(creator_id))),
        })
        .collect();
    let items = rank_scored(candidates, &creators, &slots, space, top_k);
    (items, slots)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::score::{CreatorScore, PrivateScore};

    /// The ranking by its definition: final score descending by
    /// `total_cmp`, ties by index, cut to `top_k`.
    fn reference(candidates: &[Candidate], boosts: &[(u64, f64)], space: ScoreSpace, top_k: usize) -> Vec<(u32, f64)> {
        let boost_of = |id: u64| boosts.iter().find(|(c, _)| *c == id).map_or(1.0, |(_, b)| *b);
        let mut all: Vec<(u32, f64)> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u32, space.combine(c.base_score, boost_of(c.creator_id))))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if top_k > 0 {
            all.truncate(top_k);
        }
        all
    }

    fn slots_for(creators: &BatchCreators, boosts: &[(u64, f64)]) -> Vec<CreatorSlot> {
        creators
            .ids
            .iter()
            .map(|&creator_id| CreatorSlot {
                creator_id,
                creator: CreatorScore {
                    public_boost: boosts.iter().find(|(c, _)| *c == creator_id).map_or(1.0, |(_, b)| *b),
                    ..CreatorScore::NEUTRAL
                },
                private: PrivateScore::NEUTRAL,
            })
            .collect()
    }

    fn order(scores: &[f64], top_k: usize) -> Vec<u32> {
        let mut keys: Vec<(u64, u32)> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| (descending_bits(*s), i as u32))
            .collect();
        sort_keys(&mut keys, top_k);
        keys.iter().map(|(_, index)| *index).collect()
    }

    #[test]
    fn sorts_descending_with_index_ties_and_cuts() {
        let scores = [1.0, 3.0, 2.0, 3.0, 0.5, 2.0];
        let full = order(&scores, 0);
        assert_eq!(full, vec![1, 3, 2, 5, 0, 4]);
        for k in 1..=scores.len() + 1 {
            assert_eq!(order(&scores, k), full[..k.min(full.len())].to_vec(), "top_k = {k}");
        }
    }

    #[test]
    fn integer_key_orders_like_total_cmp() {
        let values = [f64::NEG_INFINITY, -2.5, -0.0, 0.0, 1e-300, 0.5, 3.0, f64::INFINITY];
        for a in values {
            for b in values {
                assert_eq!(
                    descending_bits(a).cmp(&descending_bits(b)),
                    b.total_cmp(&a),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn creators_are_deduplicated_in_order_of_first_appearance() {
        let ids = [7u64, 0, 7, u64::MAX, 0, 42, 7];
        let candidates: Vec<Candidate> = ids
            .iter()
            .map(|id| Candidate {
                item_id: 1,
                creator_id: *id,
                base_score: 1.0,
            })
            .collect();
        let creators = BatchCreators::of(&candidates);
        assert_eq!(creators.ids, vec![7, 0, u64::MAX, 42]);
        assert_eq!(creators.slot_of, vec![0, 1, 0, 2, 1, 3, 0]);
        assert_eq!(BatchCreators::of(&[]), BatchCreators::default());
    }

    proptest! {
        /// Whatever the creators (colliding ids, id 0), scores (ties,
        /// negatives in LOG space) and cut, the ranking is the definition's.
        #[test]
        fn ranking_matches_its_definition(
            raw in proptest::collection::vec((0u64..12, 0u32..6, any::<bool>()), 0..80),
            top_k in 0usize..90,
            log in any::<bool>(),
        ) {
            let space = if log { ScoreSpace::Log } else { ScoreSpace::Linear };
            // Creator ids spread over the whole range, some colliding in the table.
            let candidates: Vec<Candidate> = raw
                .iter()
                .enumerate()
                .map(|(i, (creator, base, negative))| Candidate {
                    item_id: i as u64,
                    creator_id: creator.wrapping_mul(0x1000_0000_0000_0001) >> (creator % 3),
                    base_score: f64::from(*base) * if *negative && log { -0.5 } else { 0.5 },
                })
                .collect();
            let boosts: Vec<(u64, f64)> = candidates
                .iter()
                .map(|c| (c.creator_id, 0.5 + (c.creator_id % 7) as f64 / 4.0))
                .collect();
            let creators = BatchCreators::of(&candidates);
            for (i, c) in candidates.iter().enumerate() {
                prop_assert_eq!(creators.ids[creators.slot_of[i] as usize], c.creator_id);
            }
            let mut distinct = creators.ids.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), creators.ids.len());
            let slots = slots_for(&creators, &boosts);
            let ranked: Vec<(u32, f64)> = rank_scored(&candidates, &creators, &slots, space, top_k)
                .iter()
                .map(|item| (item.index, item.final_score))
                .collect();
            let want = reference(&candidates, &boosts, space, top_k);
            prop_assert_eq!(ranked.len(), want.len());
            for (got, want) in ranked.iter().zip(&want) {
                prop_assert_eq!(got.0, want.0);
                prop_assert_eq!(got.1.to_bits(), want.1.to_bits());
            }
        }
    }

    #[test]
    fn score_spaces() {
        assert_eq!(ScoreSpace::Linear.combine(2.0, 1.5), 3.0);
        assert!((ScoreSpace::Log.combine(-1.0, std::f64::consts::E) - 0.0).abs() < 1e-15);
        assert!(!ScoreSpace::Linear.accepts(-0.1));
        assert!(ScoreSpace::Log.accepts(-0.1));
        assert!(!ScoreSpace::Log.accepts(f64::NAN));
        assert!(!ScoreSpace::Linear.accepts(f64::INFINITY));
    }
}
