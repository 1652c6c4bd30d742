//! The one domain error type. Its mapping to `tonic::Status` lives in
//! [`crate::service::grpc`], so transport concerns stay at the edge.

use crate::store::StoreError;

/// What can go wrong serving a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field, index or limit.
    #[error("{0}")]
    InvalidArgument(String),
    /// The requested variant is not configured.
    #[error("unknown variant `{0}`")]
    UnknownVariant(String),
    /// A write without the configured bearer token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// More calls in flight than `max_in_flight`.
    #[error("too many calls in flight (limit {limit})")]
    Overloaded {
        /// The configured limit.
        limit: usize,
    },
    /// The store failed; the cause is logged, not sent to the client.
    #[error("store unavailable")]
    Store(#[from] StoreError),
}
