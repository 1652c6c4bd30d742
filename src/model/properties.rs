//! The properties every version of the model must keep, checked on random
//! event histories.

use proptest::prelude::*;

use super::aggregate::apply_event;
use super::decay::LANDMARK_MS;
use super::params::{IngestParams, ModelParams};
use super::score::Scorer;
use super::{CreatorAggregate, Event, EventKind, ViewerRecord};

const DAY: i64 = 86_400_000;
const CREATOR: u64 = 1_000;
const START: i64 = LANDMARK_MS + 900 * DAY;

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        0usize..EventKind::ALL.len(),
        1u64..12,
        0i64..60 * DAY,
        0.0f64..1.0,
        0.0f64..500.0,
    )
        .prop_map(|(kind, viewer_id, offset, fraction, money)| {
            let kind = EventKind::ALL[kind];
            let amount = match kind {
                EventKind::View => fraction,
                EventKind::Purchase | EventKind::Tip | EventKind::Refund => money,
                _ => 0.0,
            };
            Event {
                event_id: String::new(),
                kind,
                viewer_id,
                creator_id: CREATOR,
                timestamp_ms: START + offset,
                amount,
            }
        })
}

/// Per-viewer records and the creator aggregate after applying `events` in order.
fn replay(events: &[Event], params: &IngestParams) -> (CreatorAggregate, Vec<ViewerRecord>) {
    let decay = params.decay();
    let mut creator = CreatorAggregate::default();
    let mut global = CreatorAggregate::default();
    let mut viewers = vec![ViewerRecord::default(); 16];
    for event in events {
        let viewer = &mut viewers[event.viewer_id as usize];
        apply_event(event, params, &decay, &mut creator, &mut global, Some(viewer));
    }
    (creator, viewers)
}

