//! Lifts, values and boosts. All in log space so that 0 means "platform
//! average" and every term explains itself.

use super::aggregate::{CreatorAggregate, ENGAGEMENT_KINDS, PairRelation};
use super::decay::Decay;
use super::params::ModelParams;

/// Platform-wide ratios the lifts are measured against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Priors {
    /// `μ_e`: weighted engagement per account shown.
    pub engagement_rate: f64,
    /// `μ_a`: share of the accounts shown that engaged beyond viewing.
    pub engaged_share: f64,
    /// `μ_u`: share of fans who leave.
    pub churn_rate: f64,
    /// `μ_r`: reporters per account shown.
    pub report_rate: f64,
    /// `μ_b`: share of buyers who came back on another day.
    pub repeat_share: f64,
    /// `μ_rb`: repeat buyers per account shown.
    pub repeat_rate: f64,
    /// `μ_f`: share of the accounts that bought or refunded whose money went back.
    pub refund_share: f64,
}

/// One creator's scores and the terms behind them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CreatorScore {
    /// Whether anything is known about the creator.
    pub found: bool,
    /// `N`: accounts shown the creator (decayed, non-followers weighted by `non_fan_factor`).
    pub audience: f64,
    /// `A`: accounts shown the creator that engaged beyond viewing (decayed, each at most 1).
    pub engaged_accounts: f64,
    /// `A / (A + m_accounts)`: how much of a long-term gain counts.
    pub confidence: f64,
    /// `D`: accounts that unfollowed (after a real follow) or reported (decayed).
    pub negative_accounts: f64,
    /// `D / (D + m_negative_accounts)`: how much of a long-term loss counts.
    pub negative_confidence: f64,
    /// `B`: the share of the observed depth lift believed (empirical
    /// Bayes); low = the evidence rests on few accounts.
    pub fan_belief: f64,
    /// Layered fan engagement per account shown, relative to the
    /// platform, `fan_belief` of it believed.
    pub depth_lift: f64,
    /// Share of the accounts shown that engaged (`A / N`), relative to the
    /// platform, believed as far as the account count carries it.
    pub share_lift: f64,
    /// `depth_lift^β_d · share_lift^β_a`: the creator's fan engagement relative to the platform.
    pub fan_lift: f64,
    /// Share of fans who left, relative to the platform.
    pub churn_lift: f64,
    /// Reporters per account shown, relative to the platform.
    pub report_lift: f64,
    /// Buyers: accounts shown with a purchase that stands (decayed, each at most 1).
    pub buyers: f64,
    /// Repeat buyers: buyers whose standing purchases fall on two UTC days
    /// or more (decayed, each account at most 1).
    pub repeat_buyers: f64,
    /// The share of buyers who came back, shrunk to the platform's with
    /// the buyers as evidence (the platform's share when there are none).
    pub repeat_share: f64,
    /// How much of the observed repeat buyers per account shown is
    /// believed (empirical Bayes); low = few accounts carry it.
    pub trust_belief: f64,
    /// Repeat buyers per account shown relative to the platform, believed
    /// as far as the accounts carry it, never below 1 (buyers who buy once
    /// are not marked down, only not raised): the trust lift in fan value.
    pub trust_lift: f64,
    /// Accounts whose money went back (decayed, each at most 1).
    pub refunders: f64,
    /// Refunders per account that bought or refunded, relative to the
    /// platform, never below 1 (refunds only count against a creator).
    pub refund_lift: f64,
    /// `ln(fan_lift)`.
    pub fan_value: f64,
    /// `−(a_u·ln(churn_lift) + a_r·ln(report_lift) + a_f·ln(refund_lift))`, times `confidence` when
    /// positive and `negative_confidence` when negative.
    pub long_term_value: f64,
    /// `w_fv·fan_value + w_ltv·long_term_value`.
    pub creator_value: f64,
    /// `soft_clamp(exp(creator_value))` into `(boost_min, boost_max)`.
    pub public_boost: f64,
    /// Exact follower count.
    pub followers: u64,
    /// Events counted.
    pub evidence: u64,
    /// Latest event time, unix milliseconds (0 = none).
    pub updated_at_ms: i64,
}

