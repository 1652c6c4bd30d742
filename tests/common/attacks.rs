//! The attacks a trust & safety review tries on the public boost, played
//! through the gRPC contract against any server: a background platform of
//! 300 ordinary creators with KuaiRand's per-account rates, then boost farms,
//! report brigades and depth comparisons on creators of their own.
//!
//! Used by `tests/robustness.rs` (which asserts on the figures) and by
//! the `attacks` example (which prints them for any running server, so a
//! previous version can be measured the same way).

#![allow(dead_code, unreachable_pub)]

use creator_boost::offline::generate::{SeededRng, seeded_rng};
use creator_boost::proto;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use rand::RngExt;
use tonic::transport::Channel;

/// Ordinary creators of the background platform: ids 1..=300.
pub const PLATFORM_CREATORS: u64 = 300;
/// A creator with 1,000 real viewers, 5% of whom like.
pub const REAL: u64 = 1_001;
/// A creator with no history that one attacking account works on.
pub const FARMED_BY_ONE: u64 = 1_002;
/// A creator with no history that ten attacking accounts work on.
pub const FARMED_BY_TEN: u64 = 1_003;
/// A creator like [`REAL`] that nobody attacks.
pub const UNRELATED: u64 = 1_004;
/// An ordinary creator that ten never-shown accounts report 20 times each.
pub const BRIGADED: u64 = 1_005;
/// A creator like [`REAL`], 3% of whose own viewers report it once.
pub const REPORTED_BY_VIEWERS: u64 = 1_006;
/// A creator with no history that one account likes once (no view).
pub const ONE_LIKE: u64 = 1_007;
/// An ordinary creator that ten accounts view once, follow and unfollow.
pub const CHURN_BOMBED: u64 = 1_008;
/// An ordinary creator that ten accounts view once and report.
pub const SHOWN_BRIGADE: u64 = 1_009;
/// Same audience (1,000) and fans (100): fans only view, like, share, tip.
pub const DEPTH: [(u64, &str); 4] = [(1_010, "view"), (1_011, "like"), (1_012, "share"), (1_013, "tip")];

const DAY_MS: i64 = 86_400_000;

/// The measured boosts.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// One account, full history, on a creator with no other evidence.
    pub one_account: f64,
    /// Ten such accounts.
    pub ten_accounts: f64,
    /// The creator with 5% of 1,000 real viewers liking.
    pub real_creator: f64,
    /// One LIKE (without a view) from one account on a creator with no history.
    pub one_like: f64,
    /// The brigaded creator before and after ten never-shown accounts report it 20x each.
    pub brigaded_before: f64,
    /// After the brigade.
    pub brigaded_after: f64,
    /// Before 3% of its own viewers report it once.
    pub reported_before: f64,
    /// After.
    pub reported_after: f64,
    /// An ordinary creator before and after ten accounts view, follow and unfollow it.
    pub churn_before: f64,
    /// After.
    pub churn_after: f64,
    /// An ordinary creator before and after ten accounts view it once and report it.
    pub shown_brigade_before: f64,
    /// After.
    pub shown_brigade_after: f64,
    /// The unrelated creator before and after eleven accounts each view and
    /// engage deeply with every one of the 300 platform creators (a spray).
    pub spray_before: f64,
    /// After.
    pub spray_after: f64,
    /// The unrelated creator before and after the eleven attacking accounts.
    pub unrelated_before: f64,
    /// After.
    pub unrelated_after: f64,
    /// Same audience and fans: (kind the fans do, boost), shallow to deep.
    pub depth: Vec<(&'static str, f64)>,
}

impl Figures {
    /// Relative change of a boost, in percent.
    pub fn change(before: f64, after: f64) -> f64 {
        (after / before - 1.0) * 100.0
    }

