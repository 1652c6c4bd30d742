//! The settings tables: the top level of the file and its `[limits]`,
//! `[transport]`, `[cache]`, `[embedded]` and `[redis]` tables, each declared once in
//! [`settings!`], with the checks each table's values must pass.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use super::settings::{Shown, settings};

/// Default read budget: Rank answers in well under a millisecond, so 256
/// concurrent reads is already a deep queue on any core count, and 256
/// Rank messages at the default limits take at most ~19 MB.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default write budget: 32 batches at the default limits (1.7 MB each) bound
/// request bodies held for writes to ~55 MB; the store commits in groups, so
/// more concurrent writers add no throughput.
pub const DEFAULT_MAX_WRITES_IN_FLIGHT: usize = 32;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Shown for LogFormat {
    fn shown(&self) -> String {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
        .to_owned()
    }
}

settings! {
    /// The top level of the file: where the server listens, where it keeps
    /// its data, who may write, how it runs.
    TopLevel / TopLevelFlags, section "", heading "Server (top level of the file)" {
        /// gRPC listen address (IP:port).
        listen: String = "127.0.0.1:50051".to_owned(), flag "listen", env "CREATOR_BOOST_LISTEN";
        /// Directory of the embedded store.
        data_dir: PathBuf = PathBuf::from("./data"), flag "data-dir", env "CREATOR_BOOST_DATA_DIR";
        /// Shared store instead of the embedded one: redis://HOST:PORT[/DB] or
        /// redis-cluster://HOST:PORT[,HOST:PORT...]; empty = the embedded store.
        store: String = String::new(), flag "store", env "CREATOR_BOOST_STORE";
        /// Most concurrent Rank/GetCreatorScores calls; beyond it RESOURCE_EXHAUSTED
        /// (0 = unlimited).
        max_in_flight: usize = DEFAULT_MAX_IN_FLIGHT, flag "max-in-flight", env "CREATOR_BOOST_MAX_IN_FLIGHT";
        /// Most RecordEvents calls and StreamEvents messages in progress at once,
        /// a budget apart from reads (0 = unlimited).
        max_writes_in_flight: usize = DEFAULT_MAX_WRITES_IN_FLIGHT,
            flag "max-writes-in-flight", env "CREATOR_BOOST_MAX_WRITES_IN_FLIGHT";
        /// Allow open writes (no write token, no mutual TLS) on a non-loopback
        /// listen address, which is otherwise refused at start.
        allow_open_writes: bool = false, flag "allow-open-writes", env "CREATOR_BOOST_ALLOW_OPEN_WRITES",
            arg(num_args = 0..=1, default_missing_value = "true",
                value_parser = clap::builder::FalseyValueParser::new());
        /// Serve Prometheus metrics at http://ADDR/metrics; empty = off.
        metrics_listen: String = String::new(), flag "metrics-listen", env "CREATOR_BOOST_METRICS_LISTEN";
        /// File holding the bearer token required by RecordEvents/StreamEvents;
        /// empty = writes need no token.
        write_token_file: PathBuf = PathBuf::new(), flag "write-token-file", env "CREATOR_BOOST_WRITE_TOKEN_FILE";
        /// TLS certificate chain (PEM), with tls_key; empty = plaintext.
        tls_cert: PathBuf = PathBuf::new(), flag "tls-cert", env "CREATOR_BOOST_TLS_CERT";
        /// TLS private key (PEM), with tls_cert.
        tls_key: PathBuf = PathBuf::new(), flag "tls-key", env "CREATOR_BOOST_TLS_KEY";
        /// Require client certificates signed by this CA (PEM): mutual TLS.
        tls_client_ca: PathBuf = PathBuf::new(), flag "tls-client-ca", env "CREATOR_BOOST_TLS_CLIENT_CA";
        /// How long shutdown waits for in-flight calls, in milliseconds.
        shutdown_grace_ms: u64 = 10_000, flag "shutdown-grace-ms", env "CREATOR_BOOST_SHUTDOWN_GRACE_MS";
        /// Runtime worker threads; 0 = one per available core (1 = a
        /// current-thread runtime).
        worker_threads: usize = 0, flag "worker-threads", env "CREATOR_BOOST_WORKER_THREADS";
        /// Log format: text or json.
        log_format: LogFormat = LogFormat::Text, flag "log-format", env "CREATOR_BOOST_LOG_FORMAT",
            arg(value_enum);
    }
}

