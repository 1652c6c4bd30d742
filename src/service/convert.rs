//! Proto ⇄ domain. Every field of every message crosses here and nowhere
//! else, so the server and the client cannot disagree on a mapping.

use crate::engine::ingest::{RawEvent, RejectReason};
use crate::engine::{Candidate, CreatorSlot, RankOutcome, RankQuery, RecordOutcome, ScoresOutcome};
use crate::error::Error;
use crate::model::{CreatorScore, EventKind, Relation, ScoreSpace};
use crate::proto;

/// The domain kind of a wire value; `None` for UNSPECIFIED and for values
/// this build does not know (a newer client).
pub fn event_kind(kind: i32) -> Option<EventKind> {
    match proto::EventKind::try_from(kind).ok()? {
        proto::EventKind::Unspecified => None,
        proto::EventKind::View => Some(EventKind::View),
        proto::EventKind::Like => Some(EventKind::Like),
        proto::EventKind::Comment => Some(EventKind::Comment),
        proto::EventKind::Share => Some(EventKind::Share),
        proto::EventKind::Purchase => Some(EventKind::Purchase),
        proto::EventKind::JoinFanGroup => Some(EventKind::JoinFanGroup),
        proto::EventKind::Tip => Some(EventKind::Tip),
        proto::EventKind::Follow => Some(EventKind::Follow),
        proto::EventKind::Unfollow => Some(EventKind::Unfollow),
        proto::EventKind::LeaveFanGroup => Some(EventKind::LeaveFanGroup),
        proto::EventKind::Report => Some(EventKind::Report),
        proto::EventKind::ProfileVisit => Some(EventKind::ProfileVisit),
        proto::EventKind::Refund => Some(EventKind::Refund),
    }
}

impl From<EventKind> for proto::EventKind {
    fn from(kind: EventKind) -> proto::EventKind {
        match kind {
            EventKind::View => proto::EventKind::View,
            EventKind::Like => proto::EventKind::Like,
            EventKind::Comment => proto::EventKind::Comment,
            EventKind::Share => proto::EventKind::Share,
            EventKind::Purchase => proto::EventKind::Purchase,
            EventKind::JoinFanGroup => proto::EventKind::JoinFanGroup,
            EventKind::Tip => proto::EventKind::Tip,
            EventKind::Follow => proto::EventKind::Follow,
            EventKind::Unfollow => proto::EventKind::Unfollow,
            EventKind::LeaveFanGroup => proto::EventKind::LeaveFanGroup,
            EventKind::Report => proto::EventKind::Report,
            EventKind::ProfileVisit => proto::EventKind::ProfileVisit,
            EventKind::Refund => proto::EventKind::Refund,
        }
    }
}

impl From<proto::Event> for RawEvent {
    fn from(event: proto::Event) -> RawEvent {
        RawEvent {
            kind: event_kind(event.kind),
            event_id: event.event_id,
            viewer_id: event.viewer_id,
            creator_id: event.creator_id,
            timestamp_ms: event.timestamp_ms,
            amount: event.amount,
        }
    }
}

impl From<RawEvent> for proto::Event {
    fn from(event: RawEvent) -> proto::Event {
        proto::Event {
            event_id: event.event_id,
            kind: event.kind.map_or(proto::EventKind::Unspecified, proto::EventKind::from) as i32,
            viewer_id: event.viewer_id,
            creator_id: event.creator_id,
            timestamp_ms: event.timestamp_ms,
            amount: event.amount,
        }
    }
}

impl From<RejectReason> for proto::RejectReason {
    fn from(reason: RejectReason) -> proto::RejectReason {
        match reason {
            RejectReason::UnspecifiedKind => proto::RejectReason::UnspecifiedKind,
            RejectReason::MissingCreator => proto::RejectReason::MissingCreator,
            RejectReason::SelfInteraction => proto::RejectReason::SelfInteraction,
            RejectReason::AnonymousRelation => proto::RejectReason::AnonymousRelation,
            RejectReason::FutureTimestamp => proto::RejectReason::FutureTimestamp,
            RejectReason::TimestampOutOfRange => proto::RejectReason::TimestampOutOfRange,
            RejectReason::NonFiniteAmount => proto::RejectReason::NonFiniteAmount,
            RejectReason::NegativeAmount => proto::RejectReason::NegativeAmount,
            RejectReason::ViewFractionAboveOne => proto::RejectReason::ViewFractionAboveOne,
            RejectReason::EventIdTooLong => proto::RejectReason::EventIdTooLong,
        }
    }
}

