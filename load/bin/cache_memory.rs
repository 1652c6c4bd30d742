//! Measures the resident memory the caches cost, through the same `Caches`
//! the server uses: RSS before and after caching N distinct creator
//! aggregates (default 1,000,000) in their buckets, or N viewer records of R
//! relations each, set beside what the viewer cache's weigher counts.
//!
//!     cargo run --release --example cache_memory -- 1000000
//!     cargo run --release --example cache_memory -- viewers 200000 4

use std::sync::Arc;

use creator_boost::config::CacheConfig;
use creator_boost::engine::cache::Caches;
use creator_boost::model::{CreatorAggregate, PairRelation, ViewerRecord};
use creator_boost::store::{CREATOR_BUCKETS, CreatorBucket, creator_bucket};

fn rss_bytes() -> u64 {
    // Second field of /proc/self/statm: resident pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("viewers") {
        let n = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
        let relations = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
        viewers(n, relations);
        return;
    }
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let caches = Caches::new(&CacheConfig {
        creators: n + 1,
        viewers_mb: 1,
        ttl_ms: 3_600_000,
        stale_ttl_ms: 3_600_000,
        ..CacheConfig::default()
    });
    let before = rss_bytes();
    let generation = caches.generation();
    // Sized exactly first, so the figure is what the cache holds, not the
    // allocator's leftovers from growing vectors.
    let mut sizes = vec![0usize; CREATOR_BUCKETS as usize];
    for id in 1_000_000..1_000_000 + n {
        sizes[creator_bucket(id) as usize] += 1;
    }
    let mut buckets: Vec<CreatorBucket> = sizes
        .iter()
        .map(|size| CreatorBucket {
            creators: Vec::with_capacity(*size),
        })
        .collect();
    for id in 1_000_000..1_000_000 + n {
        let mut aggregate = CreatorAggregate::default();
        aggregate.fan[1] = id as f64;
        aggregate.evidence = id;
        buckets[creator_bucket(id) as usize].creators.push((id, aggregate));
    }
    for (bucket, creators) in buckets.into_iter().enumerate() {
        caches.insert_creator_bucket(generation, bucket as u32, Arc::new(creators));
    }
    let (entries, _) = caches.entry_counts();
    let after = rss_bytes();
    println!(
        "{entries} creators cached: RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per creator (aggregate itself: {} bytes)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / entries.max(1) as f64,
        std::mem::size_of::<CreatorAggregate>()
    );
}

/// N viewer records of `relations` relations each: RSS per viewer against
/// the weight the viewer cache gives it.
fn viewers(n: u64, relations: usize) {
    let caches = Caches::new(&CacheConfig {
        creators: 1,
        viewers_mb: 1 << 20,
        ttl_ms: 3_600_000,
        stale_ttl_ms: 3_600_000,
        ..CacheConfig::default()
    });
    let before = rss_bytes();
    let generation = caches.generation();
    for viewer_id in 1..=n {
        let mut record = ViewerRecord::default();
        record.relations.reserve_exact(relations);
        for creator_id in 1..=relations as u64 {
            record.relations.push(PairRelation {
                creator_id,
                view_ms: viewer_id as i64,
                ..PairRelation::default()
            });
        }
        caches.insert_viewer(generation, viewer_id, Some(Arc::new(record)));
    }
    let (_, entries) = caches.entry_counts();
    let weighed = caches.viewer_bytes();
    let after = rss_bytes();
    println!(
        "{entries} viewers of {relations} relations cached: RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per viewer; \
         the weigher counts {:.0} bytes per viewer ({} per relation)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / entries.max(1) as f64,
        weighed as f64 / entries.max(1) as f64,
        std::mem::size_of::<PairRelation>(),
    );
}
