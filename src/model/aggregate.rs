//! What is kept per creator, per viewer and platform-wide, and how one event
//! changes it.
//!
//! Evidence is counted per account. Each viewer–creator pair keeps its own
//! state (last-writer-wins registers, the latest view and engagement times,
//! a forward-decayed sum per engagement kind, and what it bought and had
//! refunded, [`Trade`]); what the pair adds to its creator's sums is a
//! bounded function of that state ([`pair_sums`]): at most 1 per engagement
//! kind, one buyer and one repeat buyer, and only once the platform has
//! shown the creator to the account. An event changes one pair, so its effect on the
//! aggregates is the pair's contribution after minus before — a delta a
//! shared store can add with atomic increments. The pair state is the same
//! whatever order its events arrive in, so the sums are too.

use super::decay::Decay;
pub use super::event::{ENGAGEMENT_KINDS, Event, EventKind};
use super::params::IngestParams;

/// Forward-decayed sums and exact counts for one creator, or summed over all
/// creators for the platform-wide aggregate. Every sum is a sum over
/// accounts of that account's bounded share ([`pair_sums`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreatorAggregate {
    /// Per engagement kind: Σ over accounts following now of the account's
    /// saturated value of that kind (each at most 1).
    pub fan: [f64; ENGAGEMENT_KINDS],
    /// Per engagement kind: the same over accounts not following.
    pub non_fan: [f64; ENGAGEMENT_KINDS],
    /// Accounts shown the creator (they sent a VIEW) and following now.
    pub audience_fan: f64,
    /// Accounts shown the creator and not following.
    pub audience_non_fan: f64,
    /// Accounts shown the creator that engaged beyond viewing, each counted
    /// at most once (by its strongest layer).
    pub engaged: f64,
    /// Accounts shown the creator whose follow ended in an unfollow (negative half-life).
    pub unfollows: f64,
    /// Distinct reporters that were shown the creator (negative half-life).
    pub reports: f64,
    /// Distinct reporters never shown the creator (negative half-life).
    pub reports_unshown: f64,
    /// Accounts shown the creator, unweighted (negative half-life).
    pub shown: f64,
    /// Buyers: Σ over accounts shown of how much of a buyer each is
    /// ([`PairRelation::buyer`], at most 1), decaying from its latest purchase.
    pub buyers: f64,
    /// Repeat buyers: the same for accounts that came back
    /// ([`PairRelation::repeat_buyer`], at most 1).
    pub repeat_buyers: f64,
    /// Accounts shown that bought or refunded (negative half-life): what
    /// the refund share is measured against.
    pub transacted: f64,
    /// Refunders: Σ over those accounts of the share of their money
    /// returned ([`PairRelation::refunder`], at most 1; negative half-life).
    pub refunders: f64,
    /// Exact follower count.
    pub followers: u64,
    /// Exact fan-group member count.
    pub fan_group_members: u64,
    /// Accepted events about this creator.
    pub evidence: u64,
    /// Latest event timestamp seen, unix milliseconds.
    pub updated_at_ms: i64,
}

/// A viewer's relation to one creator: last-writer-wins registers, the
/// latest view and engagement, and what the viewer did per engagement kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairRelation {
    /// The creator.
    pub creator_id: u64,
    /// Latest FOLLOW timestamp, 0 = never.
    pub follow_ms: i64,
    /// Latest UNFOLLOW timestamp, 0 = never.
    pub unfollow_ms: i64,
    /// Latest JOIN_FAN_GROUP timestamp, 0 = never.
    pub join_ms: i64,
    /// Latest LEAVE_FAN_GROUP timestamp, 0 = never.
    pub leave_ms: i64,
    /// Latest REPORT timestamp, 0 = never.
    pub report_ms: i64,
    /// Latest VIEW timestamp, 0 = the creator was never shown to the viewer.
    pub view_ms: i64,
    /// Latest engagement event of any kind (VIEW included), 0 = none.
    pub engaged_ms: i64,
    /// Per engagement kind: forward-decayed value of the viewer's events.
    pub layers: [f64; ENGAGEMENT_KINDS],
    /// Forward-decayed weighted engagement of the viewer with the creator.
    pub intimacy: f64,
    /// What the viewer bought from the creator and had refunded; `None`
    /// for the many pairs that never did, boxed so that their records stay
    /// small in the caches (48 bytes more per pair otherwise).
    pub trade: Option<Box<Trade>>,
}