    /// A Markdown table of the figures.
    pub fn table(&self) -> String {
        let change =
            |before: f64, after: f64| format!("{before:.4} -> {after:.4} ({:+.1}%)", Self::change(before, after));
        let depth: Vec<String> = self
            .depth
            .iter()
            .map(|(kind, boost)| format!("{kind} {boost:.4}"))
            .collect();
        let rows = [
            (
                "one LIKE, one account, no view",
                "boost of a creator with no history",
                format!("{:.4}", self.one_like),
            ),
            (
                "one account: view, follow, join, tip, buy, 50 likes, comment, share, visit",
                "boost of a creator with no history",
                format!("{:.4}", self.one_account),
            ),
            (
                "ten such accounts",
                "boost of a creator with no history",
                format!("{:.4}", self.ten_accounts),
            ),
            (
                "(reference) 50 of 1,000 real viewers like",
                "boost",
                format!("{:.4}", self.real_creator),
            ),
            (
                "ten never-shown accounts report 20x each",
                "boost before -> after",
                change(self.brigaded_before, self.brigaded_after),
            ),
            (
                "3% of the creator's own viewers report once",
                "boost before -> after",
                change(self.reported_before, self.reported_after),
            ),
            (
                "ten accounts view once, follow, unfollow",
                "boost before -> after",
                change(self.churn_before, self.churn_after),
            ),
            (
                "ten accounts view once and report",
                "boost before -> after",
                change(self.shown_brigade_before, self.shown_brigade_after),
            ),
            (
                "the eleven attacking accounts",
                "an unrelated creator's boost before -> after",
                change(self.unrelated_before, self.unrelated_after),
            ),
            (
                "eleven accounts each view, like, share, tip every one of the 300 platform creators",
                "an unrelated creator's boost before -> after",
                change(self.spray_before, self.spray_after),
            ),
            (
                "same audience (1,000) and fans (100); the fans",
                "boost by what fans do",
                depth.join(", "),
            ),
        ];
        let mut out = String::from("| attack | measure | boost |\n|---|---|---|\n");
        for (attack, measure, value) in rows {
            out.push_str(&format!("| {attack} | {measure} | {value} |\n"));
        }
        out
    }
}

/// Builds events with unique ids.
struct Events {
    prefix: String,
    next: u64,
    out: Vec<proto::Event>,
}

impl Events {
    fn new(prefix: &str) -> Events {
        Events {
            prefix: prefix.to_owned(),
            next: 0,
            out: Vec::new(),
        }
    }

    fn push(&mut self, kind: proto::EventKind, viewer_id: u64, creator_id: u64, timestamp_ms: i64, amount: f64) {
        self.next += 1;
        self.out.push(proto::Event {
            event_id: format!("{}-{}", self.prefix, self.next),
            kind: kind as i32,
            viewer_id,
            creator_id,
            timestamp_ms,
            amount,
        });
    }
}

/// One viewer of an ordinary creator, with KuaiRand's per-account rates
/// (KuaiRand-Pure, per distinct user–author pair: like 1.75%, comment 0.26%,
/// share 0.09%, profile visit 1.91%, report 0.085%, follow 0.13%).
fn ordinary_viewer(events: &mut Events, rng: &mut SeededRng, viewer: u64, creator: u64, t: i64) {
    use proto::EventKind as K;
    events.push(K::View, viewer, creator, t, 0.05 + 0.95 * rng.random::<f64>());
    for (kind, rate) in [
        (K::Like, 0.0175),
        (K::Comment, 0.0026),
        (K::Share, 0.0009),
        (K::ProfileVisit, 0.0191),
        (K::Report, 0.00085),
        (K::Follow, 0.0013),
    ] {
        if rng.random::<f64>() < rate {
            events.push(kind, viewer, creator, t + 1, 0.0);
        }
    }
}

/// A creator with `viewers` ordinary viewers (ids from `first_viewer`), of
/// whom exactly the first `likers` like (5% of 1,000 is about three times
/// KuaiRand's like rate).
fn liked_creator(
    events: &mut Events,
    rng: &mut SeededRng,
    creator: u64,
    first_viewer: u64,
    viewers: u64,
    likers: u64,
    now: i64,
) {
    for i in 0..viewers {
        let t = now - 1 - rng.random_range(0..7 * DAY_MS);
        let before = events.out.len();
        ordinary_viewer(events, rng, first_viewer + i, creator, t);
        let tail: Vec<proto::Event> = events.out.split_off(before);
        events
            .out
            .extend(tail.into_iter().filter(|e| e.kind != proto::EventKind::Like as i32));
        if i < likers {
            events.push(proto::EventKind::Like, first_viewer + i, creator, t + 1, 0.0);
        }
    }
}