impl CreatorScore {
    /// The score of a creator nothing is known about: every lift exactly 1.
    pub const NEUTRAL: CreatorScore = CreatorScore {
        found: false,
        audience: 0.0,
        engaged_accounts: 0.0,
        confidence: 0.0,
        negative_accounts: 0.0,
        negative_confidence: 0.0,
        fan_belief: 0.0,
        depth_lift: 1.0,
        share_lift: 1.0,
        fan_lift: 1.0,
        churn_lift: 1.0,
        report_lift: 1.0,
        buyers: 0.0,
        repeat_buyers: 0.0,
        repeat_share: 0.0,
        trust_belief: 0.0,
        trust_lift: 1.0,
        refunders: 0.0,
        refund_lift: 1.0,
        fan_value: 0.0,
        long_term_value: 0.0,
        creator_value: 0.0,
        public_boost: 1.0,
        followers: 0,
        evidence: 0,
        updated_at_ms: 0,
    };
}

/// The viewer's relation tier to a creator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// No relation.
    None,
    /// Follows the creator.
    Follower,
    /// Member of the creator's fan group.
    FanGroupMember,
}

/// One viewer–creator private boost and its terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrivateScore {
    /// Relation tier.
    pub relation: Relation,
    /// Multiplier of the tier.
    pub tier: f64,
    /// Decayed weighted engagement of the viewer with the creator, as of now.
    pub intimacy: f64,
    /// `1 + intimacy_gain·(1 − exp(−intimacy/intimacy_scale))`.
    pub intimacy_factor: f64,
    /// `clamp(tier · intimacy_factor, 1, private_max)`.
    pub private_boost: f64,
}

impl PrivateScore {
    /// No relation, no intimacy: exactly 1.
    pub const NEUTRAL: PrivateScore = PrivateScore {
        relation: Relation::None,
        tier: 1.0,
        intimacy: 0.0,
        intimacy_factor: 1.0,
        private_boost: 1.0,
    };
}

/// Scores as of one instant under one parameter set: the decay factors and
/// priors are computed once and reused for every creator of a batch.
#[derive(Clone, Debug)]
pub struct Scorer<'a> {
    params: &'a ModelParams,
    weights: [f64; ENGAGEMENT_KINDS],
    engagement_scale: f64,
    negative_scale: f64,
    priors: Priors,
    /// `(ln(1/boost_min), ln(boost_max))`, once per scorer rather than per creator.
    log_bounds: (f64, f64),
}

impl<'a> Scorer<'a> {
    /// Prepares scoring as of `as_of_ms`, with priors from the platform aggregate.
    pub fn new(params: &'a ModelParams, decay: &Decay, global: &CreatorAggregate, as_of_ms: i64) -> Self {
        let engagement_scale = decay.engagement_scale(as_of_ms);
        let negative_scale = decay.negative_scale(as_of_ms);
        let weights = params.weights.as_array();
        let strength = params.prior_strength;
        let (engagement, audience) = engagement_and_audience(params, &weights, global, engagement_scale);
        let engaged = global.engaged * engagement_scale;
        let shown_accounts = (global.audience_fan + global.audience_non_fan) * engagement_scale;
        let unfollows = global.unfollows * negative_scale;
        let reports = reports(params, global) * negative_scale;
        let shown = global.shown * negative_scale;
        let buyers = global.buyers * engagement_scale;
        let repeat_buyers = global.repeat_buyers * engagement_scale;
        let transacted = global.transacted * negative_scale;
        let refunders = global.refunders * negative_scale;
        // Shrink the observed platform ratios towards the configured defaults
        // while there is little data, so one early creator does not set the
        // norm. Every account's share of these sums is bounded (and trimmed
        // to `prior_depth_cap` for engagement), so a few accounts cannot
        // move the priors either.
        let priors = Priors {
            engagement_rate: (engagement + params.prior_engagement_rate * strength) / (audience + strength),
            engaged_share: (engaged + params.prior_engaged_share * strength) / (shown_accounts + strength),
            churn_rate: (unfollows + params.prior_churn_rate * strength)
                / (global.followers as f64 + unfollows + strength),
            report_rate: (reports + params.prior_report_rate * strength) / (shown + strength),
            repeat_share: (repeat_buyers + params.prior_repeat_share * strength) / (buyers + strength),
            repeat_rate: (repeat_buyers + params.prior_repeat_rate * strength) / (shown_accounts + strength),
            refund_share: (refunders + params.prior_refund_share * strength) / (transacted + strength),
        };
        Scorer {
            log_bounds: log_bounds(params.boost_min, params.boost_max),
            params,
            weights,
            engagement_scale,
            negative_scale,
            priors,
        }
    }

