//! The `creator-boost` binary: parses flags and hands each subcommand to the
//! library. Only the subcommands that do I/O get an async runtime, one each;
//! `serve` builds it to the configured size.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use clap::Parser;
use creator_boost::cli::args::{Cli, Command, ServeArgs};
use creator_boost::cli::{client, commands, telemetry};
use creator_boost::config::{Config, EXIT_CONFIG};
use creator_boost::service::server;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
        Command::Send(args) => finish(on_runtime(0, client::send(args))),
        Command::Rank(args) => finish(on_runtime(0, client::rank(args))),
        Command::CreatorScores(args) => finish(on_runtime(0, client::creator_scores(args))),
        Command::Health(args) => match on_runtime(0, client::health(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => fail(&error),
        },
        Command::Import(args) => finish(on_runtime(0, commands::import(args)).map(|stats| println!("{stats}"))),
        Command::Scores(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            finish(on_runtime(0, commands::scores(args, &mut out)))
        }
        Command::Generate(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            finish(commands::generate_events(args, &mut out).map(|_| ()))
        }
        Command::Evaluate(args) => finish(commands::evaluate(args).map(|report| println!("{report}"))),
    }
}

/// `serve`: the config, logs, a runtime of the configured size, the server.
fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), args.overrides()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    telemetry::init(config.log_format);
    let result = on_runtime(
        config.worker_threads,
        server::serve(config, args.config.clone(), args.overrides()),
    );
    if let Err(error) = &result {
        tracing::error!(%error, "server failed");
    }
    finish(result)
}

/// Runs `future` to completion on a runtime made for it (`worker_threads`
/// as in [`server::runtime`]: 0 = one per core).
fn on_runtime<T, E: Display + 'static>(
    worker_threads: usize,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, Box<dyn Display>> {
    let runtime = server::runtime(worker_threads)
        .map_err(|error| Box::new(format!("cannot start the async runtime: {error}")) as Box<dyn Display>)?;
    runtime
        .block_on(future)
        .map_err(|error| Box::new(error) as Box<dyn Display>)
}

fn finish<E: Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
