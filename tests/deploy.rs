//! The operations kit in `deploy/` against the service it deploys: the
//! Kubernetes manifests validate against the Kubernetes schemas and agree
//! with the config they mount; the Prometheus rules pass `promtool`; every
//! metric an alert, a recording rule or a dashboard panel uses is in a real
//! server's `/metrics`; a real Prometheus scraping a real server sees the
//! store-down alert go pending when Redis is killed under a Rank load and
//! clear when it returns; the health probes the manifests declare answer
//! SERVING, then not SERVING while the server drains.
//!
//! The external tools (`kubernetes-validate` from PyPI, `promtool` and
//! `prometheus` from Debian's `prometheus` package, `python3` with PyYAML)
//! are looked up on the PATH. When one is missing its test is reported as
//! ignored, with the reason, unless `CREATOR_BOOST_REQUIRE_OPS_TOOLS=1`
//! (`.ci/run` sets it after installing them), which turns the absence into a
//! failure (see `common/harness.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::harness::{Need, Tool};
use common::redis::RedisProcess;
use common::*;
use creator_boost::config::{Config, Overrides};
use creator_boost::proto;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Series Prometheus makes itself for every target (not the service's).
const MADE_BY_PROMETHEUS: [&str; 1] = ["up"];

/// Families with a series only on a replica consuming Kafka (one per
/// assigned partition); `tests/kafka.rs` checks they are served there.
const SERVED_WHILE_CONSUMING: [&str; 1] = ["creator_boost_kafka_lag"];

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Kubernetes versions the manifests are validated against: the first with
/// native gRPC probes enabled by default (1.27, GA), and the newest schemas
/// `kubernetes-validate` ships.
const KUBERNETES_VERSIONS: [Option<&str>; 2] = [Some("1.27.0"), None];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An operations tool, required when `CREATOR_BOOST_REQUIRE_OPS_TOOLS=1`.
const fn ops_tool(program: &'static str, args: &'static [&'static str], install: &'static str) -> Need {
    Need::Tool(Tool {
        program,
        args,
        install,
        required_by: Some("CREATOR_BOOST_REQUIRE_OPS_TOOLS"),
    })
}

const KUBERNETES_VALIDATE: Need = ops_tool("kubernetes-validate", &["--version"], "pip install kubernetes-validate");
const PROMTOOL: Need = ops_tool("promtool", &["--version"], "apt-get install prometheus");
const PROMETHEUS: Need = ops_tool("prometheus", &["--version"], "apt-get install prometheus");
const PYYAML: Need = ops_tool("python3", &["-c", "import yaml"], "pip install pyyaml");

/// Runs a command, prints what it printed, and fails the test unless it succeeded.
fn run_and_show(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("$ {command:?}\n{text}");
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

// ---------------------------------------------------------------- Kubernetes

/// Every Kubernetes resource file (kustomization files are kustomize's, not
/// the API's).
fn manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in ["base", "embedded", "replicas"] {
        let dir = deploy_dir().join("kubernetes").join(folder);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn kubernetes_manifests_validate_against_the_schemas() {
    let files = manifests();
    assert!(files.len() >= 8, "manifests: {files:?}");
    for version in KUBERNETES_VERSIONS {
        let mut command = Command::new("kubernetes-validate");
        command.arg("--strict");
        if let Some(version) = version {
            command.args(["--kubernetes-version", version]);
        }
        let text = run_and_show(command.args(&files));
        assert_eq!(
            text.matches(" passed for resource ").count(),
            files.len(),
            "every file holds one resource, and each passed"
        );
    }
}

/// Each overlay's resources exist, so `kubectl apply -k` finds them.
fn kustomizations_list_files_that_exist() {
    for folder in ["base", "embedded", "replicas"] {
        let dir = deploy_dir().join("kubernetes").join(folder);
        let text = read(&dir.join("kustomization.yaml"));
        let resources = yaml_list(&text, "resources");
        assert!(!resources.is_empty(), "{folder}: no resources");
        for resource in resources {
            assert!(dir.join(&resource).exists(), "{folder}: {resource} missing");
        }
    }
}

/// The items of a top-level `key:` list of plain scalars.
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| line.trim_end() != format!("{key}:"))
        .skip(1)
        .take_while(|line| line.starts_with("  ") || line.trim().is_empty())
        .filter_map(|line| line.trim().strip_prefix("- ").map(str::to_owned))
        .collect()
}

/// The indented block under `key: |` (first match), dedented.
fn block_scalar(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|line| line.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no `{key}: |` block"));
    let indent = header.len() - header.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > indent)
        .collect();
    let inner = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(inner..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of the first `key: value` line after the first line containing `after`.
fn value_after(text: &str, after: &str, key: &str) -> String {
    text.lines()
        .skip_while(|line| !line.contains(after))
        .find_map(|line| {
            line.trim()
                .strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} after {after}"))
}

/// The ConfigMap's config file, through the service's own parser.
fn configmap_config() -> (String, Config) {
    let text = block_scalar(
        &read(&deploy_dir().join("kubernetes/base/configmap.yaml")),
        "creator-boost.toml",
    );
    let config = Config::from_toml(&text, Path::new("configmap.yaml"), Overrides::default())
        .unwrap_or_else(|e| panic!("the ConfigMap's config is refused: {e}"));
    (text, config)
}

/// The workloads agree with the config they mount: ports, the token path,
/// a termination grace period that outlasts the preStop pause plus the
/// drain, readiness on the CreatorBoost service, non-root.
fn workloads_agree_with_the_configmap() {
    let (_, config) = configmap_config();
    let grace_ms = config.shutdown_grace.as_millis() as u64;
    let metrics = config.metrics_listen.expect("metrics served");
    let token = config.write_token_file.clone().expect("writes need a token");
    for workload in ["embedded/statefulset.yaml", "replicas/deployment.yaml"] {
        let text = read(&deploy_dir().join("kubernetes").join(workload));
        let termination: u64 = value_after(&text, "spec:", "terminationGracePeriodSeconds")
            .parse()
            .expect("seconds");
        let pause_s: u64 = value_after(&text, "preStop:", "command")
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .nth(1)
            .and_then(|s| s.trim().trim_matches('"').parse().ok())
            .expect("preStop: [\"sleep\", \"N\"]");
        assert!(
            termination * 1000 > pause_s * 1000 + grace_ms,
            "{workload}: terminationGracePeriodSeconds {termination} s must outlast the preStop pause {pause_s} s plus shutdown_grace_ms {grace_ms}"
        );
        for probe in ["startupProbe:", "livenessProbe:", "readinessProbe:"] {
            assert_eq!(
                value_after(&text, probe, "port"),
                config.listen.port().to_string(),
                "{workload}: {probe} port"
            );
        }
        let readiness = text.split("readinessProbe:").nth(1).expect("readiness");
        let readiness = readiness.split("lifecycle:").next().expect("block");
        assert!(
            readiness.contains("service: creatorboost.v1.CreatorBoost"),
            "{workload}: readiness on creatorboost.v1.CreatorBoost"
        );
        let liveness = text.split("livenessProbe:").nth(1).expect("liveness");
        let liveness = liveness.split("readinessProbe:").next().expect("block");
        assert!(
            !liveness.contains("service:"),
            "{workload}: liveness on the whole server"
        );
        assert_eq!(
            value_after(&text, "prometheus.io/port", "prometheus.io/port").trim_matches('"'),
            metrics.port().to_string(),
            "{workload}: scrape port"
        );
        let token_mount = value_after(&text, "- name: write-token", "mountPath");
        assert_eq!(Path::new(&token_mount).join("token"), token, "{workload}: token path");
        for needle in [
            "runAsNonRoot: true",
            "readOnlyRootFilesystem: true",
            "allowPrivilegeEscalation: false",
        ] {
            assert!(text.contains(needle), "{workload}: {needle}");
        }
        assert_eq!(
            value_after(&text, "- name: CREATOR_BOOST_CONFIG", "value"),
            "/etc/creator-boost/creator-boost.toml"
        );
        assert_eq!(value_after(&text, "- name: config", "mountPath"), "/etc/creator-boost");
    }
    eprintln!(
        "ConfigMap config loads: listen {}, metrics {metrics}, shutdown_grace_ms {grace_ms}, token {}",
        config.listen,
        token.display()
    );
}

// ---------------------------------------------------------------- Prometheus

fn prometheus_rules_and_config_pass_promtool() {
    let dir = deploy_dir().join("prometheus");
    let checked = run_and_show(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(dir.join("creator-boost-rules.yml")),
    );
    assert!(checked.contains("SUCCESS"));
    let tested = run_and_show(
        Command::new("promtool")
            .args(["test", "rules", "creator-boost-rules.test.yml"])
            .current_dir(&dir),
    );
    assert!(tested.contains("SUCCESS"));
    run_and_show(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(dir.join("prometheus.yml")),
    );
}

/// The compose stack cannot be started here (no container engine); its
/// static check can.
fn compose_stack_passes_its_static_check() {
    let text = run_and_show(Command::new("python3").arg(deploy_dir().join("check_compose.py")));
    assert!(text.contains("compose: all checks passed"));
}

/// A metric name and the label names matched on it, as used in PromQL.
#[derive(Debug)]
struct Selector {
    name: String,
    labels: Vec<String>,
}

const PROMQL_WORDS: [&str; 22] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
];

/// The metric selectors in a PromQL expression: names not called as
/// functions, not keywords, not inside strings, ranges or label lists.
fn promql_selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut selectors = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_spaces = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let skip_past = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            i += 1;
        }
        i + 1
    };
    let skip_string = |mut i: usize| {
        let quote = chars[i];
        i += 1;
        while i < chars.len() && chars[i] != quote {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '[' {
            i = skip_past(i, ']');
        } else if c == '{' {
            i = skip_past(i, '}');
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable, a number or a duration.
            i += 1;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_spaces(i);
            let grouping = ["by", "without", "on", "ignoring", "group_left", "group_right"];
            if chars.get(next) == Some(&'(') {
                if grouping.contains(&word.as_str()) {
                    i = skip_past(next, ')');
                }
            } else if !PROMQL_WORDS.contains(&word.as_str()) {
                let mut labels = Vec::new();
                if chars.get(next) == Some(&'{') {
                    i = next + 1;
                    loop {
                        i = skip_spaces(i);
                        match chars.get(i) {
                            None => break,
                            Some('}') => {
                                i += 1;
                                break;
                            }
                            Some(c) if ident_start(*c) => {
                                let label_start = i;
                                while i < chars.len() && ident_char(chars[i]) {
                                    i += 1;
                                }
                                labels.push(chars[label_start..i].iter().collect());
                            }
                            Some('"') | Some('\'') | Some('`') => i = skip_string(i),
                            Some(_) => i += 1,
                        }
                    }
                }
                selectors.push(Selector { name: word, labels });
            }
        } else {
            i += 1;
        }
    }
    selectors
}

fn promql_selectors_finds_names_and_matched_labels() {
    let found = promql_selectors(
        r#"sum by (job, le) (rate(a_bucket{method="Rank", code=~"X|Y"}[5m])) / on (job) b:rec > 0.1 unless c == 0 and $x"#,
    );
    let names: Vec<(&str, Vec<&str>)> = found
        .iter()
        .map(|s| (s.name.as_str(), s.labels.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        names,
        vec![("a_bucket", vec!["method", "code"]), ("b:rec", vec![]), ("c", vec![])]
    );
}

/// `expr:` values of a rules file (plain, or `|`/`>` blocks) and the names
/// its `record:` rules define.
fn rule_exprs(text: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    let mut records = BTreeSet::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(name) = trimmed.strip_prefix("record: ") {
            records.insert(name.trim().to_owned());
        }
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if ["|", "|-", ">", ">-"].contains(&value) {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(value.trim_matches('\'').trim_matches('"').to_owned());
        }
    }
    (exprs, records)
}

/// Every PromQL expression of the kit, by where it comes from.
fn kit_queries() -> (Vec<(String, String)>, BTreeSet<String>) {
    let prometheus = deploy_dir().join("prometheus");
    let (exprs, records) = rule_exprs(&read(&prometheus.join("creator-boost-rules.yml")));
    let mut queries: Vec<(String, String)> = exprs.into_iter().map(|e| ("rules".to_owned(), e)).collect();
    assert!(queries.len() >= 15, "rules: {queries:?}");
    // The promtool tests' input series: stale names there would test nothing.
    for line in read(&prometheus.join("creator-boost-rules.test.yml")).lines() {
        if let Some(series) = line.trim().strip_prefix("- series: ") {
            queries.push(("rule tests".to_owned(), series.trim_matches('\'').to_owned()));
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy_dir().join("grafana/creator-boost-dashboard.json")))
            .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr").to_owned();
            queries.push((format!("panel {:?}", panel["title"].as_str().unwrap_or("")), expr));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(METRIC, LABEL): only METRIC is a selector.
            let inner = query.strip_prefix("label_values(").expect("label_values query");
            let metric = inner.split(',').next().expect("metric");
            queries.push(("dashboard variable".to_owned(), metric.to_owned()));
        }
    }
    (queries, records)
}

