//! creator-boost: traffic boosts for recommendation candidates, weighted by
//! each creator's private-domain value and the viewer's relation to them.
//!
//! # Layout
//!
//! Four layers, each a folder, and what they all share. Arrows point down
//! only: the command line uses the offline tools and the service, both use
//! the store, everything uses the model.
//!
//! - [`cli`]: the command line — arguments ([`cli::args`]), the subcommands
//!   that run in this process ([`cli::commands`]), the gRPC client behind
//!   `send`, `rank`, `creator-scores` and `health` ([`cli::client`]), time
//!   arguments and log setup. `main.rs` only dispatches to it.
//! - [`offline`]: tools that read event files and the store, never a running
//!   server — bulk [`offline::import`], [`offline::scores`] as of an instant,
//!   synthetic events ([`offline::generate`]), and [`offline::evaluate`] (its
//!   computation, report and charts apart).
//! - [`service`]: the running server, from the edge inwards — connections,
//!   TLS, the write token and admission ([`service::transport`]), client
//!   deadlines, the tonic adapter ([`service::grpc`]: convert, call, convert
//!   back; the conversions in [`service::convert`], which the command-line
//!   client uses too), the domain engine, event validation, caches, metrics, reload on
//!   SIGHUP, and the wiring ([`service::server`]).
//! - [`store`]: the store trait and its backends — [`store::embedded`] (redb)
//!   and [`store::redis`] (Redis and Redis Cluster, for several replicas) —
//!   with the record codec, the store URL and the store's errors.
//! - [`model`]: the scoring model — pure code, no I/O, no proto types.
//!
//! Shared by every layer: [`config`] (typed, validated configuration with
//! named variants; which settings a reload can apply), [`error`] (the
//! domain error a call can end with) and [`proto`] (the generated wire types).

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod proto;
pub mod service;
pub mod store;