/// A platform of many average creators, so priors do not move with the one under test.
fn platform() -> CreatorAggregate {
    let params = IngestParams::default();
    let decay = params.decay();
    let mut global = CreatorAggregate::default();
    let t = START + 30 * DAY;
    global.audience_non_fan = 100_000.0 * decay.engagement_weight(t);
    global.non_fan[0] = 40_000.0 * decay.engagement_weight(t);
    global.non_fan[1] = 1_100.0 * decay.engagement_weight(t);
    global.shown = 100_000.0 * decay.negative_weight(t);
    global.reports = 50.0 * decay.negative_weight(t);
    global.followers = 5_000;
    global.unfollows = 600.0 * decay.negative_weight(t);
    global
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn aggregates_close(a: &CreatorAggregate, b: &CreatorAggregate) -> bool {
    // Rounding is measured against the largest sum: a report moved from
    // "unshown" to "shown" leaves a residue of its forward weight's last bits.
    let scale = a.sums().iter().chain(&b.sums()).fold(1.0f64, |m, v| m.max(v.abs()));
    a.sums()
        .iter()
        .zip(b.sums())
        .all(|(x, y)| (x - y).abs() <= 1e-9 * scale)
        && a.followers == b.followers
        && a.fan_group_members == b.fan_group_members
        && a.evidence == b.evidence
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 1. Monotone: at the same exposure, one more engagement event of any
    /// non-VIEW kind, or a deeper kind in place of a shallower one, never
    /// lowers fan value; one more unfollow, report or refund never raises long-term value.
    #[test]
    fn monotone(events in prop::collection::vec(event_strategy(), 0..60), extra in event_strategy(), shallow in 1usize..6) {
        let ingest = IngestParams::default();
        let params = ModelParams::default();
        let global = platform();
        let as_of = START + 61 * DAY;
        let scorer = Scorer::new(&params, &ingest.decay(), &global, as_of);
        let (base, _) = replay(&events, &ingest);
        let before = scorer.creator(Some(&base));

        let kind = EventKind::ALL[shallow];
        let mut more = events.clone();
        more.push(Event { kind, amount: 0.0, ..extra.clone() });
        let after = scorer.creator(Some(&replay(&more, &ingest).0));
        prop_assert!(after.fan_value >= before.fan_value - 1e-12, "{kind:?}: {} < {}", after.fan_value, before.fan_value);

        // A deeper layer in place of a shallower one, from an account shown
        // the creator that has reached neither (each account earns a layer
        // once, so depth is compared between accounts).
        let deeper_kind = EventKind::ALL[shallow + 1];
        let newcomer = Event { viewer_id: 13, ..extra.clone() };
        let shown = Event { kind: EventKind::View, amount: 0.5, ..newcomer.clone() };
        let mut shallower = events.clone();
        shallower.extend([shown.clone(), Event { kind, amount: 0.0, ..newcomer.clone() }]);
        let mut deeper = events.clone();
        deeper.extend([shown, Event { kind: deeper_kind, amount: 0.0, ..newcomer }]);
        let shallow_score = scorer.creator(Some(&replay(&shallower, &ingest).0));
        let deeper_score = scorer.creator(Some(&replay(&deeper, &ingest).0));
        // JOIN_FAN_GROUP also changes the relation, not the audience; compare fan value only.
        prop_assert!(deeper_score.fan_value >= shallow_score.fan_value - 1e-12, "{deeper_kind:?} below {kind:?}");

        for (negative, amount) in [(EventKind::Unfollow, 0.0), (EventKind::Report, 0.0), (EventKind::Refund, extra.amount)] {
            let mut worse = events.clone();
            worse.push(Event { kind: negative, amount, ..extra.clone() });
            let worse_score = scorer.creator(Some(&replay(&worse, &ingest).0));
            prop_assert!(worse_score.long_term_value <= before.long_term_value + 1e-12, "{negative:?} raised ltv");
        }
    }

    /// 4. Bounded: any history, any valid parameters: boosts inside their
    /// ranges and finite.
    #[test]
    fn bounded_and_finite(
        events in prop::collection::vec(event_strategy(), 0..80),
        boost_max in 1.0f64..10.0,
        boost_min in 0.01f64..1.0,
        w in 0.0f64..50.0,
        m in 0.001f64..1e4,
        private_max in 1.0f64..5.0,
        gain in 0.0f64..10.0,
        as_of_days in -2000i64..2000,
    ) {
        let ingest = IngestParams::default();
        let mut params = ModelParams { boost_min, boost_max, private_max, intimacy_gain: gain, ..ModelParams::default() };
        params.weights.tip = w;
        params.m_engagement = m;
        params.m_churn = m;
        params.m_report = m;
        params.fan_value_weight = w;
        let (creator, viewers) = replay(&events, &ingest);
        let scorer = Scorer::new(&params, &ingest.decay(), &creator, START + as_of_days * DAY);
        let score = scorer.creator(Some(&creator));
        prop_assert!(score.public_boost.is_finite());
        prop_assert!((boost_min..=boost_max).contains(&score.public_boost));
        for record in &viewers {
            let private = scorer.private(record.relation(CREATOR));
            prop_assert!(private.private_boost.is_finite());
            prop_assert!((1.0..=private_max).contains(&private.private_boost));
        }
    }

    /// 5. Deterministic: the same events in another arrival order give the same
    /// aggregates and scores. Relation events may arrive in any order among
    /// themselves (last-writer-wins registers); engagement is classified fan or
    /// non-fan by the relation known when it is applied, so the orders compared
    /// deliver each pair's relation events before its engagement.
    #[test]
    fn order_independent(events in prop::collection::vec(event_strategy(), 0..80), seed in any::<u64>()) {
        let ingest = IngestParams::default();
        let (relation, engagement): (Vec<Event>, Vec<Event>) =
            events.iter().cloned().partition(|e| e.kind.is_relation() && e.kind != EventKind::JoinFanGroup);
        let mut first = relation.clone();
        first.extend(engagement.iter().cloned());
        let mut second_relation = relation;
        let mut second_engagement = engagement;
        shuffle(&mut second_relation, seed);
        shuffle(&mut second_engagement, seed.rotate_left(17));
        let mut second = second_relation;
        second.extend(second_engagement);

        let (a, viewers_a) = replay(&first, &ingest);
        let (b, viewers_b) = replay(&second, &ingest);
        prop_assert!(aggregates_close(&a, &b), "{a:?} vs {b:?}");
        let params = ModelParams::default();
        let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 61 * DAY);
        prop_assert!(close(scorer.creator(Some(&a)).public_boost, scorer.creator(Some(&b)).public_boost));
        for (x, y) in viewers_a.iter().zip(&viewers_b) {
            let (px, py) = (scorer.private(x.relation(CREATOR)), scorer.private(y.relation(CREATOR)));
            prop_assert_eq!(px.relation, py.relation);
            prop_assert!(close(px.private_boost, py.private_boost));
        }
    }

    /// 6. Explainable: the terms multiply back to the boost.
    #[test]
    fn explainable(events in prop::collection::vec(event_strategy(), 0..80)) {
        let ingest = IngestParams::default();
        let params = ModelParams { fan_value_weight: 1.3, long_term_value_weight: 0.7, churn_weight: 2.0, ..ModelParams::default() };
        let (creator, viewers) = replay(&events, &ingest);
        let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 61 * DAY);
        let s = scorer.creator(Some(&creator));
        prop_assert!(close(s.fan_value, s.fan_lift.ln()));
        prop_assert!(s.trust_lift >= 1.0 && s.repeat_share > 0.0 && s.repeat_share < 1.0);
        let raw = -(2.0 * s.churn_lift.ln() + s.report_lift.ln() + s.refund_lift.ln());
        let discounted = if raw > 0.0 { s.confidence * raw } else { s.negative_confidence * raw };
        prop_assert!(close(s.long_term_value, discounted));
        prop_assert!(close(s.confidence, s.engaged_accounts / (s.engaged_accounts + params.m_accounts)));
        prop_assert!(close(s.creator_value, 1.3 * s.fan_value + 0.7 * s.long_term_value));
        prop_assert!(close(s.public_boost, super::score::soft_clamp(s.creator_value, params.boost_min, params.boost_max)));
        for record in &viewers {
            let p = scorer.private(record.relation(CREATOR));
            let factor = 1.0 + params.intimacy_gain * (1.0 - (-p.intimacy / params.intimacy_scale).exp());
            prop_assert!(close(p.intimacy_factor, factor));
            prop_assert!(close(p.private_boost, (p.tier * p.intimacy_factor).clamp(1.0, params.private_max)));
        }
    }
}

