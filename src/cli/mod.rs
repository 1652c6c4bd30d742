//! The command line: its arguments ([`args`]), the subcommands that run in
//! this process ([`commands`]), the gRPC client behind `send`, `rank`,
//! `creator-scores` and `health` ([`client`]), log setup ([`telemetry`]), and
//! TIME arguments ([`time`]).

pub mod args;
pub mod client;
pub mod commands;
pub mod telemetry;
pub mod time;