/// What one account bought from one creator and had refunded: min/max
/// registers, counts and plain sums, so it is the same whatever order the
/// events arrive in.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trade {
    /// Earliest PURCHASE timestamp, 0 = never. With the latest it tells
    /// whether the account came back on another day.
    pub first_purchase_ms: i64,
    /// Latest PURCHASE timestamp, 0 = never.
    pub last_purchase_ms: i64,
    /// Latest REFUND timestamp, 0 = never.
    pub refund_ms: i64,
    /// PURCHASE events counted.
    pub purchases: u32,
    /// REFUND events counted.
    pub refunds: u32,
    /// Money spent with the creator, undecayed: what refunds are set against.
    pub purchased: f64,
    /// Money returned, undecayed.
    pub refunded: f64,
}

impl Trade {
    /// Share of the purchases still standing after the refunds, in
    /// `[0, 1]`: by money when the purchases carried money, else one refund
    /// per purchase; 1 without a recorded purchase.
    pub fn standing_share(&self) -> f64 {
        if self.purchases == 0 {
            return 1.0;
        }
        let returned = if self.purchased > 0.0 {
            self.refunded / self.purchased
        } else {
            f64::from(self.refunds) / f64::from(self.purchases)
        };
        (1.0 - returned).clamp(0.0, 1.0)
    }

    /// Purchases that stand: the count times [`Trade::standing_share`].
    pub fn standing_purchases(&self) -> f64 {
        f64::from(self.purchases) * self.standing_share()
    }

    /// Whether the purchases fall on at least two different UTC days.
    pub fn came_back(&self) -> bool {
        self.purchases >= 2 && self.first_purchase_ms.div_euclid(DAY_MS) < self.last_purchase_ms.div_euclid(DAY_MS)
    }

    /// How much of a buyer the account is: `min(1, standing purchases)`;
    /// 0 once everything was refunded.
    pub fn buyer(&self) -> f64 {
        if self.purchases == 0 {
            return 0.0;
        }
        self.standing_purchases().min(1.0)
    }

    /// How much of a repeat buyer the account is: it bought on two UTC days
    /// or more and more than one purchase's worth stands,
    /// `clamp(standing − 1, 0, 1)`. An account is one repeat buyer at most,
    /// however often it buys.
    pub fn repeat_buyer(&self) -> f64 {
        if !self.came_back() {
            return 0.0;
        }
        (self.standing_purchases() - 1.0).clamp(0.0, 1.0)
    }

    /// How much of a refunder the account is: the share of its purchases
    /// returned; an account refunding without a recorded purchase counts fully.
    pub fn refunder(&self) -> f64 {
        match (self.refunds, self.purchases) {
            (0, _) => 0.0,
            (_, 0) => 1.0,
            _ => 1.0 - self.standing_share(),
        }
    }
}

/// One UTC day in milliseconds: purchases on two different UTC days make a
/// repeat buyer.
pub const DAY_MS: i64 = 86_400_000;

impl PairRelation {
    /// Follows now (an UNFOLLOW at the same millisecond wins).
    pub fn following(&self) -> bool {
        self.follow_ms > self.unfollow_ms
    }

    /// Is a fan-group member now.
    pub fn fan_group_member(&self) -> bool {
        self.join_ms > self.leave_ms
    }

    /// Whether the platform showed the creator to the viewer (a VIEW).
    pub fn shown(&self) -> bool {
        self.view_ms != 0
    }

    /// Share of the account's purchases still standing after its refunds
    /// ([`Trade::standing_share`]); 1 without recorded purchases (a
    /// purchase layer kept by an earlier version has no refunds against it).
    pub fn standing_share(&self) -> f64 {
        self.trade.as_deref().map_or(1.0, Trade::standing_share)
    }

    /// Whether the account's purchases fall on at least two different UTC days.
    pub fn came_back(&self) -> bool {
        self.trade.as_deref().is_some_and(Trade::came_back)
    }

