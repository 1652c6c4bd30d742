//! The online service's edge: gRPC and Kafka in front of the domain core
//! ([`crate::engine`]), and the wiring of a running `creator-boost serve`.
//!
//! Requests flow from the edge inwards:
//!
//! - [`transport`]: accepted connections and their timeouts; admission (write
//!   token, read and write budgets, per-RPC message limits) on headers before
//!   any body is read.
//! - [`deadline`]: client deadlines (`grpc-timeout`) → DEADLINE_EXCEEDED.
//! - [`grpc`]: the tonic adapter: converts, calls the engine, converts back.
//! - [`convert`]: proto ⇄ domain, the one place (the client uses it too).
//!   The domain core it calls is [`crate::engine`].
//! - [`kafka`]: consumes a Kafka topic of events into the engine (optional).
//! - [`metrics`]: the `/metrics` endpoint over the process's registry.
//! - [`server`]: wiring: health (with a store probe), reflection, limits,
//!   reload on SIGHUP, graceful shutdown.

pub mod convert;
pub mod deadline;
pub mod grpc;
pub mod kafka;
pub mod metrics;
pub mod reload;
pub mod server;
mod task;
pub mod transport;
