//! Configuration: one TOML file for defaults, model parameters and named
//! variants, typed and validated once at load, then passed down (no globals).
//! Command-line flags and environment variables override the file.
//! Every key is documented in `config/creator-boost.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::model::{IngestParams, ModelParams};

/// Exit code for a configuration error (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Limits on request sizes and event fields.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most candidates in one Rank request.
    pub max_candidates: usize,
    /// Most creator ids in one GetCreatorScores request.
    pub max_creator_ids: usize,
    /// Most events in one RecordEvents request (or one StreamEvents message).
    pub max_events_per_batch: usize,
    /// Longest accepted `event_id`, in bytes.
    pub max_event_id_bytes: usize,
    /// How far in the future an event timestamp may be, in seconds.
    pub max_future_skew_secs: u64,
    /// How long an `event_id` is remembered for deduplication, in seconds.
    pub dedupe_window_secs: u64,
    /// Ceiling on any gRPC message, in bytes; each RPC's own limit is derived
    /// from the limits above ([`Limits::message_limits`]) and never exceeds it.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_candidates: 2_000,
            max_creator_ids: 10_000,
            max_events_per_batch: 10_000,
            max_event_id_bytes: 128,
            max_future_skew_secs: 300,
            dedupe_window_secs: 7 * 24 * 3600,
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Cache sizes and freshness.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Creator aggregates kept in memory.
    pub creators: u64,
    /// Viewer records kept in memory.
    pub viewers: u64,
    /// Time to live of a cached entry, in milliseconds: the bound on how stale
    /// a replica can be about writes made through another replica.
    pub ttl_ms: u64,
    /// How long, in milliseconds, an expired entry may still be served
    /// (flagged degraded) while the store is unreachable; >= `ttl_ms`.
    pub stale_ttl_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            creators: 1_000_000,
            viewers: 200_000,
            ttl_ms: 5_000,
            stale_ttl_ms: 60_000,
        }
    }
}

/// The Redis backend's time limits.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Longest a read may take, in milliseconds; past it a Rank answers
    /// from cache or neutral, flagged degraded.
    pub read_timeout_ms: u64,
    /// Longest a batch of events may take, in milliseconds; past it the batch
    /// fails with UNAVAILABLE (nothing acknowledged; a resend is deduplicated).
    pub write_timeout_ms: u64,
    /// Start of every key name, so several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            read_timeout_ms: 100,
            write_timeout_ms: 2_000,
            key_prefix: "cb".to_owned(),
        }
    }
}

/// Limits of the transport: connections, HTTP/2, message arrival, admission.
/// Every default is chosen from the contract (README "Operations" gives the
/// reason for each).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Most open client connections; beyond it the server stops accepting
    /// (new clients wait in the kernel backlog) until one closes.
    pub max_connections: usize,
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls open at once on one connection.
    pub max_concurrent_streams: u32,
    /// A new connection must send its first bytes (TLS hello or HTTP/2 preface)
    /// within this many milliseconds.
    pub handshake_timeout_ms: u64,
    /// A connection from which nothing has been read for this many milliseconds is closed.
    pub idle_timeout_ms: u64,
    /// Interval of server HTTP/2 PING frames, in milliseconds; 0 = off.
    pub keepalive_interval_ms: u64,
    /// A PING not acknowledged within this many milliseconds closes the connection.
    pub keepalive_timeout_ms: u64,
    /// Largest request header block (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE), in bytes.
    pub max_header_list_bytes: u32,
    /// HTTP/2 flow-control window of one stream, in bytes.
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window of one connection, in bytes.
    pub connection_window_bytes: u32,
    /// Streams a client may open and reset before the server handles them.
    pub max_pending_accept_reset_streams: usize,
    /// Once a request message has started (a unary call: once the call has
    /// started), it must have fully arrived within this many milliseconds.
    pub message_timeout_ms: u64,
    /// A StreamEvents stream with no message for this many milliseconds is closed.
    pub stream_idle_timeout_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_connections: 1_024,
            max_concurrent_streams: 100,
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            keepalive_interval_ms: 0,
            keepalive_timeout_ms: 20_000,
            max_header_list_bytes: 16 * 1024,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
            max_pending_accept_reset_streams: 20,
            message_timeout_ms: 10_000,
            stream_idle_timeout_ms: 60_000,
        }
    }
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

