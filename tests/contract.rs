//! The gRPC contract in `proto/` under `buf`, the tool gRPC teams check
//! contracts with (config in `buf.yaml`): lint clean, with exceptions that
//! are exactly the names the public contract froze; formatted as `buf
//! format` writes it; no breaking change against the last released contract
//! (the commit in `proto/RELEASED`, read through `git archive`); and a
//! renumbered field is caught as breaking.
//!
//! `buf` is looked up on the PATH (npm package `@bufbuild/buf`). Where it is
//! missing each test is reported as ignored, with the reason, unless
//! `CREATOR_BOOST_REQUIRE_BUF=1` (`.ci/run` sets it after installing buf),
//! which turns the absence into a failure.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::harness::{self, Need, Tool};

/// The contract's one file, relative to `proto/`.
const CONTRACT: &str = "creatorboost/v1/creator_boost.proto";

/// What `buf lint` reports on the contract without `buf.yaml`'s exceptions:
/// (rule, name) for each name the public contract froze. `buf.yaml` ignores
/// exactly these rules in the contract's file and names each of these names.
const FROZEN: [(&str, &str); 22] = [
    ("ENUM_VALUE_PREFIX", "LINEAR"),
    ("ENUM_VALUE_PREFIX", "LOG"),
    ("ENUM_VALUE_PREFIX", "VIEW"),
    ("ENUM_VALUE_PREFIX", "LIKE"),
    ("ENUM_VALUE_PREFIX", "COMMENT"),
    ("ENUM_VALUE_PREFIX", "SHARE"),
    ("ENUM_VALUE_PREFIX", "PURCHASE"),
    ("ENUM_VALUE_PREFIX", "JOIN_FAN_GROUP"),
    ("ENUM_VALUE_PREFIX", "TIP"),
    ("ENUM_VALUE_PREFIX", "FOLLOW"),
    ("ENUM_VALUE_PREFIX", "UNFOLLOW"),
    ("ENUM_VALUE_PREFIX", "LEAVE_FAN_GROUP"),
    ("ENUM_VALUE_PREFIX", "REPORT"),
    ("ENUM_VALUE_PREFIX", "PROFILE_VISIT"),
    ("ENUM_VALUE_PREFIX", "REFUND"),
    ("ENUM_ZERO_VALUE_SUFFIX", "LINEAR"),
    ("ENUM_ZERO_VALUE_SUFFIX", "RELATION_NONE"),
    ("SERVICE_SUFFIX", "CreatorBoost"),
    ("RPC_REQUEST_RESPONSE_UNIQUE", "creatorboost.v1.RecordEventsRequest"),
    ("RPC_REQUEST_RESPONSE_UNIQUE", "creatorboost.v1.RecordEventsResponse"),
    ("RPC_REQUEST_STANDARD_NAME", "RecordEventsRequest"),
    ("RPC_RESPONSE_STANDARD_NAME", "RecordEventsResponse"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs buf in `dir`, optionally feeding `stdin`; prints what it printed.
fn buf(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (Output, String) {
    let mut child = Command::new("buf")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start buf");
    if let Some(bytes) = stdin {
        child.stdin.take().expect("stdin").write_all(bytes).expect("feed buf");
    }
    let output = child.wait_with_output().expect("buf");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("$ buf {} -> {}\n{text}", args.join(" "), output.status);
    (output, text)
}

/// The commit of the last released contract, from `proto/RELEASED`.
fn released_commit() -> String {
    let text = std::fs::read_to_string(repo().join("proto/RELEASED")).expect("proto/RELEASED");
    let commits: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(commits.len(), 1, "proto/RELEASED holds one commit: {commits:?}");
    commits[0].to_owned()
}

/// `proto/` as released, a tar from `git archive`.
fn released_proto_tar() -> Vec<u8> {
    let commit = released_commit();
    let output = Command::new("git")
        .args(["archive", "--format=tar", &commit, "proto"])
        .current_dir(repo())
        .output()
        .expect("git archive");
    assert!(
        output.status.success(),
        "git archive {commit} proto (the history must hold the released commit): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The released contract as buf's `--against` input read from stdin.
const AGAINST_RELEASED: &str = "-#format=tar,subdir=proto";

fn lint_passes_with_only_the_frozen_names_excepted() {
    let (output, _) = buf(&repo(), &["lint"], None);
    assert!(output.status.success(), "buf lint");

    // Without buf.yaml's exceptions: exactly the frozen names, no other.
    let bare = r#"{"version":"v2","lint":{"use":["STANDARD"]}}"#;
    let (output, text) = buf(
        &repo().join("proto"),
        &["lint", "--error-format", "json", "--config", bare],
        None,
    );
    assert!(!output.status.success(), "the frozen names break STANDARD rules");
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|line| line.starts_with('{')) {
        let finding: serde_json::Value = serde_json::from_str(line).expect("json finding");
        let rule = finding["type"].as_str().expect("type").to_owned();
        let message = finding["message"].as_str().expect("message");
        let name = message.split('"').nth(1).expect("a quoted name").to_owned();
        assert!(finding["path"].as_str().expect("path").ends_with(CONTRACT), "{finding}");
        found.insert((rule, name));
    }
    let frozen: BTreeSet<(String, String)> = FROZEN
        .iter()
        .map(|(rule, name)| ((*rule).to_owned(), (*name).to_owned()))
        .collect();
    assert_eq!(found, frozen, "buf lint without exceptions");

    // buf.yaml ignores exactly those rules, and names every frozen name.
    let config = std::fs::read_to_string(repo().join("buf.yaml")).expect("buf.yaml");
    let ignored: BTreeSet<String> = config
        .split("ignore_only:")
        .nth(1)
        .expect("ignore_only")
        .split("breaking:")
        .next()
        .expect("lint part")
        .lines()
        .filter_map(|line| line.trim().strip_suffix(':'))
        .map(str::to_owned)
        .collect();
    let rules: BTreeSet<String> = frozen.iter().map(|(rule, _)| rule.clone()).collect();
    assert_eq!(ignored, rules, "buf.yaml ignore_only");
    for (_, name) in &frozen {
        let short = name.rsplit('.').next().expect("name");
        assert!(config.contains(short), "buf.yaml names {short}");
    }
}

fn format_is_what_buf_writes() {
    let (output, text) = buf(&repo(), &["format", "--diff", "--exit-code"], None);
    assert!(output.status.success() && text.trim().is_empty(), "buf format: {text}");
}

fn no_breaking_change_against_the_released_contract() {
    let released = released_proto_tar();
    let (output, text) = buf(&repo(), &["breaking", "--against", AGAINST_RELEASED], Some(&released));
    assert!(
        output.status.success(),
        "breaking changes against {}: {text}",
        released_commit()
    );
}

/// A copy of `proto/` with one field renumbered fails `buf breaking` against
/// the released contract; the same copy before the change passes (so the
/// failure is the renumbering's).
fn a_renumbered_field_is_a_breaking_change() {
    let released = released_proto_tar();
    let temp = tempfile::tempdir().expect("temp");
    let file = temp.path().join(CONTRACT);
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dirs");
    let original = std::fs::read_to_string(repo().join("proto").join(CONTRACT)).expect("proto");
    std::fs::write(&file, &original).expect("copy");
    let proto = temp.path().to_str().expect("utf-8 path");

    let (output, text) = buf(
        &repo(),
        &["breaking", proto, "--against", AGAINST_RELEASED],
        Some(&released),
    );
    assert!(output.status.success(), "the unchanged copy: {text}");

    let field = "  uint64 item_id = 1;\n";
    assert!(original.contains(field), "Candidate.item_id is field 1");
    std::fs::write(&file, original.replacen(field, "  uint64 item_id = 16;\n", 1)).expect("renumber");
    let (output, text) = buf(
        &repo(),
        &["breaking", proto, "--against", AGAINST_RELEASED],
        Some(&released),
    );
    assert_eq!(
        output.status.code(),
        Some(100),
        "buf breaking exits 100 on breaking changes: {text}"
    );
    assert!(
        text.contains(r#"Previously present field "1" with name "item_id" on message "Candidate" was deleted."#),
        "{text}"
    );
}

const BUF: Need = Need::Tool(Tool {
    program: "buf",
    args: &["--version"],
    install: "npm install @bufbuild/buf",
    required_by: Some("CREATOR_BOOST_REQUIRE_BUF"),
});

fn main() -> std::process::ExitCode {
    harness::run(vec![
        trial!(lint_passes_with_only_the_frozen_names_excepted).needs([BUF]),
        trial!(format_is_what_buf_writes).needs([BUF]),
        trial!(no_breaking_change_against_the_released_contract).needs([BUF]),
        trial!(a_renumbered_field_is_a_breaking_change).needs([BUF]),
    ])
}
