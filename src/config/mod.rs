//! Configuration: one TOML file for defaults, model parameters and named
//! variants, typed and validated once at load, then passed down (no globals).
//!
//! - [`settings`]: the one list — each setting declared once, with its type,
//!   default, flag, environment variable and doc line; flags and variables
//!   win over the file. docs/configuration.md is its reference.
//! - [`sections`]: the top level, `[limits]`, `[transport]`, `[cache]`,
//!   `[embedded]`, `[redis]`, and their checks; [`kafka`]: `[kafka]`.
//! - [`variants`]: `[model]` and `[variants.NAME]`, the parameter sets a
//!   reload swaps in.
//!
//! [`Config`] is what `serve` runs with: typed (addresses, durations, the
//! store URL), checked across tables.

pub mod kafka;
pub mod sections;
pub mod settings;
pub mod variants;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::IngestParams;

pub use kafka::{DEFAULT_KAFKA_GROUP, KafkaConfig, KafkaFlags, KafkaFormat, KafkaSettings};
pub use sections::{
    CacheConfig, CacheFlags, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_WRITES_IN_FLIGHT, EmbeddedConfig, EmbeddedFlags,
    LimitFlags, Limits, LogFormat, MessageLimits, RedisConfig, RedisFlags, TopLevel, TopLevelFlags, TransportConfig,
    TransportFlags,
};
pub use variants::{Variant, Variants};

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

fn tls_files(top: &TopLevel) -> Result<Option<TlsFiles>, ConfigError> {
    let given = |path: &PathBuf| (!path.as_os_str().is_empty()).then(|| path.clone());
    let (cert, key, client_ca) = (given(&top.tls_cert), given(&top.tls_key), given(&top.tls_client_ca));
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
    /// The embedded store's data volume.
    pub embedded: EmbeddedConfig,
    /// What is stored per event.
    pub ingest: IngestParams,
    /// Scoring parameter sets.
    pub variants: Variants,
    /// Kafka ingest; `None` = events arrive over gRPC only.
    pub kafka: Option<KafkaConfig>,
}

/// The file as written: the top level and each table. Unknown keys are
/// refused by each table's own check (serde's `deny_unknown_fields` does not
/// combine with `flatten`, so the top level is [`TopLevelTable`]).
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(flatten)]
    top: TopLevelTable,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    transport: TransportConfig,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    embedded: EmbeddedConfig,
    #[serde(default)]
    redis: RedisConfig,
    #[serde(default)]
    ingest: IngestParams,
    #[serde(default)]
    kafka: KafkaSettings,
    #[serde(default)]
    model: toml::Table,
    #[serde(default)]
    variants: BTreeMap<String, toml::Table>,
}

/// The command line's and the environment's values of every setting; those
/// given win over the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// The top level.
    #[command(flatten)]
    pub top: TopLevelFlags,
    /// `[limits]`.
    #[command(flatten)]
    pub limits: LimitFlags,
    /// `[transport]`.
    #[command(flatten)]
    pub transport: TransportFlags,
    /// `[cache]`.
    #[command(flatten)]
    pub cache: CacheFlags,
    /// `[embedded]`.
    #[command(flatten)]
    pub embedded: EmbeddedFlags,
    /// `[redis]`.
    #[command(flatten)]
    pub redis: RedisFlags,
    /// `[kafka]`.
    #[command(flatten)]
    pub kafka: KafkaFlags,
}

impl Overrides {
    /// Only a data directory and, if given, a store URL (the offline commands).
    pub fn store(data_dir: Option<PathBuf>, store: Option<String>) -> Overrides {
        let mut overrides = Overrides::default();
        overrides.top.data_dir = data_dir;
        overrides.top.store = store;
        overrides
    }

    fn apply(&self, raw: &mut RawConfig) {
        self.top.apply(&mut raw.top.0);
        self.limits.apply(&mut raw.limits);
        self.transport.apply(&mut raw.transport);
        self.cache.apply(&mut raw.cache);
        self.embedded.apply(&mut raw.embedded);
        self.redis.apply(&mut raw.redis);
        self.kafka.apply(&mut raw.kafka);
    }
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
                limits, cache, embedded, ingest, kafka,
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
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        overrides.apply(&mut raw);
        let RawConfig {
            top: TopLevelTable(top),
            limits,
            transport,
            cache,
            embedded,
            redis,
            ingest,
            kafka,
            model,
            variants,
        } = raw;
        sections::validate_limits(&limits)?;
        sections::validate_transport(&transport)?;
        sections::validate_cache(&cache)?;
        sections::validate_embedded(&embedded)?;
        sections::validate_redis(&redis)?;
        ingest
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("ingest.{e}")))?;
        let kafka = kafka::kafka_config(kafka, &limits)?;
        let variants = variants::build_variants(&model, &variants, &ingest).map_err(|e| match e {
            variants::VariantError::Parse(message) => parse_error(message),
            variants::VariantError::Invalid(message) => ConfigError::Invalid(message),
        })?;
        let listen = parse_address("listen", &top.listen)?
            .ok_or_else(|| ConfigError::Invalid("listen: empty; give an IP:port address".into()))?;
        let tls = tls_files(&top)?;
        let write_token_file = (!top.write_token_file.as_os_str().is_empty()).then(|| top.write_token_file.clone());
        let mutual_tls = tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        let writes_guarded = write_token_file.is_some() || mutual_tls || top.allow_open_writes;
        if !(listen.ip().is_loopback() || writes_guarded) {
            return Err(open_writes_refused(listen));
        }
        let store = (!top.store.is_empty())
            .then(|| top.store.parse::<crate::store::StoreUrl>())
            .transpose()
            .map_err(|error| ConfigError::Invalid(format!("store: {error}")))?;
        Ok(Config {
            listen,
            metrics_listen: parse_address("metrics_listen", &top.metrics_listen)?,
            data_dir: top.data_dir,
            store,
            redis,
            max_in_flight: top.max_in_flight,
            max_writes_in_flight: top.max_writes_in_flight,
            allow_open_writes: top.allow_open_writes,
            transport,
            write_token_file,
            tls,
            shutdown_grace: Duration::from_millis(top.shutdown_grace_ms),
            worker_threads: top.worker_threads,
            log_format: top.log_format,
            limits,
            cache,
            embedded,
            ingest,
            variants,
            kafka,
        })
    }
}

