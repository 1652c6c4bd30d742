//! The offline tools: they read event files and the store, never a running
//! server.
//!
//! - [`import`]: bulk import of event files (JSON lines, KuaiRand) into a store.
//! - [`scores`]: every creator's score as of an instant, from a store.
//! - [`generate`]: synthetic events with a seeded, reproducible generator.
//! - [`evaluate`]: the model against later behaviour on real logs, and its
//!   report and charts.

pub mod evaluate;
pub mod generate;
pub mod import;
pub mod scores;
