//! The offline subcommands (`import`, `scores`, `generate`): each parses its
//! arguments into library calls, so `main` stays a dispatcher.

use std::io::Write;

use crate::cli::args::{EvaluateArgs, GenerateArgs, ImportArgs, ScoresArgs, ServerArgs};
use crate::cli::client::StreamSink;
use crate::cli::time::parse_time;
use crate::config::{Config, Overrides};
use crate::engine::Clock;
use crate::engine::open_engine;
use crate::offline::generate::{GenerateOptions, generate};
use crate::offline::import::{EngineSink, ImportOptions, ImportStats, run_import};
use crate::offline::scores::{score_rows, unknown_row, write_rows};
use crate::store::Store;
use crate::store::embedded::{EmbeddedStore, WriterSettings};

/// Why an offline command failed; the message is for the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

fn error(e: impl std::fmt::Display) -> CommandError {
    CommandError(e.to_string())
}

/// An offline tool's error and its causes on one line (`what failed: why`):
/// those errors say what failed and keep the cause as their source.
fn error_chain(error: &dyn std::error::Error) -> CommandError {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    CommandError(text)
}

fn now_ms() -> i64 {
    Clock::system().now_ms()
}

/// Parses an optional TIME argument.
fn optional_time(text: Option<&str>) -> Result<Option<i64>, CommandError> {
    text.map(|t| parse_time(t, now_ms()))
        .transpose()
        .map_err(|e| error_chain(&e))
}

/// `creator-boost import`.
///
/// # Errors
/// [`CommandError`] on bad arguments, unreadable files or a failing sink.
pub async fn import(args: ImportArgs) -> Result<ImportStats, CommandError> {
    let until_ms = optional_time(args.until.as_deref())?;
    if args.batch_size == 0 {
        return Err(CommandError("--batch-size must be > 0".into()));
    }
    let options = ImportOptions {
        files: args.files,
        format: args.format,
        until_ms,
        batch_size: args.batch_size,
    };
    match args.server {
        Some(server) => {
            let mut sink = StreamSink::open(&ServerArgs {
                server,
                token_file: args.token_file,
            })
            .await
            .map_err(error)?;
            run_import(options, &mut sink).await.map_err(|e| error_chain(&e))
        }
        None => {
            let overrides = Overrides::store(args.data_dir, args.store);
            let config = Config::load(args.config.as_deref(), overrides).map_err(error)?;
            if args.batch_size > config.limits.max_events_per_batch {
                return Err(CommandError(format!(
                    "--batch-size {} exceeds limits.max_events_per_batch ({})",
                    args.batch_size, config.limits.max_events_per_batch
                )));
            }
            let engine = open_engine(&config, Clock::system(), &crate::metrics::MetricsRegistry::new())
                .await
                .map_err(error)?;
            let mut sink = EngineSink(engine);
            run_import(options, &mut sink).await.map_err(|e| error_chain(&e))
        }
    }
}

/// `creator-boost scores`, written to `out`.
///
/// # Errors
/// [`CommandError`] on bad arguments, an unknown variant or a store failure.
pub async fn scores(args: ScoresArgs, out: &mut impl Write) -> Result<(), CommandError> {
    let overrides = Overrides::store(args.data_dir, args.store);
    let config = Config::load(args.config.as_deref(), overrides).map_err(error)?;
    let as_of_ms = parse_time(&args.as_of, now_ms()).map_err(|e| error_chain(&e))?;
    let variant = config
        .variants
        .get(&args.variant)
        .ok_or_else(|| CommandError(format!("unknown variant `{}`", args.variant)))?;
    let (global, mut creators) = match &config.store {
        Some(_) => {
            let engine = open_engine(&config, Clock::system(), &crate::metrics::MetricsRegistry::new())
                .await
                .map_err(error)?;
            let store = engine.store();
            (
                store.global().await.map_err(error)?,
                store.scan_creators().await.map_err(error)?,
            )
        }
        None => {
            if !config.data_dir.join(crate::store::embedded::DB_FILE).exists() {
                return Err(CommandError(format!("no store in {}", config.data_dir.display())));
            }
            let settings = WriterSettings {
                ingest: config.ingest.clone(),
                dedupe_window_ms: 1,
                on_commit: None,
                page_cache_bytes: config.cache.embedded_bytes(),
                // Reads only.
                disk_floor: crate::store::embedded::DiskFloor::NONE,
            };
            let store = EmbeddedStore::open(&config.data_dir, settings).map_err(error)?;
            (
                store.global_blocking().map_err(error)?,
                store.scan_creators().map_err(error)?,
            )
        }
    };
    if !args.creators.is_empty() {
        creators.retain(|(id, _)| args.creators.contains(id));
    }
    let later = creators.iter().filter(|(_, a)| a.updated_at_ms > as_of_ms).count();
    if later > 0 {
        eprintln!(
            "note: {later} creators have events after --as-of; they are included (import with --until to exclude them)"
        );
    }
    let mut rows = score_rows(variant, &config.ingest.decay(), &global, &creators, as_of_ms);
    if args.few_accounts {
        rows.retain(|r| r.public_boost > 1.0 && r.fan_value > 0.0 && r.fan_belief < 0.5);
    }
    for id in &args.creators {
        if !rows.iter().any(|r| r.creator_id == *id) {
            rows.push(unknown_row(*id));
        }
    }
    write_rows(&rows, args.format, out).map_err(error)
}

/// `creator-boost generate`, JSON Lines to `out`.
///
/// # Errors
/// [`CommandError`] on a bad `--end` or a write failure.
pub fn generate_events(args: GenerateArgs, out: &mut impl Write) -> Result<u64, CommandError> {
    let end_ms = parse_time(&args.end, now_ms()).map_err(|e| error_chain(&e))?;
    let options = GenerateOptions {
        seed: args.seed,
        creators: args.creators,
        viewers: args.viewers,
        events: args.events,
        end_ms,
        days: args.days,
    };
    let events = generate(&options);
    for event in &events {
        writeln!(out, "{}", crate::engine::jsonl::to_line(event)).map_err(error)?;
    }
    out.flush().map_err(error)?;
    Ok(events.len() as u64)
}

/// `creator-boost evaluate`: the Markdown report.
///
/// # Errors
/// [`CommandError`] on a bad config, split or data file.
pub fn evaluate(args: EvaluateArgs) -> Result<String, CommandError> {
    let config = Config::load(args.config.as_deref(), Overrides::default()).map_err(error)?;
    let split_ms = optional_time(args.split.as_deref())?;
    let options = crate::offline::evaluate::EvalOptions {
        file: args.data,
        format: args.format,
        split_ms,
        min_impressions: args.min_impressions,
        ingest: config.ingest.clone(),
        params: config.variants.default_variant().params.clone(),
        chart_dir: args.charts,
        tune: args.tune,
    };
    crate::offline::evaluate::run(&options).map_err(|e| error_chain(&e))
}