/// Everything one account can send about the creator: any kinds, amounts and times.
fn account_strategy(account: u64) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(event_strategy(), 0..120).prop_map(move |events| {
        events
            .into_iter()
            .map(|e| Event {
                viewer_id: account,
                amount: if e.kind == EventKind::Tip || e.kind == EventKind::Purchase {
                    1e12
                } else {
                    e.amount
                },
                ..e
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// 7. Robust to a few accounts: one account, whatever it sends, moves a
    /// creator with no other evidence by at most 5% either way; ten accounts
    /// sending anything stay below +25%.
    #[test]
    fn one_account_is_bounded(one in account_strategy(1), rest in prop::collection::vec(account_strategy(2), 9)) {
        let ingest = IngestParams::default();
        let params = ModelParams::default();
        let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 61 * DAY);
        let (alone, _) = replay(&one, &ingest);
        let boost = scorer.creator(Some(&alone)).public_boost;
        // At most +5% (property 7), and no more than 5% down either.
        prop_assert!((0.95..=1.05).contains(&boost), "one account: {boost}");

        let mut ten = one.clone();
        for (i, account) in rest.iter().enumerate() {
            ten.extend(account.iter().map(|e| Event { viewer_id: 2 + i as u64, ..e.clone() }));
        }
        let (farmed, _) = replay(&ten, &ingest);
        let boost = scorer.creator(Some(&farmed)).public_boost;
        prop_assert!(boost <= 1.25, "ten accounts: {boost}");
    }

    /// 7. One extra account added to a creator with an ordinary audience of
    /// 1,000 non-followers (2% of them like) moves its boost by at most 10%, whatever it
    /// sends (it may follow: a follower weighs 1/non_fan_factor accounts).
    #[test]
    fn one_account_on_an_audience_is_bounded(one in account_strategy(1), seed in any::<u64>()) {
        let ingest = IngestParams::default();
        let params = ModelParams::default();
        let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 61 * DAY);
        let mut audience = Vec::new();
        let mut state = seed | 1;
        for viewer in 100..1_100u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let t = START + (state % (60 * DAY as u64)) as i64;
            audience.push(Event { event_id: String::new(), kind: EventKind::View, viewer_id: viewer, creator_id: CREATOR, timestamp_ms: t, amount: 0.5 });
            if state % 50 == 0 {
                audience.push(Event { event_id: String::new(), kind: EventKind::Like, viewer_id: viewer, creator_id: CREATOR, timestamp_ms: t, amount: 0.0 });
            }
        }
        let before = scorer.creator(Some(&replay_many(&audience, &ingest))).public_boost;
        audience.extend(one);
        let after = scorer.creator(Some(&replay_many(&audience, &ingest))).public_boost;
        prop_assert!((after / before - 1.0).abs() <= 0.10, "{before} -> {after}");
    }
}

