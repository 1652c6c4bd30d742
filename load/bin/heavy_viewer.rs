//! What one heavy viewer costs everyone else, through the public contract:
//!
//! ```sh
//! creator-boost serve --data-dir "$(mktemp -d)" &
//! cargo run --release --example heavy_viewer -- http://127.0.0.1:50051 200000
//! ```
//!
//! 1. One viewer follows RELATIONS creators, 1,000 per batch.
//! 2. Its 1,000-event batches (likes on 1,000 creators it follows) beside
//!    the same batches from fresh viewers, on the same store.
//! 3. Another client's one-event writes every 20 ms: alone, beside the heavy
//!    viewer's batches and beside fresh viewers' batches (latency percentiles).
//!
//! Use a fresh store.

use std::time::{Duration, Instant};

use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use tonic::transport::Channel;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn event(id: String, kind: proto::EventKind, viewer_id: u64, creator_id: u64) -> proto::Event {
    proto::Event {
        event_id: id,
        kind: kind as i32,
        viewer_id,
        creator_id,
        timestamp_ms: 0,
        amount: 0.0,
    }
}

async fn send(client: &mut CreatorBoostClient<Channel>, events: Vec<proto::Event>) -> Result<Duration, Error> {
    let started = Instant::now();
    let response = client
        .record_events(proto::RecordEventsRequest { events })
        .await?
        .into_inner();
    if !response.rejected.is_empty() {
        return Err(format!(
            "{} events rejected: {:?}",
            response.rejected.len(),
            response.rejected[0]
        )
        .into());
    }
    Ok(started.elapsed())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Likes from `viewer` on creators `first..first + 1000`, ids tagged `tag`.
fn like_batch(viewer: u64, first: u64, tag: &str) -> Vec<proto::Event> {
    (0..1000)
        .map(|i| event(format!("{tag}-{i}"), proto::EventKind::Like, viewer, first + i))
        .collect()
}

async fn one_event_writes(
    client: &mut CreatorBoostClient<Channel>,
    tag: &str,
    count: usize,
) -> Result<Vec<Duration>, Error> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let batch = vec![event(format!("{tag}-{i}"), proto::EventKind::View, 3, 5)];
        latencies.push(send(client, batch).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    Ok(latencies)
}

fn describe(label: &str, latencies: &[Duration]) {
    let q = |p: f64| ms(latencies[((latencies.len() - 1) as f64 * p) as usize]);
    println!(
        "{label}: n={} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    let relations: u64 = std::env::args().nth(2).map_or(Ok(200_000), |n| n.parse())?;
    let mut client = CreatorBoostClient::connect(url.clone()).await?;
    let run = std::process::id();

    let filling = Instant::now();
    let mut last = Vec::new();
    for batch in 0..relations.div_ceil(1000) {
        let events = (0..1000)
            .map(|i| {
                let creator = 1_000_000 + batch * 1000 + i;
                event(format!("{run}-follow-{creator}"), proto::EventKind::Follow, 1, creator)
            })
            .collect();
        let took = send(&mut client, events).await?;
        if batch + 5 >= relations.div_ceil(1000) {
            last.push(took);
        }
    }
    println!(
        "{relations} follows by one viewer in {:.1} s; last batches median {:.1} ms",
        filling.elapsed().as_secs_f64(),
        ms(median(last))
    );

    let (mut heavy, mut fresh) = (Vec::new(), Vec::new());
    for round in 0..7u64 {
        heavy.push(send(&mut client, like_batch(1, 1_000_000, &format!("{run}-heavy-{round}"))).await?);
        fresh.push(
            send(
                &mut client,
                like_batch(100 + round, 1_000_000, &format!("{run}-fresh-{round}")),
            )
            .await?,
        );
    }
    let (heavy, fresh) = (median(heavy), median(fresh));
    println!(
        "1,000-event batch on the same creators: heavy viewer median {:.1} ms, fresh viewer {:.1} ms ({:.2}x)",
        ms(heavy),
        ms(fresh),
        ms(heavy) / ms(fresh)
    );

    let alone = one_event_writes(&mut client, &format!("{run}-alone"), 100).await?;
    describe("another client's one-event write, alone", &alone);
    for heavy in [true, false] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let background = {
            let stop = std::sync::Arc::clone(&stop);
            let mut client = CreatorBoostClient::connect(url.clone()).await?;
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let viewer = if heavy { 1 } else { 1_000 + round };
                    let _ = send(
                        &mut client,
                        like_batch(viewer, 1_000_000, &format!("{run}-load-{heavy}-{round}")),
                    )
                    .await;
                    round += 1;
                }
                round
            })
        };
        let loaded = one_event_writes(&mut client, &format!("{run}-loaded-{heavy}"), 100).await?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rounds = background.await?;
        let who = if heavy { "the heavy viewer's" } else { "fresh viewers'" };
        describe(
            &format!("another client's one-event write, beside {rounds} of {who} batches"),
            &loaded,
        );
    }
    Ok(())
}
