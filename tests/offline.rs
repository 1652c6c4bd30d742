//! The offline tools end to end: import (embedded and over StreamEvents),
//! scores as of an instant, the generator, and the real KuaiRand log when it
//! is present.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::harness::Need::{KuaiRand, Redis};

use common::*;
use creator_boost::cli::args::{GenerateArgs, ImportArgs, ScoresArgs};
use creator_boost::cli::commands;
use creator_boost::offline::scores::ScoresFormat;

fn scores_args(data_dir: &Path, as_of: &str) -> ScoresArgs {
    ScoresArgs {
        data_dir: Some(data_dir.to_owned()),
        store: None,
        config: None,
        as_of: as_of.to_owned(),
        format: ScoresFormat::Csv,
        variant: String::new(),
        creators: Vec::new(),
        few_accounts: false,
    }
}

/// Parses `scores` CSV: (creator_id, found, public_boost, all values finite).
fn parse_scores(csv: &str) -> Vec<(u64, bool, f64, bool)> {
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (first, boost) = (column("audience"), column("public_boost"));
    csv.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let values: Vec<f64> = f[first..=boost].iter().map(|v| v.parse().expect("number")).collect();
            (
                f[0].parse().expect("id"),
                f[1] == "true",
                f[boost].parse().expect("boost"),
                values.iter().all(|v| v.is_finite()),
            )
        })
        .collect()
}

const JSONL: &str = r#"{"event_id":"j1","kind":"FOLLOW","viewer_id":7,"creator_id":100,"timestamp_ms":1780000000000}
{"event_id":"j2","kind":"like","viewer_id":7,"creator_id":100,"timestamp_ms":1780000001000}
{"event_id":"j3","kind":7,"viewer_id":8,"creator_id":100,"timestamp_ms":1780000002000,"amount":25.0}
{"event_id":"j4","kind":"VIEW","viewer_id":9,"creator_id":200,"timestamp_ms":1780000003000,"amount":0.5}
this is not json
{"event_id":"j5","kind":"SMILE","viewer_id":9,"creator_id":200}
{"event_id":"j6","kind":"LIKE","viewer_id":200,"creator_id":200,"timestamp_ms":1780000004000}
{"event_id":"j7","kind":"TIP","viewer_id":9,"creator_id":200,"timestamp_ms":1780000005000,"amount":-3}
{"event_id":"j8","kind":"SHARE","viewer_id":9,"creator_id":300,"timestamp_ms":1790000000000}
"#;

/// `creator-boost generate` into `dir/generated.jsonl`: `events` events over
/// 14 days ending 2026-11-01, all of them written.
fn generate_file(dir: &Path, seed: u64, creators: u64, viewers: u64, events: u64) -> PathBuf {
    let path = dir.join("generated.jsonl");
    let args = GenerateArgs {
        seed,
        creators,
        viewers,
        events,
        end: "2026-11-01T00:00:00Z".into(),
        days: 14,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    assert_eq!(commands::generate_events(args, &mut file).expect("generate"), events);
    drop(file);
    path
}

fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(text.as_bytes()).expect("write");
    path
}

/// `scores --few-accounts` lists a creator farmed by five accounts and not
/// one whose engagement comes from a thousand viewers.
async fn few_accounts_report_lists_farmed_creators() {
    let temp = tempfile::tempdir().expect("temp");
    let mut lines = String::new();
    let mut push = |id: String, kind: &str, viewer: u64, creator: u64, amount: f64| {
        lines.push_str(&format!(
            "{{\"event_id\":\"{id}\",\"kind\":\"{kind}\",\"viewer_id\":{viewer},\"creator_id\":{creator},\"timestamp_ms\":1780000000000,\"amount\":{amount}}}\n"
        ));
    };
    for account in 1..=5u64 {
        for kind in ["VIEW", "FOLLOW", "LIKE", "SHARE", "TIP", "PURCHASE", "JOIN_FAN_GROUP"] {
            let amount = if kind == "VIEW" { 1.0 } else { 100.0 };
            push(format!("farm-{account}-{kind}"), kind, account, 500, amount);
        }
    }
    for viewer in 1_000..2_000u64 {
        push(format!("real-{viewer}"), "VIEW", viewer, 600, 0.5);
        if viewer % 10 == 0 {
            push(format!("real-{viewer}-like"), "LIKE", viewer, 600, 0.0);
        }
    }
    let file = write_temp(temp.path(), "farm.jsonl", &lines);
    let data = temp.path().join("data");
    commands::import(import_args(vec![file], &data)).await.expect("import");
    let mut out = Vec::new();
    let args = ScoresArgs {
        few_accounts: true,
        ..scores_args(&data, "2026-06-01T00:00:00Z")
    };
    commands::scores(args, &mut out).await.expect("scores");
    let text = String::from_utf8(out).expect("utf8");
    let mut all = Vec::new();
    commands::scores(scores_args(&data, "2026-06-01T00:00:00Z"), &mut all)
        .await
        .expect("scores");
    let all = String::from_utf8(all).expect("utf8");
    let listed: Vec<u64> = parse_scores(&text).iter().map(|r| r.0).collect();
    assert_eq!(listed, vec![500], "{all}");
}

