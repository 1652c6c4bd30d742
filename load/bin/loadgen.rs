//! Load-test helper, used by `load/run.sh`:
//!
//! - `frame OUT [--seed N]`: writes a pre-encoded gRPC frame of a Rank request
//!   (200 candidates over 100 distinct creators of the synthetic generator,
//!   popular ones more often) for h2load's `--data`.
//! - `health-frame OUT`: the same for `grpc.health.v1.Health/Check`.
//! - `json OUT [--seed N]`: the same Rank request as JSON, for ghz's `--data-file`.
//! - `check URL FRAME N`: sends the frame's request N times with a real gRPC
//!   client and fails unless every answer is OK, not degraded, with one
//!   result per candidate (h2load sees only HTTP status, not grpc-status).
//! - `ingest URL EVENTS STREAMS BATCH [CREATORS VIEWERS]`: durable ingest
//!   through StreamEvents of EVENTS synthetic events (default 10,000
//!   creators, 200,000 viewers) over STREAMS concurrent streams, in time
//!   order as a feed produces them (a 1,000-event batch holds ~1,000
//!   distinct viewers); prints events/s and the latency of a batch
//!   acknowledgement. Ids are new on every run.

use std::time::Instant;

use creator_boost::offline::generate::{FIRST_CREATOR_ID, GenerateOptions, generate, seeded_rng};
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use hdrhistogram::Histogram;
use prost::Message;
use rand::RngExt;
use tonic::transport::Channel;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn rank_request(seed: u64, creators: u64, viewers: u64) -> proto::RankRequest {
    let mut rng = seeded_rng(seed);
    // 100 distinct creators, drawn with a popularity skew like the generator's.
    let mut chosen: Vec<u64> = Vec::new();
    while chosen.len() < 100 {
        let rank = ((creators as f64).powf(rng.random::<f64>())) as u64;
        let id = FIRST_CREATOR_ID + rank.min(creators - 1);
        if !chosen.contains(&id) {
            chosen.push(id);
        }
    }
    let candidates = (0..200u64)
        .map(|i| proto::Candidate {
            item_id: 10_000_000 + rng.random_range(0..1_000_000_000),
            creator_id: chosen[(i % 100) as usize],
            base_score: rng.random::<f64>(),
        })
        .collect();
    proto::RankRequest {
        viewer_id: 1 + rng.random_range(0..viewers),
        candidates,
        variant: String::new(),
        explain: false,
        top_k: 0,
        score_space: 0,
    }
}

/// The request in protobuf's JSON mapping (uint64 as strings), as ghz reads it.
fn rank_json(request: &proto::RankRequest) -> String {
    let candidates: Vec<String> = request
        .candidates
        .iter()
        .map(|c| {
            format!(
                r#"{{"item_id":"{}","creator_id":"{}","base_score":{}}}"#,
                c.item_id, c.creator_id, c.base_score
            )
        })
        .collect();
    format!(
        r#"{{"viewer_id":"{}","candidates":[{}]}}"#,
        request.viewer_id,
        candidates.join(",")
    )
}

fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

async fn connect(url: &str) -> Result<CreatorBoostClient<Channel>, Error> {
    let channel = Channel::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(CreatorBoostClient::new(channel).max_decoding_message_size(64 << 20))
}

async fn check(url: &str, frame: &str, count: usize) -> Result<(), Error> {
    let bytes = std::fs::read(frame)?;
    let request = proto::RankRequest::decode(&bytes[5..])?;
    let mut client = connect(url).await?;
    for _ in 0..count {
        let response = client.rank(request.clone()).await?.into_inner();
        if response.degraded {
            return Err("answer flagged degraded: the store did not answer in time".into());
        }
        if response.results.len() != request.candidates.len() {
            return Err(format!(
                "{} results for {} candidates",
                response.results.len(),
                request.candidates.len()
            )
            .into());
        }
    }
    let boosted = client.rank(request.clone()).await?.into_inner();
    let not_neutral = boosted.results.iter().filter(|r| r.boost != 1.0).count();
    println!(
        "check: {count} calls OK; {not_neutral} of {} candidates have a non-neutral boost",
        boosted.results.len()
    );
    Ok(())
}

/// The shape of an ingest run.
struct IngestRun {
    events: u64,
    streams: usize,
    batch: usize,
    creators: u64,
    viewers: u64,
}

async fn ingest(url: &str, run: IngestRun) -> Result<(), Error> {
    let IngestRun {
        events,
        streams,
        batch,
        creators,
        viewers,
    } = run;
    let end_ms = creator_boost::engine::Clock::system().now_ms();
    let generated = generate(&GenerateOptions {
        seed: 99,
        creators,
        viewers,
        events,
        end_ms,
        days: 14,
    });
    let batches: Vec<proto::RecordEventsRequest> = generated
        .chunks(batch)
        .map(|chunk| proto::RecordEventsRequest {
            events: chunk
                .iter()
                .map(|e| proto::Event {
                    event_id: format!("load-{end_ms}-{}", e.event_id),
                    kind: e.kind.map_or(0, |k| creator_boost::proto::EventKind::from(k) as i32),
                    viewer_id: e.viewer_id,
                    creator_id: e.creator_id,
                    timestamp_ms: e.timestamp_ms,
                    amount: e.amount,
                })
                .collect(),
        })
        .collect();
    let per_stream = batches.len().div_ceil(streams);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for part in batches.chunks(per_stream) {
        let part = part.to_vec();
        let mut client = connect(url).await?;
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
            let (sender, receiver) = tokio::sync::mpsc::channel(2);
            let mut responses = client
                .stream_events(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            let mut accepted = 0u64;
            for request in part {
                let sent = Instant::now();
                sender.send(request).await.map_err(|e| e.to_string())?;
                let response = responses
                    .message()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("stream ended")?;
                histogram
                    .record(sent.elapsed().as_micros() as u64)
                    .map_err(|e| e.to_string())?;
                accepted += u64::from(response.accepted) + u64::from(response.duplicates);
            }
            Ok::<_, String>((accepted, histogram))
        }));
    }
    let mut total = 0u64;
    let mut histogram = Histogram::<u64>::new(3)?;
    for task in tasks {
        let (accepted, part) = task.await??;
        total += accepted;
        histogram.add(part)?;
    }
    let elapsed = started.elapsed();
    println!(
        "ingest: {total} events acknowledged durable in {:.2} s = {:.0} events/s over {streams} streams, batch {batch}; ack latency p50 {} us p99 {} us",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99)
    );
    if total != events {
        return Err(format!("{total} of {events} events acknowledged").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .ok_or_else(|| format!("missing argument {i}; see the file's doc comment"))
    };
    match arg(0)?.as_str() {
        "frame" => {
            let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            std::fs::write(arg(1)?, grpc_frame(&rank_request(seed, 10_000, 200_000)))?;
        }
        "json" => {
            let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
            std::fs::write(arg(1)?, rank_json(&rank_request(seed, 10_000, 200_000)))?;
        }
        "health-frame" => {
            let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
            std::fs::write(arg(1)?, grpc_frame(&request))?;
        }
        "check" => check(&arg(1)?, &arg(2)?, arg(3)?.parse()?).await?,
        "ingest" => {
            let run = IngestRun {
                events: arg(2)?.parse()?,
                streams: arg(3)?.parse()?,
                batch: arg(4)?.parse()?,
                creators: args.get(5).map_or(Ok(10_000), |s| s.parse())?,
                viewers: args.get(6).map_or(Ok(200_000), |s| s.parse())?,
            };
            ingest(&arg(1)?, run).await?
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
