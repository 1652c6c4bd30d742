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

/// Sorts by `final_score` descending, ties by `index` ascending, and keeps the
/// first `top_k` (0 = all). Only the kept prefix is fully sorted.
///
/// Items are ordered by one integer key (the score's order-preserving bits,
/// inverted, then the index), which compares far faster than floats with a
/// tie-break closure.
pub fn sort_and_truncate(items: &mut Vec<RankedItem>, top_k: usize) {
    let key =
        |item: &RankedItem| -> u128 { (u128::from(descending_bits(item.final_score)) << 32) | u128::from(item.index) };
    if top_k > 0 && top_k < items.len() {
        items.select_nth_unstable_by_key(top_k - 1, key);
        items.truncate(top_k);
    }
    items.sort_unstable_by_key(key);
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

/// Scores a batch: each distinct creator once (public and private), then each
/// candidate, then sorts and cuts.
///
/// `creator_ids` are the batch's distinct creators, sorted; `aggregates[i]`
/// belongs to `creator_ids[i]` (`None` = unknown). Validating base scores is
/// the caller's job.
pub fn score_batch(
    scorer: &Scorer<'_>,
    candidates: &[Candidate],
    creator_ids: &[u64],
    aggregates: &[Option<&CreatorAggregate>],
    viewer: Option<&ViewerRecord>,
    space: ScoreSpace,
    top_k: usize,
) -> (Vec<RankedItem>, Vec<CreatorSlot>) {
    debug_assert!(creator_ids.windows(2).all(|w| w[0] < w[1]));
    debug_assert_eq!(creator_ids.len(), aggregates.len());
    let slots: Vec<CreatorSlot> = creator_ids
        .iter()
        .zip(aggregates)
        .map(|(&creator_id, aggregate)| CreatorSlot {
            creator_id,
            creator: scorer.creator(*aggregate),
            private: scorer.private(viewer.and_then(|v| v.relation(creator_id))),
        })
        .collect();
    let mut items: Vec<RankedItem> = Vec::with_capacity(candidates.len());
    for (index, candidate) in candidates.iter().enumerate() {
        // Every creator of the batch is in `creator_ids`; the fallback only
        // satisfies the type.
        let slot = creator_ids.binary_search(&candidate.creator_id).unwrap_or(0);
        let scores = &slots[slot];
        let boost = scores.creator.public_boost * scores.private.private_boost;
        items.push(RankedItem {
            index: index as u32,
            creator_slot: slot as u32,
            base_score: candidate.base_score,
            boost,
            final_score: space.combine(candidate.base_score, boost),
        });
    }
    sort_and_truncate(&mut items, top_k);
    (items, slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: u32, final_score: f64) -> RankedItem {
        RankedItem {
            index,
            creator_slot: 0,
            base_score: final_score,
            boost: 1.0,
            final_score,
        }
    }

    #[test]
    fn sorts_descending_with_index_ties_and_cuts() {
        let scores = [1.0, 3.0, 2.0, 3.0, 0.5, 2.0];
        let all: Vec<RankedItem> = scores.iter().enumerate().map(|(i, s)| item(i as u32, *s)).collect();
        let mut full = all.clone();
        sort_and_truncate(&mut full, 0);
        let order: Vec<u32> = full.iter().map(|i| i.index).collect();
        assert_eq!(order, vec![1, 3, 2, 5, 0, 4]);
        for k in 1..=scores.len() + 1 {
            let mut cut = all.clone();
            sort_and_truncate(&mut cut, k);
            assert_eq!(cut, full[..k.min(full.len())].to_vec(), "top_k = {k}");
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
    fn score_spaces() {
        assert_eq!(ScoreSpace::Linear.combine(2.0, 1.5), 3.0);
        assert!((ScoreSpace::Log.combine(-1.0, std::f64::consts::E) - 0.0).abs() < 1e-15);
        assert!(!ScoreSpace::Linear.accepts(-0.1));
        assert!(ScoreSpace::Log.accepts(-0.1));
        assert!(!ScoreSpace::Log.accepts(f64::NAN));
        assert!(!ScoreSpace::Linear.accepts(f64::INFINITY));
    }
}
