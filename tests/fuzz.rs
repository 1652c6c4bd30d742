//! Hostile input, proptest-driven: event validation, the import parsers, the
//! config loader and protobuf decoding get arbitrary and mutated input and
//! must answer with an error, never a panic or a hang.
//!
//! By default each target runs one round (a few thousand cases). Long runs:
//!
//!     FUZZ_SECONDS=600 cargo test --release --test fuzz -- --test-threads 1 --nocapture

use std::path::Path;
use std::time::{Duration, Instant};

use creator_boost::config::{Config, Limits, Overrides};
use creator_boost::engine::ingest::{RawEvent, validate};
use creator_boost::engine::jsonl;
use creator_boost::model::{EventKind, IngestParams};
use creator_boost::offline::import::impressions;
use creator_boost::proto;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;

/// Runs `check` on values of `strategy` in rounds of 2,000 cases with fresh
/// seeds until `FUZZ_SECONDS` have passed (one round when unset).
fn fuzz<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut cases = 0u64;
    let mut round = 0u64;
    loop {
        let mut seed = [0u8; 32];
        let stamp = started.elapsed().as_nanos() as u64 ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        seed[..8].copy_from_slice(&stamp.to_le_bytes());
        seed[8..16].copy_from_slice(&round.to_le_bytes());
        let config = RunnerConfig {
            cases: 2_000,
            failure_persistence: None,
            ..RunnerConfig::default()
        };
        let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        if let Err(error) = runner.run(&strategy, &check) {
            panic!("{name}: finding after {cases} cases: {error}");
        }
        cases += 2_000;
        round += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.0} s, no finding",
        started.elapsed().as_secs_f64()
    );
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        -10.0f64..1e6,
    ]
}

fn any_timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(0i64),
        Just(i64::MIN),
        Just(i64::MAX),
        0i64..4_000_000_000_000
    ]
}

fn any_id() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX), 0u64..50]
}

#[test]
fn fuzz_event_validation() {
    let strategy = (
        ".{0,200}",
        prop::option::of(0usize..EventKind::ALL.len()),
        any_id(),
        any_id(),
        any_timestamp(),
        any_f64(),
        any_timestamp(),
    );
    let limits = Limits::default();
    let decay = IngestParams::default().decay();
    fuzz(
        "event validation",
        strategy,
        |(event_id, kind, viewer_id, creator_id, timestamp_ms, amount, now_ms)| {
            let raw = RawEvent {
                event_id,
                kind: kind.map(|k| EventKind::ALL[k]),
                viewer_id,
                creator_id,
                timestamp_ms,
                amount,
            };
            if let Ok(event) = validate(raw, now_ms, &limits, &decay) {
                prop_assert!(event.amount.is_finite() && event.amount >= 0.0);
                prop_assert!(event.timestamp_ms > 0 || (event.timestamp_ms == 0 && now_ms == 0));
                prop_assert!(decay.accepts_timestamp(event.timestamp_ms));
                prop_assert!(event.creator_id != 0 && event.viewer_id != event.creator_id);
                prop_assert!(event.value().is_finite());
            }
            Ok(())
        },
    );
}

const HEADER: &str = "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab,author_id";
const ROW: &str = "712,5239,20220425,0,1650812741436,1,1,1,0,0,0,1,24933,49866,0,0,0,0,1,8079479";

/// A valid line with a few bytes replaced, inserted or removed.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((0usize..base.len() + 1, any::<u8>(), 0u8..3), 0..8).prop_map(move |edits| {
        let mut bytes = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len());
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn fuzz_kuairand_rows() {
    let columns = impressions::Columns::from_header(HEADER).expect("header");
    let strategy = prop_oneof![mutated(ROW), ".{0,300}", "[0-9,.\\-]{0,200}"];
    fuzz("kuairand rows", strategy, |line| {
        let mut out = Vec::new();
        match columns.events(&line, &mut out) {
            Ok(()) => {
                prop_assert!(!out.is_empty());
                prop_assert!(
                    out.iter()
                        .all(|e| e.amount.is_finite() && (0.0..=1.0).contains(&e.amount))
                );
            }
            Err(_) => prop_assert!(out.is_empty()),
        }
        let _ = columns.timestamp(&line);
        let _ = impressions::Columns::from_header(&line);
        Ok(())
    });
}

#[test]
fn fuzz_jsonl_lines() {
    const LINE: &str =
        r#"{"event_id":"e1","kind":"TIP","viewer_id":7,"creator_id":100,"timestamp_ms":1650812741436,"amount":12.5}"#;
    let strategy = prop_oneof![mutated(LINE), ".{0,300}", "[{}\":,a-z0-9\\-.eE]{0,200}"];
    fuzz("jsonl lines", strategy, |line| {
        if let Ok(event) = jsonl::parse_line(&line) {
            // Whatever parses must round-trip through the writer.
            prop_assert_eq!(jsonl::parse_line(&jsonl::to_line(&event)).ok(), Some(event));
        }
        Ok(())
    });
}

#[test]
fn fuzz_config_loader() {
    const EXAMPLE: &str = include_str!("../config/creator-boost.toml");
    let strategy = prop_oneof![
        mutated(EXAMPLE),
        ".{0,400}",
        "(\\[[a-z_.]{1,20}\\]\n)?([a-z_.]{1,24} = (-?[0-9.e]{1,10}|\"[a-z0-9:.]{0,20}\"|true|nan|inf)\n){0,6}",
    ];
    fuzz("config loader", strategy, |text| {
        if let Ok(config) = Config::from_toml(&text, Path::new("fuzz.toml"), Overrides::default()) {
            prop_assert!(config.ingest.validate().is_ok());
            prop_assert!(config.variants.default_variant().params.validate().is_ok());
            for name in config.variants.names() {
                prop_assert!(config.variants.get(name).is_some_and(|v| v.params.validate().is_ok()));
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_protobuf_decoding() {
    let valid = proto::RecordEventsRequest {
        events: vec![proto::Event {
            event_id: "x".into(),
            kind: 2,
            viewer_id: 1,
            creator_id: 2,
            timestamp_ms: 3,
            amount: 0.5,
        }],
    }
    .encode_to_vec();
    let rank = proto::RankRequest {
        viewer_id: 9,
        candidates: vec![proto::Candidate {
            item_id: 1,
            creator_id: 2,
            base_score: 0.5,
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (prop::collection::vec((0usize..64, any::<u8>()), 0..6), Just(valid)).prop_map(|(edits, mut bytes)| {
            for (at, byte) in edits {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            bytes
        }),
        (prop::collection::vec((0usize..64, any::<u8>()), 0..6), Just(rank)).prop_map(|(edits, mut bytes)| {
            for (at, byte) in edits {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            bytes
        }),
    ];
    fuzz("protobuf decoding", strategy, |bytes| {
        let _ = proto::RankRequest::decode(bytes.as_slice());
        let _ = proto::RecordEventsRequest::decode(bytes.as_slice());
        let _ = proto::GetCreatorScoresRequest::decode(bytes.as_slice());
        Ok(())
    });
}