/// The domain reason of a wire value; `None` when the server did not say
/// (REJECT_REASON_UNSPECIFIED) or said something this build does not know.
pub fn reject_reason(code: i32) -> Option<RejectReason> {
    let code = proto::RejectReason::try_from(code).ok()?;
    RejectReason::ALL
        .into_iter()
        .find(|reason| proto::RejectReason::from(*reason) == code)
}

impl From<RecordOutcome> for proto::RecordEventsResponse {
    fn from(outcome: RecordOutcome) -> proto::RecordEventsResponse {
        proto::RecordEventsResponse {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|(index, reason)| proto::RejectedEvent {
                    index,
                    reason: reason.to_string(),
                    code: proto::RejectReason::from(reason) as i32,
                })
                .collect(),
        }
    }
}

/// A server's answer as a domain outcome.
///
/// # Errors
/// The rejected event whose reason this build cannot read (index, text).
pub fn record_outcome(response: &proto::RecordEventsResponse) -> Result<RecordOutcome, (u32, String)> {
    let rejected = response
        .rejected
        .iter()
        .map(|r| {
            reject_reason(r.code)
                .map(|reason| (r.index, reason))
                .ok_or_else(|| (r.index, r.reason.clone()))
        })
        .collect::<Result<_, _>>()?;
    Ok(RecordOutcome {
        accepted: response.accepted,
        duplicates: response.duplicates,
        rejected,
    })
}

impl From<Relation> for proto::Relation {
    fn from(relation: Relation) -> proto::Relation {
        match relation {
            Relation::None => proto::Relation::None,
            Relation::Follower => proto::Relation::Follower,
            Relation::FanGroupMember => proto::Relation::FanGroupMember,
        }
    }
}

impl From<ScoreSpace> for proto::ScoreSpace {
    fn from(space: ScoreSpace) -> proto::ScoreSpace {
        match space {
            ScoreSpace::Linear => proto::ScoreSpace::Linear,
            ScoreSpace::Log => proto::ScoreSpace::Log,
        }
    }
}

/// A Rank request as the engine's query; `read_budget` comes from the
/// call's deadline.
///
/// # Errors
/// [`Error::UnknownScoreSpace`].
pub fn rank_query(request: &proto::RankRequest, read_budget: Option<std::time::Duration>) -> Result<RankQuery, Error> {
    let score_space = match proto::ScoreSpace::try_from(request.score_space) {
        Ok(proto::ScoreSpace::Linear) => ScoreSpace::Linear,
        Ok(proto::ScoreSpace::Log) => ScoreSpace::Log,
        Err(_) => return Err(Error::UnknownScoreSpace(request.score_space)),
    };
    Ok(RankQuery {
        viewer_id: request.viewer_id,
        candidates: request
            .candidates
            .iter()
            .map(|c| Candidate {
                item_id: c.item_id,
                creator_id: c.creator_id,
                base_score: c.base_score,
            })
            .collect(),
        variant: request.variant.clone(),
        top_k: request.top_k as usize,
        score_space,
        read_budget,
    })
}

/// The Rank answer: one result per kept candidate, explained if asked.
pub fn rank_response(request: &proto::RankRequest, outcome: &RankOutcome) -> proto::RankResponse {
    let results = outcome
        .items
        .iter()
        .map(|item| {
            let candidate = &request.candidates[item.index as usize];
            let slot = &outcome.slots[item.creator_slot as usize];
            proto::RankedCandidate {
                item_id: candidate.item_id,
                creator_id: candidate.creator_id,
                index: item.index,
                base_score: item.base_score,
                public_boost: slot.creator.public_boost,
                private_boost: slot.private.private_boost,
                boost: item.boost,
                final_score: item.final_score,
                relation: proto::Relation::from(slot.private.relation) as i32,
                explanation: request.explain.then(|| explanation(slot, item.boost)),
            }
        })
        .collect();
    proto::RankResponse {
        results,
        model_version: outcome.variant.model_version.clone(),
        variant: outcome.variant.name.clone(),
        degraded: outcome.degraded,
    }
}