settings! {
    /// Limits on request sizes and event fields.
    Limits / LimitFlags, section "limits", heading "Request limits ([limits])" {
        /// Most candidates in one Rank request.
        max_candidates: usize = 2_000, flag "limits-max-candidates", env "CREATOR_BOOST_LIMITS_MAX_CANDIDATES";
        /// Most creator ids in one GetCreatorScores request.
        max_creator_ids: usize = 10_000, flag "limits-max-creator-ids", env "CREATOR_BOOST_LIMITS_MAX_CREATOR_IDS";
        /// Most events in one RecordEvents request (or one StreamEvents message).
        max_events_per_batch: usize = 10_000,
            flag "limits-max-events-per-batch", env "CREATOR_BOOST_LIMITS_MAX_EVENTS_PER_BATCH";
        /// Longest accepted `event_id`, in bytes.
        max_event_id_bytes: usize = 128,
            flag "limits-max-event-id-bytes", env "CREATOR_BOOST_LIMITS_MAX_EVENT_ID_BYTES";
        /// How far in the future an event timestamp may be, in seconds.
        max_future_skew_secs: u64 = 300,
            flag "limits-max-future-skew-secs", env "CREATOR_BOOST_LIMITS_MAX_FUTURE_SKEW_SECS";
        /// How long an `event_id` is remembered for deduplication, in seconds.
        dedupe_window_secs: u64 = 7 * 24 * 3600,
            flag "limits-dedupe-window-secs", env "CREATOR_BOOST_LIMITS_DEDUPE_WINDOW_SECS";
        /// Ceiling on any gRPC message, in bytes; each RPC's own limit is derived
        /// from the limits above and never exceeds it.
        max_message_bytes: usize = 16 * 1024 * 1024,
            flag "limits-max-message-bytes", env "CREATOR_BOOST_LIMITS_MAX_MESSAGE_BYTES";
    }
}