    /// How much of a buyer the account is ([`Trade::buyer`]).
    pub fn buyer(&self) -> f64 {
        self.trade.as_deref().map_or(0.0, Trade::buyer)
    }

    /// How much of a repeat buyer the account is ([`Trade::repeat_buyer`]).
    pub fn repeat_buyer(&self) -> f64 {
        self.trade.as_deref().map_or(0.0, Trade::repeat_buyer)
    }

    /// How much of a refunder the account is ([`Trade::refunder`]).
    pub fn refunder(&self) -> f64 {
        self.trade.as_deref().map_or(0.0, Trade::refunder)
    }

    /// Whether forgetting the pair would lose relation, report or purchase
    /// history (purchases back the buyer counts and what a later refund
    /// takes back).
    fn has_relation_history(&self) -> bool {
        self.follow_ms != 0
            || self.unfollow_ms != 0
            || self.join_ms != 0
            || self.leave_ms != 0
            || self.report_ms != 0
            || self.trade.is_some()
    }
}

/// Everything known about one viewer: one entry per creator, sorted by id, so
/// a Rank needs one record read and a binary search per creator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewerRecord {
    /// Relations sorted by `creator_id`.
    pub relations: Vec<PairRelation>,
    /// Creators this viewer has had a pair with (never decreases).
    pub pairs_seen: u64,
    /// Σ of this viewer's pairs' shares of the platform aggregate, before the
    /// per-viewer scale ([`platform_scale`]); kept only once the scale is
    /// below 1 (`None` = all zero: most viewers never need it, and it is
    /// boxed so their records stay small in the caches).
    pub platform: Option<Box<[f64; SUM_FIELDS]>>,
}

/// How much of a viewer's pairs count in the platform aggregate (the
/// priors): all of them up to `prior_pairs_per_viewer` creators, then that
/// many creators' worth, so an account spraying thousands of creators weighs
/// in the priors like one engaging with a few dozen.
pub fn platform_scale(pairs_seen: u64, prior_pairs_per_viewer: f64) -> f64 {
    if (pairs_seen as f64) <= prior_pairs_per_viewer {
        1.0
    } else {
        prior_pairs_per_viewer / pairs_seen as f64
    }
}

impl ViewerRecord {
    /// The relation to `creator_id`, if any.
    pub fn relation(&self, creator_id: u64) -> Option<&PairRelation> {
        self.relations
            .binary_search_by_key(&creator_id, |r| r.creator_id)
            .ok()
            .map(|i| &self.relations[i])
    }

    fn relation_mut(&mut self, creator_id: u64) -> &mut PairRelation {
        let index = match self.relations.binary_search_by_key(&creator_id, |r| r.creator_id) {
            Ok(index) => index,
            Err(index) => {
                self.relations.insert(
                    index,
                    PairRelation {
                        creator_id,
                        ..PairRelation::default()
                    },
                );
                index
            }
        };
        &mut self.relations[index]
    }

    /// Forgets the least intimate pairs without relation or report history
    /// until at most `max` remain (pairs with history are kept: they back
    /// exact counts). A forgotten pair's share stays in its creator's sums
    /// and decays there.
    fn enforce_limit(&mut self, max: usize, keep: u64) {
        while self.relations.len() > max {
            let victim = self
                .relations
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.has_relation_history() && r.creator_id != keep)
                .min_by(|(_, a), (_, b)| a.intimacy.total_cmp(&b.intimacy))
                .map(|(i, _)| i);
            match victim {
                Some(index) => {
                    self.relations.remove(index);
                }
                None => break,
            }
        }
    }
}

/// Number of floating-point sums in a [`CreatorAggregate`].
pub const SUM_FIELDS: usize = 2 * ENGAGEMENT_KINDS + 11;

/// Sums stored by versions before buyers and refunds were counted: a
/// record of that layout reads with the later sums zero.
pub const SUM_FIELDS_BEFORE_TRUST: usize = 2 * ENGAGEMENT_KINDS + 7;

