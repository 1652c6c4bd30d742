//! Tunable parameters. [`ModelParams`] may differ per variant; [`IngestParams`]
//! shape what is stored and so are the same for every variant.

use serde::{Deserialize, Serialize};

use super::decay::Decay;
use super::event::ENGAGEMENT_KINDS;

/// One weight per engagement kind, shallow to deep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindWeights {
    /// VIEW.
    pub view: f64,
    /// LIKE.
    pub like: f64,
    /// COMMENT.
    pub comment: f64,
    /// SHARE.
    pub share: f64,
    /// PURCHASE.
    pub purchase: f64,
    /// JOIN_FAN_GROUP.
    pub join_fan_group: f64,
    /// TIP.
    pub tip: f64,
    /// PROFILE_VISIT.
    pub profile_visit: f64,
}

impl Default for KindWeights {
    /// The layers of fan love, deeper worth more. VIEW, LIKE, COMMENT and
    /// SHARE are tuned on KuaiRand (docs/evaluation.md); the logs have no
    /// purchases, fan groups or tips, so those keep the reference weights.
    fn default() -> Self {
        KindWeights {
            view: 0.05,
            like: 1.0,
            comment: 1.25,
            share: 1.5,
            purchase: 6.0,
            join_fan_group: 8.0,
            tip: 10.0,
            profile_visit: 0.25,
        }
    }
}

impl KindWeights {
    /// The weights indexed like [`super::EventKind::engagement_index`].
    pub fn as_array(&self) -> [f64; ENGAGEMENT_KINDS] {
        [
            self.view,
            self.like,
            self.comment,
            self.share,
            self.purchase,
            self.join_fan_group,
            self.tip,
            self.profile_visit,
        ]
    }
}