async fn jsonl_import_counts_rejections_and_is_idempotent() {
    let temp = tempfile::tempdir().expect("temp");
    let file = write_temp(temp.path(), "events.jsonl", JSONL);
    let data = temp.path().join("data");
    let first = commands::import(import_args(vec![file.clone()], &data))
        .await
        .expect("import");
    assert_eq!(first.rows, 9);
    assert_eq!(first.malformed_total(), 2, "{first}");
    assert_eq!((first.events, first.accepted, first.duplicates), (7, 5, 0), "{first}");
    assert_eq!(first.rejected.get("self_interaction"), Some(&1));
    assert_eq!(first.rejected.get("negative_amount"), Some(&1));
    let second = commands::import(import_args(vec![file.clone()], &data))
        .await
        .expect("again");
    assert_eq!((second.accepted, second.duplicates), (0, 5), "{second}");

    // --until splits history: a fresh store with the cut-off misses j8.
    let cut = temp.path().join("cut");
    let until = ImportArgs {
        until: Some("2026-06-01T00:00:00Z".into()),
        ..import_args(vec![file], &cut)
    };
    let stats = commands::import(until).await.expect("until");
    assert_eq!((stats.accepted, stats.after_until), (4, 1), "{stats}");

    let mut out = Vec::new();
    let args = ScoresArgs {
        creators: vec![100, 200, 999],
        ..scores_args(&data, "2026-06-01T00:00:00Z")
    };
    commands::scores(args, &mut out).await.expect("scores");
    let rows = parse_scores(&String::from_utf8(out).expect("utf8"));
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.3), "{rows:?}");
    let unknown = rows.iter().find(|r| r.0 == 999).expect("999");
    assert_eq!((unknown.1, unknown.2), (false, 1.0));
    let creator = rows.iter().find(|r| r.0 == 100).expect("100");
    // A handful of accounts leave a creator near neutral (property 7).
    assert!(creator.1 && (0.95..=1.05).contains(&creator.2), "{creator:?}");
}

async fn import_over_stream_events_into_a_running_server() {
    let server = spawn_server().await;
    let temp = tempfile::tempdir().expect("temp");
    let file = write_temp(temp.path(), "events.jsonl", JSONL);
    let args = ImportArgs {
        server: Some(server.url()),
        data_dir: None,
        ..import_args(vec![file.clone()], temp.path())
    };
    let stats = commands::import(args).await.expect("import");
    // The test server's clock stands at 2026-06-01, so j8 is in its future.
    assert_eq!(
        (stats.accepted, stats.rejected_total(), stats.malformed_total()),
        (4, 3, 2),
        "{stats}"
    );
    assert_eq!(stats.rejected.get("self_interaction"), Some(&1), "{stats}");
    assert_eq!(stats.rejected.get("future_timestamp"), Some(&1), "{stats}");
    let args = ImportArgs {
        server: Some(server.url()),
        data_dir: None,
        ..import_args(vec![file], temp.path())
    };
    let again = commands::import(args).await.expect("again");
    assert_eq!((again.accepted, again.duplicates), (0, 4));
}

async fn generated_events_import_and_score() {
    let temp = tempfile::tempdir().expect("temp");
    let path = generate_file(temp.path(), 3, 50, 500, 5_000);
    let data = temp.path().join("data");
    let stats = commands::import(import_args(vec![path], &data)).await.expect("import");
    assert_eq!(
        (
            stats.rows,
            stats.accepted,
            stats.rejected_total(),
            stats.malformed_total()
        ),
        (5_000, 5_000, 0, 0),
        "{stats}"
    );
    let mut out = Vec::new();
    commands::scores(scores_args(&data, "2026-11-01T00:00:00Z"), &mut out)
        .await
        .expect("scores");
    let rows = parse_scores(&String::from_utf8(out).expect("utf8"));
    assert_eq!(rows.len(), 50);
    assert!(rows.iter().all(|r| r.3 && (0.5..=2.0).contains(&r.2)), "{rows:?}");
}

