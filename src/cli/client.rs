//! The client side of the command line: send events, rank, read scores.

use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::cli::args::{CreatorScoresArgs, HealthArgs, RankArgs, SendArgs, ServerArgs};
use crate::engine::RecordOutcome;
use crate::engine::ingest::RawEvent;
use crate::model::{EventKind, ScoreSpace};
use crate::proto;
use crate::proto::creator_boost_client::CreatorBoostClient;
use crate::service::convert;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The server.
        url: String,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The server answered with an error.
    #[error("server error: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

/// Connects to `args.server`.
///
/// # Errors
/// [`ClientError::Connect`].
pub async fn connect(args: &ServerArgs) -> Result<CreatorBoostClient<Channel>, ClientError> {
    let channel = channel(&args.server, None).await?;
    Ok(CreatorBoostClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// A channel to `url`, optionally giving up (connecting and per call) after `timeout`.
async fn channel(url: &str, timeout: Option<std::time::Duration>) -> Result<Channel, ClientError> {
    let mut endpoint =
        Channel::from_shared(url.to_owned()).map_err(|e| ClientError::Usage(format!("bad server URL `{url}`: {e}")))?;
    if let Some(timeout) = timeout {
        endpoint = endpoint.connect_timeout(timeout).timeout(timeout);
    }
    endpoint.connect().await.map_err(|source| ClientError::Connect {
        url: url.to_owned(),
        source,
    })
}

/// Wraps `message` in a request carrying the bearer token, if configured.
///
/// # Errors
/// [`ClientError::Usage`] when the token file is unreadable.
pub fn with_token<T>(args: &ServerArgs, message: T) -> Result<Request<T>, ClientError> {
    let mut request = Request::new(message);
    if let Some(path) = &args.token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Usage(format!("cannot read token file {}: {e}", path.display())))?;
        let value = MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::Usage("token contains characters not allowed in a header".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Parses an event kind name as printed by [`EventKind::name`].
pub fn parse_kind(name: &str) -> Option<EventKind> {
    let wanted = name.trim().to_ascii_lowercase();
    EventKind::ALL.into_iter().find(|kind| kind.name() == wanted)
}

/// `creator-boost send`.
///
/// # Errors
/// [`ClientError`] on bad input, connection failure or a server error.
pub async fn send(args: SendArgs) -> Result<(), ClientError> {
    let kind =
        parse_kind(&args.kind).ok_or_else(|| ClientError::Usage(format!("unknown event kind `{}`", args.kind)))?;
    let mut client = connect(&args.server).await?;
    let event = proto::Event {
        event_id: args.event_id,
        kind: proto::EventKind::from(kind) as i32,
        viewer_id: args.viewer,
        creator_id: args.creator,
        timestamp_ms: args.timestamp_ms,
        amount: args.amount,
    };
    let request = with_token(&args.server, proto::RecordEventsRequest { events: vec![event] })?;
    let response = client.record_events(request).await?.into_inner();
    println!("accepted {} duplicates {}", response.accepted, response.duplicates);
    for rejected in response.rejected {
        println!("rejected #{}: {}", rejected.index, rejected.reason);
    }
    Ok(())
}

/// `creator-boost rank`.
///
/// # Errors
/// [`ClientError`] on bad input, connection failure or a server error.
pub async fn rank(args: RankArgs) -> Result<(), ClientError> {
    let candidates = args
        .candidates
        .iter()
        .map(|text| parse_candidate(text))
        .collect::<Result<Vec<_>, _>>()?;
    let mut client = connect(&args.server).await?;
    let request = proto::RankRequest {
        viewer_id: args.viewer,
        candidates,
        variant: args.variant,
        explain: args.explain,
        top_k: args.top_k,
        score_space: proto::ScoreSpace::from(if args.log_space {
            ScoreSpace::Log
        } else {
            ScoreSpace::Linear
        }) as i32,
    };
    let response = client.rank(request).await?.into_inner();
    println!(
        "model_version {} variant {:?} degraded {}",
        response.model_version, response.variant, response.degraded
    );
    println!(
        "{:>4} {:>12} {:>12} {:>10} {:>8} {:>8} {:>8} {:>10} relation",
        "idx", "item", "creator", "base", "public", "private", "boost", "final"
    );
    for r in &response.results {
        let relation = proto::Relation::try_from(r.relation)
            .map(|r| r.as_str_name())
            .unwrap_or("?");
        println!(
            "{:>4} {:>12} {:>12} {:>10.4} {:>8.4} {:>8.4} {:>8.4} {:>10.4} {}",
            r.index,
            r.item_id,
            r.creator_id,
            r.base_score,
            r.public_boost,
            r.private_boost,
            r.boost,
            r.final_score,
            relation
        );
        if let Some(explanation) = &r.explanation {
            println!("     {}", explanation.text);
        }
    }
    Ok(())
}

fn parse_candidate(text: &str) -> Result<proto::Candidate, ClientError> {
    let bad = || ClientError::Usage(format!("candidate `{text}` is not ITEM:CREATOR:BASE_SCORE"));
    let mut parts = text.split(':');
    let item_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let creator_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let base_score = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(proto::Candidate {
        item_id,
        creator_id,
        base_score,
    })
}

/// `creator-boost creator-scores`.
///
/// # Errors
/// [`ClientError`] on connection failure or a server error.
pub async fn creator_scores(args: CreatorScoresArgs) -> Result<(), ClientError> {
    let mut client = connect(&args.server).await?;
    let request = proto::GetCreatorScoresRequest {
        creator_ids: args.creator_ids,
        variant: args.variant,
    };
    let response = client.get_creator_scores(request).await?.into_inner();
    println!(
        "model_version {} variant {:?} degraded {}",
        response.model_version, response.variant, response.degraded
    );
    println!(
        "creator_id,found,followers,evidence,audience,engaged_accounts,fan_belief,negative_accounts,buyers,\
         repeat_buyers,repeat_share,trust_lift,refunders,refund_lift,fan_value,long_term_value,creator_value,\
         public_boost,updated_at_ms"
    );
    for s in response.scores {
        println!(
            "{},{},{},{},{:.3},{:.3},{:.4},{:.3},{:.3},{:.3},{:.4},{:.4},{:.3},{:.4},{:.6},{:.6},{:.6},{:.6},{}",
            s.creator_id,
            s.found,
            s.followers,
            s.evidence,
            s.audience,
            s.engaged_accounts,
            s.fan_belief,
            s.negative_accounts,
            s.buyers,
            s.repeat_buyers,
            s.repeat_share,
            s.trust_lift,
            s.refunders,
            s.refund_lift,
            s.fan_value,
            s.long_term_value,
            s.creator_value,
            s.public_boost,
            s.updated_at_ms
        );
    }
    Ok(())
}

/// `creator-boost health`: `Ok(true)` when the server reports SERVING.
///
/// # Errors
/// [`ClientError`] when the server cannot be reached in time or answers with an error.
pub async fn health(args: HealthArgs) -> Result<bool, ClientError> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let channel = channel(&args.server, Some(timeout)).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: args.service })
        .await?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    println!("{}", status.as_str_name());
    Ok(status == ServingStatus::Serving)
}

