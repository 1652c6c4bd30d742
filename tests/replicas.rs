//! Several replicas on one Redis (standalone and Cluster): writes through one
//! are seen by the other within the cache bound, concurrent writers end where
//! a single-node replay ends, and a Redis outage degrades answers without
//! failing a call or losing an acknowledged event.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::harness::Need::Redis;
use common::redis::{RedisCluster, RedisProcess};
use common::*;
use creator_boost::model::aggregate::{SUM_FIELDS, event_delta};
use creator_boost::model::{CreatorAggregate, Event, EventKind, IngestParams, ViewerRecord};
use creator_boost::proto;
use creator_boost::proto::EventKind::*;
use creator_boost::store::Store;
use creator_boost::store::redis::{RedisSettings, RedisStore};

/// Cache TTL of the replicas in these tests; the staleness bound is this
/// plus the per-thread L1 age (250 ms).
const TTL_MS: u64 = 1_000;

/// Held by every test here: several restart a Redis on its port, and a
/// process or listener started meanwhile by another test could take that
/// port (ephemeral ports are reused), so the server could not come back.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config_with_ttl() -> String {
    format!("{TEST_CONFIG}\n[cache]\nttl_ms = {TTL_MS}\n")
}

/// For outage tests: entries expire fast (300 ms), so reads go to the store
/// soon after it fails, and stay servable as stale for 3 s.
fn outage_config() -> String {
    format!("{TEST_CONFIG}\n[cache]\nttl_ms = 300\nstale_ttl_ms = 3000\n")
}

