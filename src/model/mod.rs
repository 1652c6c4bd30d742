//! The scoring model: pure code, no I/O, no proto types.
//!
//! - [`event`]: the event kinds and a validated event.
//! - [`decay`]: forward-decayed sums against a fixed landmark.
//! - [`aggregate`]: what is kept per creator, per viewer and platform-wide, and
//!   how one event changes it ([`aggregate::apply_event`]).
//! - [`params`]: the tunable parameters (weights, priors, ranges).
//! - [`score`]: lifts, fan value, long-term value, public and private boosts.
//! - [`rank`]: final scores for a batch, sorted, with `top_k`.

pub mod aggregate;
pub mod decay;
pub mod event;
pub mod params;
pub mod rank;
pub mod score;

#[cfg(test)]
mod properties;

pub use aggregate::{CreatorAggregate, PairRelation, Trade, ViewerRecord};
pub use decay::Decay;
pub use event::{Event, EventKind};
pub use params::{IngestParams, ModelParams};
pub use rank::{RankedItem, ScoreSpace};
pub use score::{CreatorScore, PrivateScore, Relation};