settings! {
    /// Limits of the transport: connections, HTTP/2, message arrival.
    /// Every default is chosen from the contract (docs/operations.md gives
    /// the reason for each).
    TransportConfig / TransportFlags, section "transport", heading "Transport ([transport])" {
        /// Most open client connections; beyond it the server stops accepting
        /// (new clients wait in the kernel backlog) until one closes.
        max_connections: usize = 1_024,
            flag "transport-max-connections", env "CREATOR_BOOST_TRANSPORT_MAX_CONNECTIONS";
        /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls open at once on one connection.
        max_concurrent_streams: u32 = 100,
            flag "transport-max-concurrent-streams", env "CREATOR_BOOST_TRANSPORT_MAX_CONCURRENT_STREAMS";
        /// A new connection must send its first bytes (TLS hello or HTTP/2 preface)
        /// within this many milliseconds.
        handshake_timeout_ms: u64 = 10_000,
            flag "transport-handshake-timeout-ms", env "CREATOR_BOOST_TRANSPORT_HANDSHAKE_TIMEOUT_MS";
        /// A connection from which nothing has been read for this many milliseconds is closed.
        idle_timeout_ms: u64 = 300_000,
            flag "transport-idle-timeout-ms", env "CREATOR_BOOST_TRANSPORT_IDLE_TIMEOUT_MS";
        /// Interval of server HTTP/2 PING frames, in milliseconds; 0 = off.
        keepalive_interval_ms: u64 = 0,
            flag "transport-keepalive-interval-ms", env "CREATOR_BOOST_TRANSPORT_KEEPALIVE_INTERVAL_MS";
        /// A PING not acknowledged within this many milliseconds closes the connection.
        keepalive_timeout_ms: u64 = 20_000,
            flag "transport-keepalive-timeout-ms", env "CREATOR_BOOST_TRANSPORT_KEEPALIVE_TIMEOUT_MS";
        /// Largest request header block (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE), in bytes.
        max_header_list_bytes: u32 = 16 * 1024,
            flag "transport-max-header-list-bytes", env "CREATOR_BOOST_TRANSPORT_MAX_HEADER_LIST_BYTES";
        /// HTTP/2 flow-control window of one stream, in bytes.
        stream_window_bytes: u32 = 256 * 1024,
            flag "transport-stream-window-bytes", env "CREATOR_BOOST_TRANSPORT_STREAM_WINDOW_BYTES";
        /// HTTP/2 flow-control window of one connection, in bytes.
        connection_window_bytes: u32 = 1024 * 1024,
            flag "transport-connection-window-bytes", env "CREATOR_BOOST_TRANSPORT_CONNECTION_WINDOW_BYTES";
        /// Streams a client may open and reset before the server handles them.
        max_pending_accept_reset_streams: usize = 20,
            flag "transport-max-pending-accept-reset-streams",
            env "CREATOR_BOOST_TRANSPORT_MAX_PENDING_ACCEPT_RESET_STREAMS";
        /// Once a request message has started (a unary call: once the call has
        /// started), it must have fully arrived within this many milliseconds.
        message_timeout_ms: u64 = 10_000,
            flag "transport-message-timeout-ms", env "CREATOR_BOOST_TRANSPORT_MESSAGE_TIMEOUT_MS";
        /// A StreamEvents stream with no message for this many milliseconds is closed.
        stream_idle_timeout_ms: u64 = 60_000,
            flag "transport-stream-idle-timeout-ms", env "CREATOR_BOOST_TRANSPORT_STREAM_IDLE_TIMEOUT_MS";
    }
}

settings! {
    /// Cache sizes and freshness.
    CacheConfig / CacheFlags, section "cache", heading "Caches ([cache])" {
        /// Creator aggregates kept in memory.
        creators: u64 = 1_000_000, flag "cache-creators", env "CREATOR_BOOST_CACHE_CREATORS";
        /// Memory, in MiB, the viewer records kept in memory may take, counted
        /// from each record's real size (a viewer with thousands of relations
        /// weighs thousands of times one with a few).
        viewers_mb: u64 = 256, flag "cache-viewers-mb", env "CREATOR_BOOST_CACHE_VIEWERS_MB";
        /// Time to live of a cached entry, in milliseconds: the bound on how stale
        /// a replica can be about writes made through another replica.
        ttl_ms: u64 = 5_000, flag "cache-ttl-ms", env "CREATOR_BOOST_CACHE_TTL_MS";
        /// How long, in milliseconds, an expired entry may still be served
        /// (flagged degraded) while the store is unreachable; >= ttl_ms.
        stale_ttl_ms: u64 = 60_000, flag "cache-stale-ttl-ms", env "CREATOR_BOOST_CACHE_STALE_TTL_MS";
        /// Page cache of the embedded store (redb), in MiB: how much of the data
        /// file is kept in memory. Count it in the process's memory limit.
        embedded_mb: u64 = 1024, flag "cache-embedded-mb", env "CREATOR_BOOST_CACHE_EMBEDDED_MB";
    }
}

settings! {
    /// The embedded store's data volume.
    EmbeddedConfig / EmbeddedFlags, section "embedded", heading "Embedded store ([embedded])" {
        /// Free space, in MiB, the data volume keeps: below it (or below
        /// min_free_percent) writes are refused with RESOURCE_EXHAUSTED, reads go
        /// on, and writes resume by themselves once space returns. The default is
        /// about ten times what the largest group commit can add (0 = no MiB floor).
        min_free_mb: u64 = 512, flag "embedded-min-free-mb", env "CREATOR_BOOST_EMBEDDED_MIN_FREE_MB";
        /// Free space, in percent of the volume's size, the data volume keeps; the
        /// floor is the larger of the two (0 = no percent floor; 5 is Elasticsearch's
        /// flood stage, for a volume shared with other files).
        min_free_percent: u32 = 0, flag "embedded-min-free-percent", env "CREATOR_BOOST_EMBEDDED_MIN_FREE_PERCENT";
    }
}