/// Everything one attacking account does to `creator`.
fn full_history(events: &mut Events, account: u64, creator: u64, t: i64) {
    use proto::EventKind as K;
    events.push(K::View, account, creator, t, 1.0);
    events.push(K::Follow, account, creator, t + 1, 0.0);
    events.push(K::JoinFanGroup, account, creator, t + 2, 0.0);
    events.push(K::Tip, account, creator, t + 3, 1_000_000.0);
    events.push(K::Purchase, account, creator, t + 4, 1_000_000.0);
    events.push(K::Comment, account, creator, t + 5, 0.0);
    events.push(K::Share, account, creator, t + 6, 0.0);
    events.push(K::ProfileVisit, account, creator, t + 7, 0.0);
    for i in 0..50 {
        events.push(K::Like, account, creator, t + 8 + i, 0.0);
    }
}

async fn send(client: &mut CreatorBoostClient<Channel>, events: Events) -> Result<(), tonic::Status> {
    for batch in events.out.chunks(1000) {
        client
            .record_events(proto::RecordEventsRequest { events: batch.to_vec() })
            .await?;
    }
    Ok(())
}

/// The variant asked for (empty = default); set by the attacks example.
pub static VARIANT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn boosts(client: &mut CreatorBoostClient<Channel>, ids: &[u64]) -> Result<Vec<f64>, tonic::Status> {
    let scores = client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: ids.to_vec(),
            variant: VARIANT.get().cloned().unwrap_or_default(),
        })
        .await?
        .into_inner()
        .scores;
    Ok(scores.iter().map(|s| s.public_boost).collect())
}

