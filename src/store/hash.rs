//! The hashes that decide where records live: a creator's bucket and an
//! event's dedupe key. Both are persisted (bucket ranges in the redb file,
//! key names and dedupe entries in Redis), so their outputs must never
//! change: a new mixer would orphan every stored bucket and forget every
//! remembered event id.

use crate::model::Event;

/// SplitMix64's increment (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser (Stafford's "Mix13"): every input bit flips
/// each output bit with probability about 1/2.
///
/// It decides the bucket layout on disk and in Redis ([`super::creator_bucket`])
/// and the dedupe keys ([`event_id_hash`]): it must never change.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One SplitMix64 step from `x`: the golden increment, then [`mix64`]. Dense
/// and sparse id spaces alike come out evenly spread. Persisted through
/// [`super::creator_bucket`]: it must never change.
pub(crate) fn splitmix64(x: u64) -> u64 {
    mix64(x.wrapping_add(GOLDEN_GAMMA))
}

/// An event's identity for deduplication: its id, per viewer, on every
/// backend (one viewer cannot pre-claim another's ids).
pub fn event_key(event: &Event) -> u128 {
    let mut bytes = Vec::with_capacity(8 + event.event_id.len());
    bytes.extend_from_slice(&event.viewer_id.to_le_bytes());
    bytes.extend_from_slice(event.event_id.as_bytes());
    event_id_hash(&bytes)
}

/// A 128-bit hash of an event id: two independent 64-bit lanes over 8-byte
/// words, each finished with [`mix64`].
pub(crate) fn event_id_hash(id: &[u8]) -> u128 {
    let (mut a, mut b) = (0x243F_6A88_85A3_08D3u64, 0x1319_8A2E_0370_7344u64);
    for chunk in id.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        a = mix64(a ^ word);
        b = mix64(b.wrapping_add(word).rotate_left(29) ^ GOLDEN_GAMMA);
    }
    let length = id.len() as u64;
    (u128::from(mix64(a ^ length)) << 64) | u128::from(mix64(b ^ length.rotate_left(32)))
}

#[cfg(test)]
mod tests {
    use super::event_id_hash;
    use crate::store::creator_bucket;

    #[test]
    fn event_id_hashes_differ_and_are_stable() {
        let ids = [
            "",
            "a",
            "a\0",
            "ab",
            "kr-1-2-3-like",
            "kr-1-2-3-view",
            "12345678",
            "123456789",
        ];
        let hashes: std::collections::HashSet<u128> = ids.iter().map(|id| event_id_hash(id.as_bytes())).collect();
        assert_eq!(hashes.len(), ids.len());
        assert_eq!(event_id_hash(b"stable"), event_id_hash(b"stable"));
    }

    /// The persisted layout: these values were computed before the mixer
    /// was shared and must never change (stored buckets and dedupe entries
    /// would no longer be found).
    #[test]
    fn persisted_hashes_keep_their_values() {
        let buckets: Vec<u32> = [0, 1, 42, 1_000_000, u64::MAX]
            .into_iter()
            .map(creator_bucket)
            .collect();
        assert_eq!(buckets, [57_888, 37_130, 48_599, 26_637, 58_585]);
        assert_eq!(event_id_hash(b""), 0xe9e0_033e_3bad_af36_dfc7_a999_51f2_4649);
        assert_eq!(event_id_hash(b"stable"), 0x79dd_56eb_9c30_fbd1_3362_dd78_0511_d6ae);
        assert_eq!(
            event_id_hash(b"kr-1-2-3-like"),
            0x474d_07fa_c3bb_b006_4d69_cfdd_eab5_b7b7
        );
    }
}
