//! Why a store operation failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::STORE_LAYOUT;

/// Why a store operation failed.
///
/// A variant with an underlying error keeps it as its `source()` and also
/// shows it in its message, because the binaries print errors with
/// `{error}` and do not walk the chain (as `ServeError::Bind` does). The
/// sources are behind `Arc` where they cannot be cloned: one failed group
/// commit answers every batch in it with the same error.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed or refused a command (connection lost, script error).
    #[error("redis: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// Redis refused a write because it is at `maxmemory` with the
    /// `noeviction` policy (its `OOM` error). Reads still answer; a batch
    /// may be partly applied, and its resend completes it once Redis has
    /// room (raise `maxmemory` or free memory).
    #[error("redis out of memory (maxmemory reached, writes refused): {0}")]
    RedisOutOfMemory(#[source] ::redis::RedisError),
    /// The embedded database failed (I/O, disk full, read-only file).
    #[error("embedded store: {0}")]
    Embedded(#[source] Arc<redb::Error>),
    /// The embedded store's directory or file could not be created or opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Arc<redb::Error>,
    },
    /// A thread or task of the embedded store could not start, or panicked.
    #[error("{task}: {source}")]
    Task {
        /// What it was for.
        task: &'static str,
        /// Why it failed.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The backend failed with no underlying error to show (for example,
    /// other writers kept changing the same record).
    #[error("store backend error: {0}")]
    Backend(String),
    /// An operation did not finish within its limit.
    #[error("{operation} did not finish within {limit:?}")]
    Timeout {
        /// What was waited for.
        operation: Operation,
        /// How long.
        limit: Duration,
    },
    /// Reads are skipped for a while after one failed, so that a failing
    /// store does not cost every call its whole read budget.
    #[error("store failing: read skipped (a read failed within the last {window:?})")]
    BreakerOpen {
        /// How long after a failure reads are skipped (unless a probe succeeds).
        window: Duration,
    },
    /// The store holds sums written by another layout or with other
    /// half-lives, so it is not read; the message says what to do.
    #[error("{}", signature_mismatch(stored, wanted, fresh_store))]
    Incompatible {
        /// The signature the store was written with.
        stored: String,
        /// The signature this build and config need.
        wanted: String,
        /// Where a fresh store would go (a new data dir, another Redis database).
        fresh_store: &'static str,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store has been shut down.
    #[error("store is closed")]
    Closed,
    /// The data volume of the embedded store has less free space than its
    /// floor: writes are refused before the database meets a full disk.
    #[error(
        "the data volume has {} MiB free, below its floor of {} MiB (embedded.min_free_mb, \
         embedded.min_free_percent): writes are refused and nothing from this batch was acknowledged; \
         free space or grow the volume, and writes resume by themselves",
        free_bytes >> 20,
        floor_bytes >> 20
    )]
    DiskFloor {
        /// The data directory.
        dir: PathBuf,
        /// Free bytes when measured.
        free_bytes: u64,
        /// The floor, in bytes.
        floor_bytes: u64,
    },
    /// The embedded store met an I/O error and is being closed and
    /// reopened; writes are refused until it is open again.
    #[error(
        "the embedded store is being reopened after an I/O error ({cause}); nothing from this batch was \
         acknowledged, send it again"
    )]
    Reopening {
        /// The error that closed it, or why the latest reopen failed.
        cause: String,
    },
}

impl StoreError {
    /// The store error for a Redis error: [`StoreError::RedisOutOfMemory`]
    /// for Redis's `OOM` refusal (also when a script's write met it),
    /// [`StoreError::Redis`] for anything else.
    pub fn redis(error: ::redis::RedisError) -> StoreError {
        if error.code() == Some("OOM") {
            StoreError::RedisOutOfMemory(error)
        } else {
            StoreError::Redis(error)
        }
    }
}

/// What a [`StoreError::Timeout`] was waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Operation {
    /// Reaching the store and checking its signature, at start.
    #[error("connecting to the store")]
    Connect,
    /// A read, against the backend's read limit.
    #[error("a store read")]
    Read,
    /// A read, against what is left of the call's deadline.
    #[error("a store read within the call's budget")]
    CallRead,
    /// Applying a batch.
    #[error("a store write")]
    Write,
}

/// Why a store's recorded signature does not match this build and config,
/// and what to do about it.
fn signature_mismatch(stored: &str, wanted: &str, fresh_store: &str) -> String {
    if !stored.starts_with("layout=") {
        format!(
            "this store was written by an earlier version of creator-boost (layout 1: evidence counted per \
             event). Its sums cannot be converted to the per-account model (layout {STORE_LAYOUT}) without the \
             events, so it is not read. Re-import the event log into {fresh_store} with `creator-boost import`, \
             or run the earlier version against this store"
        )
    } else {
        format!(
            "this store holds sums written with {stored}; this build and config need {wanted}. Use the same \
             [ingest] half-lives, or import into {fresh_store}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a Redis error reply (`-CODE detail`) turns into.
    fn reply_error(reply: &str) -> ::redis::RedisError {
        ::redis::parse_redis_value(format!("{reply}\r\n").as_bytes())
            .and_then(::redis::Value::extract_error)
            .expect_err("an error reply")
    }

    #[test]
    fn redis_oom_refusals_are_out_of_memory_and_other_errors_stay_redis() {
        let plain = reply_error("-OOM command not allowed when used memory > 'maxmemory'.");
        let in_script = reply_error(
            "-OOM command not allowed when used memory > 'maxmemory'. script: 5849fad0, on @user_script:1.",
        );
        for oom in [plain, in_script] {
            let error = StoreError::redis(oom);
            assert!(matches!(error, StoreError::RedisOutOfMemory(_)), "{error:?}");
            assert!(error.to_string().starts_with("redis out of memory"), "{error}");
        }
        let other = StoreError::redis(reply_error("-ERR unknown command 'FOO'"));
        assert!(matches!(other, StoreError::Redis(_)), "{other:?}");
    }
}