/// `import --store` and `scores --store` on Redis (standalone and Cluster)
/// give the scores the embedded store gives for the same file, and a second
/// import is all duplicates.
async fn import_and_scores_on_redis_match_the_embedded_store() {
    let temp = tempfile::tempdir().expect("temp");
    let path = generate_file(temp.path(), 5, 40, 300, 3_000);
    let as_of = "2026-11-01T00:00:00Z";
    let data = temp.path().join("data");
    commands::import(import_args(vec![path.clone()], &data))
        .await
        .expect("import");
    let mut out = Vec::new();
    commands::scores(scores_args(&data, as_of), &mut out)
        .await
        .expect("scores");
    let embedded = String::from_utf8(out).expect("utf8");

    for url in [common::redis::standalone_url(), common::redis::cluster_url()] {
        let config = write_temp(
            temp.path(),
            "redis.toml",
            &format!("[redis]\nkey_prefix = \"{}\"\n", common::redis::unique_prefix()),
        );
        let on_redis = |mut args: ImportArgs| {
            args.data_dir = None;
            args.store = Some(url.clone());
            args.config = Some(config.clone());
            args
        };
        let first = commands::import(on_redis(import_args(vec![path.clone()], &data)))
            .await
            .expect("import to redis");
        assert_eq!((first.accepted, first.duplicates), (3_000, 0), "{url}: {first}");
        let again = commands::import(on_redis(import_args(vec![path.clone()], &data)))
            .await
            .expect("import again");
        assert_eq!((again.accepted, again.duplicates), (0, 3_000), "{url}: {again}");
        let mut args = scores_args(&data, as_of);
        args.data_dir = None;
        args.store = Some(url.clone());
        args.config = Some(config.clone());
        let mut out = Vec::new();
        commands::scores(args, &mut out).await.expect("scores from redis");
        let redis = String::from_utf8(out).expect("utf8");
        assert_eq!(redis.lines().count(), embedded.lines().count(), "{url}");
        for (got, want) in redis.lines().zip(embedded.lines()).skip(1) {
            let fields = |line: &str| -> Vec<f64> { line.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect() };
            let (got, want) = (fields(got), fields(want));
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{url}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

async fn kuairand_full_log_imports_once_and_scores_within_range() {
    let log = harness::kuairand_log();
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("data");
    let args = ImportArgs {
        batch_size: 5_000,
        ..import_args(vec![log.clone()], &data)
    };
    let first = commands::import(args).await.expect("import");
    eprintln!("first import: {first}");
    assert_eq!(first.rows, 228_329);
    assert_eq!(first.malformed_total(), 0);
    assert_eq!(first.accepted + first.duplicates + first.rejected_total(), first.events);
    assert!(first.accepted > 220_000, "{first}");
    let args = ImportArgs {
        batch_size: 5_000,
        ..import_args(vec![log], &data)
    };
    let second = commands::import(args).await.expect("again");
    eprintln!("second import: {second}");
    assert_eq!(second.accepted, 0);
    assert_eq!(second.duplicates, first.accepted + first.duplicates);

    let mut out = Vec::new();
    let args = ScoresArgs {
        creators: Vec::new(),
        ..scores_args(&data, "2022-05-09T00:00:00Z")
    };
    commands::scores(args, &mut out).await.expect("scores");
    let rows = parse_scores(&String::from_utf8(out).expect("utf8"));
    assert!(rows.len() > 5_000, "{} creators", rows.len());
    assert!(rows.iter().all(|r| r.1 && r.3 && (0.5..=2.0).contains(&r.2)));
}

fn main() -> std::process::ExitCode {
    harness::run(vec![
        trial!(async few_accounts_report_lists_farmed_creators),
        trial!(async jsonl_import_counts_rejections_and_is_idempotent),
        trial!(async import_over_stream_events_into_a_running_server),
        trial!(async generated_events_import_and_score),
        trial!(async import_and_scores_on_redis_match_the_embedded_store).needs([Redis]),
        trial!(async kuairand_full_log_imports_once_and_scores_within_range).needs([KuaiRand]),
    ])
}