/// A named, validated parameter set and the version string that identifies it.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// "" for the default.
    pub name: String,
    /// Effective parameters.
    pub params: ModelParams,
    /// Identifies the effective parameters (and the ingest parameters they read).
    pub model_version: String,
}

/// The default parameter set and the named variants.
#[derive(Clone, Debug)]
pub struct Variants {
    default: Arc<Variant>,
    named: BTreeMap<String, Arc<Variant>>,
}

impl Variants {
    /// The variant called `name` ("" = default), or `None` if unknown.
    pub fn get(&self, name: &str) -> Option<&Arc<Variant>> {
        if name.is_empty() {
            Some(&self.default)
        } else {
            self.named.get(name)
        }
    }

    /// The default variant.
    pub fn default_variant(&self) -> &Arc<Variant> {
        &self.default
    }

    /// Names of the named variants.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }
}

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

/// Where the TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf (PEM).
    pub key: PathBuf,
    /// CA (PEM) whose client certificates are required (mutual TLS); `None`
    /// = no client certificates.
    pub client_ca: Option<PathBuf>,
}

fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key, client_ca })),
        (None, None) if client_ca.is_some() => {
            Err(ConfigError::Invalid("tls_client_ca needs tls_cert and tls_key".into()))
        }
        (None, None) => Ok(None),
        _ => Err(ConfigError::Invalid(
            "tls_cert and tls_key must be given together".into(),
        )),
    }
}

/// Payload format of the Kafka topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// One JSON object per message, as a line of the JSON Lines import format.
    #[default]
    Json,
    /// One protobuf `creatorboost.v1.Event` per message.
    Protobuf,
}

/// The `[kafka]` table as written; `brokers` and `topic` turn ingest on.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
    format: Option<KafkaFormat>,
    dead_letter_topic: Option<String>,
    max_batch: Option<usize>,
    session_timeout_ms: Option<u64>,
    commit_interval_ms: Option<u64>,
    retry_backoff_max_ms: Option<u64>,
}

/// Kafka ingest: `serve` consumes `topic` in consumer group `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `HOST:PORT[,HOST:PORT…]`.
    pub brokers: String,
    /// The topic of events.
    pub topic: String,
    /// Consumer group: replicas on one shared store use the same one.
    pub group: String,
    /// Message payload format.
    pub format: KafkaFormat,
    /// Where malformed and rejected messages go (default `<topic>.dlq`).
    pub dead_letter_topic: String,
    /// Most messages applied to the store in one batch (capped by
    /// `limits.max_events_per_batch`).
    pub max_batch: usize,
    /// A replica silent for this long leaves the group and its partitions move.
    pub session_timeout_ms: u64,
    /// How often durable offsets are committed to the broker.
    pub commit_interval_ms: u64,
    /// Longest wait between two retries while the store or the broker fails.
    pub retry_backoff_max_ms: u64,
}

/// Default consumer group.
pub const DEFAULT_KAFKA_GROUP: &str = "creator-boost";

/// The `--kafka-*` flags, which win over the `[kafka]` table.
struct KafkaOverrides {
    brokers: Option<String>,
    topic: Option<String>,
    group: Option<String>,
}