settings! {
    /// The Redis backend's time limits and key names.
    RedisConfig / RedisFlags, section "redis", heading "Redis ([redis])" {
        /// Longest a read may take, in milliseconds; past it a Rank answers
        /// from cache or neutral, flagged degraded.
        read_timeout_ms: u64 = 100, flag "redis-read-timeout-ms", env "CREATOR_BOOST_REDIS_READ_TIMEOUT_MS";
        /// Longest a batch of events may take, in milliseconds; past it the batch
        /// fails with UNAVAILABLE (nothing acknowledged; a resend is deduplicated).
        write_timeout_ms: u64 = 2_000, flag "redis-write-timeout-ms", env "CREATOR_BOOST_REDIS_WRITE_TIMEOUT_MS";
        /// Start of every key name, so several deployments can share one Redis.
        key_prefix: String = "cb".to_owned(), flag "redis-key-prefix", env "CREATOR_BOOST_REDIS_KEY_PREFIX";
    }
}

/// Checks each `(key, value, low, high)` of `section`: the first value out
/// of its range is refused, named with its section.
fn within<T: PartialOrd + std::fmt::Display>(section: &str, checks: &[(&str, T, T, T)]) -> Result<(), ConfigError> {
    for (name, value, low, high) in checks {
        if !(low..=high).contains(&value) {
            return Err(ConfigError::Invalid(format!(
                "{section}.{name} must be in [{low}, {high}], got {value}"
            )));
        }
    }
    Ok(())
}

/// Checks the `[limits]` table.
pub(super) fn validate_limits(limits: &Limits) -> Result<(), ConfigError> {
    let checks = [
        ("max_candidates", limits.max_candidates, 1, 1_000_000),
        ("max_creator_ids", limits.max_creator_ids, 1, 1_000_000),
        ("max_events_per_batch", limits.max_events_per_batch, 1, 1_000_000),
        ("max_event_id_bytes", limits.max_event_id_bytes, 1, 4096),
        ("max_message_bytes", limits.max_message_bytes, 1024, 1 << 30),
    ];
    within("limits", &checks)?;
    if limits.dedupe_window_secs == 0 {
        return Err(ConfigError::Invalid("limits.dedupe_window_secs must be > 0".into()));
    }
    Ok(())
}

/// Checks the `[transport]` table.
pub(super) fn validate_transport(transport: &TransportConfig) -> Result<(), ConfigError> {
    let checks: [(&str, u64, u64, u64); 9] = [
        ("max_connections", transport.max_connections as u64, 1, 1_000_000),
        (
            "max_concurrent_streams",
            u64::from(transport.max_concurrent_streams),
            1,
            100_000,
        ),
        ("handshake_timeout_ms", transport.handshake_timeout_ms, 100, 3_600_000),
        ("idle_timeout_ms", transport.idle_timeout_ms, 1_000, 86_400_000),
        ("keepalive_timeout_ms", transport.keepalive_timeout_ms, 100, 3_600_000),
        (
            "max_header_list_bytes",
            u64::from(transport.max_header_list_bytes),
            1024,
            1 << 20,
        ),
        (
            "stream_window_bytes",
            u64::from(transport.stream_window_bytes),
            65_535,
            (1 << 31) - 1,
        ),
        ("message_timeout_ms", transport.message_timeout_ms, 100, 3_600_000),
        (
            "stream_idle_timeout_ms",
            transport.stream_idle_timeout_ms,
            1_000,
            86_400_000,
        ),
    ];
    within("transport", &checks)?;
    if transport.connection_window_bytes < transport.stream_window_bytes
        || transport.connection_window_bytes > (1 << 31) - 1
    {
        return Err(ConfigError::Invalid(format!(
            "transport.connection_window_bytes must be in [stream_window_bytes, 2^31-1], got {}",
            transport.connection_window_bytes
        )));
    }
    Ok(())
}

