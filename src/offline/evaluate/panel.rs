//! The evaluation panel: four fixed targets measured on the later window, per
//! creator, and the one-line baselines each is compared with. Everything
//! here is computed from the raw events of a window, never from the model,
//! so tuning cannot move a target or a baseline.

use std::collections::{HashMap, HashSet};

use crate::model::{Event, EventKind};

/// The panel's targets, in the order of every table and chart.
pub(super) const TARGETS: [Target; 4] = [
    Target::Layered,
    Target::Conversion,
    Target::EngagedShare,
    Target::Return,
];

/// One target, measured on a window per creator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// (2·likes + 3·comments + 4·shares) / impressions.
    Layered,
    /// (accounts that followed + accounts that visited the profile) / accounts shown.
    Conversion,
    /// Share of the accounts shown that engaged at all: liked, commented,
    /// shared, bought, joined the fan group, tipped or followed.
    EngagedShare,
    /// Share of the earlier window's engaged accounts (as in `EngagedShare`)
    /// that come back in the later one (any view or engagement).
    Return,
}

impl Target {
    /// A short name for tables and charts.
    pub(super) fn name(self) -> &'static str {
        match self {
            Target::Layered => "1. layered engagement per impression",
            Target::Conversion => "2. follows + profile visits per shown account",
            Target::EngagedShare => "3. share of shown accounts engaged",
            Target::Return => "4. share of engaged accounts who return",
        }
    }

    /// A shorter name for the chart's axis.
    pub(super) fn short_name(self) -> &'static str {
        match self {
            Target::Layered => "1 layered/impr.",
            Target::Conversion => "2 conversion",
            Target::EngagedShare => "3 engaged share",
            Target::Return => "4 fans return",
        }
    }
}

/// The baselines, in table order.
pub(super) const BASELINES: [Baseline; 8] = [
    Baseline::Popularity,
    Baseline::Persistence,
    Baseline::Share(Share::Engaged, false),
    Baseline::Share(Share::EngagedOrVisited, false),
    Baseline::Share(Share::Followed, false),
    Baseline::Share(Share::Engaged, true),
    Baseline::Share(Share::EngagedOrVisited, true),
    Baseline::Share(Share::Followed, true),
];

/// A one-line forecast from the earlier window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Baseline {
    /// Impressions.
    Popularity,
    /// The target's own formula on the earlier window.
    Persistence,
    /// A per-account share of the accounts shown; `true` = shrunk to the platform.
    Share(Share, bool),
}

/// Which accounts a per-account share counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Share {
    /// Liked, commented, shared, bought, joined or tipped.
    Engaged,
    /// Engaged, or visited the profile.
    EngagedOrVisited,
    /// Followed.
    Followed,
}

impl Baseline {
    /// Its name in tables.
    pub(super) fn name(self) -> &'static str {
        match self {
            Baseline::Popularity => "popularity (impressions)",
            Baseline::Persistence => "persistence (target on earlier window)",
            Baseline::Share(Share::Engaged, false) => "share engaged",
            Baseline::Share(Share::EngagedOrVisited, false) => "share engaged or visited",
            Baseline::Share(Share::Followed, false) => "share followed",
            Baseline::Share(Share::Engaged, true) => "share engaged, shrunk",
            Baseline::Share(Share::EngagedOrVisited, true) => "share engaged or visited, shrunk",
            Baseline::Share(Share::Followed, true) => "share followed, shrunk",
        }
    }
}

/// Whether a kind is fan engagement beyond viewing (the `Engaged` share).
fn is_fan_layer(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Like
            | EventKind::Comment
            | EventKind::Share
            | EventKind::Purchase
            | EventKind::JoinFanGroup
            | EventKind::Tip
    )
}

/// Whether an event shows the account is (still) there for the creator.
fn is_presence(kind: EventKind) -> bool {
    kind.engagement_index().is_some() || kind == EventKind::Follow
}

/// The target's weight of one event: the layers of fan love present in the
/// logs, with the product's reference weights (LIKE 2, COMMENT 3, SHARE 4).
/// Fixed, whatever parameters are evaluated, so tuning cannot move the target.
pub fn target_weight(kind: EventKind) -> f64 {
    match kind {
        EventKind::Like => 2.0,
        EventKind::Comment => 3.0,
        EventKind::Share => 4.0,
        _ => 0.0,
    }
}

/// What one creator's accounts did in one window.
#[derive(Clone, Debug, Default)]
pub(super) struct CreatorWindow {
    /// VIEW events.
    pub(super) impressions: u64,
    /// Σ `target_weight`.
    pub(super) layered: f64,
    /// Accounts shown the creator (a VIEW).
    shown: HashSet<u64>,
    /// Accounts with a fan layer beyond VIEW.
    engaged: HashSet<u64>,
    /// Accounts that visited the profile.
    visited: HashSet<u64>,
    /// Accounts that followed.
    followed: HashSet<u64>,
    /// Accounts with any view, engagement or follow.
    present: HashSet<u64>,
}

impl CreatorWindow {
    fn shown_count(&self, set: &HashSet<u64>) -> usize {
        set.iter().filter(|v| self.shown.contains(v)).count()
    }

