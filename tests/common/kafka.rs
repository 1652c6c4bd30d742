//! A real Kafka-protocol broker (tansu, sqlite storage) per test on a
//! loopback port of its own, in a temporary directory, stopped on drop; and
//! the client calls the tests need (create topics, produce, read a topic,
//! a group's committed offsets) through the same rdkafka crate.
//!
//! The broker binary is `$CREATOR_BOOST_TANSU` when set, else
//! `../shared/tools/tansu/tansu` beside the checkout, else `tansu` on the
//! PATH. Without one the Kafka tests are reported as ignored, unless
//! `CREATOR_BOOST_REQUIRE_KAFKA=1` (CI sets it), which turns the absence into
//! a failure (see `harness`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker binary, if there is one: `$CREATOR_BOOST_TANSU` when it is set
/// (a path that is not a file means none), else beside the checkout, else on
/// the PATH.
pub fn tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CREATOR_BOOST_TANSU") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/tansu/tansu");
    if beside.is_file() {
        return Some(beside);
    }
    super::harness::runs("tansu", &["--help"]).then(|| PathBuf::from("tansu"))
}

/// One broker process, which a test may stop and start again on the same
/// port and data.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker (the test's `Need::Kafka` made sure there is one).
    pub fn start() -> Broker {
        let mut broker = Broker {
            port: super::free_port(),
            child: None,
            dir: tempfile::tempdir().expect("broker dir"),
        };
        broker.restart();
        broker
    }

    /// Starts the broker (again, after [`Broker::stop`]) on its port and
    /// data file, and waits until it listens.
    pub fn restart(&mut self) {
        let binary = tansu().expect("a tansu broker (the test needs Need::Kafka)");
        let port = self.port;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (a clean stop, as an operator's restart does), and waits
    /// until the process is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM tansu");
        let _ = child.wait();
    }

    /// `HOST:PORT` for `--kafka-brokers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.address());
        config
    }

    /// Creates `topic` with `partitions` partitions (tansu cannot add partitions later).
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin client");
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
    }

    /// Produces `(key, payload)` messages in order with an idempotent
    /// producer (a retried send is not written twice), waits until all are
    /// acknowledged, then reads the topic back and returns, per partition,
    /// the offset after its last message (what a consumer that applied
    /// everything commits; taken from the fetched messages, which is what
    /// consumers see).
    pub async fn produce(&self, topic: &str, partitions: i32, messages: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<i64> {
        let mut config = self.config();
        config.set("enable.idempotence", "true").set("linger.ms", "5");
        let producer: FutureProducer = config.create().expect("producer");
        let sends = messages.iter().map(|(key, payload)| {
            producer.send(
                FutureRecord::to(topic).key(key).payload(payload),
                Duration::from_secs(60),
            )
        });
        // Each acknowledgement names where its message landed.
        let mut ends = vec![0_i64; partitions as usize];
        for delivery in futures_util::future::join_all(sends).await {
            let delivered = delivery.map_err(|(error, _)| error).expect("message acknowledged");
            let end = &mut ends[delivered.partition as usize];
            *end = (*end).max(delivered.offset + 1);
        }
        ends
    }

    /// `group`'s committed offset of each partition of the topic (0 when none).
    pub async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let mut config = self.config();
        config.set("group.id", group);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("consumer");
            let mut wanted = TopicPartitionList::new();
            for partition in 0..partitions {
                wanted.add_partition(&topic, partition);
            }
            let committed = consumer
                .committed_offsets(wanted, Duration::from_secs(10))
                .expect("committed offsets");
            (0..partitions)
                .map(
                    |partition| match committed.find_partition(&topic, partition).map(|e| e.offset()) {
                        Some(Offset::Offset(offset)) => offset,
                        _ => 0,
                    },
                )
                .collect()
        })
        .await
        .expect("committed task")
    }

    /// Partitions of `topic`, or `None` when the broker does not know it
    /// (or does not answer within 10 s).
    pub async fn partitions(&self, topic: &str) -> Option<usize> {
        let config = self.config();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("consumer");
            let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).ok()?;
            metadata
                .topics()
                .iter()
                .find(|found| found.name() == topic && found.error().is_none())
                .map(|found| found.partitions().len())
                .filter(|partitions| *partitions > 0)
        })
        .await
        .expect("metadata task")
    }

    /// Reads the topic from the start (all partitions) until `count`
    /// messages, or until nothing more arrives for a second.
    pub async fn read_from_start(&self, topic: &str, partitions: i32, count: usize) -> Vec<Fetched> {
        let mut config = self.config();
        config.set("group.id", "test-reader").set("enable.auto.commit", "false");
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("reader");
            let mut assignment = TopicPartitionList::new();
            for partition in 0..partitions {
                assignment
                    .add_partition_offset(&topic, partition, Offset::Beginning)
                    .expect("assignment");
            }
            consumer.assign(&assignment).expect("assign");
            let deadline = Instant::now() + Duration::from_secs(60);
            // Done after 1 s without a message once messages flow; before
            // the first one, the assignment may take longer under load.
            let mut quiet_since = Instant::now();
            let mut read = Vec::new();
            let quiet = |read: &Vec<Fetched>| {
                if read.is_empty() {
                    Duration::from_secs(10)
                } else {
                    Duration::from_secs(1)
                }
            };
            while read.len() < count && quiet_since.elapsed() < quiet(&read) {
                assert!(Instant::now() < deadline, "read {} messages of {topic}", read.len());
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                quiet_since = Instant::now();
                read.push(Fetched::from(&message.expect("message")));
            }
            read
        })
        .await
        .expect("read task")
    }
}

/// A message read back.
pub struct Fetched {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl From<&rdkafka::message::BorrowedMessage<'_>> for Fetched {
    fn from(message: &rdkafka::message::BorrowedMessage<'_>) -> Fetched {
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        let value = h
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default();
                        (h.key.to_owned(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Fetched {
            partition: message.partition(),
            offset: message.offset(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of a metric series (name with labels, as rendered), or 0.
pub fn metric(rendered: &str, series: &str) -> f64 {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
