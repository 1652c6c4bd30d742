//! Black-box tests of the gRPC contract against a real server on an
//! ephemeral port, run on each backend: a real redb file, a real standalone
//! redis-server and a real three-master Redis Cluster.

mod common;

use common::*;
use creator_boost::proto;
use creator_boost::proto::EventKind::*;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use tonic::Code;
use tonic::transport::Channel;

fn rank_request(viewer_id: u64, candidates: Vec<proto::Candidate>) -> proto::RankRequest {
    proto::RankRequest {
        viewer_id,
        candidates,
        ..Default::default()
    }
}

async fn record_then_rank_boosts_loyal_creator_and_keeps_cold_start_neutral(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    let response = record(&mut client, loyal_creator_events("a", 100, 1..30)).await;
    assert_eq!(
        (response.accepted, response.duplicates, response.rejected.len()),
        (174, 0, 0)
    );
    // A creator whose viewers only glance and leave.
    let mut events = Vec::new();
    for viewer in 1..30u64 {
        events.push(event(&format!("b-{viewer}-f"), Follow, viewer, 200));
        events.push(event(&format!("b-{viewer}-v"), View, viewer, 200));
        let mut unfollow = event(&format!("b-{viewer}-u"), Unfollow, viewer, 200);
        unfollow.timestamp_ms += 1000;
        events.push(unfollow);
        events.push(event(&format!("b-{viewer}-r"), Report, viewer, 200));
    }
    assert_eq!(record(&mut client, events).await.accepted, 116);

    let request = proto::RankRequest {
        explain: true,
        ..rank_request(
            5,
            vec![
                candidate(10, 200, 1.0),
                candidate(11, 300, 1.0),
                candidate(12, 100, 1.0),
                // 29 engaged accounts earn a modest public boost (property
                // 7); with the viewer's private boost it passes a cold 1.0.
                candidate(13, 100, 0.7),
            ],
        )
    };
    let response = client.rank(request).await.expect("rank").into_inner();
    assert!(!response.degraded);
    assert!(response.model_version.starts_with("cb1-"));
    let order: Vec<u64> = response.results.iter().map(|r| r.item_id).collect();
    assert_eq!(order, vec![12, 13, 11, 10]);
    let loyal = &response.results[0];
    assert!(loyal.public_boost > 1.0, "{loyal:?}");
    assert_eq!(loyal.relation, proto::Relation::Follower as i32);
    assert!(loyal.private_boost > 1.25);
    assert!((loyal.boost - loyal.public_boost * loyal.private_boost).abs() < 1e-12);
    assert!((loyal.final_score - loyal.base_score * loyal.boost).abs() < 1e-12);
    let cold = &response.results[2];
    assert_eq!((cold.public_boost, cold.private_boost, cold.boost), (1.0, 1.0, 1.0));
    assert_eq!(cold.relation, proto::Relation::None as i32);
    let leaky = &response.results[3];
    assert!(leaky.public_boost < 1.0, "{leaky:?}");
    let explanation = loyal.explanation.as_ref().expect("explanation");
    assert!(explanation.fan_value > 0.0 && explanation.evidence == 174 && explanation.followers == 29);
    assert!(explanation.text.contains("fan_value"));

    // Without explain, no explanation.
    let response = client
        .rank(rank_request(5, vec![candidate(1, 100, 1.0)]))
        .await
        .expect("rank")
        .into_inner();
    assert!(response.results[0].explanation.is_none());
}

async fn ordering_ties_top_k_and_score_spaces(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("a", 100, 1..20)).await;
    let candidates = vec![
        candidate(1, 7, 2.0),
        candidate(2, 8, 2.0),
        candidate(3, 100, 2.0),
        candidate(4, 9, 2.0),
        candidate(5, 10, 0.0),
        candidate(6, 11, 2.05),
    ];
    let response = client
        .rank(rank_request(0, candidates.clone()))
        .await
        .expect("rank")
        .into_inner();
    let indices: Vec<u32> = response.results.iter().map(|r| r.index).collect();
    // 100 (19 engaged accounts: a modest boost, see property 7) is boosted
    // above 6's base; equal scores keep request order.
    assert_eq!(response.results[0].item_id, 3);
    assert_eq!(indices, vec![2, 5, 0, 1, 3, 4]);

    for top_k in [1u32, 3, 6, 50] {
        let request = proto::RankRequest {
            top_k,
            ..rank_request(0, candidates.clone())
        };
        let cut = client.rank(request).await.expect("rank").into_inner();
        let want = &indices[..(top_k as usize).min(indices.len())];
        assert_eq!(
            cut.results.iter().map(|r| r.index).collect::<Vec<_>>(),
            want,
            "top_k {top_k}"
        );
    }

    let log = proto::RankRequest {
        score_space: proto::ScoreSpace::Log as i32,
        ..rank_request(0, vec![candidate(1, 100, -3.0), candidate(2, 7, -2.5)])
    };
    let log = client.rank(log).await.expect("log rank").into_inner();
    for r in &log.results {
        assert!((r.final_score - (r.base_score + r.boost.ln())).abs() < 1e-12);
    }
    let boosted = log.results.iter().find(|r| r.item_id == 1).expect("item 1");
    assert!(boosted.boost > 1.0);
}

