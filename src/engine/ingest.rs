//! Event validation: each bad event is rejected by index with a reason, the
//! good events of the same batch go on.

use std::fmt;

use crate::config::Limits;
use crate::model::{Decay, Event, EventKind};

/// An event as received, before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct RawEvent {
    /// Idempotency key.
    pub event_id: String,
    /// `None` for an unspecified or unknown kind.
    pub kind: Option<EventKind>,
    /// Who; 0 = anonymous.
    pub viewer_id: u64,
    /// To whom.
    pub creator_id: u64,
    /// Unix milliseconds; 0 = now.
    pub timestamp_ms: i64,
    /// Money or fraction watched.
    pub amount: f64,
}

/// Why an event was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// `kind` is EVENT_KIND_UNSPECIFIED or unknown.
    UnspecifiedKind,
    /// `creator_id` is 0.
    MissingCreator,
    /// `viewer_id == creator_id`.
    SelfInteraction,
    /// A relation event without a viewer.
    AnonymousRelation,
    /// Too far ahead of the server clock.
    FutureTimestamp,
    /// Negative, or too far from now for the decay representation.
    TimestampOutOfRange,
    /// `amount` is NaN or infinite.
    NonFiniteAmount,
    /// `amount` < 0.
    NegativeAmount,
    /// A VIEW whose watched fraction is above 1.
    ViewFractionAboveOne,
    /// `event_id` too long.
    EventIdTooLong,
}

impl RejectReason {
    /// Short stable code, for metrics and summaries.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::UnspecifiedKind => "unspecified_kind",
            RejectReason::MissingCreator => "missing_creator",
            RejectReason::SelfInteraction => "self_interaction",
            RejectReason::AnonymousRelation => "anonymous_relation",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::NonFiniteAmount => "non_finite_amount",
            RejectReason::NegativeAmount => "negative_amount",
            RejectReason::ViewFractionAboveOne => "view_fraction_above_one",
            RejectReason::EventIdTooLong => "event_id_too_long",
        }
    }
}

impl RejectReason {
    /// Every reason.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::UnspecifiedKind,
        RejectReason::MissingCreator,
        RejectReason::SelfInteraction,
        RejectReason::AnonymousRelation,
        RejectReason::FutureTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::NonFiniteAmount,
        RejectReason::NegativeAmount,
        RejectReason::ViewFractionAboveOne,
        RejectReason::EventIdTooLong,
    ];
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RejectReason::UnspecifiedKind => "kind is unspecified",
            RejectReason::MissingCreator => "creator_id must not be 0",
            RejectReason::SelfInteraction => "self-interaction: viewer_id equals creator_id",
            RejectReason::AnonymousRelation => {
                "viewer_id 0 (anonymous) cannot follow, unfollow, join or leave a fan group"
            }
            RejectReason::FutureTimestamp => "timestamp_ms is too far in the future",
            RejectReason::TimestampOutOfRange => "timestamp_ms is negative or outside the supported range",
            RejectReason::NonFiniteAmount => "amount is not finite",
            RejectReason::NegativeAmount => "amount is negative",
            RejectReason::ViewFractionAboveOne => "VIEW amount is a watched fraction and must be in [0, 1]",
            RejectReason::EventIdTooLong => "event_id is too long",
        };
        write!(f, "{} ({})", text, self.code())
    }
}