/// The creator aggregate after `events` from any viewer ids.
fn replay_many(events: &[Event], params: &IngestParams) -> CreatorAggregate {
    let decay = params.decay();
    let mut creator = CreatorAggregate::default();
    let mut global = CreatorAggregate::default();
    let mut viewers = std::collections::HashMap::<u64, ViewerRecord>::new();
    for event in events {
        let viewer = viewers.entry(event.viewer_id).or_default();
        apply_event(event, params, &decay, &mut creator, &mut global, Some(viewer));
    }
    creator
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    // A small deterministic Fisher–Yates (xorshift), enough to permute test input.
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

/// Property 2, neutral cold start: no evidence, boost exactly 1.0 — for a
/// creator never seen, for one whose record holds no engagement, and for a
/// viewer never seen.
#[test]
fn neutral_cold_start_is_exactly_one() {
    let ingest = IngestParams::default();
    let params = ModelParams::default();
    for global in [CreatorAggregate::default(), platform()] {
        for as_of in [START, START + 365 * DAY, LANDMARK_MS - 3000 * DAY] {
            let scorer = Scorer::new(&params, &ingest.decay(), &global, as_of);
            assert_eq!(scorer.creator(None).public_boost, 1.0);
            let empty = scorer.creator(Some(&CreatorAggregate::default()));
            assert_eq!(empty.public_boost, 1.0);
            assert_eq!((empty.fan_lift, empty.churn_lift, empty.report_lift), (1.0, 1.0, 1.0));
            assert_eq!(scorer.private(None).private_boost, 1.0);
        }
    }
    // An UNFOLLOW of a non-follower is evidence of nothing: still exactly 1.0.
    let unfollow = Event {
        event_id: String::new(),
        kind: EventKind::Unfollow,
        viewer_id: 3,
        creator_id: CREATOR,
        timestamp_ms: START,
        amount: 0.0,
    };
    let (creator, viewers) = replay(&[unfollow], &ingest);
    assert_eq!(creator.followers, 0);
    let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START);
    assert_eq!(scorer.creator(Some(&creator)).public_boost, 1.0);
    assert_eq!(scorer.private(viewers[3].relation(CREATOR)).private_boost, 1.0);
}

/// Property 3, forgetting: an event's weight halves every half-life, and an
/// unfollow wave long ago stops mattering.
#[test]
fn forgetting() {
    let ingest = IngestParams::default();
    let params = ModelParams::default();
    let decay = ingest.decay();
    let like = Event {
        event_id: String::new(),
        kind: EventKind::Like,
        viewer_id: 1,
        creator_id: CREATOR,
        timestamp_ms: START,
        amount: 0.0,
    };
    let view = Event {
        kind: EventKind::View,
        amount: 1.0,
        ..like.clone()
    };
    let (creator, _) = replay(&[view, like.clone()], &ingest);
    let half_life = (ingest.engagement_half_life_days * DAY as f64) as i64;
    let at = |t: i64| creator.non_fan[1] * decay.engagement_scale(t);
    assert!(at(START) > 0.5, "a like earns most of its layer: {}", at(START));
    assert!(close(at(START + half_life), 0.5 * at(START)));
    assert!(close(at(START + 3 * half_life), 0.125 * at(START)));

    // 200 fans (shown the creator) follow, then 150 leave in one wave.
    let mut wave = Vec::new();
    for viewer in 1..=200u64 {
        wave.push(Event {
            kind: EventKind::View,
            viewer_id: viewer,
            amount: 0.5,
            ..like.clone()
        });
        wave.push(Event {
            kind: EventKind::Follow,
            viewer_id: viewer,
            ..like.clone()
        });
    }
    for viewer in 1..=150u64 {
        wave.push(Event {
            kind: EventKind::Unfollow,
            viewer_id: viewer,
            timestamp_ms: START + DAY,
            ..like.clone()
        });
    }
    let mut creator = CreatorAggregate::default();
    let mut global = CreatorAggregate::default();
    let mut viewers = vec![ViewerRecord::default(); 201];
    for event in &wave {
        apply_event(
            event,
            &ingest,
            &decay,
            &mut creator,
            &mut global,
            Some(&mut viewers[event.viewer_id as usize]),
        );
    }
    assert_eq!(creator.followers, 50);
    let platform = platform();
    let soon = Scorer::new(&params, &decay, &platform, START + 2 * DAY).creator(Some(&creator));
    let long_after = Scorer::new(&params, &decay, &platform, START + 2 * 365 * DAY).creator(Some(&creator));
    assert!(
        soon.long_term_value < -1.0,
        "the wave hurts at first: {}",
        soon.long_term_value
    );
    assert!(
        long_after.long_term_value > -0.05,
        "and is forgotten: {}",
        long_after.long_term_value
    );
    // What is left of the boost is fan value alone: the wave costs nothing.
    let fan_only = super::score::soft_clamp(
        params.fan_value_weight * long_after.fan_value,
        params.boost_min,
        params.boost_max,
    );
    assert!(long_after.public_boost >= 0.98 * fan_only);
}

