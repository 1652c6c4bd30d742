//! One way to start a real server for black-box tests: `spawn_server()` binds
//! 127.0.0.1:0, opens a real redb file in a temporary directory (or, with
//! [`Backend::Redis`] / [`Backend::Cluster`], a real Redis under a key prefix
//! of its own) and serves the production code path until stopped.

#![allow(dead_code, unreachable_pub)]

pub mod attacks;
pub mod harness;
pub mod kafka;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use creator_boost::config::{Config, Overrides};
use creator_boost::engine::Clock;
use creator_boost::engine::open_engine;
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use creator_boost::service::server::{ServerOptions, run};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A fixed "now" for tests: 2026-06-01T00:00:00Z.
pub const NOW_MS: i64 = 1_780_272_000_000;

/// Test configuration: a strict limit set and two variants.
pub const TEST_CONFIG: &str = r#"
[limits]
max_candidates = 500
max_events_per_batch = 1000
max_event_id_bytes = 64

[variants.deep_fans]
fan_value_weight = 1.0
weights.tip = 30.0

[variants.no_private]
tier_follower = 1.0
tier_fan_group = 1.0
intimacy_gain = 0.0
"#;

/// The store a test server runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// redb in a temporary directory.
    #[default]
    Embedded,
    /// The shared standalone redis-server.
    Redis,
    /// The shared three-master Redis Cluster.
    Cluster,
    /// A Redis URL of the test's own.
    Url(String),
}

impl Backend {
    /// What this backend needs from the machine (Redis ones: redis-server).
    pub fn needs(&self) -> Option<harness::Need> {
        match self {
            Backend::Embedded => None,
            _ => Some(harness::Need::Redis),
        }
    }

    fn url(&self) -> Option<String> {
        match self {
            Backend::Embedded => None,
            Backend::Redis => Some(redis::standalone_url()),
            Backend::Cluster => Some(redis::cluster_url()),
            Backend::Url(url) => Some(url.clone()),
        }
    }
}

/// One test per backend for each listed contract test (an `async
/// fn(Backend)`), named `embedded::NAME`, `redis::NAME` and `cluster::NAME`;
/// the Redis ones need redis-server. A `Vec` of [`harness::Test`].
#[macro_export]
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {{
        let mut tests = $crate::contract_tests!(@backend embedded, Embedded, $($name),*);
        tests.extend($crate::contract_tests!(@backend redis, Redis, $($name),*));
        tests.extend($crate::contract_tests!(@backend cluster, Cluster, $($name),*));
        tests
    }};
    (@backend $module:ident, $variant:ident, $($name:ident),*) => {
        vec![$(
            $crate::common::harness::Test::tokio(
                concat!(stringify!($module), "::", stringify!($name)),
                || $name($crate::common::Backend::$variant),
            )
            .needs($crate::common::Backend::$variant.needs())
        ),*]
    };
}

/// A self-signed certificate for `localhost` written to `dir` as
/// `{name}.pem` and `{name}.key`; returns the paths and the certificate's PEM.
pub fn write_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_pem = generated.cert.pem();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &cert_pem).expect("write certificate");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    (cert, key, cert_pem)
}

/// A TLS channel to `addr` that trusts only `ca_pem`, or the handshake's error.
pub async fn tls_channel(addr: SocketAddr, ca_pem: &str) -> Result<Channel, tonic::transport::Error> {
    let client_tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(client_tls)
        .expect("tls config")
        .connect()
        .await
}

/// One HTTP/1.0 GET of `path` at `addr`: the status line and the body.
///
/// # Errors
/// What failed (connect, write, read, a reply without a header end), as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no header end")?;
    Ok((head.lines().next().unwrap_or("").to_owned(), body.to_owned()))
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

/// The `/metrics` text of the endpoint at `addr`.
pub async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics").await.expect("scrape");
    assert!(status.contains(" 200 "), "{status}");
    body
}

