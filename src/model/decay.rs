//! Forward decay (Cormode et al., ICDE 2009).
//!
//! An event of value `v` at time `t` is stored as `v · 2^((t − L)/H)` against a
//! fixed landmark `L`, so every update is a plain addition: commutative, free of
//! arrival order and mergeable across replicas. The decayed sum as of `T` is the
//! stored sum times `2^((L − T)/H)`.

/// The landmark `L`: 2024-01-01T00:00:00Z in unix milliseconds.
pub const LANDMARK_MS: i64 = 1_704_067_200_000;

/// Largest |t − L| / H accepted. 2^900 ≈ 8·10^270 leaves 37 decimal orders of
/// magnitude of headroom for summing weights before an f64 overflows.
pub const MAX_EXPONENT: f64 = 900.0;

/// Half-lives of the two signal groups, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decay {
    /// Engagement kinds, exposure and intimacy.
    pub engagement_half_life_ms: f64,
    /// Unfollows, reports and the unweighted view count they are compared with.
    pub negative_half_life_ms: f64,
}

impl Decay {
    /// Forward weight of an engagement event at `timestamp_ms`.
    pub fn engagement_weight(&self, timestamp_ms: i64) -> f64 {
        forward_weight(timestamp_ms, self.engagement_half_life_ms)
    }

    /// Forward weight of a negative-signal event at `timestamp_ms`.
    pub fn negative_weight(&self, timestamp_ms: i64) -> f64 {
        forward_weight(timestamp_ms, self.negative_half_life_ms)
    }

    /// Factor turning a stored engagement sum into its value as of `as_of_ms`.
    pub fn engagement_scale(&self, as_of_ms: i64) -> f64 {
        scale_to(as_of_ms, self.engagement_half_life_ms)
    }

    /// Factor turning a stored negative-signal sum into its value as of `as_of_ms`.
    pub fn negative_scale(&self, as_of_ms: i64) -> f64 {
        scale_to(as_of_ms, self.negative_half_life_ms)
    }

    /// Whether an event at `timestamp_ms` stays inside the representable range.
    pub fn accepts_timestamp(&self, timestamp_ms: i64) -> bool {
        let shortest = self.engagement_half_life_ms.min(self.negative_half_life_ms);
        ((timestamp_ms - LANDMARK_MS) as f64 / shortest).abs() <= MAX_EXPONENT
    }
}

fn forward_weight(timestamp_ms: i64, half_life_ms: f64) -> f64 {
    let exponent = (timestamp_ms - LANDMARK_MS) as f64 / half_life_ms;
    debug_assert!(exponent.abs() <= MAX_EXPONENT, "timestamp validated at ingest");
    exponent.exp2()
}

fn scale_to(as_of_ms: i64, half_life_ms: f64) -> f64 {
    // Clamped so that an absurd as-of time gives 0 or a huge finite factor,
    // never infinity times zero.
    let exponent = ((LANDMARK_MS - as_of_ms) as f64 / half_life_ms).clamp(-1000.0, 1000.0);
    exponent.exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400_000.0;

    #[test]
    fn weight_halves_every_half_life() {
        let decay = Decay {
            engagement_half_life_ms: 14.0 * DAY,
            negative_half_life_ms: 30.0 * DAY,
        };
        let t = LANDMARK_MS + 100 * DAY as i64;
        let stored = decay.engagement_weight(t);
        let now = decay.engagement_scale(t);
        let later = decay.engagement_scale(t + 14 * DAY as i64);
        assert!((stored * now - 1.0).abs() < 1e-12);
        assert!((stored * later - 0.5).abs() < 1e-12);
        let later = decay.negative_scale(t + 60 * DAY as i64);
        assert!((decay.negative_weight(t) * later - 0.25).abs() < 1e-12);
    }

    #[test]
    fn range_check() {
        let decay = Decay {
            engagement_half_life_ms: DAY,
            negative_half_life_ms: DAY,
        };
        assert!(decay.accepts_timestamp(LANDMARK_MS + 900 * DAY as i64));
        assert!(!decay.accepts_timestamp(LANDMARK_MS + 901 * DAY as i64));
        assert!(!decay.accepts_timestamp(i64::MIN / 2));
    }
}
