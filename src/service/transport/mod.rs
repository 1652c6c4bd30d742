//! The edge of the service, before any handler runs, in the order a call
//! meets it: which connections are accepted and for how long ([`listener`]),
//! TLS with certificates re-read on SIGHUP ([`tls`]), whether a write carries
//! the token ([`auth`]), and which calls are admitted and how much of their
//! bodies may be read ([`admission`]). Client deadlines are in
//! [`crate::service::deadline`].

pub mod admission;
pub mod auth;
pub mod listener;
pub mod metrics;
pub mod tls;

use crate::service::transport::metrics::Method;

/// A call the transport refuses before the domain sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A write without the configured bearer token.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// More calls in flight than the budget allows.
    #[error("server busy: {limit} calls in flight; retry after a short backoff")]
    Overloaded {
        /// The budget.
        limit: usize,
    },
}

impl From<Refusal> for tonic::Status {
    fn from(refusal: Refusal) -> tonic::Status {
        match refusal {
            Refusal::Unauthenticated => tonic::Status::unauthenticated(refusal.to_string()),
            Refusal::Overloaded { .. } => {
                let mut status = tonic::Status::resource_exhausted(refusal.to_string());
                status
                    .metadata_mut()
                    .insert("retry-after-ms", tonic::metadata::MetadataValue::from_static("50"));
                status
            }
        }
    }
}

/// What a call is, from its path: decides its token, budget and message limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Rank, GetCreatorScores: the read budget.
    Read(Method),
    /// RecordEvents: the token and the write budget.
    Write,
    /// StreamEvents: the token; the write budget per message.
    WriteStream,
    /// Health, reflection, anything else: small messages, no budget.
    Other,
}

const SERVICE_PREFIX: &str = "/creatorboost.v1.CreatorBoost/";

impl Kind {
    /// The kind of the call to `path`.
    pub(crate) fn of(path: &str) -> Kind {
        match path.strip_prefix(SERVICE_PREFIX) {
            Some("Rank") => Kind::Read(Method::Rank),
            Some("GetCreatorScores") => Kind::Read(Method::GetCreatorScores),
            Some("RecordEvents") => Kind::Write,
            Some("StreamEvents") => Kind::WriteStream,
            _ => Kind::Other,
        }
    }

    /// Whether the call writes (and so needs the token).
    pub(crate) fn writes(self) -> bool {
        matches!(self, Kind::Write | Kind::WriteStream)
    }

    /// The method its refusals are counted under; `None` outside CreatorBoost.
    pub(crate) fn method(self) -> Option<Method> {
        match self {
            Kind::Read(method) => Some(method),
            Kind::Write => Some(Method::RecordEvents),
            Kind::WriteStream => Some(Method::StreamEvents),
            Kind::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(Kind::of("/creatorboost.v1.CreatorBoost/Rank"), Kind::Read(Method::Rank));
        assert_eq!(Kind::of("/creatorboost.v1.CreatorBoost/RecordEvents"), Kind::Write);
        assert_eq!(
            Kind::of("/creatorboost.v1.CreatorBoost/StreamEvents"),
            Kind::WriteStream
        );
        assert_eq!(Kind::of("/grpc.health.v1.Health/Check"), Kind::Other);
        assert!(Kind::Write.writes() && Kind::WriteStream.writes() && !Kind::Read(Method::Rank).writes());
    }
}
