//! What is kept per creator, per viewer and platform-wide, and how one event
//! changes it. Every sum is forward-decayed (see [`super::decay`]), so applying
//! events is addition, and relation state is a pair of last-writer-wins
//! registers, so the result does not depend on arrival order.

use super::decay::Decay;
use super::params::IngestParams;

/// Number of engagement kinds (VIEW … TIP).
pub const ENGAGEMENT_KINDS: usize = 7;

/// A fan-behaviour or relation event kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Watched an item; may carry the fraction watched.
    View,
    /// Liked an item.
    Like,
    /// Commented.
    Comment,
    /// Shared.
    Share,
    /// Bought; carries the amount.
    Purchase,
    /// Joined the creator's fan group (engagement and relation).
    JoinFanGroup,
    /// Tipped; carries the amount.
    Tip,
    /// Started following.
    Follow,
    /// Stopped following.
    Unfollow,
    /// Left the fan group.
    LeaveFanGroup,
    /// Reported the creator or an item.
    Report,
}

impl EventKind {
    /// Every kind, in protocol order.
    pub const ALL: [EventKind; 11] = [
        EventKind::View,
        EventKind::Like,
        EventKind::Comment,
        EventKind::Share,
        EventKind::Purchase,
        EventKind::JoinFanGroup,
        EventKind::Tip,
        EventKind::Follow,
        EventKind::Unfollow,
        EventKind::LeaveFanGroup,
        EventKind::Report,
    ];

    /// Position among the engagement kinds, or `None` for relation and negative kinds.
    pub fn engagement_index(self) -> Option<usize> {
        match self {
            EventKind::View => Some(0),
            EventKind::Like => Some(1),
            EventKind::Comment => Some(2),
            EventKind::Share => Some(3),
            EventKind::Purchase => Some(4),
            EventKind::JoinFanGroup => Some(5),
            EventKind::Tip => Some(6),
            EventKind::Follow | EventKind::Unfollow | EventKind::LeaveFanGroup | EventKind::Report => None,
        }
    }

    /// Whether the kind changes a viewer–creator relation (needs a known viewer).
    pub fn is_relation(self) -> bool {
        matches!(
            self,
            EventKind::Follow | EventKind::Unfollow | EventKind::JoinFanGroup | EventKind::LeaveFanGroup
        )
    }

    /// Stable lower-case name, as used in configs, logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Like => "like",
            EventKind::Comment => "comment",
            EventKind::Share => "share",
            EventKind::Purchase => "purchase",
            EventKind::JoinFanGroup => "join_fan_group",
            EventKind::Tip => "tip",
            EventKind::Follow => "follow",
            EventKind::Unfollow => "unfollow",
            EventKind::LeaveFanGroup => "leave_fan_group",
            EventKind::Report => "report",
        }
    }
}

/// A validated event, with its timestamp resolved (never 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Idempotency key; empty = not deduplicated.
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Who did it; 0 = anonymous.
    pub viewer_id: u64,
    /// To whom.
    pub creator_id: u64,
    /// When, unix milliseconds.
    pub timestamp_ms: i64,
    /// Money for PURCHASE/TIP, fraction watched for VIEW.
    pub amount: f64,
}

impl Event {
    /// The event's value before decay and fan weighting: PURCHASE and TIP count
    /// `1 + ln(1 + amount)`, a VIEW with a watched fraction counts that fraction.
    pub fn value(&self) -> f64 {
        match self.kind {
            EventKind::Purchase | EventKind::Tip => 1.0 + self.amount.ln_1p(),
            EventKind::View if self.amount > 0.0 => self.amount,
            _ => 1.0,
        }
    }
}

/// Forward-decayed sums and exact counts for one creator, or summed over all
/// creators for the platform-wide aggregate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreatorAggregate {
    /// Per engagement kind: value from viewers following at event time.
    pub fan: [f64; ENGAGEMENT_KINDS],
    /// Per engagement kind: value from everyone else.
    pub non_fan: [f64; ENGAGEMENT_KINDS],
    /// VIEW count (not fraction) from followers: exposure.
    pub exposure_fan: f64,
    /// VIEW count from everyone else.
    pub exposure_non_fan: f64,
    /// Effective unfollows (negative half-life).
    pub unfollows: f64,
    /// Reports (negative half-life).
    pub reports: f64,
    /// All VIEW events, unweighted (negative half-life).
    pub views: f64,
    /// Exact follower count.
    pub followers: u64,
    /// Exact fan-group member count.
    pub fan_group_members: u64,
    /// Accepted events about this creator.
    pub evidence: u64,
    /// Latest event timestamp seen, unix milliseconds.
    pub updated_at_ms: i64,
}

/// A viewer's relation to one creator: last-writer-wins registers and intimacy.
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
    /// Forward-decayed weighted engagement of the viewer with the creator.
    pub intimacy: f64,
}

impl PairRelation {
    /// Follows now (an UNFOLLOW at the same millisecond wins).
    pub fn following(&self) -> bool {
        self.follow_ms > self.unfollow_ms
    }

    /// Is a fan-group member now.
    pub fn fan_group_member(&self) -> bool {
        self.join_ms > self.leave_ms
    }

    /// Followed at `timestamp_ms`, as far as the registers tell: the latest
    /// FOLLOW is not after it and no UNFOLLOW came between.
    pub fn following_at(&self, timestamp_ms: i64) -> bool {
        self.follow_ms != 0
            && self.follow_ms <= timestamp_ms
            && !(self.unfollow_ms >= self.follow_ms && self.unfollow_ms <= timestamp_ms)
    }

