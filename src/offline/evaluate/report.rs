//! The evaluation's Markdown report.

use std::fmt::Write as _;

use super::compute::{Evaluation, SplitResult, Tuning};

/// The report of `evaluation`: its window, then one table row per split.
pub(super) fn render(evaluation: &Evaluation) -> String {
    let mut report = String::new();
    let window = &evaluation.window;
    let _ = writeln!(
        report,
        "events {} from {} to {}; split at {}; creators need >= {} impressions in both windows\n",
        evaluation.events,
        format_time(window.start_ms),
        format_time(window.end_ms),
        format_time(window.split_ms),
        evaluation.min_impressions
    );
    let _ = writeln!(
        report,
        "| split | creators | creator_value (configured) | popularity | raw engagement rate |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    row(&mut report, "outer", &evaluation.configured);
    let (low, high) = evaluation.configured_interval;
    let _ = writeln!(
        report,
        "| outer, creator_value: 95% bootstrap interval [{low:.4}, {high:.4}] | | | | |"
    );
    if let Some(tuning) = &evaluation.tuning {
        tuning_rows(&mut report, tuning);
    }
    report
}

/// One split's row: creators judged and the three Spearman correlations.
fn row(report: &mut String, name: &str, result: &SplitResult) {
    let _ = writeln!(
        report,
        "| {name} | {} | {:.4} | {:.4} | {:.4} |",
        result.creators, result.model, result.popularity, result.raw_rate
    );
}

/// The tuned rows and the tuned parameters.
fn tuning_rows(report: &mut String, tuning: &Tuning) {
    row(report, "outer, tuned", &tuning.outer_tuned);
    let gain = &tuning.gain;
    let _ = writeln!(
        report,
        "| outer, tuned minus raw rate: 95% bootstrap interval [{:.4}, {:.4}], positive in {:.1}% of resamples | | | | |",
        gain.low,
        gain.high,
        gain.positive * 100.0
    );
    row(report, "inner (tuning), configured", &tuning.inner_configured);
    let _ = writeln!(
        report,
        "| inner (tuning), tuned | {} | {:.4} | | |",
        tuning.inner_configured.creators, tuning.inner_score
    );
    let (ingest, p) = (&tuning.tuned.ingest, &tuning.tuned.params);
    let _ = writeln!(
        report,
        "\ngrid of {} points; tuned: engagement_half_life_days {}, weights.view {}, weights.profile_visit {}, fan_spread {}, m_engagement {}, long_term_value_weight {}",
        tuning.grid_points,
        ingest.engagement_half_life_days,
        p.weights.view,
        p.weights.profile_visit,
        p.fan_spread,
        p.m_engagement,
        p.long_term_value_weight
    );
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