/// Plays every attack against the server behind `client`, whose clock reads
/// `now_ms`; `prefix` keeps event ids apart between runs on one store. The
/// server's cache TTL must let a write show in the next read (it does for
/// writes through the same server).
///
/// # Errors
/// The first failed call.
pub async fn run(
    client: &mut CreatorBoostClient<Channel>,
    now_ms: i64,
    prefix: &str,
) -> Result<Figures, tonic::Status> {
    use proto::EventKind as K;
    let mut rng = seeded_rng(7);
    let mut figures = Figures::default();

    // The background platform and the creators under test, before any attack.
    let mut events = Events::new(&format!("{prefix}-platform"));
    let mut next_viewer = 1_000_000u64;
    for creator in 1..=PLATFORM_CREATORS {
        let audience = 100 + rng.random_range(0..500);
        for _ in 0..audience {
            let viewer = next_viewer;
            next_viewer += 1;
            let t = now_ms - 1 - rng.random_range(0..7 * DAY_MS);
            ordinary_viewer(&mut events, &mut rng, viewer, creator, t);
        }
    }
    let mut reported_viewers = 0;
    for creator in [REAL, UNRELATED, REPORTED_BY_VIEWERS] {
        if creator == REPORTED_BY_VIEWERS {
            reported_viewers = next_viewer;
        }
        liked_creator(&mut events, &mut rng, creator, next_viewer, 1_000, 50, now_ms);
        next_viewer += 1_000;
    }
    for creator in [BRIGADED, CHURN_BOMBED, SHOWN_BRIGADE] {
        for _ in 0..300 {
            let t = now_ms - 1 - rng.random_range(0..7 * DAY_MS);
            ordinary_viewer(&mut events, &mut rng, next_viewer, creator, t);
            next_viewer += 1;
        }
    }
    for (creator, kind) in DEPTH {
        for i in 0..1_000u64 {
            let viewer = next_viewer + i;
            let t = now_ms - 1 - rng.random_range(0..7 * DAY_MS);
            events.push(K::View, viewer, creator, t, 0.05 + 0.95 * rng.random::<f64>());
            if i < 100 {
                events.push(K::Follow, viewer, creator, t + 1, 0.0);
                match kind {
                    "like" => events.push(K::Like, viewer, creator, t + 2, 0.0),
                    "share" => events.push(K::Share, viewer, creator, t + 2, 0.0),
                    "tip" => events.push(K::Tip, viewer, creator, t + 2, 10.0),
                    _ => {}
                }
            }
        }
        next_viewer += 1_000;
    }
    send(client, events).await?;
    let before = boosts(
        client,
        &[
            REAL,
            UNRELATED,
            BRIGADED,
            REPORTED_BY_VIEWERS,
            CHURN_BOMBED,
            SHOWN_BRIGADE,
        ],
    )
    .await?;
    figures.real_creator = before[0];
    figures.unrelated_before = before[1];
    figures.brigaded_before = before[2];
    figures.reported_before = before[3];
    figures.churn_before = before[4];
    figures.shown_brigade_before = before[5];
    let depth_ids: Vec<u64> = DEPTH.iter().map(|(id, _)| *id).collect();
    figures.depth = DEPTH
        .iter()
        .map(|(_, kind)| *kind)
        .zip(boosts(client, &depth_ids).await?)
        .collect();

    // The eleven attacking accounts (ids 1..=11), an hour ago.
    let attack_t = now_ms - 3_600_000;
    let mut attack = Events::new(&format!("{prefix}-farm"));
    full_history(&mut attack, 1, FARMED_BY_ONE, attack_t);
    for account in 2..=11 {
        full_history(&mut attack, account, FARMED_BY_TEN, attack_t);
    }
    attack.push(K::Like, 12, ONE_LIKE, attack_t, 0.0);
    send(client, attack).await?;
    let after = boosts(client, &[FARMED_BY_ONE, FARMED_BY_TEN, UNRELATED, ONE_LIKE]).await?;
    figures.one_account = after[0];
    figures.ten_accounts = after[1];
    figures.unrelated_after = after[2];
    figures.one_like = after[3];

    // Report brigade: ten accounts never shown the creator, 20 reports each.
    let mut brigade = Events::new(&format!("{prefix}-brigade"));
    for account in 100..110 {
        for i in 0..20 {
            brigade.push(K::Report, account, BRIGADED, attack_t + i, 0.0);
        }
    }
    // Ten accounts shown the creator once: follow then unfollow one creator,
    // report the other.
    for account in 200..210u64 {
        let t = attack_t + account as i64;
        brigade.push(K::View, account, CHURN_BOMBED, t, 0.05);
        brigade.push(K::Follow, account, CHURN_BOMBED, t + 1, 0.0);
        brigade.push(K::Unfollow, account, CHURN_BOMBED, t + 2, 0.0);
        brigade.push(K::View, account, SHOWN_BRIGADE, t, 0.05);
        brigade.push(K::Report, account, SHOWN_BRIGADE, t + 1, 0.0);
    }
    send(client, brigade).await?;
    // 3% of the creator's own viewers (30 of 1,000, none of them likers) report it once.
    let mut reports = Events::new(&format!("{prefix}-reports"));
    for i in 0..30u64 {
        reports.push(
            K::Report,
            reported_viewers + 100 + i,
            REPORTED_BY_VIEWERS,
            attack_t + i as i64,
            0.0,
        );
    }
    send(client, reports).await?;
    let after = boosts(client, &[BRIGADED, REPORTED_BY_VIEWERS, CHURN_BOMBED, SHOWN_BRIGADE]).await?;
    figures.spray_before = boosts(client, &[UNRELATED]).await?[0];
    let mut spray = Events::new(&format!("{prefix}-spray"));
    for account in 300..311u64 {
        for creator in 1..=PLATFORM_CREATORS {
            let t = attack_t + creator as i64;
            spray.push(K::View, account, creator, t, 1.0);
            spray.push(K::Like, account, creator, t + 1, 0.0);
            spray.push(K::Share, account, creator, t + 2, 0.0);
            spray.push(K::Tip, account, creator, t + 3, 1_000_000.0);
        }
    }
    send(client, spray).await?;
    figures.spray_after = boosts(client, &[UNRELATED]).await?[0];
    figures.brigaded_after = after[0];
    figures.reported_after = after[1];
    figures.churn_after = after[2];
    figures.shown_brigade_after = after[3];
    Ok(figures)
}