/// What one event adds to one aggregate. Backends that cannot hold an
/// aggregate in memory while they apply an event (a shared store updated
/// with atomic increments) apply it as increments; the embedded store adds
/// it directly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AggregateDelta {
    /// Added to the sums, in [`CreatorAggregate::sums`] order.
    pub sums: [f64; SUM_FIELDS],
    /// Change of the follower count: -1, 0 or 1.
    pub followers: i64,
    /// Change of the fan-group member count: -1, 0 or 1.
    pub fan_group_members: i64,
    /// Raises `updated_at_ms` to at least this.
    pub timestamp_ms: i64,
}

/// What one event adds to its creator's aggregate and to the platform
/// aggregate. They differ in one way: in the platform aggregate (the priors)
/// each account's engagement is trimmed to `IngestParams::prior_depth_cap`,
/// so a few very deep accounts cannot move the platform's norm.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventDelta {
    /// Added to the creator's aggregate.
    pub creator: AggregateDelta,
    /// Added to the platform aggregate.
    pub global: AggregateDelta,
}

impl CreatorAggregate {
    /// The sums in a fixed order: fan[0..8], non_fan[0..8], audience_fan,
    /// audience_non_fan, engaged, unfollows, reports, reports_unshown, shown.
    pub fn sums(&self) -> [f64; SUM_FIELDS] {
        let mut out = [0.0; SUM_FIELDS];
        out[..ENGAGEMENT_KINDS].copy_from_slice(&self.fan);
        out[ENGAGEMENT_KINDS..2 * ENGAGEMENT_KINDS].copy_from_slice(&self.non_fan);
        out[AUDIENCE_FAN..].copy_from_slice(&[
            self.audience_fan,
            self.audience_non_fan,
            self.engaged,
            self.unfollows,
            self.reports,
            self.reports_unshown,
            self.shown,
            self.buyers,
            self.repeat_buyers,
            self.transacted,
            self.refunders,
        ]);
        out
    }

    /// The sum at `index` of [`CreatorAggregate::sums`], mutably.
    pub fn sum_mut(&mut self, index: usize) -> &mut f64 {
        match index {
            i if i < ENGAGEMENT_KINDS => &mut self.fan[i],
            i if i < 2 * ENGAGEMENT_KINDS => &mut self.non_fan[i - ENGAGEMENT_KINDS],
            AUDIENCE_FAN => &mut self.audience_fan,
            AUDIENCE_NON_FAN => &mut self.audience_non_fan,
            ENGAGED => &mut self.engaged,
            UNFOLLOWS => &mut self.unfollows,
            REPORTS => &mut self.reports,
            REPORTS_UNSHOWN => &mut self.reports_unshown,
            SHOWN => &mut self.shown,
            BUYERS => &mut self.buyers,
            REPEAT_BUYERS => &mut self.repeat_buyers,
            TRANSACTED => &mut self.transacted,
            _ => &mut self.refunders,
        }
    }

    /// Adds one event's delta (counts one more piece of evidence).
    pub fn add(&mut self, delta: &AggregateDelta) {
        for (index, value) in delta.sums.iter().enumerate() {
            if *value != 0.0 {
                *self.sum_mut(index) += value;
            }
        }
        self.followers = add_count(self.followers, delta.followers);
        self.fan_group_members = add_count(self.fan_group_members, delta.fan_group_members);
        self.evidence += 1;
        self.updated_at_ms = self.updated_at_ms.max(delta.timestamp_ms);
    }
}

const FAN: usize = 0;
const NON_FAN: usize = ENGAGEMENT_KINDS;
const AUDIENCE_FAN: usize = 2 * ENGAGEMENT_KINDS;
const AUDIENCE_NON_FAN: usize = AUDIENCE_FAN + 1;
const ENGAGED: usize = AUDIENCE_FAN + 2;
const UNFOLLOWS: usize = AUDIENCE_FAN + 3;
const REPORTS: usize = AUDIENCE_FAN + 4;
const REPORTS_UNSHOWN: usize = AUDIENCE_FAN + 5;
const SHOWN: usize = AUDIENCE_FAN + 6;
const BUYERS: usize = AUDIENCE_FAN + 7;
const REPEAT_BUYERS: usize = AUDIENCE_FAN + 8;
const TRANSACTED: usize = AUDIENCE_FAN + 9;
const REFUNDERS: usize = AUDIENCE_FAN + 10;

/// Index of VIEW among the engagement kinds.
const VIEW: usize = 0;
/// Index of PURCHASE among the engagement kinds.
const PURCHASE: usize = 4;

