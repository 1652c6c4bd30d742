//! The one domain error type, with a variant per refusal and its fields, so
//! callers and tests match on what went wrong instead of on text. Its
//! mapping to `tonic::Status` lives in [`crate::service::grpc`]; refusals
//! made by the transport before a call reaches the domain (token, budgets)
//! are [`crate::service::transport::Refusal`].

use crate::model::ScoreSpace;
use crate::store::StoreError;

/// What can go wrong serving a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Rank request with more candidates than `limits.max_candidates`.
    #[error("{count} candidates exceed max_candidates ({limit})")]
    TooManyCandidates {
        /// Candidates in the request.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A GetCreatorScores request with more ids than `limits.max_creator_ids`.
    #[error("{count} creator_ids exceed max_creator_ids ({limit})")]
    TooManyCreatorIds {
        /// Ids in the request.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A batch with more events than `limits.max_events_per_batch`.
    #[error("{count} events exceed max_events_per_batch ({limit})")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A candidate's base score the score space cannot take.
    #[error("candidates[{index}].base_score = {value}: {}", space_needs(*space))]
    BadBaseScore {
        /// Position of the candidate in the request.
        index: usize,
        /// The base score given.
        value: f64,
        /// The request's score space.
        space: ScoreSpace,
    },
    /// A `score_space` value the contract does not define.
    #[error("unknown score_space {0}")]
    UnknownScoreSpace(i32),
    /// The requested variant is not configured.
    #[error("unknown variant `{0}`")]
    UnknownVariant(String),
    /// The store failed; the cause is logged, not sent to the client.
    #[error("store unavailable")]
    Store(#[from] StoreError),
}

/// What a score space needs of a base score.
fn space_needs(space: ScoreSpace) -> &'static str {
    match space {
        ScoreSpace::Linear => "LINEAR score space needs a finite base_score >= 0",
        ScoreSpace::Log => "LOG score space needs a finite base_score",
    }
}