/// Scoring parameters; every one may be overridden by a named variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// Weight `w_k` of each engagement kind in `E`.
    pub weights: KindWeights,
    /// Weight of accounts not following the creator, in engagement and audience.
    pub non_fan_factor: f64,
    /// Default `μ_e` (weighted engagement per account shown) while data is thin.
    pub prior_engagement_rate: f64,
    /// Default `μ_a` (share of the accounts shown that engage beyond
    /// viewing) while data is thin.
    pub prior_engaged_share: f64,
    /// `β_d`: weight of the depth lift (layered engagement per account
    /// shown) in fan value.
    pub depth_lift_weight: f64,
    /// `β_a`: weight of the share lift (share of the accounts shown that
    /// engaged at all, each counted once) in fan value.
    pub share_lift_weight: f64,
    /// `β_t`: weight of the trust lift (buyers who came back on another
    /// day, per account shown, relative to the platform) in fan value. The
    /// lift only raises fan value: a creator whose buyers buy once is not
    /// marked down for it (durable goods are bought once), only not raised.
    pub trust_lift_weight: f64,
    /// Default `μ_b` (share of buyers who buy again on another day) while
    /// data is thin; the repeat share analysts see is shrunk towards it.
    pub prior_repeat_share: f64,
    /// Default `μ_rb` (repeat buyers per account shown) while data is thin:
    /// what the trust lift is measured against.
    pub prior_repeat_rate: f64,
    /// `m_b`: pseudo-accounts shrinking the repeat share and the trust lift
    /// towards the platform's.
    pub m_buyers: f64,
    /// Default `μ_f` (share of the accounts that bought or refunded whose
    /// money went back) while data is thin.
    pub prior_refund_share: f64,
    /// `m_f`: pseudo-accounts shrinking `refund_lift` towards 1.
    pub m_refund: f64,
    /// `a_f`: weight of refunds in long-term value.
    pub refund_weight: f64,
    /// Default `μ_u` (share of fans who leave).
    pub prior_churn_rate: f64,
    /// Default `μ_r` (reporters per account shown).
    pub prior_report_rate: f64,
    /// Pseudo-count of platform accounts behind the default priors.
    pub prior_strength: f64,
    /// `m_e`: pseudo-accounts (shown the creator) shrinking `fan_lift` towards 1.
    pub m_engagement: f64,
    /// `m_u`: pseudo-fans shrinking `churn_lift` towards 1.
    pub m_churn: f64,
    /// `m_r`: pseudo-accounts (shown) shrinking `report_lift` towards 1.
    pub m_report: f64,
    /// `m_a`: engaged accounts at which a creator's positive evidence counts
    /// half: `confidence = A / (A + m_a)` scales every gain above the
    /// platform average, so gains must be earned by many accounts.
    pub m_accounts: f64,
    /// `m_d`: accounts that left or reported at which a creator's long-term
    /// loss counts half: `D / (D + m_d)` scales a negative long-term value,
    /// so a handful of accounts cannot bomb it.
    pub m_negative_accounts: f64,
    /// Weight of a report from an account never shown the creator (0 = ignored).
    pub unshown_report_weight: f64,
    /// `τ`: how far creators' true engagement rates typically lie from the
    /// platform's, relative to it. With the spread of a creator's own
    /// estimate (from how its evidence is split over accounts, see
    /// `account_cap`) it sets how much of the observed lift is believed:
    /// `B = τ²μ² / (τ²μ² + s²)` (empirical Bayes).
    pub fan_spread: f64,
    /// The most one account adds to `E` (as `[ingest] account_depth_cap`):
    /// scales the sampling variance `s² = account_cap·(E + μ·m_e)/(N + 1)²`,
    /// so evidence from few accounts is believed less than the same evidence
    /// from many.
    pub account_cap: f64,
    /// `a_u`: weight of churn in long-term value.
    pub churn_weight: f64,
    /// `a_r`: weight of reports in long-term value.
    pub report_weight: f64,
    /// `w_fv`: weight of fan value in creator value.
    pub fan_value_weight: f64,
    /// `w_ltv`: weight of long-term value in creator value.
    pub long_term_value_weight: f64,
    /// Lower bound of the public boost (approached smoothly, see `score::soft_clamp`).
    pub boost_min: f64,
    /// Upper bound of the public boost (approached smoothly).
    pub boost_max: f64,
    /// Relation tier of a follower.
    pub tier_follower: f64,
    /// Relation tier of a fan-group member.
    pub tier_fan_group: f64,
    /// Largest extra factor from intimacy: `1 + intimacy_gain`.
    pub intimacy_gain: f64,
    /// Intimacy at which `1 − 1/e` of the gain is reached.
    pub intimacy_scale: f64,
    /// Upper clamp of the private boost.
    pub private_max: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            weights: KindWeights::default(),
            non_fan_factor: 1.0,
            prior_engagement_rate: 0.045,
            prior_engaged_share: 0.04,
            depth_lift_weight: 1.0,
            share_lift_weight: 0.5,
            // Reasoning and sources in docs/model.md ("Trust"): KuaiRand has
            // no purchases, so these are not tuned on logs.
            trust_lift_weight: 0.5,
            prior_repeat_share: 0.25,
            prior_repeat_rate: 0.001,
            m_buyers: 10.0,
            prior_refund_share: 0.15,
            m_refund: 30.0,
            refund_weight: 1.0,
            prior_churn_rate: 0.1,
            prior_report_rate: 0.001,
            prior_strength: 10_000.0,
            m_engagement: 5.0,
            m_churn: 100.0,
            m_report: 10_000.0,
            m_accounts: 100.0,
            m_negative_accounts: 30.0,
            unshown_report_weight: 0.0,
            fan_spread: 0.8,
            account_cap: 1.5,
            churn_weight: 1.0,
            report_weight: 1.0,
            // Both scale creator_value alike, which leaves its rank correlation
            // unchanged; 0.5 spreads KuaiRand creators over about [0.6, 1.7]
            // instead of piling them on the clamps (docs/evaluation.md).
            fan_value_weight: 0.5,
            long_term_value_weight: 0.5,
            boost_min: 0.5,
            boost_max: 2.0,
            tier_follower: 1.25,
            tier_fan_group: 1.5,
            intimacy_gain: 0.3,
            intimacy_scale: 20.0,
            private_max: 2.0,
        }
    }
}

