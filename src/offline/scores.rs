//! Offline scoring (`creator-boost scores`): every creator in the store, as of
//! an instant, as CSV or JSON Lines.

use std::io::Write;

use serde::Serialize;

use crate::config::Variant;
use crate::model::score::Scorer;
use crate::model::{CreatorAggregate, Decay};

/// One output row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreRow {
    /// The creator.
    pub creator_id: u64,
    /// Whether the store knows the creator.
    pub found: bool,
    /// Exact follower count.
    pub followers: u64,
    /// Events counted.
    pub evidence: u64,
    /// Accounts shown the creator (decayed, non-followers weighted).
    pub audience: f64,
    /// Accounts shown that engaged beyond viewing (decayed).
    pub engaged_accounts: f64,
    /// engaged / (engaged + m_accounts): share of a long-term gain that counts.
    pub confidence: f64,
    /// Share of the observed engagement lift believed; low = it rests on few accounts.
    pub fan_belief: f64,
    /// Accounts that left, reported or had their money back (decayed).
    pub negative_accounts: f64,
    /// Accounts shown with a purchase that stands (decayed).
    pub buyers: f64,
    /// Buyers whose standing purchases fall on two UTC days or more (decayed).
    pub repeat_buyers: f64,
    /// Share of buyers who came back, shrunk to the platform's.
    pub repeat_share: f64,
    /// The trust lift in fan value (≥ 1).
    pub trust_lift: f64,
    /// Accounts whose money went back (decayed).
    pub refunders: f64,
    /// Refunders per account that bought or refunded, relative to the platform.
    pub refund_lift: f64,
    /// ln(fan_lift), times confidence when positive.
    pub fan_value: f64,
    /// −(a_u ln churn_lift + a_r ln report_lift + a_f ln refund_lift).
    pub long_term_value: f64,
    /// w_fv·fan_value + w_ltv·long_term_value.
    pub creator_value: f64,
    /// soft_clamp(exp(creator_value)).
    pub public_boost: f64,
    /// Latest event, unix ms.
    pub updated_at_ms: i64,
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScoresFormat {
    /// Comma-separated with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Scores `creators` (and `extra` ids, which may be unknown) as of `as_of_ms`.
pub fn score_rows(
    variant: &Variant,
    decay: &Decay,
    global: &CreatorAggregate,
    creators: &[(u64, CreatorAggregate)],
    as_of_ms: i64,
) -> Vec<ScoreRow> {
    let scorer = Scorer::new(&variant.params, decay, global, as_of_ms);
    creators
        .iter()
        .map(|(creator_id, aggregate)| {
            let s = scorer.creator(Some(aggregate));
            ScoreRow {
                creator_id: *creator_id,
                found: true,
                followers: s.followers,
                evidence: s.evidence,
                audience: s.audience,
                engaged_accounts: s.engaged_accounts,
                confidence: s.confidence,
                fan_belief: s.fan_belief,
                negative_accounts: s.negative_accounts,
                buyers: s.buyers,
                repeat_buyers: s.repeat_buyers,
                repeat_share: s.repeat_share,
                trust_lift: s.trust_lift,
                refunders: s.refunders,
                refund_lift: s.refund_lift,
                fan_value: s.fan_value,
                long_term_value: s.long_term_value,
                creator_value: s.creator_value,
                public_boost: s.public_boost,
                updated_at_ms: s.updated_at_ms,
            }
        })
        .collect()
}

/// A row for a creator the store does not know: neutral.
pub fn unknown_row(creator_id: u64) -> ScoreRow {
    ScoreRow {
        creator_id,
        found: false,
        followers: 0,
        evidence: 0,
        audience: 0.0,
        engaged_accounts: 0.0,
        confidence: 0.0,
        fan_belief: 0.0,
        negative_accounts: 0.0,
        buyers: 0.0,
        repeat_buyers: 0.0,
        repeat_share: 0.0,
        trust_lift: 1.0,
        refunders: 0.0,
        refund_lift: 1.0,
        fan_value: 0.0,
        long_term_value: 0.0,
        creator_value: 0.0,
        public_boost: 1.0,
        updated_at_ms: 0,
    }
}

/// Writes rows in `format`.
///
/// # Errors
/// The writer's I/O error.
pub fn write_rows(rows: &[ScoreRow], format: ScoresFormat, out: &mut impl Write) -> std::io::Result<()> {
    match format {
        ScoresFormat::Csv => {
            writeln!(
                out,
                "creator_id,found,followers,evidence,audience,engaged_accounts,confidence,fan_belief,negative_accounts,\
                 buyers,repeat_buyers,repeat_share,trust_lift,refunders,refund_lift,\
                 fan_value,long_term_value,creator_value,public_boost,updated_at_ms"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.creator_id,
                    r.found,
                    r.followers,
                    r.evidence,
                    r.audience,
                    r.engaged_accounts,
                    r.confidence,
                    r.fan_belief,
                    r.negative_accounts,
                    r.buyers,
                    r.repeat_buyers,
                    r.repeat_share,
                    r.trust_lift,
                    r.refunders,
                    r.refund_lift,
                    r.fan_value,
                    r.long_term_value,
                    r.creator_value,
                    r.public_boost,
                    r.updated_at_ms
                )?;
            }
        }
        ScoresFormat::Jsonl => {
            for r in rows {
                serde_json::to_writer(&mut *out, r).map_err(std::io::Error::other)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}