async fn variants_known_and_unknown(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("a", 100, 1..6)).await;
    let base = client
        .rank(rank_request(1, vec![candidate(1, 100, 1.0)]))
        .await
        .expect("rank")
        .into_inner();
    let request = proto::RankRequest {
        variant: "no_private".into(),
        ..rank_request(1, vec![candidate(1, 100, 1.0)])
    };
    let no_private = client.rank(request).await.expect("variant").into_inner();
    assert_eq!(no_private.variant, "no_private");
    assert_ne!(no_private.model_version, base.model_version);
    assert!(base.results[0].private_boost > 1.0);
    assert_eq!(no_private.results[0].private_boost, 1.0);
    assert_eq!(no_private.results[0].public_boost, base.results[0].public_boost);

    let request = proto::RankRequest {
        variant: "nope".into(),
        ..rank_request(1, vec![candidate(1, 100, 1.0)])
    };
    let status = client.rank(request).await.expect_err("unknown variant");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("nope"));
    let status = client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: vec![100],
            variant: "nope".into(),
        })
        .await
        .expect_err("unknown variant");
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn rank_bad_input_names_index_or_limit(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    let empty = client.rank(rank_request(1, vec![])).await.expect("empty").into_inner();
    assert!(empty.results.is_empty());

    let cases = [
        (
            rank_request(1, vec![candidate(1, 2, 1.0), candidate(2, 2, f64::NAN)]),
            "candidates[1]",
        ),
        (rank_request(1, vec![candidate(1, 2, f64::INFINITY)]), "candidates[0]"),
        (
            rank_request(
                1,
                vec![candidate(1, 2, 1.0), candidate(1, 2, 1.0), candidate(1, 2, -0.5)],
            ),
            "candidates[2]",
        ),
        (
            proto::RankRequest {
                score_space: proto::ScoreSpace::Log as i32,
                ..rank_request(1, vec![candidate(1, 2, f64::NEG_INFINITY)])
            },
            "candidates[0]",
        ),
        (
            rank_request(1, (0..501).map(|i| candidate(i, i, 1.0)).collect()),
            "max_candidates (500)",
        ),
        (
            proto::RankRequest {
                score_space: 7,
                ..rank_request(1, vec![candidate(1, 2, 1.0)])
            },
            "score_space",
        ),
    ];
    for (request, needle) in cases {
        let status = client.rank(request).await.expect_err(needle);
        assert_eq!(status.code(), Code::InvalidArgument, "{needle}");
        assert!(status.message().contains(needle), "{needle}: {}", status.message());
    }
    // Negative base scores are fine in LOG space.
    let log = proto::RankRequest {
        score_space: proto::ScoreSpace::Log as i32,
        ..rank_request(1, vec![candidate(1, 2, -0.5)])
    };
    assert_eq!(
        client.rank(log).await.expect("log").into_inner().results[0].final_score,
        -0.5
    );
    // Ids at the extremes are ordinary ids.
    let extremes = rank_request(u64::MAX, vec![candidate(0, 0, 1.0), candidate(u64::MAX, u64::MAX, 1.0)]);
    assert_eq!(
        client
            .rank(extremes)
            .await
            .expect("extremes")
            .into_inner()
            .results
            .len(),
        2
    );
}