impl ModelParams {
    /// Checks every parameter; the message names the first bad one.
    ///
    /// # Errors
    /// A human-readable description of the offending parameter.
    pub fn validate(&self) -> Result<(), String> {
        for (name, weight) in [
            ("view", self.weights.view),
            ("like", self.weights.like),
            ("comment", self.weights.comment),
            ("share", self.weights.share),
            ("purchase", self.weights.purchase),
            ("join_fan_group", self.weights.join_fan_group),
            ("tip", self.weights.tip),
            ("profile_visit", self.weights.profile_visit),
        ] {
            non_negative(&format!("weights.{name}"), weight)?;
        }
        if self.weights.as_array().iter().all(|w| *w == 0.0) {
            return Err("weights: at least one engagement weight must be positive".into());
        }
        in_unit_interval("non_fan_factor", self.non_fan_factor)?;
        positive("prior_engagement_rate", self.prior_engagement_rate)?;
        positive("prior_engaged_share", self.prior_engaged_share)?;
        if self.prior_engaged_share >= 1.0 {
            return Err("prior_engaged_share must be below 1".into());
        }
        non_negative("depth_lift_weight", self.depth_lift_weight)?;
        non_negative("share_lift_weight", self.share_lift_weight)?;
        non_negative("trust_lift_weight", self.trust_lift_weight)?;
        non_negative("refund_weight", self.refund_weight)?;
        for (name, share) in [
            ("prior_repeat_share", self.prior_repeat_share),
            ("prior_refund_share", self.prior_refund_share),
            ("prior_repeat_rate", self.prior_repeat_rate),
        ] {
            positive(name, share)?;
            if share >= 1.0 {
                return Err(format!("{name} must be below 1"));
            }
        }
        positive("m_buyers", self.m_buyers)?;
        positive("m_refund", self.m_refund)?;
        positive("prior_churn_rate", self.prior_churn_rate)?;
        if self.prior_churn_rate >= 1.0 {
            return Err("prior_churn_rate must be below 1".into());
        }
        positive("prior_report_rate", self.prior_report_rate)?;
        positive("prior_strength", self.prior_strength)?;
        positive("m_engagement", self.m_engagement)?;
        positive("m_churn", self.m_churn)?;
        positive("m_report", self.m_report)?;
        positive("m_accounts", self.m_accounts)?;
        positive("m_negative_accounts", self.m_negative_accounts)?;
        positive("fan_spread", self.fan_spread)?;
        positive("account_cap", self.account_cap)?;
        in_unit_interval("unshown_report_weight", self.unshown_report_weight)?;
        non_negative("churn_weight", self.churn_weight)?;
        non_negative("report_weight", self.report_weight)?;
        non_negative("fan_value_weight", self.fan_value_weight)?;
        non_negative("long_term_value_weight", self.long_term_value_weight)?;
        positive("boost_min", self.boost_min)?;
        if !(self.boost_min <= 1.0 && 1.0 <= self.boost_max && self.boost_max.is_finite()) {
            return Err("need boost_min <= 1 <= boost_max (finite)".into());
        }
        if !(1.0..=1e6).contains(&self.tier_follower) {
            return Err("tier_follower must be in [1, 1e6]".into());
        }
        if !(1.0..=1e6).contains(&self.tier_fan_group) {
            return Err("tier_fan_group must be in [1, 1e6]".into());
        }
        non_negative("intimacy_gain", self.intimacy_gain)?;
        positive("intimacy_scale", self.intimacy_scale)?;
        if !(1.0..=1e6).contains(&self.private_max) {
            return Err("private_max must be in [1, 1e6]".into());
        }
        Ok(())
    }
}

