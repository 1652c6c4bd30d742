//! The evaluation's Markdown report: the panel as tables.

use std::fmt::Write as _;

use super::compute::{Estimate, Evaluation, Panel, Tuning};
use super::panel::{BASELINES, MIN_FANS_FOR_RETURN};

/// The report of `evaluation`: its window, the configured parameters'
/// panel, and the tuning when asked.
pub(super) fn render(evaluation: &Evaluation) -> String {
    let mut report = String::new();
    let window = &evaluation.window;
    let _ = writeln!(
        report,
        "events {} from {} to {}; split at {}; creators need >= {} impressions in both windows \
         (target 4 also >= {MIN_FANS_FOR_RETURN} engaged accounts in the earlier one)\n",
        evaluation.events,
        format_time(window.start_ms),
        format_time(window.end_ms),
        format_time(window.split_ms),
        evaluation.min_impressions
    );
    let _ = writeln!(
        report,
        "Outer split, configured parameters: Spearman [95% bootstrap interval]\n"
    );
    panel_table(&mut report, &evaluation.configured);
    if let Some(tuning) = &evaluation.tuning {
        tuning_section(&mut report, tuning);
    }
    report
}

/// The panel: one column per target, one row per predictor, then the best
/// baseline and the model's paired difference with it.
fn panel_table(report: &mut String, panel: &Panel) {
    let _ = write!(report, "| |");
    for target in &panel.targets {
        let _ = write!(report, " {} |", target.target.name());
    }
    let _ = write!(report, "\n|---|");
    for _ in &panel.targets {
        let _ = write!(report, "---|");
    }
    let _ = write!(report, "\n| creators |");
    for target in &panel.targets {
        let _ = write!(report, " {} |", target.creators);
    }
    let _ = write!(report, "\n| **creator_value** |");
    for target in &panel.targets {
        let _ = write!(report, " **{}** |", interval(&target.model));
    }
    for (index, baseline) in BASELINES.iter().enumerate() {
        let _ = write!(report, "\n| {} |", baseline.name());
        for target in &panel.targets {
            let mark = if target.best == index { "*" } else { "" };
            let _ = write!(report, " {mark}{}{mark} |", interval(&target.baselines[index]));
        }
    }
    let _ = write!(report, "\n| best baseline |");
    for target in &panel.targets {
        let _ = write!(report, " {} |", BASELINES[target.best].name());
    }
    let _ = write!(report, "\n| creator_value − best: paired interval, % > 0 |");
    for target in &panel.targets {
        let gain = &target.gain;
        let _ = write!(
            report,
            " {:+.4} [{:+.4}, {:+.4}] {:.1}% {} |",
            gain.value,
            gain.low,
            gain.high,
            gain.positive * 100.0,
            verdict(gain)
        );
    }
    let _ = writeln!(report, "\n\n(* = the best baseline of the target)");
}

/// Win, tie or loss, by where the difference's interval lies.
fn verdict(gain: &Estimate) -> &'static str {
    if gain.low > 0.0 {
        "win"
    } else if gain.high < 0.0 {
        "loss"
    } else {
        "tie"
    }
}

fn interval(estimate: &Estimate) -> String {
    format!("{:.4} [{:.3}, {:.3}]", estimate.value, estimate.low, estimate.high)
}

/// The tuned parameters' panel on the outer split, and the inner split's objective.
fn tuning_section(report: &mut String, tuning: &Tuning) {
    let _ = writeln!(
        report,
        "\nGrid of {} points searched on the inner split ({} creators; objective: the model's mean \
         Spearman over the four targets): configured {:.4}, tuned {:.4}.",
        tuning.grid_points, tuning.inner_creators, tuning.inner_configured, tuning.inner_score
    );
    let (ingest, p) = (&tuning.tuned.ingest, &tuning.tuned.params);
    let _ = writeln!(
        report,
        "Tuned: engagement_half_life_days {}, weights.profile_visit {}, depth_lift_weight {}, \
         share_lift_weight {}, m_engagement {}, fan_spread {}, non_fan_factor {}\n",
        ingest.engagement_half_life_days,
        p.weights.profile_visit,
        p.depth_lift_weight,
        p.share_lift_weight,
        p.m_engagement,
        p.fan_spread,
        p.non_fan_factor
    );
    let _ = writeln!(report, "Outer split, tuned parameters (judged once):\n");
    panel_table(report, &tuning.outer_tuned);
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds
/// (`2022-05-01T15:28:56.000Z`).
pub(super) fn format_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(instant) => format!("{instant:.3}"),
        // Beyond the years ±9999, which no event log reaches.
        Err(_) => format!("{ms} ms after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_instants_as_rfc3339_with_milliseconds() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_650_812_741_436), "2022-04-24T15:05:41.436Z");
        assert_eq!(format_time(951_868_799_123), "2000-02-29T23:59:59.123Z");
        assert_eq!(format_time(-86_400_001), "1969-12-30T23:59:59.999Z");
        assert_eq!(format_time(i64::MAX), format!("{} ms after 1970", i64::MAX));
    }
}
