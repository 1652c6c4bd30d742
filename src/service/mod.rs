//! The online service: everything a running `creator-boost serve` is made of.
//!
//! Requests flow from the edge inwards:
//!
//! - [`transport`]: accepted connections and their timeouts; admission (write
//!   token, read and write budgets, per-RPC message limits) on headers before
//!   any body is read.
//! - [`deadline`]: client deadlines (`grpc-timeout`) → DEADLINE_EXCEEDED.
//! - [`grpc`]: the tonic adapter: converts, calls the engine, converts back.
//! - [`convert`]: proto ⇄ domain, the one place (the client uses it too).
//! - [`engine`]: the domain service — rank, scores, record — over store and
//!   cache.
//! - [`ingest`]: event validation, shared with the offline import.
//! - [`kafka`]: consumes a Kafka topic of events into the engine (optional).
//! - [`cache`]: moka caches of creator aggregates and viewer records.
//! - [`metrics`]: the Prometheus registry and its `/metrics` endpoint.
//! - [`server`]: wiring: health (with a store probe), reflection, limits,
//!   reload on SIGHUP, graceful shutdown.

pub mod cache;
pub mod convert;
pub mod deadline;
pub mod engine;
pub mod grpc;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod transport;