/// Exact follower counts: repeated FOLLOWs count once; UNFOLLOW of a
/// non-follower changes nothing; a later FOLLOW wins over an earlier UNFOLLOW
/// whatever the arrival order.
#[test]
fn follower_counts_are_exact() {
    let ingest = IngestParams::default();
    let follow = |viewer_id, t| Event {
        event_id: String::new(),
        kind: EventKind::Follow,
        viewer_id,
        creator_id: CREATOR,
        timestamp_ms: START + t,
        amount: 0.0,
    };
    let unfollow = |viewer_id, t| Event {
        kind: EventKind::Unfollow,
        ..follow(viewer_id, t)
    };
    let (c, _) = replay(&[follow(1, 1), follow(1, 2), follow(2, 1), unfollow(3, 1)], &ingest);
    assert_eq!(c.followers, 2);
    assert_eq!(c.unfollows, 0.0);
    let (c, _) = replay(&[unfollow(1, 5), follow(1, 10)], &ingest);
    let (d, _) = replay(&[follow(1, 10), unfollow(1, 5)], &ingest);
    assert_eq!((c.followers, d.followers), (1, 1));
    assert_eq!((c.unfollows, d.unfollows), (0.0, 0.0));
    let (c, _) = replay(&[follow(1, 1), unfollow(1, 5)], &ingest);
    let (d, _) = replay(&[unfollow(1, 5), follow(1, 1)], &ingest);
    assert_eq!((c.followers, d.followers), (0, 0));
    // An unfollow counts as churn only from an account shown the creator (a real follow).
    assert_eq!(c.unfollows, 0.0);
    let view = Event {
        kind: EventKind::View,
        ..follow(1, 0)
    };
    let (c, _) = replay(&[view.clone(), follow(1, 1), unfollow(1, 5)], &ingest);
    let (d, _) = replay(&[unfollow(1, 5), follow(1, 1), view], &ingest);
    assert!(c.unfollows > 0.0 && close(c.unfollows, d.unfollows));
}

/// A viewer's record never holds more than `max_pairs_per_viewer` creators:
/// follows beyond it count as evidence only, and follows of creators it
/// already holds still apply.
#[test]
fn a_viewer_record_is_bounded() {
    let ingest = IngestParams {
        max_relations_per_viewer: 3,
        max_pairs_per_viewer: 5,
        ..IngestParams::default()
    };
    let decay = ingest.decay();
    let mut viewer = ViewerRecord::default();
    let mut global = CreatorAggregate::default();
    let mut creators = vec![CreatorAggregate::default(); 10];
    let event = |kind, creator_id: u64, t: i64| Event {
        event_id: String::new(),
        kind,
        viewer_id: 1,
        creator_id,
        timestamp_ms: START + t,
        amount: 0.0,
    };
    for creator in 0..10u64 {
        apply_event(
            &event(EventKind::Follow, creator, 1),
            &ingest,
            &decay,
            &mut creators[creator as usize],
            &mut global,
            Some(&mut viewer),
        );
    }
    assert_eq!(viewer.relations.len(), 5);
    assert_eq!(
        creators.iter().map(|c| c.followers).collect::<Vec<_>>(),
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    );
    assert_eq!(creators[7].evidence, 1, "counted as evidence");
    apply_event(
        &event(EventKind::Unfollow, 2, 5),
        &ingest,
        &decay,
        &mut creators[2],
        &mut global,
        Some(&mut viewer),
    );
    assert_eq!(creators[2].followers, 0, "a held pair still changes");
}