fn kafka_config(raw: RawKafka, overrides: KafkaOverrides, limits: &Limits) -> Result<Option<KafkaConfig>, ConfigError> {
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    let brokers = non_empty(overrides.brokers.or(raw.brokers));
    let topic = non_empty(overrides.topic.or(raw.topic));
    let (brokers, topic) = match (brokers, topic) {
        (Some(brokers), Some(topic)) => (brokers, topic),
        (None, None) => return Ok(None),
        _ => {
            return Err(ConfigError::Invalid(
                "kafka: brokers and topic must be given together".into(),
            ));
        }
    };
    let max_batch = raw.max_batch.unwrap_or(1_000);
    if max_batch == 0 || max_batch > limits.max_events_per_batch {
        return Err(ConfigError::Invalid(format!(
            "kafka.max_batch must be in 1..={} (limits.max_events_per_batch)",
            limits.max_events_per_batch
        )));
    }
    let config = KafkaConfig {
        dead_letter_topic: non_empty(raw.dead_letter_topic).unwrap_or_else(|| format!("{topic}.dlq")),
        group: non_empty(overrides.group.or(raw.group)).unwrap_or_else(|| DEFAULT_KAFKA_GROUP.to_owned()),
        format: raw.format.unwrap_or_default(),
        max_batch,
        session_timeout_ms: raw.session_timeout_ms.unwrap_or(10_000),
        commit_interval_ms: raw.commit_interval_ms.unwrap_or(500),
        retry_backoff_max_ms: raw.retry_backoff_max_ms.unwrap_or(5_000),
        brokers,
        topic,
    };
    if config.dead_letter_topic == config.topic {
        return Err(ConfigError::Invalid(
            "kafka.dead_letter_topic must differ from kafka.topic".into(),
        ));
    }
    if config.commit_interval_ms == 0 || config.retry_backoff_max_ms < 10 || config.session_timeout_ms < 1_000 {
        return Err(ConfigError::Invalid(
            "kafka: commit_interval_ms must be > 0, retry_backoff_max_ms >= 10, session_timeout_ms >= 1000".into(),
        ));
    }
    Ok(Some(config))
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Shared store URL (`redis://…`, `redis-cluster://…`); `None` = the embedded store.
    pub store: Option<crate::store::StoreUrl>,
    /// Redis time limits.
    pub redis: RedisConfig,
    /// Most concurrent Rank/GetCreatorScores calls; beyond it they get
    /// RESOURCE_EXHAUSTED. 0 = no limit.
    pub max_in_flight: usize,
    /// Most RecordEvents calls and StreamEvents messages being received or
    /// processed at once (writes never take read slots). 0 = no limit.
    pub max_writes_in_flight: usize,
    /// Serve open writes (no token, no mutual TLS) on a non-loopback address.
    pub allow_open_writes: bool,
    /// Connection, HTTP/2 and message-arrival limits.
    pub transport: TransportConfig,
    /// Address of the Prometheus `/metrics` endpoint; `None` = not served.
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the bearer token that writes must carry.
    pub write_token_file: Option<PathBuf>,
    /// TLS certificate, key and client CA; `None` = plaintext. The paths
    /// are fixed at start; the files are re-read on SIGHUP.
    pub tls: Option<TlsFiles>,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// Runtime worker threads; 0 = one per available core (1 = current-thread runtime).
    pub worker_threads: usize,
    /// Log format.
    pub log_format: LogFormat,
    /// Size limits.
    pub limits: Limits,
    /// Cache settings.
    pub cache: CacheConfig,
    /// What is stored per event.
    pub ingest: IngestParams,
    /// Scoring parameter sets.
    pub variants: Variants,
    /// Kafka ingest; `None` = events arrive over gRPC only.
    pub kafka: Option<KafkaConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    max_in_flight: Option<usize>,
    max_writes_in_flight: Option<usize>,
    allow_open_writes: Option<bool>,
    metrics_listen: Option<String>,
    write_token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    shutdown_grace_ms: Option<u64>,
    worker_threads: Option<usize>,
    log_format: Option<LogFormat>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    transport: TransportConfig,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    redis: RedisConfig,
    #[serde(default)]
    ingest: IngestParams,
    #[serde(default)]
    kafka: RawKafka,
    #[serde(default)]
    model: toml::Table,
    #[serde(default)]
    variants: BTreeMap<String, toml::Table>,
}

/// Values given on the command line or in the environment; they win over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--store`.
    pub store: Option<String>,
    /// `--max-in-flight`.
    pub max_in_flight: Option<usize>,
    /// `--max-writes-in-flight`.
    pub max_writes_in_flight: Option<usize>,
    /// `--allow-open-writes`.
    pub allow_open_writes: Option<bool>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `--write-token-file`.
    pub write_token_file: Option<PathBuf>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--tls-client-ca`.
    pub tls_client_ca: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--worker-threads`.
    pub worker_threads: Option<usize>,
    /// `--kafka-brokers`.
    pub kafka_brokers: Option<String>,
    /// `--kafka-topic`.
    pub kafka_topic: Option<String>,
    /// `--kafka-group`.
    pub kafka_group: Option<String>,
}