    /// Accounts shown.
    pub(super) fn audience(&self) -> usize {
        self.shown.len()
    }

    /// The accounts shown that engaged at all (fan layers or a follow).
    pub(super) fn fans(&self) -> HashSet<u64> {
        self.engaged
            .iter()
            .chain(&self.followed)
            .filter(|v| self.shown.contains(v))
            .copied()
            .collect()
    }

    /// Accounts shown that count in `share`.
    fn share_count(&self, share: Share) -> usize {
        match share {
            Share::Engaged => self.shown_count(&self.engaged),
            Share::EngagedOrVisited => self.shown_count(&self.engaged.union(&self.visited).copied().collect()),
            Share::Followed => self.shown_count(&self.followed),
        }
    }

    fn per_audience(&self, count: usize) -> f64 {
        count as f64 / self.audience().max(1) as f64
    }
}

/// Per-creator windows of a span of events.
pub(super) fn windows(events: &[Event]) -> HashMap<u64, CreatorWindow> {
    let mut out: HashMap<u64, CreatorWindow> = HashMap::new();
    for e in events {
        let w = out.entry(e.creator_id).or_default();
        w.layered += target_weight(e.kind);
        if e.viewer_id == 0 {
            // Anonymous: an impression, but no account to count.
            w.impressions += u64::from(e.kind == EventKind::View);
            continue;
        }
        match e.kind {
            EventKind::View => {
                w.impressions += 1;
                w.shown.insert(e.viewer_id);
            }
            EventKind::ProfileVisit => {
                w.visited.insert(e.viewer_id);
            }
            EventKind::Follow => {
                w.followed.insert(e.viewer_id);
            }
            kind if is_fan_layer(kind) => {
                w.engaged.insert(e.viewer_id);
            }
            _ => {}
        }
        if is_presence(e.kind) {
            w.present.insert(e.viewer_id);
        }
    }
    out
}

/// The windows a panel is measured on: the earlier window (history), its
/// two halves (for persistence of the return target) and the later window.
pub(super) struct PanelWindows {
    /// The earlier window.
    pub(super) past: HashMap<u64, CreatorWindow>,
    /// Its first half.
    past_first: HashMap<u64, CreatorWindow>,
    /// Its second half.
    past_second: HashMap<u64, CreatorWindow>,
    /// The later (judged) window.
    pub(super) future: HashMap<u64, CreatorWindow>,
    /// Per share: the platform's share and the pseudo-accounts of its Beta prior.
    priors: [(f64, f64); 3],
    /// The platform's return share inside the earlier window (first half to
    /// second), for creators with no engaged account in the first half.
    past_return: f64,
}

/// Fewest engaged accounts in the earlier window for the return target to
/// be judged (a share of fewer is mostly noise).
pub(super) const MIN_FANS_FOR_RETURN: usize = 5;

impl PanelWindows {
    /// The windows of `past` (split at `mid_ms`) and `future` events.
    pub(super) fn new(past: &[Event], mid_ms: i64, future: &[Event]) -> PanelWindows {
        let cut = past.partition_point(|e| e.timestamp_ms < mid_ms);
        let past_windows = windows(past);
        let past_first = windows(&past[..cut]);
        let past_second = windows(&past[cut..]);
        let priors = [Share::Engaged, Share::EngagedOrVisited, Share::Followed].map(|s| beta_prior(&past_windows, s));
        let (mut returned, mut fans) = (0usize, 0usize);
        for (id, first) in &past_first {
            let first_fans = first.fans();
            fans += first_fans.len();
            if let Some(second) = past_second.get(id) {
                returned += first_fans.iter().filter(|v| second.present.contains(v)).count();
            }
        }
        PanelWindows {
            past: past_windows,
            past_first,
            past_second,
            future: windows(future),
            priors,
            past_return: returned as f64 / fans.max(1) as f64,
        }
    }

    /// The target's value for creator `id`: on the later window (with the
    /// earlier one for `Return`). `None` when undefined.
    pub(super) fn target(&self, target: Target, id: u64) -> Option<f64> {
        let future = self.future.get(&id)?;
        match target {
            Target::Return => {
                let fans = self.past.get(&id)?.fans();
                if fans.len() < MIN_FANS_FOR_RETURN {
                    return None;
                }
                Some(returning(&fans, future))
            }
            _ => Some(formula(target, future)),
        }
    }

    /// The baseline's forecast for creator `id` and `target`, from the earlier window.
    pub(super) fn baseline(&self, baseline: Baseline, target: Target, id: u64) -> f64 {
        let Some(past) = self.past.get(&id) else {
            return 0.0;
        };
        match baseline {
            Baseline::Popularity => past.impressions as f64,
            Baseline::Persistence => match target {
                Target::Return => {
                    let first = self.past_first.get(&id).map(CreatorWindow::fans).unwrap_or_default();
                    if first.is_empty() {
                        return self.past_return;
                    }
                    match self.past_second.get(&id) {
                        Some(second) => returning(&first, second),
                        None => 0.0,
                    }
                }
                _ => formula(target, past),
            },
            Baseline::Share(share, shrunk) => {
                let count = past.share_count(share) as f64;
                let audience = past.audience() as f64;
                if shrunk {
                    let (mean, pseudo) = self.priors[share as usize];
                    (count + mean * pseudo) / (audience + pseudo)
                } else {
                    count / audience.max(1.0)
                }
            }
        }
    }
}

