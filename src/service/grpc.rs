//! The tonic adapter: converts proto ⇄ domain, maps [`Error`] to `Status`.
//! No scoring here, and no admission (see [`crate::service::transport::admission`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::model::{EventKind, Relation, ScoreSpace};
use crate::proto;
use crate::proto::creator_boost_server::CreatorBoost;
use crate::service::engine::{Candidate, Engine, RankQuery, RecordOutcome};
use crate::service::ingest::RawEvent;
use crate::service::metrics::Method;
use crate::store::{Store, StoreError};

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::UnknownVariant(name) => Status::invalid_argument(format!("unknown variant `{name}`")),
            Error::Unauthenticated => Status::unauthenticated("missing or invalid bearer token"),
            Error::Overloaded { limit } => {
                let mut status = Status::resource_exhausted(format!(
                    "server busy: {limit} calls in flight; retry after a short backoff"
                ));
                status
                    .metadata_mut()
                    .insert("retry-after-ms", tonic::metadata::MetadataValue::from_static("50"));
                status
            }
            Error::Store(store) => {
                // The cause goes to the log; the client learns only that the
                // store is unavailable and may retry.
                tracing::error!(error = %store, "store failure");
                match store {
                    StoreError::Backend(_) | StoreError::Closed => {
                        Status::unavailable("store unavailable; nothing from this batch was acknowledged")
                    }
                    StoreError::Corrupt(_) => Status::internal("store record unreadable"),
                }
            }
        }
    }
}

/// The `CreatorBoost` service over an engine. The write token, the in-flight
/// budgets and the message limits are checked before a call gets here, by
/// [`crate::service::transport::admission`].
pub struct GrpcService<S> {
    engine: Arc<Engine<S>>,
}

impl<S> GrpcService<S> {
    /// The service over `engine`.
    pub fn new(engine: Arc<Engine<S>>) -> Self {
        GrpcService { engine }
    }
}

fn event_kind(kind: i32) -> Option<EventKind> {
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
    }
}

/// The proto value of a domain event kind.
pub fn proto_kind(kind: EventKind) -> proto::EventKind {
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
    }
}

fn raw_event(event: proto::Event) -> RawEvent {
    RawEvent {
        kind: event_kind(event.kind),
        event_id: event.event_id,
        viewer_id: event.viewer_id,
        creator_id: event.creator_id,
        timestamp_ms: event.timestamp_ms,
        amount: event.amount,
    }
}

fn record_response(outcome: RecordOutcome) -> proto::RecordEventsResponse {
    proto::RecordEventsResponse {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates,
        rejected: outcome
            .rejected
            .into_iter()
            .map(|(index, reason)| proto::RejectedEvent {
                index,
                reason: reason.to_string(),
            })
            .collect(),
    }
}