/// How much of a layer an account's events earn: `1 − e^(−value)`. One LIKE
/// earns 0.63 of the layer, two 0.86, three 0.95; no number of events, and
/// no amount of money, earns more than the whole layer.
pub fn saturate(value: f64) -> f64 {
    -(-value).exp_m1()
}

/// What one viewer–creator pair adds to its creator's sums, and to the
/// platform's (trimmed), in [`CreatorAggregate::sums`] order.
///
/// - Engagement counts only once the creator was shown to the viewer (a
///   VIEW): accounts the platform never showed the creator cannot earn it
///   anything. Each kind adds its saturated value ([`saturate`]), so one
///   account adds at most 1 per kind, whatever it sends; the sum decays
///   from the pair's latest engagement.
/// - The audience: 1 per account shown, decaying from its latest VIEW.
/// - Engaged accounts: 1 at most per account, its strongest non-VIEW layer.
/// - Unfollows: once per account shown whose latest FOLLOW was ended by an UNFOLLOW.
/// - Reports: once per reporter, apart for reporters never shown.
/// - Purchases count only as far as they stand after refunds
///   ([`PairRelation::standing_share`]); buyers and repeat buyers at most 1
///   each per account, decaying from its latest purchase; accounts that
///   bought or refunded, and how much of a refunder each is, on the
///   negative half-life from its latest purchase (or refund, without one).
pub fn pair_sums(pair: &PairRelation, params: &IngestParams, decay: &Decay) -> ([f64; SUM_FIELDS], [f64; SUM_FIELDS]) {
    let mut sums = [0.0; SUM_FIELDS];
    let shown = pair.shown();
    if pair.report_ms != 0 {
        sums[if shown { REPORTS } else { REPORTS_UNSHOWN }] = decay.negative_weight(pair.report_ms);
    }
    if !shown {
        return (sums, sums);
    }
    if pair.follow_ms != 0 && pair.unfollow_ms >= pair.follow_ms {
        sums[UNFOLLOWS] = decay.negative_weight(pair.unfollow_ms);
    }
    let following = pair.following();
    sums[if following { AUDIENCE_FAN } else { AUDIENCE_NON_FAN }] = decay.engagement_weight(pair.view_ms);
    sums[SHOWN] = decay.negative_weight(pair.view_ms);
    if let Some(trade) = pair.trade.as_deref() {
        if trade.purchases != 0 {
            let weight = decay.engagement_weight(trade.last_purchase_ms);
            sums[BUYERS] = weight * trade.buyer();
            sums[REPEAT_BUYERS] = weight * trade.repeat_buyer();
        }
        if trade.purchases != 0 || trade.refunds != 0 {
            // From the latest purchase: a refund is about a purchase, and one
            // that returns nothing must change nothing. A refund without a
            // purchase decays from its own time.
            let since = if trade.purchases != 0 {
                trade.last_purchase_ms
            } else {
                trade.refund_ms
            };
            let weight = decay.negative_weight(since);
            sums[TRANSACTED] = weight;
            sums[REFUNDERS] = weight * trade.refunder();
        }
    }

    let weight = decay.engagement_weight(pair.engaged_ms);
    // The weight is 2^x with |x| <= 900, so its inverse is exact enough and
    // costs a division instead of a second exp2.
    let to_engaged = 1.0 / weight;
    let base = if following { FAN } else { NON_FAN };
    let depth_weights = params.depth_weights.as_array();
    let mut depth = 0.0;
    let mut strongest: f64 = 0.0;
    let standing = pair.standing_share();
    for (kind, value) in pair.layers.iter().enumerate() {
        if *value > 0.0 {
            let value = if kind == PURCHASE { value * standing } else { *value };
            let earned = saturate(value * to_engaged);
            sums[base + kind] = weight * earned;
            depth += depth_weights[kind] * earned;
            if kind != VIEW {
                strongest = strongest.max(earned);
            }
        }
    }
    sums[ENGAGED] = weight * strongest;
    // One account's engagement counts up to `account_depth_cap` (soft):
    // depth pays across many fans, not by one account going very deep. The
    // platform aggregate caps it lower (`prior_depth_cap`).
    let mut global = sums;
    if depth > 0.0 {
        let capped = |cap: f64| cap * saturate(depth / cap) / depth;
        let (creator_factor, global_factor) = (
            capped(params.account_depth_cap),
            capped(params.prior_depth_cap.min(params.account_depth_cap)),
        );
        for kind in base..base + ENGAGEMENT_KINDS {
            sums[kind] *= creator_factor;
            global[kind] *= global_factor;
        }
    }
    (sums, global)
}

