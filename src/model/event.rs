//! The events the model learns from: their kinds, which of them are
//! engagement (one layer each in the sums), which are relations, and the
//! refund that takes a purchase back.

/// Number of engagement kinds (VIEW … TIP, then PROFILE_VISIT).
pub const ENGAGEMENT_KINDS: usize = 8;

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
    /// Visited the creator's profile page: interest in the person, not one item.
    ProfileVisit,
    /// Money returned on a purchase; carries the amount returned. Takes back
    /// purchase value of the account with the creator, and counts against
    /// the creator's trust.
    Refund,
}

impl EventKind {
    /// Every kind, in protocol order.
    pub const ALL: [EventKind; 13] = [
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
        EventKind::ProfileVisit,
        EventKind::Refund,
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
            EventKind::ProfileVisit => Some(7),
            EventKind::Follow
            | EventKind::Unfollow
            | EventKind::LeaveFanGroup
            | EventKind::Report
            | EventKind::Refund => None,
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
            EventKind::ProfileVisit => "profile_visit",
            EventKind::Refund => "refund",
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
    /// Money for PURCHASE/TIP, money returned for REFUND, fraction watched for VIEW.
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