/// Checks the `[cache]` table.
pub(super) fn validate_cache(cache: &CacheConfig) -> Result<(), ConfigError> {
    if cache.ttl_ms == 0 || cache.creators == 0 || cache.viewers_mb == 0 {
        return Err(ConfigError::Invalid(
            "cache: creators, viewers_mb and ttl_ms must be > 0".into(),
        ));
    }
    if cache.stale_ttl_ms < cache.ttl_ms {
        return Err(ConfigError::Invalid(format!(
            "cache.stale_ttl_ms ({}) must be >= cache.ttl_ms ({})",
            cache.stale_ttl_ms, cache.ttl_ms
        )));
    }
    Ok(())
}

impl CacheConfig {
    /// The viewer cache's budget, in bytes.
    pub fn viewer_bytes(&self) -> u64 {
        self.viewers_mb.saturating_mul(1 << 20)
    }

    /// The embedded store's page cache, in bytes.
    pub fn embedded_bytes(&self) -> usize {
        usize::try_from(self.embedded_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Checks the `[embedded]` table.
pub(super) fn validate_embedded(embedded: &EmbeddedConfig) -> Result<(), ConfigError> {
    within("embedded", &[("min_free_percent", embedded.min_free_percent, 0, 50)])
}

impl EmbeddedConfig {
    /// The free-space floor these settings make.
    pub fn disk_floor(&self) -> crate::store::embedded::DiskFloor {
        crate::store::embedded::DiskFloor {
            min_free_bytes: self.min_free_mb.saturating_mul(1 << 20),
            min_free_percent: f64::from(self.min_free_percent),
        }
    }
}

/// Checks the `[redis]` table.
pub(super) fn validate_redis(redis: &RedisConfig) -> Result<(), ConfigError> {
    if redis.read_timeout_ms == 0 || redis.write_timeout_ms == 0 {
        return Err(ConfigError::Invalid(
            "redis: read_timeout_ms and write_timeout_ms must be > 0".into(),
        ));
    }
    if redis.key_prefix.is_empty() || redis.key_prefix.contains(['{', '}']) {
        return Err(ConfigError::Invalid(
            "redis.key_prefix must be non-empty and free of `{` and `}`".into(),
        ));
    }
    Ok(())
}

/// Largest accepted message per RPC, in bytes: derived from the request
/// limits (a message at the limits fits with room to spare), capped by
/// `limits.max_message_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// A RankRequest.
    pub rank: usize,
    /// A GetCreatorScoresRequest.
    pub creator_scores: usize,
    /// A RecordEventsRequest (also one StreamEvents message).
    pub record_events: usize,
    /// Health and reflection requests.
    pub other: usize,
}

/// Room for the fixed fields of a request (variant name, flags) and slack.
const MESSAGE_OVERHEAD: usize = 4 * 1024;
/// Most bytes one Candidate takes on the wire: two u64 varints and a double,
/// each with its tag, plus the entry's own tag and length.
const CANDIDATE_WIRE_BYTES: usize = 11 + 11 + 9 + 3;
/// Most bytes of an Event other than its event_id: kind, two u64 varints, a
/// timestamp, an amount, tags and lengths.
const EVENT_WIRE_BYTES: usize = 3 + 11 + 11 + 11 + 9 + 6;

impl Limits {
    /// The per-RPC message limits these limits imply.
    pub fn message_limits(&self) -> MessageLimits {
        let cap = |bytes: usize| bytes.min(self.max_message_bytes);
        MessageLimits {
            rank: cap(self.max_candidates.saturating_mul(CANDIDATE_WIRE_BYTES) + MESSAGE_OVERHEAD),
            creator_scores: cap(self.max_creator_ids.saturating_mul(10) + MESSAGE_OVERHEAD),
            record_events: cap(self
                .max_events_per_batch
                .saturating_mul(EVENT_WIRE_BYTES + self.max_event_id_bytes)
                + MESSAGE_OVERHEAD),
            other: cap(64 * 1024),
        }
    }
}