/// One account viewing, liking, sharing and tipping each of `creators` in
/// turn (its kinds in `kinds` order); the platform aggregate after each
/// creator, and the viewer's record.
fn spray(creators: impl Iterator<Item = u64>, kinds: [EventKind; 4]) -> (Vec<CreatorAggregate>, ViewerRecord) {
    let ingest = IngestParams::default();
    let decay = ingest.decay();
    let mut viewer = ViewerRecord::default();
    let mut global = CreatorAggregate::default();
    let mut after_each = Vec::new();
    for creator in creators {
        let mut aggregate = CreatorAggregate::default();
        for kind in kinds {
            let event = Event {
                event_id: String::new(),
                kind,
                viewer_id: 1,
                creator_id: creator,
                timestamp_ms: START,
                amount: if kind == EventKind::Tip { 1e6 } else { 1.0 },
            };
            apply_event(&event, &ingest, &decay, &mut aggregate, &mut global, Some(&mut viewer));
        }
        after_each.push(global.clone());
    }
    (after_each, viewer)
}

/// Property 7, the priors: one account engaging deeply with a thousand
/// creators weighs in the platform aggregate as at most
/// `prior_pairs_per_viewer` creators' worth, however many it touches.
#[test]
fn a_spraying_account_weighs_in_the_priors_as_a_few_creators() {
    let ingest = IngestParams::default();
    let kinds = [EventKind::View, EventKind::Like, EventKind::Share, EventKind::Tip];
    let (after_each, viewer) = spray(0..1_000u64, kinds);
    let engagement_of_one: f64 = after_each[0].non_fan.iter().sum();
    let global = &after_each[after_each.len() - 1];
    let platform: f64 = global.non_fan.iter().sum();
    let bound = ingest.prior_pairs_per_viewer * engagement_of_one;
    assert!(
        platform <= bound * (1.0 + 1e-9),
        "{platform} > {bound}: the account counts as more than {} creators",
        ingest.prior_pairs_per_viewer
    );
    assert!(platform >= 0.99 * bound, "{platform}: scaled, not dropped");
    assert_eq!(viewer.pairs_seen, 1_000);

    // The same events in another order give the same platform aggregate.
    let mut reversed_kinds = kinds;
    reversed_kinds.reverse();
    let (reversed_each, _) = spray((0..1_000u64).rev(), reversed_kinds);
    let reversed = &reversed_each[reversed_each.len() - 1];
    assert!(aggregates_close(global, reversed), "{global:?} vs {reversed:?}");
}

/// Accounts shown the creator (and `audience` more that only viewed), each
/// buying `money[i]`: in one purchase, or for the first `repeat` of them the
/// same money split over two UTC days `days` apart. The last purchase of
/// every buyer is at the same time, so the histories differ only in who
/// came back.
fn buyers_history(money: &[f64], repeat: usize, days: i64, audience: u64) -> Vec<Event> {
    let t = START + 60 * DAY;
    let event = |kind, viewer_id, timestamp_ms, amount| Event {
        event_id: String::new(),
        kind,
        viewer_id,
        creator_id: CREATOR,
        timestamp_ms,
        amount,
    };
    let mut events: Vec<Event> = (0..audience)
        .map(|i| event(EventKind::View, 1_000 + i, START, 0.5))
        .collect();
    for (i, amount) in money.iter().enumerate() {
        let viewer = 100 + i as u64;
        events.push(event(EventKind::View, viewer, START, 0.5));
        if i < repeat {
            events.push(event(EventKind::Purchase, viewer, t - days * DAY, amount / 2.0));
            events.push(event(EventKind::Purchase, viewer, t, amount / 2.0));
        } else {
            events.push(event(EventKind::Purchase, viewer, t, *amount));
        }
    }
    events
}