/// Names the settings of `old` that differ in `new` among those listed as
/// restart-only. The destructuring of `old` names every field of [`Config`]
/// without `..`, so a field added to `Config` does not compile until it is
/// listed here as live or as restart-only.
macro_rules! restart_only_changes {
    ($old:expr, $new:expr; live: $($live:ident),*; restart: $($field:ident),* $(,)?) => {{
        let Config { $($live: _,)* $($field,)* } = $old;
        let mut changed = Vec::new();
        $(if *$field != $new.$field {
            changed.push(stringify!($field));
        })*
        changed
    }};
}

impl Config {
    /// The settings a reload cannot apply that differ between this config
    /// and `fresh` (a re-read of the file): everything except the model
    /// parameters and variants, which a reload swaps in. The TLS files'
    /// contents are re-read too; their paths are restart-only.
    pub fn restart_only_changes(&self, fresh: &Config) -> Vec<&'static str> {
        restart_only_changes!(self, fresh;
            live: variants;
            restart: listen, data_dir, store, redis, max_in_flight, max_writes_in_flight, allow_open_writes,
                transport, metrics_listen, write_token_file, tls, shutdown_grace, worker_threads, log_format,
                limits, cache, ingest, kafka,
        )
    }

    /// Reads `path` (if any), applies `overrides`, validates everything.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or value at fault.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let origin = path.map_or_else(|| PathBuf::from("<defaults>"), Path::to_owned);
        Config::from_toml(&text, &origin, overrides)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key or value at fault.
    pub fn from_toml(text: &str, origin: &Path, overrides: Overrides) -> Result<Config, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: origin.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;

        let listen = match overrides.listen.or(raw.listen) {
            Some(text) => parse_address("listen", Some(&text))?
                .ok_or_else(|| ConfigError::Invalid("listen: empty; give an IP:port address".into()))?,
            None => SocketAddr::from(([127, 0, 0, 1], 50051)),
        };
        let metrics_listen = parse_address(
            "metrics_listen",
            overrides.metrics_listen.or(raw.metrics_listen).as_deref(),
        )?;
        let tls = tls_files(
            overrides.tls_cert.or(raw.tls_cert),
            overrides.tls_key.or(raw.tls_key),
            overrides.tls_client_ca.or(raw.tls_client_ca),
        )?;
        let limits = raw.limits;
        validate_limits(&limits)?;
        let kafka_overrides = KafkaOverrides {
            brokers: overrides.kafka_brokers,
            topic: overrides.kafka_topic,
            group: overrides.kafka_group,
        };
        let kafka = kafka_config(raw.kafka, kafka_overrides, &limits)?;
        validate_transport(&raw.transport)?;
        let write_token_file = overrides.write_token_file.or(raw.write_token_file);
        let allow_open_writes = overrides.allow_open_writes.or(raw.allow_open_writes).unwrap_or(false);
        let mutual_tls = tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        let writes_guarded = write_token_file.is_some() || mutual_tls || allow_open_writes;
        if !listen.ip().is_loopback() && !writes_guarded {
            return Err(open_writes_refused(listen));
        }
        validate_cache(&raw.cache)?;
        let store = overrides.store.or(raw.store).filter(|url| !url.is_empty());
        let store = store
            .map(|url| url.parse::<crate::store::StoreUrl>())
            .transpose()
            .map_err(|error| ConfigError::Invalid(format!("store: {error}")))?;
        validate_redis(&raw.redis)?;
        raw.ingest
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("ingest.{e}")))?;
        let variants = build_variants(&raw.model, &raw.variants, &raw.ingest).map_err(|e| match e {
            VariantError::Parse(message) => parse_error(message),
            VariantError::Invalid(message) => ConfigError::Invalid(message),
        })?;
        Ok(Config {
            listen,
            data_dir: overrides
                .data_dir
                .or(raw.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            store,
            redis: raw.redis,
            max_in_flight: overrides
                .max_in_flight
                .or(raw.max_in_flight)
                .unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            max_writes_in_flight: overrides
                .max_writes_in_flight
                .or(raw.max_writes_in_flight)
                .unwrap_or(DEFAULT_MAX_WRITES_IN_FLIGHT),
            allow_open_writes,
            transport: raw.transport,
            metrics_listen,
            write_token_file,
            tls,
            shutdown_grace: Duration::from_millis(raw.shutdown_grace_ms.unwrap_or(10_000)),
            worker_threads: overrides.worker_threads.or(raw.worker_threads).unwrap_or(0),
            log_format: overrides.log_format.or(raw.log_format).unwrap_or_default(),
            limits,
            cache: raw.cache,
            ingest: raw.ingest,
            variants,
            kafka,
        })
    }
}