/// Sends import batches to a running server over one `StreamEvents` call,
/// one response per batch.
pub struct StreamSink {
    requests: tokio::sync::mpsc::Sender<proto::RecordEventsRequest>,
    responses: tonic::Streaming<proto::RecordEventsResponse>,
}

impl StreamSink {
    /// Opens the stream.
    ///
    /// # Errors
    /// [`ClientError`] when the server cannot be reached or refuses the stream.
    pub async fn open(args: &ServerArgs) -> Result<StreamSink, ClientError> {
        let mut client = connect(args).await?;
        let (requests, receiver) = tokio::sync::mpsc::channel(4);
        let request = with_token(args, tokio_stream::wrappers::ReceiverStream::new(receiver))?;
        let responses = client.stream_events(request).await?.into_inner();
        Ok(StreamSink { requests, responses })
    }
}

/// Why `StreamEvents` did not record a batch.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The server closed the request stream.
    #[error("the server closed the stream")]
    Closed,
    /// The server answered with an error status (its code and message are
    /// the whole story; tonic's own Display adds details and metadata).
    #[error("server error: {}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The server ended the response stream before answering.
    #[error("the server ended the stream")]
    Ended,
    /// The server rejected an event for a reason this build cannot read.
    #[error("the server rejected event #{index} for a reason this build does not know: {reason}")]
    UnknownReason {
        /// The event's position in its batch.
        index: u32,
        /// The server's text.
        reason: String,
    },
}

impl crate::offline::import::Sink for StreamSink {
    type Error = StreamError;

    async fn send(&mut self, batch: Vec<RawEvent>) -> Result<RecordOutcome, StreamError> {
        let events = batch.into_iter().map(proto::Event::from).collect();
        self.requests
            .send(proto::RecordEventsRequest { events })
            .await
            .map_err(|_| StreamError::Closed)?;
        let response = self
            .responses
            .message()
            .await
            .map_err(StreamError::Status)?
            .ok_or(StreamError::Ended)?;
        convert::record_outcome(&response).map_err(|(index, reason)| StreamError::UnknownReason { index, reason })
    }
}
