//! Lifts, values and boosts. All in log space so that 0 means "platform
//! average" and every term explains itself.

use super::aggregate::{CreatorAggregate, PairRelation};
use super::decay::Decay;
use super::params::ModelParams;

/// Platform-wide ratios the lifts are measured against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Priors {
    /// `μ_e`: weighted engagement per exposure.
    pub engagement_rate: f64,
    /// `μ_u`: share of fans who leave.
    pub churn_rate: f64,
    /// `μ_r`: reports per view.
    pub report_rate: f64,
}

/// One creator's scores and the terms behind them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CreatorScore {
    /// Whether anything is known about the creator.
    pub found: bool,
    /// Layered fan engagement per exposure, relative to the platform.
    pub fan_lift: f64,
    /// Share of fans who left, relative to the platform.
    pub churn_lift: f64,
    /// Reports per view, relative to the platform.
    pub report_lift: f64,
    /// `ln(fan_lift)`.
    pub fan_value: f64,
    /// `−(a_u·ln(churn_lift) + a_r·ln(report_lift))`.
    pub long_term_value: f64,
    /// `w_fv·fan_value + w_ltv·long_term_value`.
    pub creator_value: f64,
    /// `clamp(exp(creator_value), boost_min, boost_max)`.
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
        fan_lift: 1.0,
        churn_lift: 1.0,
        report_lift: 1.0,
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
    weights: [f64; 7],
    engagement_scale: f64,
    negative_scale: f64,
    priors: Priors,
}

impl<'a> Scorer<'a> {
    /// Prepares scoring as of `as_of_ms`, with priors from the platform aggregate.
    pub fn new(params: &'a ModelParams, decay: &Decay, global: &CreatorAggregate, as_of_ms: i64) -> Self {
        let engagement_scale = decay.engagement_scale(as_of_ms);
        let negative_scale = decay.negative_scale(as_of_ms);
        let weights = params.weights.as_array();
        let strength = params.prior_strength;
        let (engagement, exposure) = engagement_and_exposure(params, &weights, global, engagement_scale);
        let unfollows = global.unfollows * negative_scale;
        let reports = global.reports * negative_scale;
        let views = global.views * negative_scale;
        // Shrink the observed platform ratios towards the configured defaults
        // while there is little data, so one early creator does not set the norm.
        let priors = Priors {
            engagement_rate: (engagement + params.prior_engagement_rate * strength) / (exposure + strength),
            churn_rate: (unfollows + params.prior_churn_rate * strength)
                / (global.followers as f64 + unfollows + strength),
            report_rate: (reports + params.prior_report_rate * strength) / (views + strength),
        };
        Scorer {
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
        let (engagement, exposure) = engagement_and_exposure(params, &self.weights, aggregate, self.engagement_scale);
        let unfollows = aggregate.unfollows * self.negative_scale;
        let reports = aggregate.reports * self.negative_scale;
        let views = aggregate.views * self.negative_scale;
        let followers = aggregate.followers as f64;

        // Each lift is written so that with no evidence numerator and
        // denominator are the same product, making the lift exactly 1.
        let mu_e_m = priors.engagement_rate * params.m_engagement;
        let fan_lift = (engagement + mu_e_m) / (priors.engagement_rate * (exposure + params.m_engagement));
        let mu_u_m = priors.churn_rate * params.m_churn;
        let churn_lift = (unfollows + mu_u_m) / (priors.churn_rate * (followers + unfollows + params.m_churn));
        let mu_r_m = priors.report_rate * params.m_report;
        let report_lift = (reports + mu_r_m) / (priors.report_rate * (views + params.m_report));

        let fan_value = fan_lift.ln();
        let long_term_value = -(params.churn_weight * churn_lift.ln() + params.report_weight * report_lift.ln());
        let creator_value = params.fan_value_weight * fan_value + params.long_term_value_weight * long_term_value;
        let public_boost = creator_value.exp().clamp(params.boost_min, params.boost_max);
        let score = CreatorScore {
            found: true,
            fan_lift,
            churn_lift,
            report_lift,
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
            self.fan_lift,
            self.churn_lift,
            self.report_lift,
            self.fan_value,
            self.long_term_value,
            self.creator_value,
            self.public_boost,
        ]
        .iter()
        .all(|v| v.is_finite())
    }
}

/// `(E, X)` as of the scorer's instant.
fn engagement_and_exposure(
    params: &ModelParams,
    weights: &[f64; 7],
    aggregate: &CreatorAggregate,
    scale: f64,
) -> (f64, f64) {
    let non_fan = params.non_fan_factor;
    let mut engagement = 0.0;
    for ((weight, fan), other) in weights.iter().zip(&aggregate.fan).zip(&aggregate.non_fan) {
        engagement += weight * (fan + non_fan * other);
    }
    let exposure = aggregate.exposure_fan + non_fan * aggregate.exposure_non_fan;
    (engagement * scale, exposure * scale)
}
