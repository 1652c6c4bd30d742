//! The edge of the service, before any handler runs: which connections are
//! accepted and for how long ([`listener`]), and which calls are admitted and
//! how much of their bodies may be read ([`admission`]). Client deadlines are
//! in [`crate::service::deadline`].

pub mod admission;
pub mod listener;