async fn a_write_through_one_process_is_seen_by_another_within_the_bound() {
    let _ports = PORTS.lock().await;
    let redis = RedisProcess::start();
    let mut replicas = Replicas::start(&redis, &config_with_ttl()).await;
    let (client_a, client_b) = (&mut replicas.a, &mut replicas.b);

    // B caches the creator as unknown and the viewer as a stranger.
    let rank = |viewer| proto::RankRequest {
        viewer_id: viewer,
        candidates: vec![candidate(1, 700, 1.0), candidate(2, 701, 1.0)],
        ..Default::default()
    };
    let before = client_b.rank(rank(5)).await.expect("rank b").into_inner();
    assert_eq!(before.results[0].boost, 1.0);

    let events = real_time(loyal_creator_events("ab", 700, 1..6));
    let written = Instant::now();
    let outcome = record(client_a, events).await;
    assert_eq!(outcome.accepted, 30);

    // Poll B until both the creator's scores and the viewer's relation show.
    let bound = Duration::from_millis(TTL_MS + 250);
    let seen_after = loop {
        let scores = client_b
            .get_creator_scores(proto::GetCreatorScoresRequest {
                creator_ids: vec![700],
                variant: String::new(),
            })
            .await
            .expect("scores b")
            .into_inner();
        let ranked = client_b.rank(rank(5)).await.expect("rank b").into_inner();
        let top = &ranked.results[0];
        if scores.scores[0].found
            && scores.scores[0].followers == 5
            && top.creator_id == 700
            && top.relation == proto::Relation::Follower as i32
        {
            break written.elapsed();
        }
        assert!(
            written.elapsed() < bound * 3,
            "replica B still stale after {:?}",
            written.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("replica B saw replica A's write after {seen_after:?} (bound {bound:?})");
    assert!(
        seen_after <= bound + Duration::from_millis(500),
        "seen after {seen_after:?}"
    );
}

/// Two replica processes (`serve --store`) on one Redis, and a client of each.
struct Replicas {
    a: proto::creator_boost_client::CreatorBoostClient<tonic::transport::Channel>,
    b: proto::creator_boost_client::CreatorBoostClient<tonic::transport::Channel>,
    processes: [std::process::Child; 2],
    _dir: tempfile::TempDir,
}

impl Replicas {
    async fn start(redis: &RedisProcess, config_text: &str) -> Replicas {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("replica.toml");
        std::fs::write(&config, config_text).expect("config");
        let store = redis.url();
        let args = [
            std::ffi::OsStr::new("--store"),
            store.as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ];
        let (a, url_a) = start_binary(&dir.path().join("a"), &args).await;
        let (b, url_b) = start_binary(&dir.path().join("b"), &args).await;
        let connect = |url: String| async move {
            proto::creator_boost_client::CreatorBoostClient::connect(url)
                .await
                .expect("replica")
        };
        Replicas {
            a: connect(url_a).await,
            b: connect(url_b).await,
            processes: [a, b],
            _dir: dir,
        }
    }

    /// How long after a write through A (one new follower of `creator`,
    /// which B has cached) B's answer shows it, polled every 2 ms.
    async fn visibility(&mut self, creator: u64, trial: u64, give_up: Duration) -> Duration {
        let before = creator_score(&self.b, creator).await.followers;
        let follow = real_time(vec![event(&format!("v{trial}"), Follow, 9_000 + trial, creator)]);
        let outcome = record(&mut self.a, follow).await;
        assert_eq!(outcome.accepted, 1);
        let written = Instant::now();
        while creator_score(&self.b, creator).await.followers == before {
            assert!(written.elapsed() < give_up, "replica B still stale after {give_up:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        written.elapsed()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// With the default 5 s cache TTL, a write through one replica reaches
/// another's answers through the invalidation channel: p90 of 20 trials
/// within 100 ms.
async fn invalidations_reach_the_other_replica_long_before_the_ttl() {
    let _ports = PORTS.lock().await;
    let redis = RedisProcess::start();
    let mut replicas = Replicas::start(&redis, TEST_CONFIG).await;
    let mut seen = Vec::new();
    for trial in 0..20 {
        seen.push(replicas.visibility(800 + trial, trial, Duration::from_secs(10)).await);
    }
    seen.sort_unstable();
    eprintln!("replica B saw A's writes after {seen:?}");
    assert!(seen[17] <= Duration::from_millis(100), "p90 {:?}", seen[17]);
}

/// With the invalidation channel cut (pub/sub refused by an ACL) writes
/// still reach the other replica within the cache TTL bound.
async fn without_invalidations_the_ttl_still_bounds_staleness() {
    let _ports = PORTS.lock().await;
    let redis = RedisProcess::start();
    let mut replicas = Replicas::start(&redis, &config_with_ttl()).await;
    let cut = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "ACL",
            "SETUSER",
            "default",
            "resetchannels",
        ])
        .output()
        .expect("redis-cli");
    assert!(cut.status.success(), "{cut:?}");
    let bound = Duration::from_millis(TTL_MS + 250);
    for trial in 0..3 {
        let seen = replicas.visibility(900 + trial, trial, bound * 3).await;
        eprintln!("without invalidations replica B saw A's write after {seen:?} (bound {bound:?})");
        assert!(seen <= bound + Duration::from_millis(500), "seen after {seen:?}");
    }
}

/// Events stamped at the real clock (the binaries use it), an hour ago.
fn real_time(mut events: Vec<proto::Event>) -> Vec<proto::Event> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for event in &mut events {
        event.timestamp_ms += now - NOW_MS;
    }
    events
}

/// Writers own disjoint viewers (as an event pipeline partitioned by viewer
/// does) and send each viewer's events in order, alternating replicas batch
/// by batch; some batches are sent again (their events with ids), to the
/// other replica. All writers also send relation events of three shared
/// "hot" viewers, whose records they therefore update at the same time;
/// relation state does not depend on arrival order, so the replay still
/// tells what they must end as.
async fn concurrent_writers_through_two_replicas_match_a_single_node_replay(backend: Backend) {
    const WRITERS: u64 = 6;
    let _ports = PORTS.lock().await;
    let first = spawn_on(backend.clone()).await;
    let second = spawn_with(Spawn {
        backend: backend.clone(),
        key_prefix: Some(first.key_prefix.clone()),
        ..Spawn::default()
    })
    .await;
    let streams: Vec<Vec<proto::Event>> = (0..WRITERS).map(|w| writer_events(w, WRITERS)).collect();
    let mut tasks = Vec::new();
    for (writer, events) in streams.iter().cloned().enumerate() {
        let mut clients = [first.client().await, second.client().await];
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for (n, batch) in events.chunks(40).enumerate() {
                let replica = (writer + n) % 2;
                let outcome = record(&mut clients[replica], batch.to_vec()).await;
                assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
                accepted += outcome.accepted;
                if n % 5 == 0 {
                    // Events without an id are not deduplicated: resend the others.
                    let keyed: Vec<proto::Event> = batch.iter().filter(|e| !e.event_id.is_empty()).cloned().collect();
                    let again = record(&mut clients[1 - replica], keyed.clone()).await;
                    assert_eq!(
                        (again.accepted, again.duplicates as usize),
                        (0, keyed.len()),
                        "a resend is all duplicates"
                    );
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("writer");
    }

    // The same events, one after another, into the pure model.
    let ingest = IngestParams::default();
    let decay = ingest.decay();
    let mut creators: BTreeMap<u64, CreatorAggregate> = BTreeMap::new();
    let mut global = CreatorAggregate::default();
    // Per sum, the total magnitude of what was added: the scale a rounding
    // difference is measured against (an unfollow wave that cancels a
    // follow's churn sums to ~0 in any order, but not to exactly 0).
    let mut scales: BTreeMap<u64, [f64; SUM_FIELDS]> = BTreeMap::new();
    let mut global_scale = [0.0; SUM_FIELDS];
    let mut viewers: BTreeMap<u64, ViewerRecord> = BTreeMap::new();
    let mut replayed = 0;
    for stream in &streams {
        for event in stream {
            let event = model_event(event);
            let creator = creators.entry(event.creator_id).or_default();
            let viewer = (event.viewer_id != 0).then(|| viewers.entry(event.viewer_id).or_default());
            let delta = event_delta(&event, &ingest, &decay, viewer);
            creator.add(&delta.creator);
            global.add(&delta.global);
            let scale = scales.entry(event.creator_id).or_insert([0.0; SUM_FIELDS]);
            for (index, value) in delta.creator.sums.iter().enumerate() {
                scale[index] += value.abs();
            }
            for (index, value) in delta.global.sums.iter().enumerate() {
                global_scale[index] += value.abs();
            }
            replayed += 1;
        }
    }
    assert_eq!(accepted, replayed, "every event accepted exactly once");

    let url = match &backend {
        Backend::Redis => common::redis::standalone_url(),
        _ => common::redis::cluster_url(),
    };
    let store = connect_store(&url, &first.key_prefix, ingest.clone()).await;
    let stored: BTreeMap<u64, CreatorAggregate> = store.scan_creators().await.expect("scan").into_iter().collect();
    assert_eq!(stored.len(), creators.len());
    for (id, want) in &creators {
        assert_close(&format!("creator {id}"), &stored[id], want, &scales[id]);
    }
    assert_close(
        "platform",
        &store.global().await.expect("global"),
        &global,
        &global_scale,
    );
    for (id, want) in &viewers {
        let got = store.viewer(*id).await.expect("viewer").expect("viewer stored");
        assert_eq!(got.relations.len(), want.relations.len(), "viewer {id}");
        for (g, w) in got.relations.iter().zip(&want.relations) {
            assert_eq!(
                (g.creator_id, g.follow_ms, g.unfollow_ms, g.join_ms, g.leave_ms),
                (w.creator_id, w.follow_ms, w.unfollow_ms, w.join_ms, w.leave_ms)
            );
            assert!(relative(g.intimacy, w.intimacy) <= 1e-9, "viewer {id} intimacy");
        }
    }
}

fn relative(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// Counts exactly; each sum within 1e-9 of the magnitude it was summed from.
fn assert_close(what: &str, got: &CreatorAggregate, want: &CreatorAggregate, scale: &[f64; SUM_FIELDS]) {
    assert_eq!(
        (got.followers, got.fan_group_members, got.evidence, got.updated_at_ms),
        (
            want.followers,
            want.fan_group_members,
            want.evidence,
            want.updated_at_ms
        ),
        "{what}: counts"
    );
    for (index, (g, w)) in got.sums().iter().zip(want.sums()).enumerate() {
        assert!(
            (g - w).abs() <= 1e-9 * scale[index],
            "{what}: sum {index}: {g} vs {w} (scale {})",
            scale[index]
        );
    }
}

/// A writer's events: viewers `writer, writer + writers, …` with 12 creators;
/// follows, unfollows, fan-group joins and leaves, engagement of every kind,
/// purchases and refunds, reports, and some anonymous views and events without ids.
fn writer_events(writer: u64, writers: u64) -> Vec<proto::Event> {
    let kinds = [
        Follow,
        View,
        Like,
        JoinFanGroup,
        Comment,
        Share,
        Tip,
        Purchase,
        Refund,
        Unfollow,
        View,
        LeaveFanGroup,
        Follow,
        Report,
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ writer;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut events = Vec::new();
    for round in 0..40u64 {
        let viewer = 1 + writer + writers * (round % 8);
        let creator = 1_000 + next() % 12;
        for (n, kind) in kinds.iter().enumerate() {
            let id = if next() % 10 == 0 {
                String::new()
            } else {
                format!("w{writer}-r{round}-{n}")
            };
            let mut event = event(&id, *kind, viewer, creator);
            event.timestamp_ms = NOW_MS - 86_400_000 + (round * 100 + n as u64) as i64 * 1_000 + next() as i64 % 500;
            event.amount = match kind {
                Tip | Purchase | Refund => (next() % 50) as f64,
                View => (next() % 100) as f64 / 100.0,
                _ => 0.0,
            };
            events.push(event);
        }
        // Follows on some creators, fan groups on others: a join is also
        // engagement, counted as a fan's only while following, which would
        // make it depend on arrival order.
        let (hot, base) = [
            (Follow, 2_000),
            (Unfollow, 2_000),
            (JoinFanGroup, 2_010),
            (LeaveFanGroup, 2_010),
        ][(next() % 4) as usize];
        let mut shared = event(
            &format!("w{writer}-r{round}-hot"),
            hot,
            9_001 + round % 3,
            base + next() % 5,
        );
        shared.timestamp_ms = NOW_MS - 7_200_000 + (writer * 1_000 + round) as i64 * 10;
        events.push(shared);
        let mut anonymous = event(&format!("w{writer}-r{round}-anon"), View, 0, creator);
        anonymous.timestamp_ms = NOW_MS - 3_600_000 + round as i64;
        events.push(anonymous);
    }
    events
}

fn model_event(event: &proto::Event) -> Event {
    let kind = match proto::EventKind::try_from(event.kind).expect("kind") {
        View => EventKind::View,
        Like => EventKind::Like,
        Comment => EventKind::Comment,
        Share => EventKind::Share,
        Purchase => EventKind::Purchase,
        JoinFanGroup => EventKind::JoinFanGroup,
        Tip => EventKind::Tip,
        Follow => EventKind::Follow,
        Unfollow => EventKind::Unfollow,
        LeaveFanGroup => EventKind::LeaveFanGroup,
        Report => EventKind::Report,
        ProfileVisit => EventKind::ProfileVisit,
        Refund => EventKind::Refund,
        Unspecified => panic!("unspecified kind"),
    };
    Event {
        event_id: event.event_id.clone(),
        kind,
        viewer_id: event.viewer_id,
        creator_id: event.creator_id,
        timestamp_ms: event.timestamp_ms,
        amount: event.amount,
    }
}

async fn killing_redis_degrades_rank_without_failing_it_and_loses_no_acked_event() {
    let _ports = PORTS.lock().await;
    let mut redis = RedisProcess::start();
    let server = spawn_with(Spawn {
        backend: Backend::Url(redis.url()),
        config: Some(outage_config()),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    let acked = record(&mut client, loyal_creator_events("k", 900, 1..21)).await;
    assert_eq!(acked.accepted, 120);
    let request = || {
        let mut request = tonic::Request::new(proto::RankRequest {
            viewer_id: 3,
            candidates: vec![candidate(1, 900, 1.0), candidate(2, 901, 1.0)],
            ..Default::default()
        });
        request.set_timeout(Duration::from_millis(500));
        request
    };
    let healthy = client.rank(request()).await.expect("rank").into_inner();
    assert!(!healthy.degraded);
    let healthy_boost = healthy.results[0].boost;
    assert!(healthy_boost > 1.0);

    // A steady Rank load through the outage and the recovery.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let healthy_answers = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        let healthy_answers = std::sync::Arc::clone(&healthy_answers);
        let mut client = server.client().await;
        tokio::spawn(async move {
            let (mut answers, mut failures, mut degraded) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.rank(request()).await {
                    Ok(response) => {
                        answers += 1;
                        degraded += u32::from(response.into_inner().degraded);
                        healthy_answers.store(answers - degraded, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(status) => failures.push(status),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (answers, failures, degraded)
        })
    };
    // The load runs against a healthy store first.
    let started = Instant::now();
    while healthy_answers.load(std::sync::atomic::Ordering::Relaxed) < 20 {
        assert!(started.elapsed() < Duration::from_secs(10), "the load never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();

    // Answers turn degraded; past the TTL they come from the stale cache
    // (the boosts as before), past the stale TTL they are neutral; writes
    // fail loudly.
    let outage = Instant::now();
    loop {
        let answer = client.rank(request()).await.expect("rank during outage").into_inner();
        if answer.degraded {
            assert_eq!(answer.results[0].boost, healthy_boost, "served from the stale cache");
            break;
        }
        assert!(outage.elapsed() < Duration::from_secs(5), "never degraded: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let neutral = loop {
        let answer = client.rank(request()).await.expect("rank during outage").into_inner();
        if answer.degraded && answer.results.iter().all(|r| r.boost == 1.0) {
            break answer;
        }
        assert!(outage.elapsed() < Duration::from_secs(10), "never neutral: {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(neutral.degraded);
    let refused = client
        .record_events(proto::RecordEventsRequest {
            events: vec![event("during-outage", Like, 3, 900)],
        })
        .await
        .expect_err("writes fail while Redis is down");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    redis.restart();
    let recovery = Instant::now();
    loop {
        let answer = client.rank(request()).await.expect("rank after restart").into_inner();
        if !answer.degraded {
            assert_eq!(answer.results[0].boost, healthy_boost, "acked events survived the kill");
            break;
        }
        assert!(recovery.elapsed() < Duration::from_secs(10), "did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = record(&mut client, vec![event("after-outage", Like, 3, 900)]).await;
    assert_eq!(again.accepted, 1, "writes work again without a restart");
    let replay = record(&mut client, loyal_creator_events("k", 900, 1..21)).await;
    assert_eq!(replay.duplicates, 120, "the dedupe window survived too");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answers, failures, degraded) = load.await.expect("load");
    eprintln!(
        "rank load through the outage: {answers} answers, {degraded} degraded, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(degraded > 0 && answers > degraded);
}

/// A Redis that accepts connections but never answers (SIGSTOP) must not
/// make a Rank with a deadline shorter than the read timeout fail: the reads
/// get a share of the call's deadline, then the answer goes out degraded;
/// later calls do not even try the store until it is back.
async fn a_hung_redis_gives_degraded_answers_inside_a_short_deadline() {
    let _ports = PORTS.lock().await;
    let redis = RedisProcess::start();
    let server = spawn_with(Spawn {
        backend: Backend::Url(redis.url()),
        config: Some(format!("{TEST_CONFIG}\n[redis]\nread_timeout_ms = 2000\n")),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("h", 950, 1..4)).await;
    redis.pause();
    let reads = || {
        let text = server.metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("creator_boost_store_read_duration_seconds_count"))
            .expect("read count")
            .to_owned();
        line.rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .expect("count")
    };
    let before = reads();
    for viewer in [11, 12, 13] {
        let mut request = tonic::Request::new(proto::RankRequest {
            viewer_id: viewer,
            candidates: vec![candidate(1, 950, 1.0), candidate(2, 951, 2.0)],
            ..Default::default()
        });
        request.set_timeout(Duration::from_millis(80));
        // The client enforces the deadline too: an answer means it was met.
        let answer = client
            .rank(request)
            .await
            .expect("answered, not DEADLINE_EXCEEDED")
            .into_inner();
        assert!(answer.degraded);
        assert!(answer.results.iter().all(|r| r.boost == 1.0));
        let mut scores = tonic::Request::new(proto::GetCreatorScoresRequest {
            creator_ids: vec![950],
            variant: String::new(),
        });
        scores.set_timeout(Duration::from_millis(80));
        assert!(
            client
                .get_creator_scores(scores)
                .await
                .expect("scores")
                .into_inner()
                .degraded
        );
    }
    // Only the first call's reads (creators, viewer, platform) went to the
    // hung server; after they failed, the breaker kept the others away.
    assert!(reads() - before <= 3, "{} reads attempted", reads() - before);
    redis.resume();
}

/// A Cluster master killed under a Rank load: no call fails, answers turn
/// degraded, batches that need the dead node fail with UNAVAILABLE; the
/// node restarted on its data, everything comes back without restarting
/// the service and nothing acknowledged is missing.
async fn killing_a_cluster_master_degrades_and_recovers() {
    let _ports = PORTS.lock().await;
    let mut cluster = RedisCluster::start();
    let server = spawn_with(Spawn {
        backend: Backend::Url(cluster.url.clone()),
        config: Some(outage_config()),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    // Creators and viewers spread over many hash slots, so over all masters.
    let creators: Vec<u64> = (0..12).map(|i| 7_000 + i * 37).collect();
    let mut events = Vec::new();
    for (n, creator) in creators.iter().enumerate() {
        let first = 1 + n as u64 * 10;
        events.extend(loyal_creator_events(&format!("c{creator}"), *creator, first..first + 3));
    }
    let acked = record(&mut client, events.clone()).await;
    assert_eq!(acked.accepted as usize, events.len());
    let request = || {
        let mut request = tonic::Request::new(proto::RankRequest {
            viewer_id: 2,
            candidates: creators
                .iter()
                .enumerate()
                .map(|(i, c)| candidate(i as u64, *c, 1.0))
                .collect(),
            ..Default::default()
        });
        request.set_timeout(Duration::from_millis(500));
        request
    };
    let healthy = client.rank(request()).await.expect("rank").into_inner();
    assert!(!healthy.degraded);

    cluster.nodes[0].kill();
    let outage = Instant::now();
    loop {
        let answer = client
            .rank(request())
            .await
            .expect("rank while a master is down")
            .into_inner();
        if answer.degraded {
            break;
        }
        assert!(outage.elapsed() < Duration::from_secs(10), "never degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during: Vec<proto::Event> = (0..30)
        .map(|v| event(&format!("down-{v}"), Like, 500 + v, 7_000))
        .collect();
    let refused = client
        .record_events(proto::RecordEventsRequest { events: during })
        .await
        .expect_err("a batch touching the dead master fails");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    cluster.nodes[0].restart();
    common::redis::wait_for_cluster(&cluster.ports());
    let recovery = Instant::now();
    let recovered = loop {
        let answer = client.rank(request()).await.expect("rank after restart").into_inner();
        if !answer.degraded {
            break answer;
        }
        assert!(recovery.elapsed() < Duration::from_secs(20), "did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let boosts = |answer: &proto::RankResponse| {
        let mut boosts: Vec<(u64, f64)> = answer.results.iter().map(|r| (r.creator_id, r.boost)).collect();
        boosts.sort_by_key(|(creator, _)| *creator);
        boosts
    };
    assert_eq!(boosts(&recovered), boosts(&healthy), "acked events survived the kill");
    let replay = record(&mut client, events).await;
    assert_eq!(replay.duplicates, acked.accepted, "the dedupe window survived too");
}

/// A feed's mix of events over many creators and viewers, ingested into a
/// 3-master Cluster: no master does more than 45% of the command time
/// (INFO commandstats), so no slot written by every batch (the platform
/// aggregate is spread over shards) makes one master the bottleneck.
async fn ingest_spreads_over_the_masters_of_a_cluster() {
    use creator_boost::offline::generate::{GenerateOptions, generate};
    let _ports = PORTS.lock().await;
    let cluster = RedisCluster::start();
    let server = spawn_with(Spawn {
        backend: Backend::Url(cluster.url.clone()),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    let cli = |port: u16, args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for port in cluster.ports() {
        cli(port, &["CONFIG", "RESETSTAT"]);
    }
    let generated = generate(&GenerateOptions {
        seed: 11,
        creators: 2_000,
        viewers: 10_000,
        events: 6_000,
        end_ms: 1_700_000_000_000,
        days: 7,
    });
    for chunk in generated.chunks(500) {
        let events = chunk
            .iter()
            .map(|e| proto::Event {
                event_id: e.event_id.clone(),
                kind: e.kind.map_or(0, |k| proto::EventKind::from(k) as i32),
                viewer_id: e.viewer_id,
                creator_id: e.creator_id,
                // In feed order, stamped by the server's clock.
                timestamp_ms: 0,
                amount: e.amount,
            })
            .collect();
        let outcome = record(&mut client, events).await;
        assert_eq!(outcome.rejected.len(), 0, "rejected: {:?}", outcome.rejected.first());
    }
    let busy: Vec<u64> = cluster
        .ports()
        .into_iter()
        .map(|port| {
            cli(port, &["INFO", "commandstats"])
                .lines()
                .filter_map(|line| line.split("usec=").nth(1)?.split(',').next()?.parse::<u64>().ok())
                .sum()
        })
        .collect();
    let total: u64 = busy.iter().sum();
    let busiest = busy.iter().copied().max().unwrap_or(0) as f64 / total.max(1) as f64;
    eprintln!(
        "command time per master (µs): {busy:?}; busiest {:.0}%",
        busiest * 100.0
    );
    assert!(
        busiest <= 0.45,
        "busiest master did {:.0}% of the command time",
        busiest * 100.0
    );
}

/// A Redis store at `url` under `prefix` with `ingest`, and no hooks.
async fn connect_store(url: &str, prefix: &str, ingest: IngestParams) -> RedisStore {
    RedisStore::connect(RedisSettings {
        url: url.parse().expect("store URL"),
        key_prefix: prefix.to_owned(),
        ingest,
        dedupe_window_ms: 3_600_000,
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        on_write: None,
        invalidation: None,
    })
    .await
    .expect("connect")
}

/// A batch left half done by a writer in three steps (a cluster's, on the
/// same keys): its event's pending delta still in the viewer's hash, its
/// markers set by the steps that finished. A resend through a single
/// server's one step completes exactly what is missing. The half-done
/// states are made by hand after a whole apply: a pending line (a bogus
/// delta that would count one more piece of evidence if applied) with
/// both markers (steps 2 and 3 done, not settled), then with the
/// creator's marker only missing (step 2 not done).
async fn a_resent_half_done_batch_completes_what_is_missing_and_nothing_twice() {
    let _ports = PORTS.lock().await;
    let redis = RedisProcess::start();
    let prefix = common::redis::unique_prefix();
    let store = connect_store(&redis.url(), &prefix, IngestParams::default()).await;
    let now_ms = 1_700_000_000_000;
    let follow = Event {
        event_id: "half".to_owned(),
        kind: EventKind::Follow,
        viewer_id: 77,
        creator_id: 4_242,
        timestamp_ms: now_ms - 1_000,
        amount: 0.0,
    };
    let cli = |args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .arg("-p")
            .arg(redis.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let evidence = || async {
        let bucket = creator_boost::store::creator_bucket(4_242);
        let buckets = store.creator_buckets(vec![bucket]).await.expect("read");
        buckets[0]
            .get(4_242)
            .map(|creator| (creator.evidence, creator.followers))
    };
    let applied = store.apply(vec![follow.clone()], now_ms).await.expect("apply");
    assert_eq!(applied, vec![creator_boost::store::Applied::Accepted]);
    assert_eq!(evidence().await, Some((1, 1)));
    assert_eq!(
        cli(&["--scan", "--pattern", &format!("{prefix}:*:a:*")]),
        "",
        "one step leaves no marker"
    );
    assert_eq!(
        cli(&["HEXISTS", &format!("{prefix}:{{v77}}"), "p"]),
        "0",
        "nor a pending delta"
    );

    let hash = format!("{:032x}", creator_boost::store::event_key(&follow));
    let bucket = creator_boost::store::creator_bucket(4_242);
    let creator_marker = format!("{prefix}:{{c{bucket}}}:a:{hash}");
    let platform_marker = format!("{prefix}:{{g{}}}:a:{hash}", bucket % 16);
    let viewer = format!("{prefix}:{{v77}}");
    let pending = format!("{hash};{now_ms};0|0|0~0|0|0\n");
    cli(&["HSET", &viewer, "p", &pending]);
    cli(&["SET", &creator_marker, &now_ms.to_string()]);
    cli(&["SET", &platform_marker, &now_ms.to_string()]);
    let resent = store.apply(vec![follow.clone()], now_ms).await.expect("resend");
    assert_eq!(resent, vec![creator_boost::store::Applied::Duplicate]);
    assert_eq!(
        evidence().await,
        Some((1, 1)),
        "both markers there: nothing applied again"
    );
    assert_eq!(cli(&["HEXISTS", &viewer, "p"]), "0", "settled");

    cli(&["HSET", &viewer, "p", &pending]);
    cli(&["DEL", &creator_marker]);
    let resent = store.apply(vec![follow.clone()], now_ms).await.expect("resend");
    assert_eq!(resent, vec![creator_boost::store::Applied::Duplicate]);
    assert_eq!(
        evidence().await,
        Some((2, 1)),
        "the creator step was missing: its stored delta applied once"
    );
    assert_eq!(cli(&["HEXISTS", &viewer, "p"]), "0", "settled");
    store.apply(vec![follow], now_ms).await.expect("resend");
    assert_eq!(evidence().await, Some((2, 1)), "settled: a plain duplicate");

    // A batch of anonymous events only (no viewer to read): an id counts
    // once, by its markers; an event without one counts each time.
    let view = |id: &str| Event {
        event_id: id.to_owned(),
        kind: EventKind::View,
        viewer_id: 0,
        creator_id: 4_343,
        timestamp_ms: now_ms - 500,
        amount: 0.5,
    };
    use creator_boost::store::Applied::{Accepted, Duplicate};
    let first = store.apply(vec![view("anon"), view("")], now_ms).await;
    assert_eq!(first.expect("anonymous"), vec![Accepted, Accepted]);
    let again = store.apply(vec![view("anon"), view("")], now_ms).await;
    assert_eq!(again.expect("anonymous again"), vec![Duplicate, Accepted]);
    let bucket = store
        .creator_buckets(vec![creator_boost::store::creator_bucket(4_343)])
        .await
        .expect("read");
    assert_eq!(bucket[0].get(4_343).map(|creator| creator.evidence), Some(3));
}

/// A Redis store written before buyers and refunds were counted holds
/// snapshots of 27 doubles: they read with those sums zero, and the next
/// event for the creator (applied by the scripts) rewrites them whole.
async fn snapshots_written_before_buyers_were_counted_read_and_grow() {
    let _ports = PORTS.lock().await;
    let redis = RedisProcess::start();
    let prefix = common::redis::unique_prefix();
    let store = connect_store(&redis.url(), &prefix, IngestParams::default()).await;
    let (creator, now_ms) = (5_151u64, 1_700_000_000_000i64);
    let event = |id: &str, kind, viewer_id, days_ago: i64, amount| Event {
        event_id: id.to_owned(),
        kind,
        viewer_id,
        creator_id: creator,
        timestamp_ms: now_ms - days_ago * 86_400_000 - 1_000,
        amount,
    };
    let history = vec![
        event("v1", EventKind::View, 1, 3, 0.5),
        event("l1", EventKind::Like, 1, 3, 0.0),
        event("v2", EventKind::View, 2, 3, 0.5),
    ];
    store.apply(history, now_ms).await.expect("apply");
    let bucket = creator_boost::store::creator_bucket(creator);
    let read = || async {
        let buckets = store.creator_buckets(vec![bucket]).await.expect("read");
        buckets[0].get(creator).cloned().expect("creator")
    };
    let before = read().await;

    // Cut the creator's snapshot and the platform's back to the old layout
    // (the sums cut off are zero: nothing was bought yet).
    let client = ::redis::Client::open(redis.url()).expect("client");
    let mut connection = client.get_multiplexed_async_connection().await.expect("connection");
    let old_fields = 4 + SUM_FIELDS - 4;
    for (key, field) in [
        (format!("{prefix}:{{c{bucket}}}"), creator.to_string()),
        (format!("{prefix}:{{g{}}}", bucket % 16), "g".to_owned()),
    ] {
        let snapshot: Vec<u8> = ::redis::cmd("HGET")
            .arg(&key)
            .arg(&field)
            .query_async(&mut connection)
            .await
            .expect("HGET");
        assert_eq!(snapshot.len(), 8 * (4 + SUM_FIELDS), "{key}");
        assert!(snapshot[8 * old_fields..].iter().all(|b| *b == 0));
        ::redis::cmd("HSET")
            .arg(&key)
            .arg(&field)
            .arg(&snapshot[..8 * old_fields])
            .query_async::<()>(&mut connection)
            .await
            .expect("HSET");
    }
    assert_eq!(read().await, before, "an old snapshot reads with the new sums zero");

    let purchases = vec![
        event("p1", EventKind::Purchase, 1, 2, 20.0),
        event("p2", EventKind::Purchase, 1, 1, 20.0),
    ];
    store.apply(purchases, now_ms).await.expect("apply purchases");
    let grown = read().await;
    assert_eq!(grown.evidence, before.evidence + 2);
    assert!(grown.buyers > 0.0 && grown.repeat_buyers > 0.0, "{grown:?}");
    assert_eq!(grown.fan[1..4], before.fan[1..4]);
    let snapshot: Vec<u8> = ::redis::cmd("HGET")
        .arg(format!("{prefix}:{{c{bucket}}}"))
        .arg(creator.to_string())
        .query_async(&mut connection)
        .await
        .expect("HGET");
    assert_eq!(snapshot.len(), 8 * (4 + SUM_FIELDS), "rewritten whole");
}

fn main() -> std::process::ExitCode {
    let mut tests = vec![
        trial!(async a_write_through_one_process_is_seen_by_another_within_the_bound),
        trial!(async invalidations_reach_the_other_replica_long_before_the_ttl),
        trial!(async without_invalidations_the_ttl_still_bounds_staleness),
        trial!(async killing_redis_degrades_rank_without_failing_it_and_loses_no_acked_event).multi_thread(2),
        trial!(async a_hung_redis_gives_degraded_answers_inside_a_short_deadline),
        trial!(async killing_a_cluster_master_degrades_and_recovers).multi_thread(2),
        trial!(async ingest_spreads_over_the_masters_of_a_cluster).multi_thread(2),
        trial!(async a_resent_half_done_batch_completes_what_is_missing_and_nothing_twice),
        trial!(async snapshots_written_before_buyers_were_counted_read_and_grow),
    ];
    tests = tests.into_iter().map(|test| test.needs([Redis])).collect();
    tests.extend(
        contract_tests!(@backend redis, Redis, concurrent_writers_through_two_replicas_match_a_single_node_replay),
    );
    tests.extend(
        contract_tests!(@backend cluster, Cluster, concurrent_writers_through_two_replicas_match_a_single_node_replay),
    );
    harness::run(tests)
}
