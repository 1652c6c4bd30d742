//! Command-line definitions. Every `serve` setting is declared once in
//! [`crate::config::settings`], which gives it its flag, environment variable
//! and config-file key (docs/configuration.md).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;
use crate::offline::import::Format;
use crate::offline::scores::ScoresFormat;

/// creator-boost: private-domain traffic boosts over gRPC.
#[derive(Debug, Parser)]
#[command(name = "creator-boost", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service.
    Serve(Box<ServeArgs>),
    /// Send one event to a running server (RecordEvents).
    Send(SendArgs),
    /// Rank candidates on a running server (Rank).
    Rank(RankArgs),
    /// Show creators' scores from a running server (GetCreatorScores).
    CreatorScores(CreatorScoresArgs),
    /// Ask a running server's health service; exit 0 only when SERVING.
    Health(HealthArgs),
    /// Bulk-load events (KuaiRand CSV or JSON Lines, plain or .gz).
    Import(ImportArgs),
    /// Every creator's scores from the embedded store, as of an instant.
    Scores(ScoresArgs),
    /// Write seeded synthetic events as JSON Lines to stdout.
    Generate(GenerateArgs),
    /// Rank correlation of creator_value with next-window engagement on a KuaiRand log.
    Evaluate(EvaluateArgs),
}

/// `serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (defaults, model parameters, variants).
    #[arg(long, env = "CREATOR_BOOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Every setting of the file, as a flag and an environment variable
    /// (docs/configuration.md lists them).
    #[command(flatten)]
    pub settings: Overrides,
}

impl ServeArgs {
    /// The flags that override the config file.
    pub fn overrides(&self) -> Overrides {
        self.settings.clone()
    }
}

/// Where a client subcommand connects.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Server URL.
    #[arg(long, env = "CREATOR_BOOST_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// File holding the bearer token for writes.
    #[arg(long, env = "CREATOR_BOOST_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// `send` flags.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Connection.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Event kind: view, like, comment, share, purchase, join_fan_group, tip,
    /// follow, unfollow, leave_fan_group, report, profile_visit, refund.
    #[arg(long)]
    pub kind: String,
    /// Viewer id (0 = anonymous).
    #[arg(long, default_value_t = 0)]
    pub viewer: u64,
    /// Creator id.
    #[arg(long)]
    pub creator: u64,
    /// Amount (PURCHASE/TIP money, VIEW fraction watched).
    #[arg(long, default_value_t = 0.0)]
    pub amount: f64,
    /// Idempotency key (empty = not deduplicated).
    #[arg(long, default_value = "")]
    pub event_id: String,
    /// Timestamp, unix milliseconds (0 = now).
    #[arg(long, default_value_t = 0)]
    pub timestamp_ms: i64,
}

/// `rank` flags.
#[derive(Debug, clap::Args)]
pub struct RankArgs {
    /// Connection.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Viewer id (0 = anonymous).
    #[arg(long, default_value_t = 0)]
    pub viewer: u64,
    /// Variant name ("" = default).
    #[arg(long, default_value = "")]
    pub variant: String,
    /// Print each candidate's explanation.
    #[arg(long)]
    pub explain: bool,
    /// Return only the best K (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Use the LOG score space (final = base + ln(boost)).
    #[arg(long)]
    pub log_space: bool,
    /// Candidates as ITEM:CREATOR:BASE_SCORE.
    #[arg(required = true)]
    pub candidates: Vec<String>,
}

/// `creator-scores` flags.
#[derive(Debug, clap::Args)]
pub struct CreatorScoresArgs {
    /// Connection.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Variant name ("" = default).
    #[arg(long, default_value = "")]
    pub variant: String,
    /// Creator ids.
    #[arg(required = true)]
    pub creator_ids: Vec<u64>,
}

/// `health` flags.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Server URL.
    #[arg(long, env = "CREATOR_BOOST_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Service to ask about ("" = the whole server).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// `import` flags.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Files to read, in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Embedded store to write (the server must be stopped) [default: ./data].
    #[arg(long, env = "CREATOR_BOOST_DATA_DIR", conflicts_with_all = ["server", "store"])]
    pub data_dir: Option<PathBuf>,
    /// Write straight into a shared store (redis://… or redis-cluster://…);
    /// servers on it may keep running.
    #[arg(long, env = "CREATOR_BOOST_STORE", conflicts_with = "server")]
    pub store: Option<String>,
    /// Send to a running server over StreamEvents instead.
    #[arg(long)]
    pub server: Option<String>,
    /// File holding the bearer token for `--server`.
    #[arg(long, env = "CREATOR_BOOST_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Input format [default: from the file name: .jsonl → jsonl, else kuairand].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Skip events at or after TIME (RFC 3339, date, unix ms or `now`).
    #[arg(long)]
    pub until: Option<String>,
    /// Config file (its `[ingest]` half-lives must match the server's).
    #[arg(long, env = "CREATOR_BOOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Events per batch.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
}

/// `scores` flags.
#[derive(Debug, clap::Args)]
pub struct ScoresArgs {
    /// Embedded store to read (the server must be stopped) [default: ./data].
    #[arg(long, env = "CREATOR_BOOST_DATA_DIR", conflicts_with = "store")]
    pub data_dir: Option<PathBuf>,
    /// Read a shared store instead (redis://… or redis-cluster://…).
    #[arg(long, env = "CREATOR_BOOST_STORE")]
    pub store: Option<String>,
    /// Config file (model parameters and variants).
    #[arg(long, env = "CREATOR_BOOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Score as of TIME (RFC 3339, date, unix ms or `now`); events after it
    /// are not excluded, so import with `--until` to split history.
    #[arg(long, default_value = "now")]
    pub as_of: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ScoresFormat,
    /// Variant name ("" = default).
    #[arg(long, default_value = "")]
    pub variant: String,
    /// Only these creators (repeatable); unknown ones print as neutral.
    #[arg(long = "creator")]
    pub creators: Vec<u64>,
    /// Only creators boosted above 1 whose engagement evidence rests on few
    /// accounts (less than half of it believed, `fan_belief` < 0.5): the
    /// list a trust & safety review starts from.
    #[arg(long)]
    pub few_accounts: bool,
}

/// `generate` flags.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of creators.
    #[arg(long, default_value_t = 1_000)]
    pub creators: u64,
    /// Number of viewers.
    #[arg(long, default_value_t = 20_000)]
    pub viewers: u64,
    /// Number of events.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Timestamp of the end of the period (fixed by default, for reproducibility).
    #[arg(long, default_value = "2026-11-01T00:00:00Z")]
    pub end: String,
    /// Length of the period in days.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
}

/// `evaluate` flags.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Event log in an import format (plain or .gz).
    #[arg(long)]
    pub data: PathBuf,
    /// Format of the log [default: guessed from the file name, as `import` does].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Start of the judged window [default: middle of the data].
    #[arg(long)]
    pub split: Option<String>,
    /// Creators need this many impressions in both windows.
    #[arg(long, default_value_t = 50)]
    pub min_impressions: u64,
    /// Config file whose parameters are evaluated [default: built-in defaults].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also search a parameter grid on an inner split.
    #[arg(long)]
    pub tune: bool,
    /// Write SVG charts into this directory.
    #[arg(long)]
    pub charts: Option<PathBuf>,
}