/// Parameters applied when an event is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestParams {
    /// Half-life of engagement, exposure and intimacy, in days.
    pub engagement_half_life_days: f64,
    /// Half-life of unfollows and reports, in days.
    pub negative_half_life_days: f64,
    /// Weight of each engagement kind in a viewer's intimacy with a creator.
    pub intimacy_weights: KindWeights,
    /// Most creators remembered per viewer; the least intimate pair without a
    /// follow, fan-group or report history is forgotten first.
    pub max_relations_per_viewer: usize,
    /// Most creators a viewer's record holds at all, relation history
    /// included; events about further creators count as evidence only.
    /// Bounds the cost of one account's record to every write and read.
    pub max_pairs_per_viewer: usize,
    /// Layer weights measuring one account's depth with a creator for the
    /// caps below; keep them equal to `[model.weights]`.
    pub depth_weights: KindWeights,
    /// One account's engagement with a creator counts as `c·(1 − e^(−d/c))`
    /// of its depth `d` (in `depth_weights` units): at most `c`, about two
    /// real likes, so depth pays through many fans going deep and never
    /// through one account going very deep; deeper still ranks above shallower.
    pub account_depth_cap: f64,
    /// The same cap, lower, for the platform aggregate (the priors): they
    /// describe the typical account, and a few deep accounts cannot move them.
    pub prior_depth_cap: f64,
    /// In the platform aggregate, a viewer's pairs count fully up to this
    /// many creators, then as this many creators' worth in all: an account
    /// spraying thousands of creators cannot move the priors.
    pub prior_pairs_per_viewer: f64,
}

impl Default for IngestParams {
    fn default() -> Self {
        IngestParams {
            engagement_half_life_days: 365.0,
            negative_half_life_days: 30.0,
            intimacy_weights: KindWeights {
                view: 1.0,
                like: 2.0,
                comment: 3.0,
                share: 4.0,
                purchase: 6.0,
                join_fan_group: 8.0,
                tip: 10.0,
                profile_visit: 2.0,
            },
            max_relations_per_viewer: 1_000,
            max_pairs_per_viewer: 5_000,
            depth_weights: KindWeights::default(),
            account_depth_cap: 1.5,
            prior_depth_cap: 1.0,
            prior_pairs_per_viewer: 10.0,
        }
    }
}

/// Shortest half-life accepted: keeps 2^((t − L)/H) finite for decades.
pub const MIN_HALF_LIFE_DAYS: f64 = 7.0;

impl IngestParams {
    /// The half-lives as a [`Decay`].
    pub fn decay(&self) -> Decay {
        const DAY_MS: f64 = 86_400_000.0;
        Decay {
            engagement_half_life_ms: self.engagement_half_life_days * DAY_MS,
            negative_half_life_ms: self.negative_half_life_days * DAY_MS,
        }
    }

    /// Checks every parameter; the message names the first bad one.
    ///
    /// # Errors
    /// A human-readable description of the offending parameter.
    pub fn validate(&self) -> Result<(), String> {
        for (name, days) in [
            ("engagement_half_life_days", self.engagement_half_life_days),
            ("negative_half_life_days", self.negative_half_life_days),
        ] {
            if !(MIN_HALF_LIFE_DAYS..=36_500.0).contains(&days) {
                return Err(format!("{name} must be between {MIN_HALF_LIFE_DAYS} and 36500 days"));
            }
        }
        for weight in self.intimacy_weights.as_array() {
            non_negative("intimacy_weights", weight)?;
        }
        for weight in self.depth_weights.as_array() {
            non_negative("depth_weights", weight)?;
        }
        for (name, cap) in [
            ("prior_depth_cap", self.prior_depth_cap),
            ("account_depth_cap", self.account_depth_cap),
            ("prior_pairs_per_viewer", self.prior_pairs_per_viewer),
        ] {
            if !(cap.is_finite() && cap > 0.0) {
                return Err(format!("{name} must be finite and > 0, got {cap}"));
            }
        }
        if !(1..=1_000_000).contains(&self.max_relations_per_viewer) {
            return Err("max_relations_per_viewer must be in [1, 1000000]".into());
        }
        if !(self.max_relations_per_viewer..=1_000_000).contains(&self.max_pairs_per_viewer) {
            return Err("max_pairs_per_viewer must be in [max_relations_per_viewer, 1000000]".into());
        }
        Ok(())
    }
}

fn non_negative(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be finite and >= 0, got {value}"))
    }
}

fn positive(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be finite and > 0, got {value}"))
    }
}

fn in_unit_interval(name: &str, value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("{name} must be in [0, 1], got {value}"))
    }
}