/// One creator's scores from the default variant.
pub async fn creator_score(client: &CreatorBoostClient<Channel>, creator_id: u64) -> proto::CreatorScore {
    let request = proto::GetCreatorScoresRequest {
        creator_ids: vec![creator_id],
        variant: String::new(),
    };
    let mut client = client.clone();
    client
        .get_creator_scores(request)
        .await
        .expect("scores")
        .into_inner()
        .scores[0]
}

/// `import` of `files` into the embedded store in `data_dir`, in batches of 500.
pub fn import_args(files: Vec<PathBuf>, data_dir: &Path) -> creator_boost::cli::args::ImportArgs {
    creator_boost::cli::args::ImportArgs {
        files,
        data_dir: Some(data_dir.to_owned()),
        store: None,
        server: None,
        token_file: None,
        format: None,
        until: None,
        config: None,
        batch_size: 500,
    }
}

/// A loopback port free a moment ago, with the port 10000 above it free
/// too (a Redis Cluster node's bus port), so any test can use any port.
pub fn free_port() -> u16 {
    loop {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        let port = probe.local_addr().expect("addr").port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` until it returns `Some`, and returns that; panics naming
/// `what` once `limit` has passed. Tests wait for what they need through
/// this, never for a fixed time.
pub async fn eventually<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running server and what it needs to stop or restart.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics: std::sync::Arc<creator_boost::metrics::MetricsRegistry>,
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub clock: Clock,
    /// The backend and, for Redis, the key prefix (kept by [`TestServer::restart`]).
    pub backend: Backend,
    pub key_prefix: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

/// Options for [`spawn_with`].
#[derive(Clone, Default)]
pub struct Spawn {
    pub config: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub write_token: Option<String>,
    pub max_in_flight: usize,
    /// Write budget; `None` = the configured default.
    pub max_writes_in_flight: Option<usize>,
    pub now_ms: Option<i64>,
    pub metrics: bool,
    pub tls: Option<std::sync::Arc<creator_boost::service::transport::tls::Certificates>>,
    pub backend: Backend,
    /// Redis key prefix; `None` = a fresh one.
    pub key_prefix: Option<String>,
}

/// A server with the test config, a fresh data dir and a clock fixed at [`NOW_MS`].
pub async fn spawn_server() -> TestServer {
    spawn_with(Spawn::default()).await
}

/// A server with the test config on `backend`.
pub async fn spawn_on(backend: Backend) -> TestServer {
    spawn_with(Spawn {
        backend,
        ..Spawn::default()
    })
    .await
}

/// A server with explicit options.
pub async fn spawn_with(options: Spawn) -> TestServer {
    let (temp, data_dir) = match options.data_dir {
        Some(dir) => (None, dir),
        None => {
            let temp = tempfile::tempdir().expect("temp dir");
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    let text = options.config.unwrap_or_else(|| TEST_CONFIG.to_owned());
    let overrides = Overrides::store(Some(data_dir.clone()), options.backend.url());
    let mut config = Config::from_toml(&text, Path::new("test.toml"), overrides).expect("test config");
    let key_prefix = options.key_prefix.unwrap_or_else(redis::unique_prefix);
    config.redis.key_prefix = key_prefix.clone();
    let clock = Clock::manual(options.now_ms.unwrap_or(NOW_MS));
    let metrics = creator_boost::metrics::MetricsRegistry::new();
    // serve registers reload's families beside its SIGHUP watcher; tests
    // send no SIGHUP but scrape the same families.
    let _reload = creator_boost::service::reload::ReloadMetrics::register(&metrics);
    let engine = open_engine(&config, clock.clone(), &metrics).await.expect("engine");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut server_options = ServerOptions::from_config(&config).expect("server options");
    server_options.max_in_flight = options.max_in_flight;
    if let Some(writes) = options.max_writes_in_flight {
        server_options.max_writes_in_flight = writes;
    }
    server_options.write_token = options.write_token;
    server_options.shutdown_grace = Duration::from_secs(5);
    server_options.tls = options.tls.clone();
    let metrics_listener = if options.metrics {
        Some(TcpListener::bind("127.0.0.1:0").await.expect("bind metrics"))
    } else {
        None
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr().expect("metrics addr"));
    let (shutdown, signal) = oneshot::channel::<()>();
    let registry = std::sync::Arc::clone(&metrics);
    let task = tokio::spawn(async move {
        run(
            listener,
            metrics_listener,
            engine,
            &registry,
            server_options,
            async move {
                let _ = signal.await;
            },
        )
        .await
        .expect("server run");
    });
    TestServer {
        metrics,
        metrics_addr,
        addr,
        data_dir,
        clock,
        backend: options.backend,
        key_prefix,
        shutdown: Some(shutdown),
        task: Some(task),
        _temp: temp,
    }
}

impl TestServer {
    /// Calls in flight now, as the server's own gauge reports them.
    pub fn in_flight(&self) -> u64 {
        let text = self.metrics.render();
        let line = text.lines().find(|line| line.starts_with("creator_boost_in_flight "));
        line.and_then(|line| line.split(' ').nth(1)?.parse().ok())
            .expect("in-flight gauge")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn client(&self) -> CreatorBoostClient<Channel> {
        CreatorBoostClient::new(self.channel().await)
    }

    /// Signals shutdown without waiting for the drain.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the server and waits until the store is closed.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Stops this server and starts another on the same data dir (new port).
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let temp = self._temp.take();
        let mut next = spawn_with(Spawn {
            data_dir: Some(self.data_dir.clone()),
            backend: self.backend.clone(),
            key_prefix: Some(self.key_prefix.clone()),
            ..Spawn::default()
        })
        .await;
        next._temp = temp;
        next
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub fn event(id: &str, kind: proto::EventKind, viewer_id: u64, creator_id: u64) -> proto::Event {
    proto::Event {
        event_id: id.to_owned(),
        kind: kind as i32,
        viewer_id,
        creator_id,
        timestamp_ms: NOW_MS - 3_600_000,
        amount: 0.0,
    }
}

pub fn candidate(item_id: u64, creator_id: u64, base_score: f64) -> proto::Candidate {
    proto::Candidate {
        item_id,
        creator_id,
        base_score,
    }
}

pub async fn record(
    client: &mut CreatorBoostClient<Channel>,
    events: Vec<proto::Event>,
) -> proto::RecordEventsResponse {
    client
        .record_events(proto::RecordEventsRequest { events })
        .await
        .expect("record")
        .into_inner()
}

/// A creator with engaged fans: follows, likes, shares, tips from viewers `viewers`.
pub fn loyal_creator_events(prefix: &str, creator_id: u64, viewers: std::ops::Range<u64>) -> Vec<proto::Event> {
    use proto::EventKind::*;
    let mut events = Vec::new();
    for viewer in viewers {
        for (n, kind) in [Follow, View, Like, Share, Tip, View].into_iter().enumerate() {
            let mut e = event(&format!("{prefix}-{viewer}-{n}"), kind, viewer, creator_id);
            e.timestamp_ms += n as i64 * 1000;
            if kind == Tip {
                e.amount = 20.0;
            }
            events.push(e);
        }
    }
    events
}

/// Starts the real `creator-boost serve` binary on a free loopback port with
/// `extra` arguments; returns the child and its URL once the port accepts.
pub async fn start_binary(data: &Path, extra: &[&std::ffi::OsStr]) -> (std::process::Child, String) {
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_creator-boost"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn server");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, format!("http://127.0.0.1:{port}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start on port {port}");
}

/// Health/Check of `service` at `url`, once, as a probe asks it: connect
/// and answer each within `timeout`.
pub async fn health_check(
    url: &str,
    service: &str,
    timeout: Duration,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .expect("url")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}