    /// Scores one creator; `None` (nothing known) gives [`CreatorScore::NEUTRAL`].
    pub fn creator(&self, aggregate: Option<&CreatorAggregate>) -> CreatorScore {
        let Some(aggregate) = aggregate else {
            return CreatorScore::NEUTRAL;
        };
        let params = self.params;
        let priors = &self.priors;
        let (engagement, audience) = engagement_and_audience(params, &self.weights, aggregate, self.engagement_scale);
        let engaged_accounts = aggregate.engaged * self.engagement_scale;
        let shown_accounts = (aggregate.audience_fan + aggregate.audience_non_fan) * self.engagement_scale;
        let unfollows = aggregate.unfollows * self.negative_scale;
        let reports = reports(params, aggregate) * self.negative_scale;
        let shown = aggregate.shown * self.negative_scale;
        let followers = aggregate.followers as f64;
        let buyers = aggregate.buyers * self.engagement_scale;
        let repeat_buyers = aggregate.repeat_buyers * self.engagement_scale;
        let transacted = aggregate.transacted * self.negative_scale;
        let refunders = aggregate.refunders * self.negative_scale;

        // Each lift is written so that with no evidence numerator and
        // denominator are the same product, making the lift exactly 1.
        // Two readings of the same fans, each shrunk by how many accounts
        // carry it: how deep the accounts shown went (layered, each account
        // capped), and how many of them engaged at all (each counts once).
        let (depth_lift, fan_belief) = believed_lift(
            params,
            params.account_cap,
            params.m_engagement,
            priors.engagement_rate,
            engagement,
            audience,
        );
        let (share_lift, _) = believed_lift(
            params,
            1.0,
            params.m_engagement,
            priors.engaged_share,
            engaged_accounts,
            shown_accounts,
        );
        // Trust: buyers who came back on another day, each account once. The
        // analyst's figure is their share of the buyers, shrunk to the
        // platform's with the buyers as evidence. The term in fan value is
        // the same count read per account shown (against the platform's
        // repeat buyers per account shown): at the same buyers it orders
        // creators exactly as the share does, and a new buyer who has not
        // come back yet leaves it unchanged instead of lowering it, so a
        // purchase never lowers fan value (property 1). It only raises:
        // one-time buyers are what many categories sell to, and the purchase
        // layer already pays for them; refunds are the signal against a
        // creator (long-term value below).
        let (share_of_buyers, _) =
            believed_lift(params, 1.0, params.m_buyers, priors.repeat_share, repeat_buyers, buyers);
        let repeat_share = priors.repeat_share * share_of_buyers;
        let (repeat_lift, trust_belief) = believed_lift(
            params,
            1.0,
            params.m_buyers,
            priors.repeat_rate,
            repeat_buyers,
            shown_accounts,
        );
        let trust_lift = repeat_lift.max(1.0);
        let fan_value = params.depth_lift_weight * depth_lift.ln()
            + params.share_lift_weight * share_lift.ln()
            + params.trust_lift_weight * trust_lift.ln();
        let fan_lift = fan_value.exp();
        let mu_u_m = priors.churn_rate * params.m_churn;
        let churn_lift = (unfollows + mu_u_m) / (priors.churn_rate * (followers + unfollows + params.m_churn));
        let mu_r_m = priors.report_rate * params.m_report;
        let report_lift = (reports + mu_r_m) / (priors.report_rate * (shown + params.m_report));
        let mu_f_m = priors.refund_share * params.m_refund;
        // Refunds only count against a creator: a refund share below the
        // platform's earns nothing (buyers who keep what they bought are
        // already paid for by the purchase layer and the trust lift), above
        // it lowers long-term value.
        let refund_lift = ((refunders + mu_f_m) / (priors.refund_share * (transacted + params.m_refund))).max(1.0);

        // Long-term value moves only as far as many accounts carry it. Fans
        // who stay and viewers who do not report count in proportion to
        // A / (A + m_a) (ten accounts that follow and never leave are not
        // loyal fans); leaving and reporting in proportion to D / (D + m_d),
        // D the accounts that left or reported (ten accounts that follow and
        // unfollow are not a wave). Both factors grow with the evidence they
        // weigh, so more unfollows or reports never raise the value. Fan
        // value needs no such factor: its shrinkage already depends on how
        // many accounts carry the evidence.
        let confidence = engaged_accounts / (engaged_accounts + params.m_accounts);
        let long_term_value = -(params.churn_weight * churn_lift.ln()
            + params.report_weight * report_lift.ln()
            + params.refund_weight * refund_lift.ln());
        let negative_accounts = unfollows + reports + refunders;
        let negative_confidence = negative_accounts / (negative_accounts + params.m_negative_accounts);
        let long_term_value = if long_term_value > 0.0 {
            confidence * long_term_value
        } else {
            negative_confidence * long_term_value
        };
        let creator_value = params.fan_value_weight * fan_value + params.long_term_value_weight * long_term_value;
        let public_boost = soft_clamp_logs(creator_value, self.log_bounds, params.boost_min, params.boost_max);
        let score = CreatorScore {
            found: true,
            audience,
            engaged_accounts,
            confidence,
            negative_accounts,
            negative_confidence,
            fan_belief,
            depth_lift,
            share_lift,
            fan_lift,
            churn_lift,
            report_lift,
            buyers,
            repeat_buyers,
            repeat_share,
            trust_belief,
            trust_lift,
            refunders,
            refund_lift,
            fan_value,
            long_term_value,
            creator_value,
            public_boost,
            followers: aggregate.followers,
            evidence: aggregate.evidence,
            updated_at_ms: aggregate.updated_at_ms,
        };
        if score.is_finite() {
            score
        } else {
            // Unreachable with validated parameters and timestamps; never let a
            // NaN reach a caller's ranking.
            debug_assert!(false, "non-finite creator score {score:?}");
            CreatorScore {
                found: true,
                followers: aggregate.followers,
                evidence: aggregate.evidence,
                ..CreatorScore::NEUTRAL
            }
        }
    }

