//! Key names. Every key of one script call shares a hash tag (`{…}`), so
//! each call touches one Cluster hash slot.

/// The aggregate id of the platform aggregate in its hashes.
pub(super) const GLOBAL_ID: &str = "g";

/// Hashes the platform aggregate is spread over (merged on read): every
/// batch writes the platform, and one hash would put all of those writes
/// on one Cluster slot.
pub(super) const GLOBAL_SHARDS: u32 = 16;

/// The platform shard an event's platform delta goes to (its creator's
/// bucket, so it is known again on a resend).
pub(super) fn global_shard(bucket: u32) -> u32 {
    bucket % GLOBAL_SHARDS
}

/// The hash tag of a key (what chooses its Cluster slot).
pub(super) fn tag(key: &str) -> &str {
    match (key.find('{'), key.find('}')) {
        (Some(open), Some(close)) if open < close => &key[open..=close],
        _ => key,
    }
}

/// Key names under one prefix (several deployments can share a Redis).
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (checked free of braces by the caller).
    pub(super) fn new(prefix: String) -> Keys {
        Keys { prefix }
    }

    /// The snapshot hash of a creator bucket.
    pub(super) fn bucket(&self, bucket: u32) -> String {
        format!("{}:{{c{bucket}}}", self.prefix)
    }

    /// The hash holding one viewer's relation record and its version.
    pub(super) fn viewer(&self, viewer_id: u64) -> String {
        format!("{}:{{v{viewer_id}}}", self.prefix)
    }

    /// The snapshot hash of one shard of the platform aggregate.
    pub(super) fn global(&self, shard: u32) -> String {
        format!("{}:{{g{shard}}}", self.prefix)
    }

    /// The pub/sub channel of invalidations (channels have no slot).
    pub(super) fn channel(&self) -> String {
        format!("{}:invalidate", self.prefix)
    }

    /// The signature the stored sums were written with.
    pub(super) fn meta(&self) -> String {
        format!("{}:{{meta}}", self.prefix)
    }
}

/// The marker of one event applied to the aggregates of a snapshot hash.
pub(super) fn marker(snapshot: &str, hash: u128) -> String {
    format!("{snapshot}:a:{hash:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_operation_share_a_hash_slot() {
        let keys = Keys::new("cb".to_owned());
        assert_eq!(tag(&keys.viewer(42)), "{v42}");
        assert_eq!(tag(&keys.bucket(9)), "{c9}");
        assert_eq!(keys.global(3), "cb:{g3}");
        assert_eq!(
            marker(&keys.global(3), 0xabc),
            "cb:{g3}:a:00000000000000000000000000000abc"
        );
        assert_eq!(tag(&marker(&keys.global(3), 0xabc)), "{g3}");
    }
}
