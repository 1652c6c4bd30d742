//! The container image as a platform runs it: built by
//! `deploy/image/build.sh`, then started with a write-token file, a volume,
//! a published port and a read-only root filesystem: health SERVING from the
//! host and by the image's own HEALTHCHECK, a write accepted with the token
//! (refused without), SIGTERM (the image's STOPSIGNAL) ending it with exit 0
//! within the grace period, a new container on the same volume serving the
//! same scores, and no token on 0.0.0.0 refused with exit 64. The image is
//! lean (at most 120 MB), non-root and labelled; `deploy/compose/compose.yaml`
//! passes the engine's own compose parser.
//!
//! The engine is `CREATOR_BOOST_CONTAINER_ENGINE` (podman or docker), else
//! the first of podman and docker that answers. Where none does the test is
//! reported as ignored, with the reason, unless `CREATOR_BOOST_REQUIRE_IMAGE=1`
//! (`.ci/run` sets it after installing podman), which turns that into a
//! failure. docs/container.md has the commands by hand.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::harness::{self, Need, Tool};
use common::{free_port, health_check, loyal_creator_events};
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// The tag `deploy/image/build.sh` leaves.
const IMAGE: &str = "creator-boost:local";

/// The size budget of the whole image.
const MAX_IMAGE_BYTES: u64 = 120_000_000;

/// Where the image keeps its data (its VOLUME) and expects the token.
const DATA: &str = "/var/lib/creator-boost/data";
const TOKEN_PATH: &str = "/run/secrets/creator-boost-token";

/// The server's shutdown_grace_ms default (10 s) plus start-up slack: a
/// SIGTERM must end the container well before `stop`'s SIGKILL at 30 s.
const GRACE: Duration = Duration::from_secs(15);

/// Prints a line of the test's log and appends it to
/// `target/tmp/image-smoke.log`, which `.ci/run` shows after the test run
/// (cargo keeps a passing test's output to itself).
macro_rules! say {
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        eprintln!("{line}");
        log_line(&line);
    }};
}

fn log_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-smoke.log")
}

fn log_line(line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path())
        .expect("smoke log");
    writeln!(file, "{line}").expect("smoke log");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The container engine: `CREATOR_BOOST_CONTAINER_ENGINE`, else the first
/// of podman and docker that answers (podman when neither does, so the
/// reason names it).
fn engine() -> &'static str {
    if let Ok(wanted) = std::env::var("CREATOR_BOOST_CONTAINER_ENGINE") {
        return Box::leak(wanted.into_boxed_str());
    }
    ["podman", "docker"]
        .into_iter()
        .find(|engine| harness::runs(engine, &["info"]))
        .unwrap_or("podman")
}

/// Runs a command; returns its output and what it printed (both streams).
fn run(command: &mut Command) -> (Output, String) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text.trim().to_owned())
}