    /// This pair's share of the creator's unfollow sum: its latest UNFOLLOW,
    /// when that ended a FOLLOW.
    fn churn(&self, decay: &Decay) -> f64 {
        if self.follow_ms != 0 && self.unfollow_ms >= self.follow_ms {
            decay.negative_weight(self.unfollow_ms)
        } else {
            0.0
        }
    }

    /// Whether forgetting the pair would lose relation history.
    fn has_relation_history(&self) -> bool {
        self.follow_ms != 0 || self.unfollow_ms != 0 || self.join_ms != 0 || self.leave_ms != 0
    }
}

/// Everything known about one viewer: one entry per creator, sorted by id, so
/// a Rank needs one record read and a binary search per creator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewerRecord {
    /// Relations sorted by `creator_id`.
    pub relations: Vec<PairRelation>,
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

    /// Forgets the least intimate pairs without relation history until at most
    /// `max` remain (pairs with history are kept: they back exact counts).
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
pub const SUM_FIELDS: usize = 2 * ENGAGEMENT_KINDS + 5;

/// What one event adds to its creator's aggregate and to the platform
/// aggregate. Backends that cannot hold an aggregate in memory while they
/// apply an event (a shared store updated with atomic increments) apply it
/// as increments; the embedded store adds it directly.
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

impl CreatorAggregate {
    /// The sums in a fixed order: fan[0..7], non_fan[0..7], exposure_fan,
    /// exposure_non_fan, unfollows, reports, views.
    pub fn sums(&self) -> [f64; SUM_FIELDS] {
        let mut out = [0.0; SUM_FIELDS];
        out[..ENGAGEMENT_KINDS].copy_from_slice(&self.fan);
        out[ENGAGEMENT_KINDS..2 * ENGAGEMENT_KINDS].copy_from_slice(&self.non_fan);
        out[2 * ENGAGEMENT_KINDS..].copy_from_slice(&[
            self.exposure_fan,
            self.exposure_non_fan,
            self.unfollows,
            self.reports,
            self.views,
        ]);
        out
    }

    /// The sum at `index` of [`CreatorAggregate::sums`], mutably.
    pub fn sum_mut(&mut self, index: usize) -> &mut f64 {
        match index {
            i if i < ENGAGEMENT_KINDS => &mut self.fan[i],
            i if i < 2 * ENGAGEMENT_KINDS => &mut self.non_fan[i - ENGAGEMENT_KINDS],
            EXPOSURE_FAN => &mut self.exposure_fan,
            EXPOSURE_NON_FAN => &mut self.exposure_non_fan,
            UNFOLLOWS => &mut self.unfollows,
            REPORTS => &mut self.reports,
            _ => &mut self.views,
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
const EXPOSURE_FAN: usize = 2 * ENGAGEMENT_KINDS;
const EXPOSURE_NON_FAN: usize = EXPOSURE_FAN + 1;
const UNFOLLOWS: usize = EXPOSURE_FAN + 2;
const REPORTS: usize = EXPOSURE_FAN + 3;
const VIEWS: usize = EXPOSURE_FAN + 4;

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
    creator.add(&delta);
    global.add(&delta);
}

/// Applies one validated event to the viewer's record (for a known viewer)
/// and returns what it adds to its creator's and the platform aggregate.
pub fn event_delta(
    event: &Event,
    params: &IngestParams,
    decay: &Decay,
    viewer: Option<&mut ViewerRecord>,
) -> AggregateDelta {
    debug_assert!(decay.accepts_timestamp(event.timestamp_ms));
    let t = event.timestamp_ms;
    let mut delta = AggregateDelta {
        timestamp_ms: t,
        ..AggregateDelta::default()
    };

    let mut viewer = viewer;
    let mut pair = viewer
        .as_deref_mut()
        .map(|record| record.relation_mut(event.creator_id));

    if let Some(kind_index) = event.kind.engagement_index() {
        let fan = pair.as_ref().is_some_and(|p| p.following_at(t));
        let forward = decay.engagement_weight(t);
        let value = event.value() * forward;
        delta.sums[if fan { FAN } else { NON_FAN } + kind_index] += value;
        if event.kind == EventKind::View {
            delta.sums[if fan { EXPOSURE_FAN } else { EXPOSURE_NON_FAN }] += forward;
            delta.sums[VIEWS] += decay.negative_weight(t);
        }
        if let Some(pair) = pair.as_mut() {
            pair.intimacy += params.intimacy_weights.as_array()[kind_index] * value;
        }
    }
    if event.kind == EventKind::Report {
        delta.sums[REPORTS] += decay.negative_weight(t);
    }
    if event.kind.is_relation()
        && let Some(pair) = pair.as_mut()
    {
        let before = (pair.following(), pair.fan_group_member(), pair.churn(decay));
        match event.kind {
            EventKind::Follow => pair.follow_ms = pair.follow_ms.max(t),
            EventKind::Unfollow => pair.unfollow_ms = pair.unfollow_ms.max(t),
            EventKind::JoinFanGroup => pair.join_ms = pair.join_ms.max(t),
            EventKind::LeaveFanGroup => pair.leave_ms = pair.leave_ms.max(t),
            _ => {}
        }
        let after = (pair.following(), pair.fan_group_member(), pair.churn(decay));
        delta.followers = i64::from(after.0) - i64::from(before.0);
        delta.fan_group_members = i64::from(after.1) - i64::from(before.1);
        if before.2 != after.2 {
            delta.sums[UNFOLLOWS] += after.2 - before.2;
        }
    }
    if let Some(record) = viewer {
        record.enforce_limit(params.max_relations_per_viewer, event.creator_id);
    }
    delta
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
