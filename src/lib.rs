//! creator-boost: traffic boosts for recommendation candidates, weighted by
//! each creator's private-domain value and the viewer's relation to them.
//!
//! # Layout
//!
//! - [`model`]: the scoring model — pure code, no I/O, no proto types.
//! - [`store`]: the store trait and its backends (embedded redb; Redis and
//!   Redis Cluster for several replicas).
//! - [`cache`]: moka caches of creator aggregates and viewer records.
//! - [`ingest`]: event validation.
//! - [`engine`]: the domain service — rank, scores, record — over store and cache.
//! - [`grpc`]: the tonic adapter: proto ⇄ domain, errors → `Status`, nothing else.
//! - [`server`]: wiring: health (with a store probe), reflection, limits,
//!   graceful shutdown.
//! - [`metrics`]: the Prometheus registry and its `/metrics` endpoint.
//! - [`transport`]: the edge — accepted connections and their timeouts,
//!   admission (write token, read and write budgets, per-RPC message limits)
//!   on headers before any body is read.
//! - [`deadline`]: client deadlines (`grpc-timeout`) → DEADLINE_EXCEEDED.
//! - [`config`]: typed, validated configuration with named variants.
//! - [`import`], [`scores`], [`generate`], [`evaluate`]: offline tools — bulk
//!   import, scores as of an instant, synthetic events, the evaluation.
//! - [`cli`], [`commands`], [`client`], [`telemetry`]: the command line, its
//!   subcommands, its gRPC client, logs, time arguments.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod error;
pub mod model;
pub mod offline;
pub mod proto;
pub mod service;
pub mod store;
