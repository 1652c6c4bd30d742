//! creator-boost: traffic boosts for recommendation candidates, weighted by
//! each creator's private-domain value and the viewer's relation to them.
//!
//! # Layout
//!
//! Five floors, each a folder; an arrow only points to a lower floor.
//!
//! 1. [`cli`]: the command line — arguments ([`cli::args`]), the subcommands
//!    that run in this process ([`cli::commands`]), the gRPC client behind
//!    `send`, `rank`, `creator-scores` and `health` ([`cli::client`]), time
//!    arguments and log setup. `main.rs` only dispatches to it.
//! 2. [`service`] and [`offline`], side by side and never importing each
//!    other. [`service`] is the online edge: connections, TLS, the write
//!    token and admission ([`service::transport`]), client deadlines, the
//!    tonic adapter ([`service::grpc`], with the conversions in
//!    [`service::convert`]), Kafka ingest, the `/metrics` endpoint, reload on
//!    SIGHUP and the wiring ([`service::server`]). [`offline`] holds the
//!    tools that read event files and the store, never a running server:
//!    [`offline::import`], [`offline::scores`], [`offline::generate`],
//!    [`offline::evaluate`].
//! 3. [`engine`]: the domain core both stand on — rank, scores and record
//!    over the store and the caches, event validation and `RawEvent`, the
//!    JSON Lines event format, the one clock, the engine's metrics, and
//!    opening the configured store.
//! 4. [`store`]: the store trait and its backends — [`store::embedded`]
//!    (redb) and [`store::redis`] (Redis and Redis Cluster, for several
//!    replicas) — with the record codec, the store URL and the store's errors.
//! 5. [`model`]: the scoring model — pure code, no I/O, no proto types.
//!
//! Shared by every floor: [`config`] (the one list of settings, the tables,
//! the variants), [`error`] (the domain error a call can end with),
//! [`metrics`] (the registry each owner registers its families into) and
//! [`proto`] (the generated wire types).

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
