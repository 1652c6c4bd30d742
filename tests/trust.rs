//! Trust through the gRPC contract, on each backend (a real redb file, a
//! real redis-server, a real Redis Cluster): buyers who come back lift a
//! creator above one whose buyers bought once for the same money; an
//! account buying every day is one repeat buyer; refunded purchases earn
//! nothing.

mod common;

use common::*;
use creator_boost::proto;
use creator_boost::proto::EventKind::*;
use creator_boost::proto::creator_boost_client::CreatorBoostClient;
use tonic::transport::Channel;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Accounts shown each creator, and how many of them buy.
const SHOWN: u64 = 400;
const BUYERS: u64 = 40;

/// The test config plus a variant without the trust and refund terms: the
/// model as it scored before them (purchases stand in full when nothing is
/// refunded, so for histories without refunds it is the same model).
fn config() -> String {
    format!("{TEST_CONFIG}\n[variants.no_trust]\ntrust_lift_weight = 0.0\nrefund_weight = 0.0\n")
}

async fn spawn_trust(backend: Backend) -> TestServer {
    spawn_with(Spawn {
        backend,
        config: Some(config()),
        ..Spawn::default()
    })
    .await
}

fn at(kind: proto::EventKind, id: String, viewer: u64, creator: u64, t: i64, amount: f64) -> proto::Event {
    proto::Event {
        timestamp_ms: t,
        amount,
        ..event(&id, kind, viewer, creator)
    }
}

/// `SHOWN` accounts shown `creator` (viewers 1..=SHOWN); the first
/// `BUYERS` of them spend 60 each: `spread` = three purchases of 20 on
/// three days (8 days, 4 days and an hour ago), else one of 60 an hour ago.
fn audience_with_buyers(creator: u64, spread: bool) -> Vec<proto::Event> {
    let mut events = Vec::new();
    for viewer in 1..=SHOWN {
        let id = |what: &str| format!("{creator}-{viewer}-{what}");
        events.push(at(View, id("v"), viewer, creator, NOW_MS - 10 * DAY_MS, 0.6));
        if viewer > BUYERS {
            continue;
        }
        if spread {
            for (n, ago) in [8 * DAY_MS, 4 * DAY_MS, HOUR_MS].into_iter().enumerate() {
                events.push(at(Purchase, id(&format!("p{n}")), viewer, creator, NOW_MS - ago, 20.0));
            }
        } else {
            events.push(at(Purchase, id("p"), viewer, creator, NOW_MS - HOUR_MS, 60.0));
        }
    }
    events
}

async fn send(client: &mut CreatorBoostClient<Channel>, events: Vec<proto::Event>) {
    for batch in events.chunks(1000) {
        let response = record(client, batch.to_vec()).await;
        assert!(response.rejected.is_empty(), "{:?}", response.rejected);
        assert_eq!(response.accepted as usize, batch.len());
    }
}

async fn scores(client: &mut CreatorBoostClient<Channel>, creators: &[u64], variant: &str) -> Vec<proto::CreatorScore> {
    client
        .get_creator_scores(proto::GetCreatorScoresRequest {
            creator_ids: creators.to_vec(),
            variant: variant.into(),
        })
        .await
        .expect("scores")
        .into_inner()
        .scores
}

/// Creator A's 40 buyers buy on three days, creator B's once, for the same
/// money: A is above B, and the trust term is what puts it there.
async fn buyers_who_come_back_lift_a_creator(backend: Backend) {
    let server = spawn_trust(backend.clone()).await;
    let mut client = server.client().await;
    let (a, b) = (10_100, 10_200);
    send(&mut client, audience_with_buyers(a, true)).await;
    send(&mut client, audience_with_buyers(b, false)).await;

    let [with_a, with_b] = <[_; 2]>::try_from(scores(&mut client, &[a, b], "").await).expect("two");
    let [without_a, without_b] = <[_; 2]>::try_from(scores(&mut client, &[a, b], "no_trust").await).expect("two");
    println!(
        "{backend:?}: A {:.4} vs B {:.4} (without the trust term {:.4} vs {:.4}); \
         A repeat {:.2} of {:.2} buyers, share {:.3}, trust_lift {:.4}; B repeat {:.2} of {:.2}, share {:.3}",
        with_a.public_boost,
        with_b.public_boost,
        without_a.public_boost,
        without_b.public_boost,
        with_a.repeat_buyers,
        with_a.buyers,
        with_a.repeat_share,
        with_a.trust_lift,
        with_b.repeat_buyers,
        with_b.buyers,
        with_b.repeat_share,
    );
    assert!((with_a.buyers - with_b.buyers).abs() < 1e-3, "same buyers");
    assert!((with_a.buyers - 40.0).abs() < 0.01 && (with_a.repeat_buyers - 40.0).abs() < 0.01);
    assert!(with_b.repeat_buyers.abs() < 1e-9, "B's buyers bought once");
    assert!(with_a.repeat_share > with_b.repeat_share);
    assert!(
        (without_a.public_boost / without_b.public_boost - 1.0).abs() < 0.01,
        "without the term the two are alike"
    );
    assert!(
        with_a.public_boost > 1.04 * with_b.public_boost,
        "A {} not clearly above B {}",
        with_a.public_boost,
        with_b.public_boost
    );
    assert!(with_a.trust_lift > 1.0 && with_b.trust_lift == 1.0);

    let explained = client
        .rank(proto::RankRequest {
            viewer_id: 9_999,
            candidates: vec![candidate(1, a, 1.0)],
            explain: true,
            ..Default::default()
        })
        .await
        .expect("rank")
        .into_inner();
    let explanation = explained.results[0].explanation.as_ref().expect("explanation");
    println!("{backend:?}: {}", explanation.text);
    assert!(
        explanation.text.contains("repeat buyers 40.0 of 40.0, share"),
        "{}",
        explanation.text
    );
    assert!((explanation.trust_lift - with_a.trust_lift).abs() < 1e-12);
}