/// Metric names and their label names in a `/metrics` exposition.
fn exposed(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = metrics.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            for pair in rest.split('}').next().unwrap_or("").split(',') {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
    }
    metrics
}

/// Every metric name (and matched label) the rules, the rule tests and the
/// dashboard use is in a running server's `/metrics`; recording-rule names
/// are defined by the rules file. A renamed metric fails here.
async fn every_metric_the_kit_uses_is_served() {
    let server = spawn_with(Spawn {
        metrics: true,
        ..Spawn::default()
    })
    .await;
    // Some traffic, so that labelled series (codes, reasons) are present.
    let mut client = server.client().await;
    client
        .rank(proto::RankRequest {
            viewer_id: 1,
            candidates: vec![candidate(1, 10, 1.0)],
            ..Default::default()
        })
        .await
        .expect("rank");
    let outcome = record(
        &mut client,
        vec![
            event("m1", proto::EventKind::Like, 1, 10),
            event("m2", proto::EventKind::Like, 10, 10),
        ],
    )
    .await;
    assert_eq!((outcome.accepted, outcome.rejected.len()), (1, 1));
    let (status, body) = http_get(server.metrics_addr.expect("metrics"), "/metrics")
        .await
        .expect("scrape");
    assert!(status.contains("200"), "{status}");
    let served = exposed(&body);

    let (queries, records) = kit_queries();
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for (origin, query) in &queries {
        let selectors = promql_selectors(query);
        if selectors.is_empty() {
            problems.push(format!("{origin}: no metric in {query:?}"));
        }
        for selector in selectors {
            let name = selector.name.as_str();
            if name.contains(':') {
                if !records.contains(name) {
                    problems.push(format!("{origin}: recording rule {name} is not defined"));
                }
            } else if MADE_BY_PROMETHEUS.contains(&name) || SERVED_WHILE_CONSUMING.contains(&name) {
                continue;
            } else if let Some(labels) = served.get(name) {
                checked.insert(name.to_owned());
                for label in &selector.labels {
                    if !labels.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                        problems.push(format!("{origin}: {name} has no label {label} (served: {labels:?})"));
                    }
                }
            } else {
                problems.push(format!("{origin}: {name} is not in /metrics"));
            }
        }
    }
    eprintln!(
        "{} queries; {} served metric names checked: {checked:?}; recording rules: {records:?}",
        queries.len(),
        checked.len()
    );
    assert!(
        problems.is_empty(),
        "kit and service disagree:\n{}",
        problems.join("\n")
    );
}

