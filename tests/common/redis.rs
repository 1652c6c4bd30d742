//! Real `redis-server` processes on loopback ports for the tests: one
//! standalone server and one three-master cluster per test binary, started
//! on first use, plus [`RedisProcess`] for tests that kill and restart one.
//!
//! Shared servers are started through `sh`, which stops them and removes
//! their scratch directory when the test binary exits (its stdin pipe
//! closes), so nothing outlives the run.
//! Tests isolate themselves with a key prefix of their own.
//!
//! Without `redis-server` on the PATH the Redis tests are reported as
//! ignored, unless `CREATOR_BOOST_REQUIRE_REDIS=1` (CI sets it), which turns
//! the absence into a failure (see `harness`).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::free_port;

/// Whether redis-server can be run here.
pub fn installed() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| super::harness::runs("redis-server", &["--version"]))
}

/// A key prefix no other test in this run uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `redis://` URL of the shared standalone server.
pub fn standalone_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = free_port();
        let dir = scratch_dir("standalone");
        keep_until_exit(&dir, &[&format!("--port {port}")]);
        wait_for_ping(port);
        format!("redis://127.0.0.1:{port}")
    })
    .clone()
}

/// `redis-cluster://` URL (all three masters as seeds) of the shared cluster.
pub fn cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir = scratch_dir("cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for port in &ports {
            keep_until_exit(
                &dir,
                &[
                    &format!("--port {port}"),
                    "--cluster-enabled yes",
                    &format!("--cluster-config-file nodes-{port}.conf"),
                    "--cluster-node-timeout 5000",
                ],
            );
            wait_for_ping(*port);
        }
        create_cluster(&ports)
    })
    .clone()
}

/// Joins masters on `ports` into a cluster, waits until every node says
/// it is ok, and returns its `redis-cluster://` URL.
fn create_cluster(ports: &[u16]) -> String {
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli --cluster create");
    assert!(created.success(), "redis-cli --cluster create failed");
    wait_for_cluster(ports);
    format!("redis-cluster://{}", nodes.join(","))
}

/// Waits until every node on `ports` reports `cluster_state:ok`.
pub fn wait_for_cluster(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        loop {
            let info = cli(*port, &["cluster", "info"]);
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster on {port} not ok: {info}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A three-master cluster owned by one test, whose nodes it may kill and
/// start again (each keeps its port, data and cluster config).
pub struct RedisCluster {
    pub nodes: Vec<RedisProcess>,
    pub url: String,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisProcess> = (0..3).map(|_| RedisProcess::start_with(true)).collect();
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        let url = create_cluster(&ports);
        RedisCluster { nodes, url }
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}

/// A redis-server owned by one test, which may kill it and start it again
/// on the same port and data directory (append-only file, fsync on every
/// write: what was acknowledged survives a kill).
pub struct RedisProcess {
    pub port: u16,
    dir: tempfile::TempDir,
    cluster: bool,
    child: Option<Child>,
}

impl RedisProcess {
    /// A standalone server.
    pub fn start() -> RedisProcess {
        RedisProcess::start_with(false)
    }

    fn start_with(cluster: bool) -> RedisProcess {
        let mut process = RedisProcess {
            port: free_port(),
            dir: tempfile::tempdir().expect("redis dir"),
            cluster,
            child: None,
        };
        process.restart();
        process
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no final save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts the server again (after [`RedisProcess::kill`]) on the same port and data.
    pub fn restart(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(base_args(self.dir.path()))
            .args(["--port", &self.port.to_string()])
            .args(["--appendonly", "yes", "--appendfsync", "always"]);
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for_ping(self.port);
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base_args(dir: &Path) -> Vec<String> {
    vec![
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--dir".into(),
        dir.display().to_string(),
        "--protected-mode".into(),
        "no".into(),
    ]
}

/// Starts redis-server under `sh`, which kills it when our end of its stdin
/// pipe closes (when the test binary exits, however it exits).
fn keep_until_exit(dir: &Path, extra: &[&str]) {
    static PIPES: Mutex<Vec<(Child, ChildStdin)>> = Mutex::new(Vec::new());
    let mut args = base_args(dir);
    args.extend(["--appendonly".into(), "no".into()]);
    for option in extra {
        args.extend(option.split(' ').map(str::to_owned));
    }
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"redis-server "$@" >/dev/null 2>&1 & pid=$!; read -r _; kill -9 "$pid"; wait "$pid"; rm -rf "$SCRATCH""#)
        .arg("sh")
        .args(&args)
        .env("SCRATCH", dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let stdin = child.stdin.take().expect("stdin pipe");
    PIPES.lock().unwrap_or_else(|p| p.into_inner()).push((child, stdin));
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("creator-boost-redis-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("redis scratch dir");
    dir
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli(port, &["ping"]).trim() != "PONG" {
        assert!(Instant::now() < deadline, "redis-server on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
