//! Bench helper: the broker's delivery ceiling. Joins a fresh group, reads
//! a topic from the start and only counts (each message detached, as the
//! server's consumer does), timed from the first message to the N-th.
//! Gives up after 60 s without a message (a topic holding fewer than N).
//!
//!     kafka_drain BROKERS TOPIC N [KEY=VALUE ...]   # extra librdkafka settings

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, n, extra @ ..] = args.as_slice() else {
        return Err("usage: kafka_drain BROKERS TOPIC N [KEY=VALUE ...]".into());
    };
    let n: u64 = n.parse()?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("drain-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for setting in extra {
        let (key, value) = setting.split_once('=').ok_or("extra settings are KEY=VALUE")?;
        config.set(key, value);
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    let mut first = None;
    let mut bytes = 0_usize;
    for count in 1..=n {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .map_err(|_| format!("no message for 60 s after {} of {n}", count - 1))??
            .detach();
        bytes += message.payload().map_or(0, <[u8]>::len);
        let started = *first.get_or_insert_with(Instant::now);
        if count == n {
            let secs = started.elapsed().as_secs_f64();
            let rate = (n - 1) as f64 / secs;
            eprintln!("kafka_drain: {n} messages ({bytes} bytes) read, {rate:.0} messages/s after the first");
        }
    }
    Ok(())
}
