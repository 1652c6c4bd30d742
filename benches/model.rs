//! Criterion benchmarks of the pure scoring model: one creator, one viewer
//! relation, and a full 200-candidate batch over 100 creators (dedupe, score,
//! sort, top_k), on aggregates built from seeded synthetic events.

use std::collections::HashMap;
use std::hint::black_box;

use creator_boost::model::aggregate::apply_event;
use creator_boost::model::rank::{Candidate, score_batch};
use creator_boost::model::score::Scorer;
use creator_boost::model::{CreatorAggregate, Event, IngestParams, ModelParams, ScoreSpace, ViewerRecord};
use creator_boost::offline::generate::{FIRST_CREATOR_ID, GenerateOptions, SeededRng, generate, seeded_rng};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::RngExt;

const END_MS: i64 = 1_780_000_000_000;

struct Fixture {
    creators: HashMap<u64, CreatorAggregate>,
    viewers: HashMap<u64, ViewerRecord>,
    global: CreatorAggregate,
    ingest: IngestParams,
    params: ModelParams,
}

fn fixture() -> Fixture {
    let ingest = IngestParams::default();
    let decay = ingest.decay();
    let options = GenerateOptions {
        seed: 7,
        creators: 500,
        viewers: 200,
        events: 200_000,
        end_ms: END_MS,
        days: 14,
    };
    let mut creators: HashMap<u64, CreatorAggregate> = HashMap::new();
    let mut viewers: HashMap<u64, ViewerRecord> = HashMap::new();
    let mut global = CreatorAggregate::default();
    for raw in generate(&options) {
        let Some(kind) = raw.kind else { continue };
        let event = Event {
            event_id: raw.event_id,
            kind,
            viewer_id: raw.viewer_id,
            creator_id: raw.creator_id,
            timestamp_ms: raw.timestamp_ms,
            amount: raw.amount,
        };
        let creator = creators.entry(event.creator_id).or_default();
        let viewer = viewers.entry(event.viewer_id).or_default();
        apply_event(&event, &ingest, &decay, creator, &mut global, Some(viewer));
    }
    Fixture {
        creators,
        viewers,
        global,
        ingest,
        params: ModelParams::default(),
    }
}

/// 200 candidates over 100 distinct creators, in a shuffled order.
fn batch(rng: &mut SeededRng) -> Vec<Candidate> {
    (0..200u64)
        .map(|i| Candidate {
            item_id: i,
            creator_id: FIRST_CREATOR_ID + (i % 100) * 3 + rng.random_range(0..2),
            base_score: rng.random::<f64>(),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let decay = f.ingest.decay();
    let scorer = Scorer::new(&f.params, &decay, &f.global, END_MS);
    let busiest = f.creators.get(&FIRST_CREATOR_ID).expect("creator");
    let viewer = f.viewers.values().max_by_key(|v| v.relations.len()).expect("viewer");
    let pair = viewer
        .relations
        .iter()
        .max_by(|a, b| a.intimacy.total_cmp(&b.intimacy))
        .expect("pair");

    c.bench_function("scorer_new (decay factors and priors)", |b| {
        b.iter(|| Scorer::new(black_box(&f.params), &decay, black_box(&f.global), black_box(END_MS)))
    });
    c.bench_function("score one creator", |b| {
        b.iter(|| scorer.creator(black_box(Some(busiest))))
    });
    c.bench_function("score one viewer relation", |b| {
        b.iter(|| scorer.private(black_box(Some(pair))))
    });
    c.bench_function("relation lookup in a viewer record", |b| {
        b.iter(|| black_box(viewer).relation(black_box(pair.creator_id)))
    });

    let mut rng = seeded_rng(11);
    let candidates = batch(&mut rng);
    for top_k in [0usize, 50] {
        c.bench_function(&format!("batch 200 candidates / ~100 creators, top_k {top_k}"), |b| {
            b.iter(|| {
                score_batch(
                    &scorer,
                    black_box(&candidates),
                    |id| f.creators.get(&id),
                    Some(viewer),
                    ScoreSpace::Linear,
                    top_k,
                )
            })
        });
    }
}

criterion_group!(model, benches);
criterion_main!(model);
