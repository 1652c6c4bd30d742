//! The `creator-boost` binary: parses flags and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use creator_boost::cli::args::{Cli, Command};
use creator_boost::cli::{client, commands, telemetry};
use creator_boost::config::{Config, EXIT_CONFIG};
use creator_boost::service::server;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => {
            let config = match Config::load(args.config.as_deref(), args.overrides()) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            telemetry::init(config.log_format);
            drop(runtime);
            let runtime = match server::runtime(config.worker_threads) {
                Ok(runtime) => runtime,
                Err(error) => return fail(&error),
            };
            match runtime.block_on(server::serve(config, args.config.clone(), args.overrides())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "server failed");
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Send(args) => finish(runtime.block_on(client::send(args))),
        Command::Rank(args) => finish(runtime.block_on(client::rank(args))),
        Command::CreatorScores(args) => finish(runtime.block_on(client::creator_scores(args))),
        Command::Import(args) => match runtime.block_on(commands::import(args)) {
            Ok(stats) => {
                println!("{stats}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        Command::Scores(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match runtime.block_on(commands::scores(args, &mut out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
        Command::Generate(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match commands::generate_events(args, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => fail(&error),
            }
        }
        Command::Evaluate(args) => match commands::evaluate(args) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
        Command::Health(args) => match runtime.block_on(client::health(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

fn finish(result: Result<(), client::ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