async fn record_rejects_bad_events_by_index_and_accepts_the_rest(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    let good = event("good-1", Like, 1, 2);
    let mut future = event("future", Like, 1, 2);
    future.timestamp_ms = NOW_MS + 3_600_000;
    let mut nan = event("nan", Purchase, 1, 2);
    nan.amount = f64::NAN;
    let mut negative = event("neg", Tip, 1, 2);
    negative.amount = -1.0;
    let mut infinite = event("inf", Tip, 1, 2);
    infinite.amount = f64::INFINITY;
    let mut ancient = event("ancient", Like, 1, 2);
    ancient.timestamp_ms = -1;
    let mut unknown_kind = event("unknown", Like, 1, 2);
    unknown_kind.kind = 99;
    let batch = vec![
        good.clone(),
        event("unspecified", Unspecified, 1, 2),
        event("self", Like, 2, 2),
        future,
        nan,
        negative,
        event(&"x".repeat(65), Like, 1, 2),
        infinite,
        ancient,
        event("anon-follow", Follow, 0, 2),
        event("no-creator", Like, 1, 0),
        unknown_kind,
        event("good-2", Share, 3, 2),
        good,
    ];
    let response = record(&mut client, batch).await;
    assert_eq!(response.accepted, 2);
    assert_eq!(response.duplicates, 1);
    let rejected: Vec<(u32, &str)> = response.rejected.iter().map(|r| (r.index, r.reason.as_str())).collect();
    let expect = [
        (1, "unspecified_kind"),
        (2, "self_interaction"),
        (3, "future_timestamp"),
        (4, "non_finite_amount"),
        (5, "negative_amount"),
        (6, "event_id_too_long"),
        (7, "non_finite_amount"),
        (8, "timestamp_out_of_range"),
        (9, "anonymous_relation"),
        (10, "missing_creator"),
        (11, "unspecified_kind"),
    ];
    assert_eq!(rejected.len(), expect.len(), "{rejected:?}");
    for ((index, reason), (want_index, want_code)) in rejected.iter().zip(expect) {
        assert_eq!(*index, want_index);
        assert!(reason.contains(want_code), "#{index}: {reason}");
    }
    // A replay of the whole batch changes nothing.
    let again = record(
        &mut client,
        vec![event("good-1", Like, 1, 2), event("good-2", Share, 3, 2)],
    )
    .await;
    assert_eq!((again.accepted, again.duplicates), (0, 2));
    assert_eq!(evidence_of(&mut client, 2).await, 2);

    let too_many = (0..1001).map(|i| event(&format!("m{i}"), View, 1, 2)).collect();
    let status = client
        .record_events(proto::RecordEventsRequest { events: too_many })
        .await
        .expect_err("limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("max_events_per_batch (1000)"));
}

async fn creator_scores_in_request_order(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("a", 100, 1..10)).await;
    let request = proto::GetCreatorScoresRequest {
        creator_ids: vec![5, 100, 5, 0],
        variant: String::new(),
    };
    let response = client.get_creator_scores(request).await.expect("scores").into_inner();
    let ids: Vec<u64> = response.scores.iter().map(|s| s.creator_id).collect();
    assert_eq!(ids, vec![5, 100, 5, 0]);
    let found = &response.scores[1];
    assert!(found.found && found.followers == 9 && found.evidence == 54);
    assert!(found.fan_value > 0.0 && found.public_boost > 1.0 && found.public_boost <= 2.0);
    // The test config keeps the default weights: w_fv = w_ltv = 0.5.
    assert!((found.creator_value - 0.5 * (found.fan_value + found.long_term_value)).abs() < 1e-12);
    assert_eq!(found.updated_at_ms, NOW_MS - 3_600_000 + 5_000);
    let missing = &response.scores[0];
    assert!(!missing.found && missing.public_boost == 1.0 && missing.followers == 0);
    let deep = client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: vec![100],
            variant: "deep_fans".into(),
        })
        .await
        .expect("variant")
        .into_inner();
    assert_eq!(deep.variant, "deep_fans");
    assert!(deep.scores[0].creator_value > found.creator_value);
}

async fn stream_events_answers_each_message_in_order(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    let messages = vec![
        proto::RecordEventsRequest {
            events: loyal_creator_events("s1", 100, 1..4),
        },
        proto::RecordEventsRequest {
            events: vec![event("bad", Unspecified, 1, 100), event("ok", Like, 9, 100)],
        },
        proto::RecordEventsRequest {
            events: loyal_creator_events("s1", 100, 1..4),
        },
    ];
    let mut responses = client
        .stream_events(tokio_stream::iter(messages))
        .await
        .expect("stream")
        .into_inner();
    let mut got = Vec::new();
    while let Some(response) = responses.message().await.expect("message") {
        got.push((response.accepted, response.duplicates, response.rejected.len()));
    }
    assert_eq!(got, vec![(18, 0, 0), (1, 0, 1), (0, 18, 0)]);
}

async fn restart_keeps_scores_and_dedupe_state(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("a", 100, 1..12)).await;
    let request = || proto::RankRequest {
        explain: true,
        ..rank_request(3, vec![candidate(1, 100, 1.0), candidate(2, 5, 1.0)])
    };
    let before = client.rank(request()).await.expect("rank").into_inner();
    drop(client);

    let server = server.restart().await;
    let mut client = server.client().await;
    let after = client.rank(request()).await.expect("rank").into_inner();
    assert_eq!(before.results, after.results);
    assert!(after.results[0].public_boost > 1.0);
    let replay = record(&mut client, loyal_creator_events("a", 100, 1..12)).await;
    assert_eq!((replay.accepted, replay.duplicates), (0, 66));
}