/// Validates one event against the limits and resolves `timestamp_ms = 0` to `now_ms`.
///
/// # Errors
/// The first [`RejectReason`] that applies.
pub fn validate(raw: RawEvent, now_ms: i64, limits: &Limits, decay: &Decay) -> Result<Event, RejectReason> {
    let Some(kind) = raw.kind else {
        return Err(RejectReason::UnspecifiedKind);
    };
    if raw.creator_id == 0 {
        return Err(RejectReason::MissingCreator);
    }
    if raw.viewer_id == raw.creator_id {
        return Err(RejectReason::SelfInteraction);
    }
    if raw.viewer_id == 0 && kind.is_relation() {
        return Err(RejectReason::AnonymousRelation);
    }
    if raw.event_id.len() > limits.max_event_id_bytes {
        return Err(RejectReason::EventIdTooLong);
    }
    if !raw.amount.is_finite() {
        return Err(RejectReason::NonFiniteAmount);
    }
    if raw.amount < 0.0 {
        return Err(RejectReason::NegativeAmount);
    }
    if kind == EventKind::View && raw.amount > 1.0 {
        return Err(RejectReason::ViewFractionAboveOne);
    }
    let timestamp_ms = if raw.timestamp_ms == 0 {
        now_ms
    } else {
        raw.timestamp_ms
    };
    let max_skew_ms = i64::try_from(limits.max_future_skew_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if timestamp_ms < 0 || !decay.accepts_timestamp(timestamp_ms) {
        return Err(RejectReason::TimestampOutOfRange);
    }
    if timestamp_ms > now_ms.saturating_add(max_skew_ms) {
        return Err(RejectReason::FutureTimestamp);
    }
    Ok(Event {
        event_id: raw.event_id,
        kind,
        viewer_id: raw.viewer_id,
        creator_id: raw.creator_id,
        timestamp_ms,
        amount: raw.amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IngestParams;

    const NOW: i64 = 1_780_000_000_000;

    fn good() -> RawEvent {
        RawEvent {
            event_id: "e1".into(),
            kind: Some(EventKind::Like),
            viewer_id: 1,
            creator_id: 2,
            timestamp_ms: NOW - 1000,
            amount: 0.0,
        }
    }

    fn check(raw: RawEvent) -> Result<Event, RejectReason> {
        validate(raw, NOW, &Limits::default(), &IngestParams::default().decay())
    }

    #[test]
    fn accepts_good_and_resolves_now() {
        assert_eq!(check(good()).expect("good").timestamp_ms, NOW - 1000);
        let now = check(RawEvent {
            timestamp_ms: 0,
            ..good()
        })
        .expect("now");
        assert_eq!(now.timestamp_ms, NOW);
        let anonymous_view = RawEvent {
            viewer_id: 0,
            kind: Some(EventKind::View),
            amount: 0.5,
            ..good()
        };
        assert!(check(anonymous_view).is_ok());
    }

    #[test]
    fn rejects_each_bad_field() {
        let cases = [
            (RawEvent { kind: None, ..good() }, RejectReason::UnspecifiedKind),
            (
                RawEvent {
                    creator_id: 0,
                    ..good()
                },
                RejectReason::MissingCreator,
            ),
            (RawEvent { viewer_id: 2, ..good() }, RejectReason::SelfInteraction),
            (
                RawEvent {
                    viewer_id: 0,
                    kind: Some(EventKind::Follow),
                    ..good()
                },
                RejectReason::AnonymousRelation,
            ),
            (
                RawEvent {
                    event_id: "x".repeat(129),
                    ..good()
                },
                RejectReason::EventIdTooLong,
            ),
            (
                RawEvent {
                    amount: f64::NAN,
                    ..good()
                },
                RejectReason::NonFiniteAmount,
            ),
            (
                RawEvent {
                    amount: f64::INFINITY,
                    ..good()
                },
                RejectReason::NonFiniteAmount,
            ),
            (RawEvent { amount: -1.0, ..good() }, RejectReason::NegativeAmount),
            (
                RawEvent {
                    kind: Some(EventKind::View),
                    amount: 1.5,
                    ..good()
                },
                RejectReason::ViewFractionAboveOne,
            ),
            (
                RawEvent {
                    timestamp_ms: NOW + 301_000,
                    ..good()
                },
                RejectReason::FutureTimestamp,
            ),
            (
                RawEvent {
                    timestamp_ms: -5,
                    ..good()
                },
                RejectReason::TimestampOutOfRange,
            ),
            (
                RawEvent {
                    timestamp_ms: i64::MAX,
                    ..good()
                },
                RejectReason::TimestampOutOfRange,
            ),
            (
                RawEvent {
                    timestamp_ms: i64::MIN,
                    ..good()
                },
                RejectReason::TimestampOutOfRange,
            ),
        ];
        for (raw, reason) in cases {
            assert_eq!(check(raw.clone()), Err(reason), "{raw:?}");
        }
    }
}
