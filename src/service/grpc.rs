//! The tonic adapter: each handler converts the request ([`convert`]), calls
//! the engine and converts the answer back; [`Error`] maps to `Status` here.
//! No scoring here, and no admission (see [`crate::service::transport`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::engine::Engine;
use crate::engine::ingest::RawEvent;
use crate::error::Error;
use crate::proto;
use crate::proto::creator_boost_server::CreatorBoost;
use crate::service::convert;
use crate::service::deadline::ClientDeadline;
use crate::service::transport::metrics::{Method, TransportMetrics};
use crate::store::StoreError;

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            // The message names the field, index or limit at fault.
            Error::TooManyCandidates { .. }
            | Error::TooManyCreatorIds { .. }
            | Error::TooManyEvents { .. }
            | Error::BadBaseScore { .. }
            | Error::UnknownScoreSpace(_)
            | Error::UnknownVariant(_) => Status::invalid_argument(error.to_string()),
            Error::Store(store) => {
                // The cause goes to the log; the client learns only that the
                // store is unavailable and may retry. Refusals for the disk
                // floor or a reopen are logged once by the store, when they
                // begin, not once per batch.
                if matches!(store, StoreError::DiskFloor { .. } | StoreError::Reopening { .. }) {
                    tracing::debug!(error = %store, "write refused");
                } else {
                    tracing::error!(error = %store, "store failure");
                }
                match store {
                    StoreError::Redis(_)
                    | StoreError::Embedded(_)
                    | StoreError::Open { .. }
                    | StoreError::Task { .. }
                    | StoreError::Backend(_)
                    | StoreError::Timeout { .. }
                    | StoreError::BreakerOpen { .. }
                    | StoreError::Closed => {
                        Status::unavailable("store unavailable; nothing from this batch was acknowledged")
                    }
                    // Says why and what to do; the data dir stays in the log.
                    StoreError::DiskFloor { .. } => Status::resource_exhausted(store.to_string()),
                    StoreError::Reopening { .. } => Status::unavailable(
                        "the store is being reopened after an I/O error; nothing from this batch was \
                         acknowledged, send it again",
                    ),
                    // Still UNAVAILABLE (the store cannot take writes until
                    // an operator gives it room; clients back off and resend,
                    // and the error-ratio alert pages), but saying what
                    // happened: "unavailable" alone reads as a store that is
                    // down, while reads answer on.
                    StoreError::RedisOutOfMemory(_) => Status::unavailable(
                        "store full (out of memory): writes refused until it has room; nothing from this batch was \
                         acknowledged, resend it later (a resend counts nothing twice)",
                    ),
                    StoreError::Incompatible { .. } => {
                        Status::failed_precondition("the store was written with another layout or other half-lives")
                    }
                    StoreError::Corrupt(_) => Status::internal("store record unreadable"),
                }
            }
        }
    }
}

/// The `CreatorBoost` service over an engine. The write token, the in-flight
/// budgets and the message limits are checked before a call gets here, by
/// [`crate::service::transport`]; the conversions are [`convert`]'s.
pub struct GrpcService {
    engine: Arc<Engine>,
    metrics: Arc<TransportMetrics>,
}

impl GrpcService {
    /// The service over `engine`, its calls counted in `metrics`.
    pub fn new(engine: Arc<Engine>, metrics: Arc<TransportMetrics>) -> Self {
        GrpcService { engine, metrics }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::RecordEventsResponse, Status>> + Send + 'static>>;

impl GrpcService {
    /// Runs one call and records it. (Deadlines are enforced earlier, by
    /// [`crate::service::deadline::DeadlineLayer`], which drops this future.)
    async fn observed<T>(&self, method: Method, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        let started = Instant::now();
        let _in_flight = self.metrics.enter();
        let result = call.await;
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe_call(method, code, started.elapsed());
        result
    }

    async fn rank_call(&self, request: Request<proto::RankRequest>) -> Result<Response<proto::RankResponse>, Status> {
        let read_budget = read_budget(&request);
        let request = request.into_inner();
        let query = convert::rank_query(&request, read_budget)?;
        let outcome = self.engine.rank(&query).await?;
        Ok(Response::new(convert::rank_response(&request, &outcome)))
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
        Ok(Response::new((&outcome).into()))
    }

    async fn record_call(
        &self,
        request: Request<proto::RecordEventsRequest>,
    ) -> Result<Response<proto::RecordEventsResponse>, Status> {
        let events = request.into_inner().events.into_iter().map(RawEvent::from).collect();
        let outcome = self.engine.record(events).await?;
        Ok(Response::new(outcome.into()))
    }
}

#[tonic::async_trait]
impl CreatorBoost for GrpcService {
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
        let metrics = Arc::clone(&self.metrics);
        let mut incoming = request.into_inner();
        let output = async_stream(move |sender| async move {
            // Each message's write slot is taken and given back by the
            // admission layer's body guard: none is held between messages.
            while let Some(message) = incoming.next().await {
                let started = Instant::now();
                let reply = match message {
                    Ok(batch) => {
                        let events = batch.events.into_iter().map(RawEvent::from).collect();
                        engine.record(events).await.map(Into::into).map_err(Status::from)
                    }
                    Err(status) => Err(status),
                };
                let code = reply.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
                metrics.observe_call(Method::StreamEvents, code, started.elapsed());
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

/// The store-read budget of a call with a deadline.
fn read_budget<T>(request: &Request<T>) -> Option<Duration> {
    request
        .extensions()
        .get::<ClientDeadline>()
        .map(|deadline| deadline.0.mul_f64(READ_SHARE_OF_DEADLINE))
}