/// Applies one validated event to the creator's aggregate, the platform
/// aggregate and (for a known viewer) the viewer's record.
pub fn apply_event(
    event: &Event,
    params: &IngestParams,
    decay: &Decay,
    creator: &mut CreatorAggregate,
    global: &mut CreatorAggregate,
    viewer: Option<&mut ViewerRecord>,
) {
    let delta = event_delta(event, params, decay, viewer);
    creator.add(&delta.creator);
    global.add(&delta.global);
}

/// Applies one validated event to the viewer's record (for a known viewer)
/// and returns what it adds to its creator's and the platform aggregate.
///
/// An event without a viewer (anonymous) counts as evidence but moves no
/// sum: it cannot be tied to an account, so it cannot be bounded per account.
pub fn event_delta(
    event: &Event,
    params: &IngestParams,
    decay: &Decay,
    viewer: Option<&mut ViewerRecord>,
) -> EventDelta {
    debug_assert!(decay.accepts_timestamp(event.timestamp_ms));
    let t = event.timestamp_ms;
    let mut delta = EventDelta {
        creator: AggregateDelta {
            timestamp_ms: t,
            ..AggregateDelta::default()
        },
        global: AggregateDelta {
            timestamp_ms: t,
            ..AggregateDelta::default()
        },
    };
    let Some(record) = viewer else {
        return delta;
    };
    // A record already holding `max_pairs_per_viewer` creators takes no new
    // one: the event counts as evidence only. This bounds what one account's
    // record costs every write and read (an account following 200,000
    // creators would otherwise make each of its batches copy all of them).
    if record.relations.len() >= params.max_pairs_per_viewer && record.relation(event.creator_id).is_none() {
        return delta;
    }
    let held = record.relations.len();
    let pair = record.relation_mut(event.creator_id);
    let (before, before_global) = pair_sums(pair, params, decay);
    let was = (pair.following(), pair.fan_group_member());

    record_on_pair(pair, event, params, decay);
    let (after, after_global) = pair_sums(pair, params, decay);
    let now = (pair.following(), pair.fan_group_member());
    for part in [&mut delta.creator, &mut delta.global] {
        part.followers = i64::from(now.0) - i64::from(was.0);
        part.fan_group_members = i64::from(now.1) - i64::from(was.1);
    }
    for index in 0..SUM_FIELDS {
        if after[index] != before[index] {
            delta.creator.sums[index] = after[index] - before[index];
        }
    }
    let grew = record.relations.len() > held;
    platform_delta(
        record,
        grew,
        &before_global,
        &after_global,
        params,
        decay,
        &mut delta.global,
    );
    // Only a new pair can take the record past its soft limit.
    if grew {
        record.enforce_limit(params.max_relations_per_viewer, event.creator_id);
    }
    delta
}

impl PairRelation {
    /// The viewer's intimacy with the creator from the pair's layers:
    /// `Σ w_k·layer_k`, the purchase layer counting only the share of its
    /// purchases that stands after refunds (what a refund takes back, it
    /// takes back from the private boost too).
    pub fn intimacy_from_layers(&self, intimacy_weights: &[f64; ENGAGEMENT_KINDS]) -> f64 {
        let standing = self.standing_share();
        self.layers
            .iter()
            .zip(intimacy_weights)
            .enumerate()
            .map(|(kind, (layer, weight))| {
                if kind == PURCHASE {
                    weight * layer * standing
                } else {
                    weight * layer
                }
            })
            .sum()
    }
}