/// Purchases, refunds and views of a few accounts, any amounts and days.
fn trade_strategy() -> impl Strategy<Value = Event> {
    (0usize..3, 1u64..6, 0i64..60 * DAY, 0.0f64..200.0, any::<bool>()).prop_map(
        |(kind, viewer_id, offset, money, round)| {
            let kind = [EventKind::View, EventKind::Purchase, EventKind::Refund][kind];
            Event {
                event_id: String::new(),
                kind,
                viewer_id,
                creator_id: CREATOR,
                timestamp_ms: START + offset,
                // Round amounts make refunds that return a purchase exactly.
                amount: match kind {
                    EventKind::View => 0.5,
                    _ if round => (money / 50.0).floor() * 50.0,
                    _ => money,
                },
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// 8. Trust pays: at the same buyers and the same money, one more buyer
    /// who came back on another day never lowers fan value.
    #[test]
    fn repeat_buyers_never_lower_fan_value(
        money in prop::collection::vec(0.0f64..1_000.0, 1..40),
        days in 1i64..60,
        audience in 0u64..300,
    ) {
        let ingest = IngestParams::default();
        let params = ModelParams::default();
        let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 61 * DAY);
        let mut previous: Option<super::score::CreatorScore> = None;
        for repeat in 0..=money.len() {
            let score = scorer.creator(Some(&replay_many(&buyers_history(&money, repeat, days, audience), &ingest)));
            prop_assert!(close(score.buyers, previous.map_or(score.buyers, |p| p.buyers)), "same buyers");
            if let Some(before) = previous {
                prop_assert!(score.repeat_buyers > before.repeat_buyers, "one more repeat buyer");
                prop_assert!(
                    score.fan_value >= before.fan_value - 1e-12,
                    "{repeat} repeat buyers: {} < {}", score.fan_value, before.fan_value
                );
            }
            previous = Some(score);
        }
    }

    /// 5 and 8. Purchases and refunds in any arrival order give the same
    /// sums and scores: the pair keeps min/max times, counts and money sums.
    #[test]
    fn purchases_and_refunds_in_any_order(events in prop::collection::vec(trade_strategy(), 0..60), seed in any::<u64>()) {
        let ingest = IngestParams::default();
        let mut shuffled = events.clone();
        shuffle(&mut shuffled, seed);
        let (a, _) = replay(&events, &ingest);
        let (b, _) = replay(&shuffled, &ingest);
        prop_assert!(aggregates_close(&a, &b), "{a:?} vs {b:?}");
        let params = ModelParams::default();
        let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 61 * DAY);
        let (x, y) = (scorer.creator(Some(&a)), scorer.creator(Some(&b)));
        prop_assert!(close(x.public_boost, y.public_boost), "{} vs {}", x.public_boost, y.public_boost);
        prop_assert!(close(x.repeat_buyers, y.repeat_buyers) && close(x.buyers, y.buyers));
    }
}

/// Property 8: an account buying every day for 23 days is one buyer and one
/// repeat buyer, no more.
#[test]
fn an_account_buying_every_day_is_one_repeat_buyer() {
    let ingest = IngestParams::default();
    let decay = ingest.decay();
    let mut events = vec![Event {
        event_id: String::new(),
        kind: EventKind::View,
        viewer_id: 1,
        creator_id: CREATOR,
        timestamp_ms: START,
        amount: 1.0,
    }];
    for day in 0..23 {
        events.push(Event {
            kind: EventKind::Purchase,
            timestamp_ms: START + day * DAY + 3_600_000,
            amount: 20.0,
            ..events[0].clone()
        });
    }
    let (creator, viewers) = replay(&events, &ingest);
    let as_of = START + 22 * DAY + 3_600_000;
    let scale = decay.engagement_scale(as_of);
    assert!(close(creator.buyers * scale, 1.0), "{}", creator.buyers * scale);
    assert!(
        close(creator.repeat_buyers * scale, 1.0),
        "{}",
        creator.repeat_buyers * scale
    );
    let pair = viewers[1].relation(CREATOR).expect("pair");
    assert_eq!(
        (pair.trade.as_ref().map(|t| t.purchases), pair.came_back()),
        (Some(23), true)
    );

    // Two purchases the same UTC day are not a return.
    let (creator, _) = replay(
        &events[..3]
            .iter()
            .map(|e| Event {
                timestamp_ms: e.timestamp_ms.min(START + 3_600_000) + 1,
                ..e.clone()
            })
            .collect::<Vec<_>>(),
        &ingest,
    );
    assert!(creator.buyers > 0.0);
    assert_eq!(creator.repeat_buyers, 0.0);
}

/// Property 8: refunds take purchases back; a fully refunded account is
/// neither a buyer nor engaged through its purchases, and counts as a
/// refunder; a refund without a purchase counts as a refund only.
#[test]
fn refunds_take_purchases_back() {
    let ingest = IngestParams::default();
    let event = |kind, day: i64, amount| Event {
        event_id: String::new(),
        kind,
        viewer_id: 1,
        creator_id: CREATOR,
        timestamp_ms: START + day * DAY,
        amount,
    };
    let view = event(EventKind::View, 0, 1.0);
    let mut bought = vec![view.clone()];
    for day in 0..3 {
        bought.push(event(EventKind::Purchase, day, 30.0));
    }
    let (kept, _) = replay(&bought, &ingest);
    assert!(kept.repeat_buyers > 0.0 && kept.non_fan[4] > 0.0 && kept.refunders == 0.0);

    let mut refunded = bought.clone();
    for day in 3..6 {
        refunded.push(event(EventKind::Refund, day, 30.0));
    }
    let (gone, viewers) = replay(&refunded, &ingest);
    assert_eq!(
        (gone.buyers, gone.repeat_buyers, gone.non_fan[4], gone.engaged),
        (0.0, 0.0, 0.0, 0.0)
    );
    assert!(gone.refunders > 0.0 && close(gone.refunders, gone.transacted));
    let pair = viewers[1].relation(CREATOR).expect("pair");
    assert_eq!((pair.standing_share(), pair.refunder()), (0.0, 1.0));
    // The private boost loses the purchases too: intimacy is the view's alone.
    let (_, viewed) = replay(&bought[..1], &ingest);
    let only_view = viewed[1].relation(CREATOR).expect("pair").intimacy;
    assert!(close(pair.intimacy, only_view), "{} vs {only_view}", pair.intimacy);

    // Refunds beyond the purchases take back nothing more (never below zero).
    refunded.push(event(EventKind::Refund, 7, 1_000.0));
    let (over, _) = replay(&refunded, &ingest);
    assert_eq!((over.buyers, over.non_fan[4]), (0.0, 0.0));

    // Half the money back: one and a half purchases stand; still a buyer,
    // half a repeat buyer.
    let mut half = bought.clone();
    half.push(event(EventKind::Refund, 4, 45.0));
    let (_, viewers) = replay(&half, &ingest);
    let pair = viewers[1].relation(CREATOR).expect("pair");
    assert!(close(pair.standing_share(), 0.5));
    assert!(close(pair.buyer(), 1.0) && close(pair.repeat_buyer(), 0.5) && close(pair.refunder(), 0.5));

    // A refund without a purchase: a refunder, not a buyer.
    let (alone, _) = replay(&[view, event(EventKind::Refund, 1, 10.0)], &ingest);
    assert_eq!(alone.buyers, 0.0);
    assert!(alone.refunders > 0.0);

    // Scored: a fully refunded creator is below one whose purchases stand,
    // and no higher than the same accounts that never bought.
    let params = ModelParams::default();
    let scorer = Scorer::new(&params, &ingest.decay(), &platform(), START + 8 * DAY);
    let never = scorer.creator(Some(&replay(&bought[..1], &ingest).0));
    let (kept, gone) = (scorer.creator(Some(&kept)), scorer.creator(Some(&gone)));
    assert!(kept.public_boost > gone.public_boost);
    assert!(
        gone.public_boost <= never.public_boost,
        "{} > {}",
        gone.public_boost,
        never.public_boost
    );
}

/// Purchases and refunds live out of line: the many pairs that never
/// bought cost the caches one pointer for them, not 48 bytes.
#[test]
fn a_pair_that_never_bought_stays_small() {
    assert!(
        std::mem::size_of::<super::PairRelation>() <= 144,
        "{} bytes",
        std::mem::size_of::<super::PairRelation>()
    );
}