/// Runs a command that must succeed; returns its stdout, trimmed.
fn ok(command: &mut Command) -> String {
    let (output, text) = run(command);
    assert!(output.status.success(), "{command:?} failed: {text}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Containers and the volume of one run, removed when dropped.
struct Engine {
    program: String,
    tag: String,
    volume: String,
    containers: Vec<String>,
}

impl Engine {
    fn command(&self) -> Command {
        Command::new(&self.program)
    }

    fn is_podman(&self) -> bool {
        self.program.ends_with("podman")
    }

    /// Starts a detached container of the image: read-only root, /tmp on
    /// tmpfs, the volume on the data directory, `args` before the image.
    fn start(&mut self, name: &str, args: &[&str]) -> String {
        let name = format!("{}-{name}", self.tag);
        let mount = format!("{}:{DATA}", self.volume);
        ok(self
            .command()
            .args(["run", "--detach", "--name", &name, "--read-only", "--tmpfs", "/tmp"])
            .args(["--volume", &mount])
            .args(args)
            .arg(IMAGE));
        self.containers.push(name.clone());
        name
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        ok(self.command().args(["inspect", "--format", format, name]))
    }

    fn logs(&self, name: &str) -> String {
        run(self.command().args(["logs", name])).1
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = self.command().args(["rm", "--force", name]).output();
        }
        let _ = self.command().args(["volume", "rm", "--force", &self.volume]).output();
    }
}

/// Waits for SERVING on the published port; returns how long it took.
async fn wait_serving(engine: &Engine, name: &str, url: &str) -> Duration {
    let started = Instant::now();
    loop {
        let status = health_check(url, "creatorboost.v1.CreatorBoost", Duration::from_secs(2)).await;
        if status == Ok(ServingStatus::Serving) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name} not SERVING on {url}: {status:?}\n{}",
            engine.logs(name)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The image's own HEALTHCHECK passes: docker runs it on its schedule,
/// podman (without systemd timers) when asked.
async fn image_healthcheck_passes(engine: &Engine, name: &str) -> String {
    let started = Instant::now();
    loop {
        let healthy = if engine.is_podman() {
            run(engine.command().args(["healthcheck", "run", name]))
                .0
                .status
                .success()
        } else {
            engine.inspect(name, "{{.State.Health.Status}}") == "healthy"
        };
        if healthy {
            return format!("healthy after {:?}", started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: HEALTHCHECK not passing\n{}",
            engine.logs(name)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn client(url: &str) -> CreatorBoostClient<Channel> {
    CreatorBoostClient::connect(url.to_owned()).await.expect("connect")
}

/// RecordEvents with `token` as the bearer token, if any.
async fn record(
    url: &str,
    token: Option<&str>,
    events: Vec<proto::Event>,
) -> Result<proto::RecordEventsResponse, tonic::Status> {
    let mut request = tonic::Request::new(proto::RecordEventsRequest { events });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("metadata");
        request.metadata_mut().insert("authorization", value);
    }
    client(url)
        .await
        .record_events(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn scores(url: &str, creators: &[u64]) -> Vec<proto::CreatorScore> {
    client(url)
        .await
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: creators.to_vec(),
            variant: String::new(),
        })
        .await
        .expect("scores")
        .into_inner()
        .scores
}

/// The image's metadata: size, user, labels, health check, stop signal.
fn check_metadata(engine: &Engine) -> u64 {
    let text = ok(engine.command().args(["image", "inspect", IMAGE]));
    let inspected: serde_json::Value = serde_json::from_str(&text).expect("inspect json");
    let image = &inspected[0];
    let size = image["Size"].as_u64().expect("Size");
    say!("image {IMAGE}: {size} bytes ({} MB)", size / 1_000_000);
    assert!(
        size <= MAX_IMAGE_BYTES,
        "{IMAGE} is {size} bytes, over {MAX_IMAGE_BYTES}"
    );
    let config = &image["Config"];
    assert_eq!(config["User"], "creator-boost");
    assert_eq!(config["StopSignal"], "SIGTERM");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(labels["org.opencontainers.image.licenses"], env!("CARGO_PKG_LICENSE"));
    assert!(
        labels["org.opencontainers.image.source"].is_string(),
        "source label: {labels}"
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .expect("revision label");
    let head = ok(Command::new("git").args(["rev-parse", "HEAD"]).current_dir(repo()));
    assert!(revision.starts_with(&head), "revision label {revision}, HEAD {head}");
    // docker keeps the HEALTHCHECK in Config; podman shows it beside it.
    let healthcheck = if config["Healthcheck"].is_object() {
        &config["Healthcheck"]
    } else {
        &image["Healthcheck"]
    };
    assert_eq!(
        healthcheck["Test"][1], "creator-boost",
        "HEALTHCHECK runs `creator-boost health`: {healthcheck}"
    );
    say!("labels: {labels}");
    size
}

/// `deploy/compose/compose.yaml` through the engine's compose parser.
fn check_compose(engine: &Engine) {
    let file = repo().join("deploy/compose/compose.yaml");
    let compose = || {
        if engine.is_podman() {
            Command::new("podman-compose")
        } else {
            let mut docker = Command::new(&engine.program);
            docker.arg("compose");
            docker
        }
    };
    // Debian bookworm's podman-compose (1.0.3) has no `config`; PyPI's has.
    let install = "pip install podman-compose, or the docker compose plugin";
    if !compose()
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success())
    {
        assert!(
            std::env::var("CREATOR_BOOST_REQUIRE_IMAGE").as_deref() != Ok("1"),
            "{:?} is required (CREATOR_BOOST_REQUIRE_IMAGE=1) but did not run: {install}",
            compose()
        );
        eprintln!("NOTICE: {:?} did not run; compose check skipped ({install})", compose());
        return;
    }
    let mut command = compose();
    let (output, text) = run(command.arg("--file").arg(&file).arg("config"));
    assert!(output.status.success(), "{command:?} ({install}): {text}");
    for service in ["replica-a", "replica-b", "redis", "prometheus", "grafana"] {
        assert!(text.contains(&format!("  {service}:")), "{service} in:\n{text}");
    }
    say!(
        "{command:?}: the compose file parses ({} lines normalised)",
        text.lines().count()
    );
}

fn write_token(dir: &Path) -> (PathBuf, String) {
    let token = format!("image-smoke-{}", std::process::id());
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).expect("token");
    (path, token)
}

async fn the_image_builds_runs_keeps_its_data_and_stops_cleanly() {
    let program = engine().to_owned();
    let tag = format!("cb-smoke-{}", std::process::id());
    let mut engine = Engine {
        program,
        volume: format!("{tag}-data"),
        tag,
        containers: Vec::new(),
    };

    let _ = std::fs::remove_file(log_path());
    // Build with the documented command.
    let started = Instant::now();
    let mut build = Command::new(repo().join("deploy/image/build.sh"));
    // Without the variables cargo sets for this test (OUT_DIR above all):
    // the nested `cargo build --release` would take them for a change and
    // rebuild the crate.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "OUT_DIR" || (name.starts_with("CARGO_") && name != "CARGO_HOME" && name != "CARGO_TARGET_DIR") {
            build.env_remove(name.as_ref());
        }
    }
    let (output, text) = run(build.env("CONTAINER_ENGINE", &engine.program).env("IMAGE", IMAGE));
    let summary: Vec<&str> = text.lines().filter(|line| line.starts_with("build.sh:")).collect();
    assert!(output.status.success(), "deploy/image/build.sh failed:\n{text}");
    say!("{}\nbuild.sh took {:?}", summary.join("\n"), started.elapsed());
    check_metadata(&engine);
    check_compose(&engine);

    // Started with a token file, a volume and a published port.
    let temp = tempfile::tempdir().expect("temp");
    let (token_file, token) = write_token(temp.path());
    let token_mount = format!("{}:{TOKEN_PATH}:ro", token_file.display());
    let token_env = format!("CREATOR_BOOST_WRITE_TOKEN_FILE={TOKEN_PATH}");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:50051");
    let url = format!("http://127.0.0.1:{port}");
    let serve_args = ["--volume", &token_mount, "--env", &token_env, "--publish", &publish];
    let first = engine.start("a", &serve_args);
    let waited = wait_serving(&engine, &first, &url).await;
    say!("{first}: SERVING on {url} after {waited:?}");
    assert_eq!(ok(engine.command().args(["exec", &first, "id", "-u"])), "10001");
    say!(
        "{first}: HEALTHCHECK {}",
        image_healthcheck_passes(&engine, &first).await
    );

    // A write: refused without the token, accepted with it.
    let events = || {
        let mut events = loyal_creator_events("smoke", 700, 1..9);
        for event in &mut events {
            event.timestamp_ms = 0;
        }
        events
    };
    let refused = record(&url, None, events()).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let accepted = record(&url, Some(&token), events()).await.expect("with the token");
    assert_eq!((accepted.accepted as usize, accepted.duplicates), (events().len(), 0));
    say!(
        "{first}: without the token {:?}; with it {} accepted",
        refused.code(),
        accepted.accepted
    );
    let before = scores(&url, &[700]).await;
    assert!(before[0].found && before[0].followers == 8, "{before:?}");

    // SIGTERM (the image's STOPSIGNAL, sent by `stop`) ends it with 0 in time.
    let stopping = Instant::now();
    ok(engine.command().args(["stop", "--time", "30", &first]));
    let stopped = stopping.elapsed();
    let exit = engine.inspect(&first, "{{.State.ExitCode}}");
    say!("{first}: stopped, exit {exit} after {stopped:?}");
    assert_eq!(exit, "0", "exit code after SIGTERM\n{}", engine.logs(&first));
    assert!(stopped < GRACE, "stop took {stopped:?}");

    // A new container on the same volume serves the same scores, and knows
    // the events it already has.
    let second = engine.start("b", &serve_args);
    let waited = wait_serving(&engine, &second, &url).await;
    say!("{second}: SERVING on {url} after {waited:?}, same volume");
    let after = scores(&url, &[700]).await;
    say!(
        "creator 700 before: followers {}, evidence {}, creator_value {:.6}; after: followers {}, evidence {}, creator_value {:.6}",
        before[0].followers,
        before[0].evidence,
        before[0].creator_value,
        after[0].followers,
        after[0].evidence,
        after[0].creator_value
    );
    assert_eq!(
        (after[0].found, after[0].followers, after[0].evidence),
        (before[0].found, before[0].followers, before[0].evidence)
    );
    // The same events as of a few seconds later: decay over seconds, with
    // half-lives of days, moves the values by far less than this.
    for (name, was, is) in [
        ("fan_value", before[0].fan_value, after[0].fan_value),
        ("long_term_value", before[0].long_term_value, after[0].long_term_value),
        ("creator_value", before[0].creator_value, after[0].creator_value),
        ("public_boost", before[0].public_boost, after[0].public_boost),
    ] {
        assert!(
            (was - is).abs() <= 1e-4 * was.abs().max(1e-3),
            "{name}: {was} then {is}"
        );
    }
    let replay = record(&url, Some(&token), events()).await.expect("replay");
    assert_eq!((replay.accepted, replay.duplicates as usize), (0, events().len()));
    say!("{second}: replayed events are {} duplicates", replay.duplicates);
    ok(engine.command().args(["stop", "--time", "30", &second]));
    assert_eq!(engine.inspect(&second, "{{.State.ExitCode}}"), "0");

    // No token on 0.0.0.0: refused at start with exit 64 (EX_USAGE).
    let open = format!("{}-open", engine.tag);
    let mount = format!("{}:{DATA}", engine.volume);
    let (output, text) = run(engine
        .command()
        .args([
            "run",
            "--name",
            &open,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--volume",
            &mount,
        ])
        .arg(IMAGE));
    engine.containers.push(open.clone());
    let last = text.lines().last().unwrap_or_default();
    say!("{open}: exit {:?}: {last}", output.status.code());
    assert_eq!(output.status.code(), Some(64), "{text}");
}

fn main() -> std::process::ExitCode {
    let engine = Need::Tool(Tool {
        program: engine(),
        args: &["info"],
        install: "apt-get install podman",
        required_by: Some("CREATOR_BOOST_REQUIRE_IMAGE"),
    });
    harness::run(vec![
        trial!(async the_image_builds_runs_keeps_its_data_and_stops_cleanly)
            .multi_thread(2)
            .needs([engine]),
    ])
}
