//! Criterion benchmarks of the Rank core as the service runs it: the engine
//! over a real embedded store holding seeded synthetic events, caches warm,
//! no transport. One call is what `load/run.sh` drives over gRPC minus
//! protobuf and HTTP/2: creators deduplicated, scores from the per-thread
//! memo (or computed), private boosts, sort; and the same plus the answer
//! built as the proto message.
//!
//!     cargo bench --bench rank

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use creator_boost::config::{Config, Overrides};
use creator_boost::engine::{Candidate, Clock, Engine, RankQuery, open_engine};
use creator_boost::metrics::MetricsRegistry;
use creator_boost::offline::generate::{FIRST_CREATOR_ID, GenerateOptions, generate, seeded_rng};
use creator_boost::proto;
use creator_boost::service::convert;
use criterion::{Criterion, criterion_group, criterion_main};
use rand::RngExt;

const END_MS: i64 = 1_780_000_000_000;
const CREATORS: u64 = 2_000;
const VIEWERS: u64 = 5_000;

/// An engine over a fresh store in `dir` holding 100,000 seeded events.
fn engine(runtime: &tokio::runtime::Runtime, dir: &Path) -> Arc<Engine> {
    let overrides = Overrides::store(Some(dir.to_owned()), None);
    let config = Config::from_toml("", Path::new("bench.toml"), overrides).expect("default config");
    runtime.block_on(async {
        let engine = open_engine(&config, Clock::manual(END_MS), &MetricsRegistry::new())
            .await
            .expect("embedded store");
        let events = generate(&GenerateOptions {
            seed: 42,
            creators: CREATORS,
            viewers: VIEWERS,
            events: 100_000,
            end_ms: END_MS,
            days: 14,
        });
        for batch in events.chunks(5_000) {
            engine.record(batch.to_vec()).await.expect("record");
        }
        engine
    })
}

/// The load run's request shape: 200 candidates over 100 distinct creators
/// drawn with the generator's popularity skew, for the viewer with the most
/// relations among those creators (the costliest private boosts).
fn query(runtime: &tokio::runtime::Runtime, engine: &Engine) -> RankQuery {
    let mut rng = seeded_rng(7);
    let mut chosen: Vec<u64> = Vec::new();
    while chosen.len() < 100 {
        let rank = ((CREATORS as f64).powf(rng.random::<f64>())) as u64;
        let id = FIRST_CREATOR_ID + rank.min(CREATORS - 1);
        if !chosen.contains(&id) {
            chosen.push(id);
        }
    }
    let candidates: Vec<Candidate> = (0..200u64)
        .map(|i| Candidate {
            item_id: 10_000_000 + i,
            creator_id: chosen[(i % 100) as usize],
            base_score: rng.random::<f64>(),
        })
        .collect();
    let mut query = RankQuery {
        candidates,
        ..RankQuery::default()
    };
    let related = |viewer_id: u64| -> usize {
        let probe = RankQuery {
            viewer_id,
            ..query.clone()
        };
        let outcome = runtime.block_on(engine.rank(&probe)).expect("rank");
        outcome
            .slots
            .iter()
            .filter(|slot| slot.private.private_boost != 1.0)
            .count()
    };
    query.viewer_id = (1..=200).max_by_key(|v| related(*v)).unwrap_or(1);
    query
}

/// The proto request the query came from, for building the answer.
fn request(query: &RankQuery) -> proto::RankRequest {
    proto::RankRequest {
        viewer_id: query.viewer_id,
        candidates: query
            .candidates
            .iter()
            .map(|c| proto::Candidate {
                item_id: c.item_id,
                creator_id: c.creator_id,
                base_score: c.base_score,
            })
            .collect(),
        ..proto::RankRequest::default()
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&runtime, dir.path());
    let query = query(&runtime, &engine);
    let request = request(&query);
    let outcome = runtime.block_on(engine.rank(&query)).expect("warm-up");
    assert!(!outcome.degraded && outcome.items.len() == 200);

    c.bench_function("rank core, warm: 200 candidates / 100 creators", |b| {
        b.iter(|| runtime.block_on(engine.rank(black_box(&query))).expect("rank"))
    });
    let top_50 = RankQuery {
        top_k: 50,
        ..query.clone()
    };
    c.bench_function("rank core, warm: 200 candidates / 100 creators, top_k 50", |b| {
        b.iter(|| runtime.block_on(engine.rank(black_box(&top_50))).expect("rank"))
    });
    c.bench_function("rank core + answer message, warm: 200 candidates / 100 creators", |b| {
        b.iter(|| {
            let outcome = runtime.block_on(engine.rank(black_box(&query))).expect("rank");
            convert::rank_response(&request, &outcome)
        })
    });
}

criterion_group!(rank, benches);
criterion_main!(rank);