async fn writes_need_the_token_when_configured(backend: Backend) {
    let server = spawn_with(Spawn {
        backend,
        write_token: Some("s3cret".into()),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    let events = || proto::RecordEventsRequest {
        events: vec![event("t1", Like, 1, 2)],
    };
    let status = client.record_events(events()).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(events());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().expect("header"));
    assert_eq!(
        client.record_events(wrong).await.expect_err("wrong").code(),
        Code::Unauthenticated
    );
    let status = client
        .stream_events(tokio_stream::iter(vec![events()]))
        .await
        .expect_err("stream without token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut right = tonic::Request::new(events());
    right
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("header"));
    assert_eq!(
        client.record_events(right).await.expect("token").into_inner().accepted,
        1
    );
    // Reads stay open.
    client
        .rank(rank_request(1, vec![candidate(1, 2, 1.0)]))
        .await
        .expect("read without token");
}

async fn dedupe_window_expires(backend: Backend) {
    let config = TEST_CONFIG.replace(
        "max_event_id_bytes = 64",
        "max_event_id_bytes = 64\ndedupe_window_secs = 60",
    );
    let server = spawn_with(Spawn {
        backend,
        config: Some(config),
        ..Spawn::default()
    })
    .await;
    let mut client = server.client().await;
    let first = record(&mut client, vec![event("once", Like, 1, 2)]).await;
    assert_eq!((first.accepted, first.duplicates), (1, 0));
    server.clock.set(NOW_MS + 30_000);
    let inside = record(&mut client, vec![event("once", Like, 1, 2)]).await;
    assert_eq!((inside.accepted, inside.duplicates), (0, 1), "inside the window");
    // Past the window, the next commit sweeps the id away; a replay then counts again.
    server.clock.set(NOW_MS + 61_000);
    record(&mut client, vec![event("other", Like, 1, 2)]).await;
    let after = record(&mut client, vec![event("once", Like, 1, 2)]).await;
    assert_eq!((after.accepted, after.duplicates), (1, 0), "after the window");
}

/// One viewer cannot pre-claim another's event ids: the same id from two
/// viewers counts twice, and each viewer's resend is a duplicate.
async fn event_ids_are_per_viewer(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    let first = record(
        &mut client,
        vec![event("shared-id", View, 1, 2), event("shared-id", View, 3, 2)],
    )
    .await;
    assert_eq!((first.accepted, first.duplicates), (2, 0));
    let again = record(
        &mut client,
        vec![event("shared-id", View, 3, 2), event("shared-id", View, 4, 2)],
    )
    .await;
    assert_eq!((again.accepted, again.duplicates), (1, 1));
    assert_eq!(evidence_of(&mut client, 2).await, 3);
}

/// Events counted for one creator, through GetCreatorScores.
async fn evidence_of(client: &mut CreatorBoostClient<Channel>, creator_id: u64) -> u64 {
    client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: vec![creator_id],
            variant: String::new(),
        })
        .await
        .expect("scores")
        .into_inner()
        .scores[0]
        .evidence
}

async fn writes_through_this_replica_show_at_once_in_cached_answers(backend: Backend) {
    let server = spawn_on(backend).await;
    let mut client = server.client().await;
    record(&mut client, loyal_creator_events("a", 100, 1..5)).await;
    let request = || rank_request(50, vec![candidate(1, 100, 1.0), candidate(2, 101, 1.0)]);
    // Twice, so every cache level holds the creators.
    client.rank(request()).await.expect("rank");
    let before = client.rank(request()).await.expect("rank").into_inner();
    assert_eq!(before.results[1].boost, 1.0);
    record(&mut client, loyal_creator_events("b", 101, 1..20)).await;
    record(&mut client, vec![event("f", Follow, 50, 100)]).await;
    let after = client.rank(request()).await.expect("rank").into_inner();
    let creator_101 = after.results.iter().find(|r| r.creator_id == 101).expect("101");
    assert!(creator_101.public_boost > 1.0, "{creator_101:?}");
    let creator_100 = after.results.iter().find(|r| r.creator_id == 100).expect("100");
    assert_eq!(creator_100.relation, proto::Relation::Follower as i32);
}

fn main() -> std::process::ExitCode {
    harness::run(contract_tests!(
        record_then_rank_boosts_loyal_creator_and_keeps_cold_start_neutral,
        ordering_ties_top_k_and_score_spaces,
        variants_known_and_unknown,
        rank_bad_input_names_index_or_limit,
        record_rejects_bad_events_by_index_and_accepts_the_rest,
        creator_scores_in_request_order,
        stream_events_answers_each_message_in_order,
        restart_keeps_scores_and_dedupe_state,
        writes_need_the_token_when_configured,
        dedupe_window_expires,
        event_ids_are_per_viewer,
        writes_through_this_replica_show_at_once_in_cached_answers,
    ))
}