fn relation(relation: Relation) -> proto::Relation {
    match relation {
        Relation::None => proto::Relation::None,
        Relation::Follower => proto::Relation::Follower,
        Relation::FanGroupMember => proto::Relation::FanGroupMember,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::RecordEventsResponse, Status>> + Send + 'static>>;

impl<S: Store> GrpcService<S> {
    /// Runs one call and records it. (Deadlines are enforced earlier, by
    /// [`crate::service::deadline::DeadlineLayer`], which drops this future.)
    async fn observed<T>(&self, method: Method, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        let started = Instant::now();
        let _in_flight = self.engine.metrics().enter();
        let result = call.await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.engine.metrics().observe_call(method, code, started.elapsed());
        result
    }

    async fn rank_call(&self, request: Request<proto::RankRequest>) -> Result<Response<proto::RankResponse>, Status> {
        let read_budget = read_budget(&request);
        let request = request.into_inner();
        let score_space = match proto::ScoreSpace::try_from(request.score_space) {
            Ok(proto::ScoreSpace::Linear) => ScoreSpace::Linear,
            Ok(proto::ScoreSpace::Log) => ScoreSpace::Log,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown score_space {}",
                    request.score_space
                )));
            }
        };
        let query = RankQuery {
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
            variant: request.variant,
            top_k: request.top_k as usize,
            score_space,
            read_budget,
        };
        let outcome = self.engine.rank(&query).await?;
        let results = outcome
            .items
            .iter()
            .map(|item| {
                let candidate = &request.candidates[item.index as usize];
                let slot = &outcome.slots[item.creator_slot as usize];
                let explanation = request.explain.then(|| {
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
                        text: format!(
                            "public {:.4} = soft_clamp(exp({:.4} = fan_value {:.4} [fan_lift {:.4}, {:.0}% believed, \
                             {:.1} accounts shown, {:.1} engaged] + long_term_value {:.4} [churn_lift {:.4}, \
                             report_lift {:.4}; gains x {:.3}, losses x {:.3} of {:.1} leaving/reporting])); \
                             private {:.4} = clamp(tier {:.2} x intimacy {:.4} [I = {:.3}]); boost {:.4}",
                            c.public_boost,
                            c.creator_value,
                            c.fan_value,
                            c.fan_lift,
                            c.fan_belief * 100.0,
                            c.audience,
                            c.engaged_accounts,
                            c.long_term_value,
                            c.churn_lift,
                            c.report_lift,
                            c.confidence,
                            c.negative_confidence,
                            c.negative_accounts,
                            p.private_boost,
                            p.tier,
                            p.intimacy_factor,
                            p.intimacy,
                            item.boost
                        ),
                    }
                });
                proto::RankedCandidate {
                    item_id: candidate.item_id,
                    creator_id: candidate.creator_id,
                    index: item.index,
                    base_score: item.base_score,
                    public_boost: slot.creator.public_boost,
                    private_boost: slot.private.private_boost,
                    boost: item.boost,
                    final_score: item.final_score,
                    relation: relation(slot.private.relation) as i32,
                    explanation,
                }
            })
            .collect();
        Ok(Response::new(proto::RankResponse {
            results,
            model_version: outcome.variant.model_version.clone(),
            variant: outcome.variant.name.clone(),
            degraded: outcome.degraded,
        }))
    }

    async fn scores_call(
        &self,
        request: Request<proto::GetCreatorScoresRequest>,
    ) -> Result<Response<proto::GetCreatorScoresResponse>, Status> {
        let read_budget = read_budget(&request);
        let request = request.into_inner();
        let outcome = self
            .engine
            .creator_scores(&request.creator_ids, &request.variant, read_budget)
            .await?;
        let scores = outcome
            .scores
            .iter()
            .map(|(creator_id, s)| proto::CreatorScore {
                creator_id: *creator_id,
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
            })
            .collect();
        Ok(Response::new(proto::GetCreatorScoresResponse {
            scores,
            model_version: outcome.variant.model_version.clone(),
            variant: outcome.variant.name.clone(),
            degraded: outcome.degraded,
        }))
    }

    async fn record_call(
        &self,
        request: Request<proto::RecordEventsRequest>,
    ) -> Result<Response<proto::RecordEventsResponse>, Status> {
        let events = request.into_inner().events.into_iter().map(raw_event).collect();
        let outcome = self.engine.record(events).await?;
        Ok(Response::new(record_response(outcome)))
    }
}

#[tonic::async_trait]
impl<S: Store> CreatorBoost for GrpcService<S> {
    async fn rank(&self, request: Request<proto::RankRequest>) -> Result<Response<proto::RankResponse>, Status> {
        self.observed(Method::Rank, self.rank_call(request)).await
    }

    async fn get_creator_scores(
        &self,
        request: Request<proto::GetCreatorScoresRequest>,
    ) -> Result<Response<proto::GetCreatorScoresResponse>, Status> {
        self.observed(Method::GetCreatorScores, self.scores_call(request)).await
    }

    async fn record_events(
        &self,
        request: Request<proto::RecordEventsRequest>,
    ) -> Result<Response<proto::RecordEventsResponse>, Status> {
        self.observed(Method::RecordEvents, self.record_call(request)).await
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<Streaming<proto::RecordEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let engine = Arc::clone(&self.engine);
        let mut incoming = request.into_inner();
        let output = async_stream(move |sender| async move {
            // Each message's write slot is taken and given back by the
            // admission layer's body guard: none is held between messages.
            while let Some(message) = incoming.next().await {
                let started = Instant::now();
                let reply = match message {
                    Ok(batch) => {
                        let events = batch.events.into_iter().map(raw_event).collect();
                        engine.record(events).await.map(record_response).map_err(Status::from)
                    }
                    Err(status) => Err(status),
                };
                let code = reply.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
                engine
                    .metrics()
                    .observe_call(Method::StreamEvents, code, started.elapsed());
                let failed = reply.is_err();
                if sender.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(output))
    }
}

/// A response stream fed by a task through a small channel, so a slow reader
/// slows the producer instead of growing a queue.
fn async_stream<F, Fut>(produce: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<proto::RecordEventsResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(sender));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))
}

/// Share of a call's deadline its store reads may take; the rest is for
/// scoring and the answer, so a slow store degrades the answer instead of
/// failing the call with DEADLINE_EXCEEDED.
const READ_SHARE_OF_DEADLINE: f64 = 0.6;

/// The store-read budget of a call with a `grpc-timeout`.
fn read_budget<T>(request: &Request<T>) -> Option<Duration> {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(crate::service::deadline::parse_timeout)
        .map(|deadline| deadline.mul_f64(READ_SHARE_OF_DEADLINE))
}