/// The event's mark on its pair: its layer and intimacy grow by the decayed
/// value; its relation registers keep their latest time; a purchase or a
/// refund changes what stands of the purchases, so intimacy is summed again.
fn record_on_pair(pair: &mut PairRelation, event: &Event, params: &IngestParams, decay: &Decay) {
    let t = event.timestamp_ms;
    if let Some(kind_index) = event.kind.engagement_index() {
        let value = event.value() * decay.engagement_weight(t);
        pair.layers[kind_index] += value;
        pair.intimacy += params.intimacy_weights.as_array()[kind_index] * value;
        pair.engaged_ms = pair.engaged_ms.max(t);
        if event.kind == EventKind::View {
            pair.view_ms = pair.view_ms.max(t);
        }
    }
    match event.kind {
        EventKind::Follow => pair.follow_ms = pair.follow_ms.max(t),
        EventKind::Unfollow => pair.unfollow_ms = pair.unfollow_ms.max(t),
        EventKind::JoinFanGroup => pair.join_ms = pair.join_ms.max(t),
        EventKind::LeaveFanGroup => pair.leave_ms = pair.leave_ms.max(t),
        EventKind::Report => pair.report_ms = pair.report_ms.max(t),
        EventKind::Purchase => {
            let trade = pair.trade.get_or_insert_with(Box::default);
            trade.first_purchase_ms = if trade.first_purchase_ms == 0 {
                t
            } else {
                trade.first_purchase_ms.min(t)
            };
            trade.last_purchase_ms = trade.last_purchase_ms.max(t);
            trade.purchases = trade.purchases.saturating_add(1);
            trade.purchased += event.amount;
        }
        EventKind::Refund => {
            let trade = pair.trade.get_or_insert_with(Box::default);
            trade.refund_ms = trade.refund_ms.max(t);
            trade.refunds = trade.refunds.saturating_add(1);
            trade.refunded += event.amount;
        }
        _ => {}
    }
    if matches!(event.kind, EventKind::Purchase | EventKind::Refund) {
        pair.intimacy = pair.intimacy_from_layers(&params.intimacy_weights.as_array());
    }
}

/// What the platform aggregate gets: the viewer's shares scaled by how many
/// creators it has had pairs with — the change of Σ·scale, before and after.
/// While the scale is 1 (most viewers) the change is the pair's own and Σ is
/// not kept; when the viewer passes `prior_pairs_per_viewer` creators, Σ is
/// summed once from its pairs (none was forgotten yet: the soft limit is far
/// above) and kept from then on. `grew`: this event added the pair.
fn platform_delta(
    record: &mut ViewerRecord,
    grew: bool,
    before: &[f64; SUM_FIELDS],
    after: &[f64; SUM_FIELDS],
    params: &IngestParams,
    decay: &Decay,
    global: &mut AggregateDelta,
) {
    let old_scale = platform_scale(record.pairs_seen, params.prior_pairs_per_viewer);
    if grew {
        record.pairs_seen += 1;
    }
    let new_scale = platform_scale(record.pairs_seen, params.prior_pairs_per_viewer);
    if new_scale == 1.0 {
        for index in 0..SUM_FIELDS {
            if after[index] != before[index] {
                global.sums[index] = after[index] - before[index];
            }
        }
        return;
    }
    if old_scale == 1.0 {
        // Σ as it stood before this event: every pair's share, minus this change.
        let mut platform = [0.0; SUM_FIELDS];
        for pair in &record.relations {
            let (_, share) = pair_sums(pair, params, decay);
            for (total, value) in platform.iter_mut().zip(share) {
                *total += value;
            }
        }
        for index in 0..SUM_FIELDS {
            platform[index] -= after[index] - before[index];
        }
        record.platform = Some(Box::new(platform));
    }
    let platform = record.platform.get_or_insert_with(|| Box::new([0.0; SUM_FIELDS]));
    for index in 0..SUM_FIELDS {
        let change = after[index] - before[index];
        if change == 0.0 && old_scale == new_scale {
            continue;
        }
        let old = platform[index];
        platform[index] = old + change;
        global.sums[index] = platform[index] * new_scale - old * old_scale;
    }
}

/// Applies a count change; saturating, so a count never goes below zero even
/// if records were lost.
fn add_count(count: u64, change: i64) -> u64 {
    if change >= 0 {
        count.saturating_add(change.unsigned_abs())
    } else {
        count.saturating_sub(change.unsigned_abs())
    }
}