fn open_writes_refused(listen: SocketAddr) -> ConfigError {
    ConfigError::Invalid(format!(
        "listen: {listen} is reachable from other hosts and writes (RecordEvents, StreamEvents) would be \
         open to anyone who can connect; give a write token (--write-token-file), mutual TLS \
         (--tls-client-ca), or accept it explicitly with --allow-open-writes"
    ))
}

/// An `IP:port` setting; empty or absent = `None`.
fn parse_address(key: &str, text: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match text {
        Some(text) if !text.is_empty() => text
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid(format!("{key}: `{text}` is not an IP:port address"))),
        _ => Ok(None),
    }
}

fn validate_cache(cache: &CacheConfig) -> Result<(), ConfigError> {
    if cache.ttl_ms == 0 || cache.creators == 0 || cache.viewers == 0 {
        return Err(ConfigError::Invalid(
            "cache: creators, viewers and ttl_ms must be > 0".into(),
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

fn validate_redis(redis: &RedisConfig) -> Result<(), ConfigError> {
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

/// Default read budget: Rank answers in well under a millisecond, so 256
/// concurrent reads is already a deep queue on any core count, and 256
/// Rank messages at the default limits take at most ~19 MB.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default write budget: 32 batches at the default limits (1.7 MB each) bound
/// request bodies held for writes to ~55 MB; the store commits in groups, so
/// more concurrent writers add no throughput.
pub const DEFAULT_MAX_WRITES_IN_FLIGHT: usize = 32;

fn validate_transport(transport: &TransportConfig) -> Result<(), ConfigError> {
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
    for (name, value, low, high) in checks {
        if !(low..=high).contains(&value) {
            return Err(ConfigError::Invalid(format!(
                "transport.{name} must be in [{low}, {high}], got {value}"
            )));
        }
    }
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

fn validate_limits(limits: &Limits) -> Result<(), ConfigError> {
    let checks = [
        ("max_candidates", limits.max_candidates, 1, 1_000_000),
        ("max_creator_ids", limits.max_creator_ids, 1, 1_000_000),
        ("max_events_per_batch", limits.max_events_per_batch, 1, 1_000_000),
        ("max_event_id_bytes", limits.max_event_id_bytes, 1, 4096),
        ("max_message_bytes", limits.max_message_bytes, 1024, 1 << 30),
    ];
    for (name, value, low, high) in checks {
        if !(low..=high).contains(&value) {
            return Err(ConfigError::Invalid(format!(
                "limits.{name} must be in [{low}, {high}], got {value}"
            )));
        }
    }
    if limits.dedupe_window_secs == 0 {
        return Err(ConfigError::Invalid("limits.dedupe_window_secs must be > 0".into()));
    }
    Ok(())
}

enum VariantError {
    Parse(String),
    Invalid(String),
}

fn build_variants(
    model: &toml::Table,
    named: &BTreeMap<String, toml::Table>,
    ingest: &IngestParams,
) -> Result<Variants, VariantError> {
    let default = make_variant("", model, ingest)?;
    let mut variants = BTreeMap::new();
    for (name, overrides) in named {
        if name.is_empty() || name.len() > 64 {
            return Err(VariantError::Invalid(format!(
                "variant name `{name}` must be 1 to 64 characters"
            )));
        }
        let mut merged = model.clone();
        merge(&mut merged, overrides);
        variants.insert(name.clone(), Arc::new(make_variant(name, &merged, ingest)?));
    }
    Ok(Variants {
        default: Arc::new(default),
        named: variants,
    })
}

fn make_variant(name: &str, table: &toml::Table, ingest: &IngestParams) -> Result<Variant, VariantError> {
    let section = if name.is_empty() {
        "model".to_owned()
    } else {
        format!("variants.{name}")
    };
    let params: ModelParams = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| VariantError::Parse(format!("[{section}]: {}", e.message())))?;
    params
        .validate()
        .map_err(|e| VariantError::Invalid(format!("[{section}] {e}")))?;
    let model_version = model_version(&params, ingest);
    Ok(Variant {
        name: name.to_owned(),
        params,
        model_version,
    })
}

/// Deep merge: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(override_table)) => {
                merge(base_table, override_table);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `cb1-` and a 64-bit FNV-1a hash of the effective parameters, printed with
/// full float precision: equal parameters give equal versions on every replica.
fn model_version(params: &ModelParams, ingest: &IngestParams) -> String {
    let canonical = format!("{params:?}|{ingest:?}");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("cb1-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"), Overrides::default())
    }

    #[test]
    fn defaults_are_valid() {
        let config = load("").expect("defaults");
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.variants.default_variant().params, ModelParams::default());
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let text = include_str!("../config/creator-boost.toml");
        let config = load(text).expect("example config");
        assert!(config.variants.names().count() >= 1);
    }

    #[test]
    fn variants_override_and_version() {
        let config = load("[model]\nnon_fan_factor = 0.5\n[variants.deep]\nweights.tip = 20.0\n[variants.same]\n")
            .expect("config");
        let default = config.variants.get("").expect("default");
        let deep = config.variants.get("deep").expect("deep");
        let same = config.variants.get("same").expect("same");
        assert_eq!(deep.params.non_fan_factor, 0.5);
        assert_eq!(deep.params.weights.tip, 20.0);
        assert_eq!(deep.params.weights.like, ModelParams::default().weights.like);
        assert_ne!(deep.model_version, default.model_version);
        assert_eq!(same.model_version, default.model_version);
        assert!(config.variants.get("missing").is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("[model]\nboost_min = 2.0", "boost_min"),
            ("[model]\nweights.like = -1.0", "weights.like"),
            ("[model]\nno_such_key = 1", "no_such_key"),
            ("[variants.x]\nnon_fan_factor = 7.0", "variants.x"),
            ("[ingest]\nengagement_half_life_days = 0.5", "engagement_half_life_days"),
            ("[limits]\nmax_candidates = 0", "max_candidates"),
            ("listen = \"nowhere\"", "listen"),
            ("listen = [", "invalid config file"),
        ];
        for (text, expected) in cases {
            let error = load(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn open_writes_on_a_public_address_need_consent() {
        let error = load("listen = \"0.0.0.0:50051\"").expect_err("open writes on 0.0.0.0");
        assert!(error.to_string().contains("--allow-open-writes"), "{error}");
        assert!(load("listen = \"[::]:50051\"").is_err());
        for allowed in [
            "listen = \"0.0.0.0:50051\"\nallow_open_writes = true",
            "listen = \"0.0.0.0:50051\"\nwrite_token_file = \"/run/token\"",
            "listen = \"0.0.0.0:50051\"\ntls_cert = \"c\"\ntls_key = \"k\"\ntls_client_ca = \"ca\"",
            "listen = \"[::1]:50051\"",
        ] {
            load(allowed).expect(allowed);
        }
        // Server-only TLS authenticates the server, not the writer.
        assert!(load("listen = \"0.0.0.0:50051\"\ntls_cert = \"c\"\ntls_key = \"k\"").is_err());
    }

    #[test]
    fn message_limits_follow_the_request_limits() {
        let limits = Limits::default().message_limits();
        assert_eq!(limits.rank, 2_000 * 34 + 4096);
        assert!(limits.record_events < 2 << 20, "{limits:?}");
        let small = Limits {
            max_message_bytes: 1024,
            ..Limits::default()
        };
        assert_eq!(small.message_limits().record_events, 1024);
        assert!(load("[transport]\nmax_connections = 0").is_err());
        assert!(load("[transport]\nconnection_window_bytes = 70000\nstream_window_bytes = 80000").is_err());
    }

    #[test]
    fn overrides_win() {
        let overrides = Overrides {
            listen: Some("127.0.0.1:1".into()),
            max_in_flight: Some(3),
            ..Default::default()
        };
        let config = Config::from_toml("listen = \"127.0.0.1:2\"\nmax_in_flight = 9", Path::new("x"), overrides)
            .expect("config");
        assert_eq!(config.listen.port(), 1);
        assert_eq!(config.max_in_flight, 3);
    }
}