/// One account buying on 23 days is one repeat buyer: next to 40 one-time
/// buyers it moves the creator no more than buying once would (within 2%).
async fn an_account_buying_every_day_is_one_repeat_buyer(backend: Backend) {
    let server = spawn_trust(backend.clone()).await;
    let mut client = server.client().await;
    let (daily, once) = (10_300, 10_400);
    let extra = SHOWN + 1;
    for creator in [daily, once] {
        let mut events = audience_with_buyers(creator, false);
        events.push(at(
            View,
            format!("{creator}-x-v"),
            extra,
            creator,
            NOW_MS - 30 * DAY_MS,
            0.6,
        ));
        let days = if creator == daily { 23 } else { 1 };
        for day in 0..days {
            let t = NOW_MS - HOUR_MS - day * DAY_MS;
            events.push(at(Purchase, format!("{creator}-x-p{day}"), extra, creator, t, 20.0));
        }
        send(&mut client, events).await;
    }
    let [daily, once] = <[_; 2]>::try_from(scores(&mut client, &[daily, once], "").await).expect("two");
    let ratio = daily.public_boost / once.public_boost;
    println!(
        "{backend:?}: 23 days {:.4} ({:.3} repeat of {:.3} buyers) vs once {:.4}: x{ratio:.4}",
        daily.public_boost, daily.repeat_buyers, daily.buyers, once.public_boost
    );
    assert!(
        (0.99..=1.0).contains(&daily.repeat_buyers),
        "one repeat buyer: {}",
        daily.repeat_buyers
    );
    assert!(daily.buyers - once.buyers < 1e-3, "one buyer however often it buys");
    assert!(ratio <= 1.02, "23 purchases moved the creator {ratio}");
}

/// Every purchase refunded: no buyers, no repeat buyers, and no purchase
/// credit (the creator is no higher than one whose audience never bought).
/// A refund without a purchase is accepted; a negative one is refused.
async fn refunded_purchases_earn_nothing(backend: Backend) {
    let server = spawn_trust(backend.clone()).await;
    let mut client = server.client().await;
    let (kept, refunded, never) = (10_500, 10_600, 10_700);
    send(&mut client, audience_with_buyers(kept, true)).await;
    let mut events = audience_with_buyers(refunded, true);
    for viewer in 1..=BUYERS {
        for n in 0..3 {
            let t = NOW_MS - HOUR_MS / 2;
            events.push(at(
                Refund,
                format!("{refunded}-{viewer}-r{n}"),
                viewer,
                refunded,
                t,
                20.0,
            ));
        }
    }
    send(&mut client, events).await;
    let viewers_only = audience_with_buyers(never, true)
        .into_iter()
        .filter(|e| e.kind == View as i32)
        .collect();
    send(&mut client, viewers_only).await;

    let [kept, refunded, never] =
        <[_; 3]>::try_from(scores(&mut client, &[kept, refunded, never], "").await).expect("three");
    println!(
        "{backend:?}: kept {:.4}, all refunded {:.4} (buyers {:.3}, repeat {:.3}, refunders {:.2}, \
         refund_lift {:.3}), never bought {:.4}",
        kept.public_boost,
        refunded.public_boost,
        refunded.buyers,
        refunded.repeat_buyers,
        refunded.refunders,
        refunded.refund_lift,
        never.public_boost
    );
    assert!(refunded.buyers.abs() < 1e-6 && refunded.repeat_buyers.abs() < 1e-6);
    assert!((refunded.refunders - 40.0).abs() < 0.1);
    assert!(refunded.refund_lift > 1.0 && refunded.long_term_value < 0.0);
    assert!(refunded.public_boost <= never.public_boost, "no purchase credit");
    assert!(refunded.public_boost < kept.public_boost);

    let mut negative = at(Refund, "neg".into(), 1, 10_800, NOW_MS - HOUR_MS, -1.0);
    negative.amount = -1.0;
    let mut not_finite = at(Refund, "nan".into(), 1, 10_800, NOW_MS - HOUR_MS, f64::NAN);
    not_finite.amount = f64::NAN;
    let alone = at(Refund, "alone".into(), 2, 10_800, NOW_MS - HOUR_MS, 5.0);
    let response = record(&mut client, vec![negative, not_finite, alone]).await;
    assert_eq!(response.accepted, 1);
    let codes: Vec<i32> = response.rejected.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        vec![
            proto::RejectReason::NegativeAmount as i32,
            proto::RejectReason::NonFiniteAmount as i32
        ]
    );
}

fn main() -> std::process::ExitCode {
    harness::run(contract_tests!(
        buyers_who_come_back_lift_a_creator,
        an_account_buying_every_day_is_one_repeat_buyer,
        refunded_purchases_earn_nothing,
    ))
}