/// A target's formula on one window (not `Return`, which needs two).
fn formula(target: Target, w: &CreatorWindow) -> f64 {
    match target {
        Target::Layered => w.layered / w.impressions.max(1) as f64,
        Target::Conversion => w.per_audience(w.share_count(Share::Followed) + w.shown_count(&w.visited)),
        Target::EngagedShare | Target::Return => w.per_audience(w.fans().len()),
    }
}

/// The share of `fans` present in `later`.
fn returning(fans: &HashSet<u64>, later: &CreatorWindow) -> f64 {
    let back = fans.iter().filter(|v| later.present.contains(v)).count();
    back as f64 / fans.len().max(1) as f64
}

/// The platform's Beta prior for a share, by the method of moments: its mean
/// is the pooled share; its pseudo-accounts `m` make the Beta's variance the
/// spread of creators' shares beyond what their audience sizes explain.
/// Creators with fewer than 20 accounts shown are too noisy to measure it.
fn beta_prior(windows: &HashMap<u64, CreatorWindow>, share: Share) -> (f64, f64) {
    let (mut count, mut audience) = (0.0, 0.0);
    for w in windows.values() {
        count += w.share_count(share) as f64;
        audience += w.audience() as f64;
    }
    let mean = count / audience.max(1.0);
    let shares: Vec<(f64, f64)> = windows
        .values()
        .filter(|w| w.audience() >= 20)
        .map(|w| (w.share_count(share) as f64 / w.audience() as f64, w.audience() as f64))
        .collect();
    const MOST: f64 = 1e6;
    if shares.len() < 2 || mean <= 0.0 || mean >= 1.0 {
        return (mean, MOST);
    }
    let n = shares.len() as f64;
    let observed = shares.iter().map(|(s, _)| (s - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sampling = shares.iter().map(|(_, a)| mean * (1.0 - mean) / a).sum::<f64>() / n;
    let between = observed - sampling;
    if between <= 0.0 {
        return (mean, MOST);
    }
    (mean, (mean * (1.0 - mean) / between - 1.0).clamp(1.0, MOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, viewer_id: u64, creator_id: u64, timestamp_ms: i64) -> Event {
        Event {
            event_id: format!("{kind:?}-{viewer_id}-{creator_id}-{timestamp_ms}"),
            kind,
            viewer_id,
            creator_id,
            timestamp_ms,
            amount: 0.0,
        }
    }

    #[test]
    fn targets_count_accounts_once() {
        use EventKind::*;
        let past = vec![
            event(View, 1, 9, 1),
            event(Like, 1, 9, 2),
            event(View, 2, 9, 3),
            event(Follow, 2, 9, 4),
            event(View, 3, 9, 5),
            event(View, 4, 9, 6),
            event(Comment, 4, 9, 7),
            event(View, 5, 9, 8),
            event(Share, 5, 9, 9),
            event(View, 6, 9, 10),
            event(Like, 6, 9, 11),
            // Never shown: does not count.
            event(Like, 7, 9, 12),
        ];
        let future = vec![
            event(View, 1, 9, 20),
            event(Like, 1, 9, 21),
            event(Like, 1, 9, 22),
            event(View, 2, 9, 23),
            event(ProfileVisit, 2, 9, 24),
            event(View, 8, 9, 25),
            event(Follow, 8, 9, 26),
            event(Share, 4, 9, 27),
        ];
        let panel = PanelWindows::new(&past, 7, &future);
        // (2 likes ·2 + 1 share ·4) / 3 impressions: layered counts every event.
        assert_eq!(panel.target(Target::Layered, 9), Some(8.0 / 3.0));
        // Visited (2) and followed (8) of 3 accounts shown.
        assert_eq!(panel.target(Target::Conversion, 9), Some(2.0 / 3.0));
        // Accounts 1 and 8 of 3 shown (4 shared but was not shown in this window).
        assert_eq!(panel.target(Target::EngagedShare, 9), Some(2.0 / 3.0));
        // Fans before: 1, 2, 4, 5, 6; back: 1, 2, 4.
        assert_eq!(panel.target(Target::Return, 9), Some(3.0 / 5.0));
        assert_eq!(panel.baseline(Baseline::Popularity, Target::Layered, 9), 6.0);
        assert_eq!(
            panel.baseline(Baseline::Share(super::Share::Engaged, false), Target::Layered, 9),
            4.0 / 6.0
        );
        assert_eq!(
            panel.baseline(Baseline::Share(super::Share::Followed, false), Target::Layered, 9),
            1.0 / 6.0
        );
        assert_eq!(
            panel.baseline(Baseline::Persistence, Target::EngagedShare, 9),
            5.0 / 6.0
        );
        assert_eq!(panel.target(Target::Layered, 10), None);
    }
}