    /// The private boost of a viewer's relation to one creator.
    pub fn private(&self, pair: Option<&PairRelation>) -> PrivateScore {
        let Some(pair) = pair else {
            return PrivateScore::NEUTRAL;
        };
        let params = self.params;
        let (relation, tier) = if pair.fan_group_member() {
            (Relation::FanGroupMember, params.tier_fan_group)
        } else if pair.following() {
            (Relation::Follower, params.tier_follower)
        } else {
            (Relation::None, 1.0)
        };
        let intimacy = pair.intimacy * self.engagement_scale;
        let intimacy_factor = 1.0 + params.intimacy_gain * -(-intimacy / params.intimacy_scale).exp_m1();
        let private_boost = (tier * intimacy_factor).clamp(1.0, params.private_max);
        if !private_boost.is_finite() || !intimacy_factor.is_finite() {
            debug_assert!(false, "non-finite private score");
            return PrivateScore {
                relation,
                ..PrivateScore::NEUTRAL
            };
        }
        PrivateScore {
            relation,
            tier,
            intimacy,
            intimacy_factor,
            private_boost,
        }
    }
}

impl CreatorScore {
    fn is_finite(&self) -> bool {
        [
            self.audience,
            self.engaged_accounts,
            self.confidence,
            self.negative_accounts,
            self.negative_confidence,
            self.fan_belief,
            self.depth_lift,
            self.share_lift,
            self.fan_lift,
            self.churn_lift,
            self.report_lift,
            self.buyers,
            self.repeat_buyers,
            self.repeat_share,
            self.trust_belief,
            self.trust_lift,
            self.refunders,
            self.refund_lift,
            self.fan_value,
            self.long_term_value,
            self.creator_value,
            self.public_boost,
        ]
        .iter()
        .all(|v| v.is_finite())
    }
}