/// Every term behind one candidate's boost, as fields and as one line of text.
pub fn explanation(slot: &CreatorSlot, boost: f64) -> proto::Explanation {
    let c = &slot.creator;
    let p = &slot.private;
    proto::Explanation {
        fan_value: c.fan_value,
        long_term_value: c.long_term_value,
        creator_value: c.creator_value,
        fan_lift: c.fan_lift,
        churn_lift: c.churn_lift,
        report_lift: c.report_lift,
        relation_tier: p.tier,
        intimacy: p.intimacy,
        intimacy_factor: p.intimacy_factor,
        evidence: c.evidence,
        followers: c.followers,
        audience: c.audience,
        engaged_accounts: c.engaged_accounts,
        confidence: c.confidence,
        fan_belief: c.fan_belief,
        negative_accounts: c.negative_accounts,
        negative_confidence: c.negative_confidence,
        buyers: c.buyers,
        repeat_buyers: c.repeat_buyers,
        repeat_share: c.repeat_share,
        trust_lift: c.trust_lift,
        refunders: c.refunders,
        refund_lift: c.refund_lift,
        text: explanation_text(slot, boost),
    }
}

/// The explanation as one line: the formula with every term's value.
pub fn explanation_text(slot: &CreatorSlot, boost: f64) -> String {
    let c = &slot.creator;
    let p = &slot.private;
    format!(
        "public {:.4} = soft_clamp(exp({:.4} = fan_value {:.4} [fan_lift {:.4}, {:.0}% believed, \
         {:.1} accounts shown, {:.1} engaged; trust_lift {:.4}: repeat buyers {:.1} of {:.1}, \
         share {:.3}, believed {:.0}%] + long_term_value {:.4} [churn_lift {:.4}, \
         report_lift {:.4}, refund_lift {:.4} ({:.1} refunders); gains x {:.3}, losses x {:.3} \
         of {:.1} leaving/reporting/refunding])); \
         private {:.4} = clamp(tier {:.2} x intimacy {:.4} [I = {:.3}]); boost {:.4}",
        c.public_boost,
        c.creator_value,
        c.fan_value,
        c.fan_lift,
        c.fan_belief * 100.0,
        c.audience,
        c.engaged_accounts,
        c.trust_lift,
        c.repeat_buyers,
        c.buyers,
        c.repeat_share,
        c.trust_belief * 100.0,
        c.long_term_value,
        c.churn_lift,
        c.report_lift,
        c.refund_lift,
        c.refunders,
        c.confidence,
        c.negative_confidence,
        c.negative_accounts,
        p.private_boost,
        p.tier,
        p.intimacy_factor,
        p.intimacy,
        boost
    )
}

/// One creator's scores on the wire.
pub fn creator_score(creator_id: u64, s: &CreatorScore) -> proto::CreatorScore {
    proto::CreatorScore {
        creator_id,
        found: s.found,
        fan_value: s.fan_value,
        long_term_value: s.long_term_value,
        creator_value: s.creator_value,
        public_boost: s.public_boost,
        followers: s.followers,
        evidence: s.evidence,
        updated_at_ms: s.updated_at_ms,
        audience: s.audience,
        engaged_accounts: s.engaged_accounts,
        confidence: s.confidence,
        fan_belief: s.fan_belief,
        negative_accounts: s.negative_accounts,
        negative_confidence: s.negative_confidence,
        buyers: s.buyers,
        repeat_buyers: s.repeat_buyers,
        repeat_share: s.repeat_share,
        trust_lift: s.trust_lift,
        refunders: s.refunders,
        refund_lift: s.refund_lift,
    }
}

impl From<&ScoresOutcome> for proto::GetCreatorScoresResponse {
    fn from(outcome: &ScoresOutcome) -> proto::GetCreatorScoresResponse {
        proto::GetCreatorScoresResponse {
            scores: outcome
                .scores
                .iter()
                .map(|(creator_id, score)| creator_score(*creator_id, score))
                .collect(),
            model_version: outcome.variant.model_version.clone(),
            variant: outcome.variant.name.clone(),
            degraded: outcome.degraded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_and_reason_round_trips() {
        for kind in EventKind::ALL {
            assert_eq!(event_kind(proto::EventKind::from(kind) as i32), Some(kind));
        }
        assert_eq!(event_kind(proto::EventKind::Unspecified as i32), None);
        assert_eq!(event_kind(999), None);
        for reason in RejectReason::ALL {
            assert_eq!(reject_reason(proto::RejectReason::from(reason) as i32), Some(reason));
        }
        assert_eq!(reject_reason(proto::RejectReason::Unspecified as i32), None);
    }

    #[test]
    fn an_outcome_survives_the_wire() {
        let outcome = RecordOutcome {
            accepted: 3,
            duplicates: 1,
            rejected: vec![(0, RejectReason::SelfInteraction), (4, RejectReason::EventIdTooLong)],
        };
        let response = proto::RecordEventsResponse::from(outcome.clone());
        assert!(response.rejected[0].reason.ends_with("(self_interaction)"));
        assert_eq!(record_outcome(&response), Ok(outcome));
    }
}
