//! Key names. Every key of one script call shares a hash tag (`{…}`), so
//! each call touches one Cluster hash slot.

/// The aggregate id of the platform aggregate in its hashes.
pub(super) const GLOBAL_ID: &str = "g";

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

    /// The dedupe entry of one event of a viewer.
    pub(super) fn dedupe(&self, viewer_id: u64, hash: u128) -> String {
        format!("{}:{{v{viewer_id}}}:e:{hash:032x}", self.prefix)
    }

    /// The snapshot hash of the platform aggregate.
    pub(super) fn global(&self) -> String {
        format!("{}:{{g}}", self.prefix)
    }

    /// The signature the stored sums were written with.
    pub(super) fn meta(&self) -> String {
        format!("{}:{{meta}}", self.prefix)
    }
}

/// The counter hash beside a snapshot hash (same slot).
pub(super) fn counters(snapshot: &str) -> String {
    format!("{snapshot}:n")
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
        let viewer = keys.viewer(42);
        let entry = keys.dedupe(42, 0xabc);
        let tag = |key: &str| key[key.find('{').unwrap_or(0)..=key.find('}').unwrap_or(0)].to_owned();
        assert_eq!(tag(&viewer), tag(&entry));
        assert_eq!(tag(&keys.bucket(9)), "{c9}");
        assert_eq!(keys.global(), "cb:{g}");
        assert_eq!(counters(&keys.bucket(9)), "cb:{c9}:n");
        assert_eq!(
            marker(&keys.global(), 0xabc),
            "cb:{g}:a:00000000000000000000000000000abc"
        );
    }
}