/// `(E, N)` as of the scorer's instant: weighted saturated engagement and
/// the audience, non-followers weighted by `non_fan_factor`.
fn engagement_and_audience(
    params: &ModelParams,
    weights: &[f64; ENGAGEMENT_KINDS],
    aggregate: &CreatorAggregate,
    scale: f64,
) -> (f64, f64) {
    let non_fan = params.non_fan_factor;
    let mut engagement = 0.0;
    for ((weight, fan), other) in weights.iter().zip(&aggregate.fan).zip(&aggregate.non_fan) {
        engagement += weight * (fan + non_fan * other);
    }
    let audience = aggregate.audience_fan + non_fan * aggregate.audience_non_fan;
    (engagement * scale, audience * scale)
}

/// A lift: the creator's evidence per account shown, relative to the
/// platform's `μ`, shrunk by empirical Bayes. The observed rate
/// `r = (E + μ·m_e)/(N + m_e)` has a sampling variance of about
/// `s² = cap·(E + μ·m_e)/(N + 1)²` (each account adds at most `cap`), so
/// ten accounts at the cap are far less certain than a thousand accounts
/// adding the same total; `B = τ²μ²/(τ²μ² + s²)` of the difference is
/// believed. `B·(r − μ)` rises with `E` whatever its sign (more engagement
/// never lowers the lift), and is exactly 0 without evidence. Used for the
/// depth lift (`E` layered, `cap = account_cap`), the share lift (`E` the
/// accounts that engaged, `cap = 1`) and the trust lift (`E` the repeat
/// buyers, `cap = 1`, `m = m_buyers`; over the accounts shown for the term,
/// over the buyers for the repeat share shown to analysts).
fn believed_lift(params: &ModelParams, cap: f64, m: f64, mu: f64, engagement: f64, audience: f64) -> (f64, f64) {
    if engagement == 0.0 && audience == 0.0 {
        return (1.0, 0.0);
    }
    let evidence = engagement + mu * m;
    let accounts = audience + m;
    let observed = evidence / accounts;
    // The variance of a mean over the accounts actually seen (the pseudo-
    // accounts are not evidence): one account's mean is barely known.
    let seen = audience + 1.0;
    let sampling = cap * evidence / (seen * seen);
    let spread = params.fan_spread * mu;
    let believed = spread * spread / (spread * spread + sampling);
    (1.0 + believed * (observed - mu) / mu, believed)
}

/// Reporters, those never shown the creator weighted by `unshown_report_weight` (stored units).
fn reports(params: &ModelParams, aggregate: &CreatorAggregate) -> f64 {
    aggregate.reports + params.unshown_report_weight * aggregate.reports_unshown
}

/// Maps `creator_value` (log space) to a boost inside `(boost_min,
/// boost_max)`: `exp(creator_value)` near 0, approaching the bounds smoothly
/// instead of clamping, so strong creators stay ordered instead of piling up
/// on the cap. In log space, `b·v/√(b² + v²)` with `b` the log of the bound on
/// that side (an algebraic sigmoid, close to `b·tanh(v/b)`): slope 1 at 0,
/// monotone, never reaching `b`; a square root and a division per creator on
/// the Rank path.
pub fn soft_clamp(creator_value: f64, boost_min: f64, boost_max: f64) -> f64 {
    soft_clamp_logs(creator_value, log_bounds(boost_min, boost_max), boost_min, boost_max)
}

fn log_bounds(boost_min: f64, boost_max: f64) -> (f64, f64) {
    (-boost_min.ln(), boost_max.ln())
}

fn soft_clamp_logs(creator_value: f64, (below, above): (f64, f64), boost_min: f64, boost_max: f64) -> f64 {
    let bound = if creator_value >= 0.0 { above } else { below };
    if bound <= 0.0 {
        return 1.0;
    }
    let log_boost = bound * creator_value / (bound * bound + creator_value * creator_value).sqrt();
    log_boost.exp().clamp(boost_min, boost_max)
}