// ------------------------------------------------- end to end with Prometheus

/// A process killed (and waited for) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state (`inactive`, `pending`, `firing`) of an alerting rule, from
/// Prometheus's HTTP API.
async fn alert_state(prometheus: SocketAddr, alert: &str) -> Result<String, String> {
    let (status, body) = http_get(prometheus, "/api/v1/rules?type=alert").await?;
    if !status.contains("200") {
        return Err(status);
    }
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    json["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .find(|rule| rule["name"] == alert)
        .and_then(|rule| rule["state"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("no rule {alert}"))
}

/// The value of an instant query's first sample, if any.
async fn query(prometheus: SocketAddr, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (_, body) = http_get(prometheus, &format!("/api/v1/query?query={encoded}"))
        .await
        .ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Polls until `alert` is in one of `states`; returns the state and when.
async fn wait_for_alert(prometheus: SocketAddr, alert: &str, states: &[&str], within: Duration) -> (String, Duration) {
    let start = Instant::now();
    loop {
        let state = alert_state(prometheus, alert).await;
        if let Ok(state) = &state
            && states.contains(&state.as_str())
        {
            return (state.clone(), start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "{alert} not {states:?} after {within:?}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real Prometheus (1 s scrape and evaluation) with the kit's rules scrapes
/// a real server on Redis. Redis killed under a Rank load: the store-down
/// alert goes from inactive to pending (it fires after its `for: 1m`);
/// Redis back: inactive again. No Rank call fails meanwhile.
async fn store_down_alert_fires_and_clears_with_a_real_prometheus() {
    const ALERT: &str = "CreatorBoostStoreDown";
    let mut redis = RedisProcess::start();
    let server = spawn_with(Spawn {
        backend: Backend::Url(redis.url()),
        config: Some(format!("{TEST_CONFIG}\n[cache]\nttl_ms = 300\nstale_ttl_ms = 3000\n")),
        metrics: true,
        ..Spawn::default()
    })
    .await;
    let metrics = server.metrics_addr.expect("metrics");

    let temp = tempfile::tempdir().expect("temp");
    let rules = deploy_dir().join("prometheus/creator-boost-rules.yml");
    let config = temp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: creator-boost\n    static_configs:\n      - targets: [\"{metrics}\"]\n",
            rules = rules.display()
        ),
    )
    .expect("prometheus config");
    let port = free_port();
    let prometheus_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::fs::File::create(temp.path().join("prometheus.log")).expect("log");
    let started = Instant::now();
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", temp.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    // Scraped, and the rule evaluated once with the store up.
    loop {
        if query(prometheus_addr, "creator_boost_store_up").await == Some(1.0)
            && alert_state(prometheus_addr, ALERT).await.as_deref() == Ok("inactive")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus not scraping: {}",
            read(&temp.path().join("prometheus.log"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "prometheus up, scraping, {ALERT} inactive after {:?}",
        started.elapsed()
    );

    // A steady Rank load through the outage and the recovery.
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("p", 900, 1..6)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let (mut answers, mut degraded, mut failures) = (0u32, 0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut request = tonic::Request::new(proto::RankRequest {
                    viewer_id: 3,
                    candidates: vec![candidate(1, 900, 1.0), candidate(2, 901, 1.0)],
                    ..Default::default()
                });
                request.set_timeout(Duration::from_millis(500));
                match client.rank(request).await {
                    Ok(answer) => {
                        answers += 1;
                        degraded += u32::from(answer.into_inner().degraded);
                    }
                    Err(status) => failures.push(status),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answers, degraded, failures)
        })
    };

    redis.kill();
    let (state, after) = wait_for_alert(prometheus_addr, ALERT, &["pending", "firing"], Duration::from_secs(30)).await;
    eprintln!("redis killed: {ALERT} {state} after {after:?}");
    let degraded = alert_state(prometheus_addr, "CreatorBoostDegradedAnswers").await;
    eprintln!("meanwhile CreatorBoostDegradedAnswers: {degraded:?}");

    redis.restart();
    let (state, after) = wait_for_alert(prometheus_addr, ALERT, &["inactive"], Duration::from_secs(30)).await;
    eprintln!("redis restarted: {ALERT} {state} after {after:?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answers, degraded, failures) = load.await.expect("load");
    eprintln!(
        "rank load: {answers} answers, {degraded} degraded, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed Rank calls: {failures:?}");
    assert!(degraded > 0, "the outage showed in answers");
}

// ------------------------------------------------------------- health probes

/// The gRPC probes the replica Deployment declares: (kind, service).
fn declared_probes() -> Vec<(&'static str, String)> {
    let text = read(&deploy_dir().join("kubernetes/replicas/deployment.yaml"));
    ["startupProbe", "livenessProbe", "readinessProbe"]
        .into_iter()
        .map(|kind| {
            let block = text.split(&format!("{kind}:")).nth(1).expect("probe");
            let block = block.split("Probe:").next().expect("block");
            let block = block.split("periodSeconds").next().expect("grpc part");
            assert!(block.contains("grpc:"), "{kind} is a native gRPC probe");
            let service = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("service:"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            (kind, service)
        })
        .collect()
}

/// The exec form (compose and the Dockerfile): `creator-boost health`.
fn health_command(url: &str, service: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_creator-boost"))
        .args(["health", "--server", url, "--service", service, "--timeout-ms", "1000"])
        .output()
        .expect("health");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    (output.status.success(), text)
}

/// The real binary on the ConfigMap's config (addresses moved to loopback):
/// every declared probe passes; after SIGTERM, while it drains (a Watch
/// stream keeps the drain going), none does; then it exits cleanly.
async fn declared_probes_pass_then_fail_while_draining() {
    let probes = declared_probes();
    assert_eq!(probes[2], ("readinessProbe", "creatorboost.v1.CreatorBoost".to_owned()));
    let (text, config) = configmap_config();
    let temp = tempfile::tempdir().expect("temp");
    let config_path = temp.path().join("creator-boost.toml");
    std::fs::write(&config_path, text).expect("config");
    let token = temp.path().join("token");
    std::fs::write(&token, "probe-test-token\n").expect("token");
    let metrics = format!("127.0.0.1:{}", free_port());
    let (child, url) = start_binary(
        &temp.path().join("data"),
        &[
            "--config".as_ref(),
            config_path.as_os_str(),
            "--write-token-file".as_ref(),
            token.as_os_str(),
            "--metrics-listen".as_ref(),
            metrics.as_ref(),
        ],
    )
    .await;
    let mut child = KillOnDrop(child);

    for (kind, service) in &probes {
        let status = health_check(&url, service, Duration::from_secs(1)).await;
        eprintln!("serving: {kind} (service {service:?}): {status:?}");
        assert_eq!(status, Ok(ServingStatus::Serving), "{kind}");
        let (ok, printed) = health_command(&url, service);
        assert!(
            ok && printed == "SERVING",
            "creator-boost health --service {service:?}: {printed}"
        );
    }

    // A watcher on its own connection: its open stream keeps the server
    // draining (up to shutdown_grace_ms) after SIGTERM.
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: probes[2].1.clone(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first: HealthCheckResponse = watch.message().await.expect("first").expect("some");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let terminated = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let next = watch.message().await.expect("next").expect("some");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    eprintln!(
        "draining: watch says NOT_SERVING {:?} after SIGTERM",
        terminated.elapsed()
    );
    for (kind, service) in &probes {
        let status = health_check(&url, service, Duration::from_secs(1)).await;
        eprintln!("draining: {kind} (service {service:?}): {status:?}");
        assert_ne!(status, Ok(ServingStatus::Serving), "{kind} passes while draining");
        let (ok, printed) = health_command(&url, service);
        assert!(
            !ok,
            "creator-boost health --service {service:?} passes while draining: {printed}"
        );
    }
    assert!(child.0.try_wait().expect("wait").is_none(), "still draining");

    drop(watch);
    let deadline = Instant::now() + config.shutdown_grace + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not exit within the grace period");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("exited {exit} {:?} after SIGTERM", terminated.elapsed());
    assert!(exit.success(), "{exit}");
}

fn main() -> std::process::ExitCode {
    harness::run(vec![
        trial!(kubernetes_manifests_validate_against_the_schemas).needs([KUBERNETES_VALIDATE]),
        trial!(kustomizations_list_files_that_exist),
        trial!(workloads_agree_with_the_configmap),
        trial!(prometheus_rules_and_config_pass_promtool).needs([PROMTOOL]),
        trial!(compose_stack_passes_its_static_check).needs([PYYAML]),
        trial!(promql_selectors_finds_names_and_matched_labels),
        trial!(async every_metric_the_kit_uses_is_served),
        trial!(async store_down_alert_fires_and_clears_with_a_real_prometheus)
            .multi_thread(2)
            .needs([Need::Redis, PROMETHEUS]),
        trial!(async declared_probes_pass_then_fail_while_draining).multi_thread(2),
    ])
}
