//! Bench helper: creates a topic with N partitions and produces a JSON Lines
//! file to it, one event per message keyed by viewer id (as producers are
//! asked to), with an idempotent producer.
//!
//!     kafka_produce BROKERS TOPIC PARTITIONS FILE

use std::io::BufRead;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, partitions, file] = args.as_slice() else {
        return Err("usage: kafka_produce BROKERS TOPIC PARTITIONS FILE".into());
    };
    let partitions: i32 = partitions.parse()?;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let dead_letters = format!("{topic}.dlq");
    let topics = [
        NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&dead_letters, 1, TopicReplication::Fixed(1)),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        result.map_err(|(name, code)| format!("create {name}: {code}"))?;
    }
    config.set("enable.idempotence", "true").set("linger.ms", "5");
    let producer: FutureProducer = config.create()?;
    let producer = &producer;
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut sent = 0_u64;
    for line in std::io::BufReader::new(std::fs::File::open(file)?).lines() {
        let line = line?;
        let event: serde_json::Value = serde_json::from_str(&line)?;
        let key = event["viewer_id"].as_u64().unwrap_or(0).to_string();
        pending.push(async move {
            let record = FutureRecord::to(topic).key(&key).payload(&line);
            producer
                .send(record, Duration::from_secs(60))
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        sent += 1;
        if pending.len() == 10_000 {
            for result in futures_util::future::join_all(pending.drain(..)).await {
                result?;
            }
        }
    }
    for result in futures_util::future::join_all(pending).await {
        result?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("produced {sent} events to {topic} ({partitions} partitions) in {secs:.1} s");
    Ok(())
}