/// The top-level keys: what `flatten` leaves once the tables are taken, read
/// with [`TopLevel`]'s own `deny_unknown_fields` check (an unknown key or
/// table is refused by name).
#[derive(Debug, Default)]
struct TopLevelTable(TopLevel);

impl<'de> Deserialize<'de> for TopLevelTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        toml::Value::Table(table)
            .try_into()
            .map(TopLevelTable)
            .map_err(serde::de::Error::custom)
    }
}

fn open_writes_refused(listen: SocketAddr) -> ConfigError {
    ConfigError::Invalid(format!(
        "listen: {listen} is reachable from other hosts and writes (RecordEvents, StreamEvents) would be \
         open to anyone who can connect; give a write token (--write-token-file), mutual TLS \
         (--tls-client-ca), or accept it explicitly with --allow-open-writes"
    ))
}

/// An `IP:port` setting; empty = `None`.
fn parse_address(key: &str, text: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ConfigError::Invalid(format!("{key}: `{text}` is not an IP:port address")))
}

/// The reference table (Markdown) of every setting, in file order.
pub fn reference_table() -> String {
    let mut rows = sections::TopLevel::reference();
    rows.extend(sections::Limits::reference());
    rows.extend(sections::TransportConfig::reference());
    rows.extend(sections::CacheConfig::reference());
    rows.extend(sections::EmbeddedConfig::reference());
    rows.extend(sections::RedisConfig::reference());
    rows.extend(kafka::KafkaSettings::reference());
    let mut out =
        String::from("| file key | flag | environment variable | default | meaning |\n|---|---|---|---|---|\n");
    for row in rows {
        let default = if row.default.is_empty() {
            "(none)".to_owned()
        } else {
            format!("`{}`", row.default)
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}` | `--{}` | `{}` | {} | {} |",
            row.key,
            row.flag,
            row.env,
            default,
            row.doc.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    const BEGIN: &str = "<!-- settings:begin -->\n";
    const END: &str = "<!-- settings:end -->";

    /// docs/configuration.md shows exactly the settings declared here;
    /// `UPDATE_DOCS=1 cargo test --lib config` rewrites it.
    #[test]
    fn the_reference_page_matches_the_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let page = std::fs::read_to_string(path).expect("docs/configuration.md");
        let start = page.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = page.find(END).expect("end marker");
        let table = reference_table();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let fresh = format!("{}{table}{}", &page[..start], &page[end..]);
            std::fs::write(path, fresh).expect("write docs/configuration.md");
            return;
        }
        assert_eq!(
            page[start..end],
            table,
            "docs/configuration.md is out of date: run UPDATE_DOCS=1 cargo test --lib config"
        );
    }

    #[test]
    fn every_flag_and_variable_is_unique() {
        let table = reference_table();
        let mut flags: Vec<&str> = table.lines().filter_map(|l| l.split('|').nth(2)).collect();
        let count = flags.len();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelParams;

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
        let text = include_str!("../../config/creator-boost.toml");
        let config = load(text).expect("example config");
        assert!(config.variants.names().count() >= 1);
    }

    #[test]
    fn the_kafka_batch_is_capped_by_the_batch_limit() {
        let kafka = "[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"events\"\n";
        let batch = |text: &str| load(text).expect(text).kafka.expect("kafka on").max_batch;
        assert_eq!(batch(kafka), 4_000);
        assert_eq!(batch(&format!("{kafka}[limits]\nmax_events_per_batch = 1000\n")), 1_000);
        assert_eq!(
            batch(&format!(
                "{kafka}max_batch = 9000\n[limits]\nmax_events_per_batch = 2000\n"
            )),
            2_000
        );
        assert!(load(&format!("{kafka}max_batch = 0\n")).is_err());
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
        let mut overrides = Overrides::default();
        overrides.top.listen = Some("127.0.0.1:1".into());
        overrides.top.max_in_flight = Some(3);
        overrides.cache.viewers_mb = Some(7);
        let config = Config::from_toml("listen = \"127.0.0.1:2\"\nmax_in_flight = 9", Path::new("x"), overrides)
            .expect("config");
        assert_eq!(config.listen.port(), 1);
        assert_eq!(config.max_in_flight, 3);
        assert_eq!(config.cache.viewers_mb, 7);
    }
}
