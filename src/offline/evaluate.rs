//! The evaluation (`creator-boost evaluate`): score creators on an earlier
//! window of real logs and measure how well `creator_value` ranks them by
//! their fan engagement in the following window, beside two baselines
//! (popularity, and the raw engagement rate of the earlier window). A small
//! grid search on an inner split chooses parameters, which are then judged on
//! the outer split they never saw.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::model::aggregate::apply_event;
use crate::model::score::Scorer;
use crate::model::{CreatorAggregate, Event, EventKind, IngestParams, ModelParams, ViewerRecord};
use crate::offline::import::impressions::{Columns, MissingColumn};

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// KuaiRand log (plain or gzip).
    pub file: PathBuf,
    /// Start of the judged window (unix ms); `None` = the middle of the data.
    pub split_ms: Option<i64>,
    /// Creators need this many impressions in both windows.
    pub min_impressions: u64,
    /// Ingest parameters of the "configured" run.
    pub ingest: IngestParams,
    /// Model parameters of the "configured" run.
    pub params: ModelParams,
    /// Where to write the SVG charts (`None` = no charts).
    pub chart_dir: Option<PathBuf>,
    /// Run the grid search.
    pub tune: bool,
}

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The log could not be opened or read.
    #[error("reading {}", path.display())]
    Read {
        /// The log.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The log has no header line.
    #[error("{} is empty", path.display())]
    Empty {
        /// The log.
        path: PathBuf,
    },
    /// The log's first line is not a KuaiRand header.
    #[error("reading the header of {}", path.display())]
    Header {
        /// The log.
        path: PathBuf,
        /// The column it lacks.
        #[source]
        source: MissingColumn,
    },
    /// No row of the log made a usable event.
    #[error("{} holds no usable events", path.display())]
    NoEvents {
        /// The log.
        path: PathBuf,
    },
    /// `--split` does not leave events on both sides.
    #[error(
        "the split {} must fall inside the data ({} to {})",
        crate::time::format_time(*.split_ms),
        crate::time::format_time(*.start_ms),
        crate::time::format_time(*.end_ms)
    )]
    SplitOutside {
        /// The split asked for, unix ms.
        split_ms: i64,
        /// The first event, unix ms.
        start_ms: i64,
        /// Just after the last event, unix ms.
        end_ms: i64,
    },
    /// A chart could not be written.
    #[error("writing {}", path.display())]
    WriteChart {
        /// The chart's file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// Loads a KuaiRand log as validated events, duplicates (same event id) dropped, sorted by time.
///
/// # Errors
/// [`EvaluateError`] when the file cannot be read or has no usable header.
pub fn load_kuairand(path: &Path) -> Result<Vec<Event>, EvaluateError> {
    use std::io::BufRead;
    let read_error = |source| EvaluateError::Read {
        path: path.to_owned(),
        source,
    };
    let mut lines = crate::offline::open_events(path).map_err(read_error)?.lines();
    let header = lines
        .next()
        .ok_or_else(|| EvaluateError::Empty { path: path.to_owned() })?
        .map_err(read_error)?;
    let columns = Columns::from_header(&header).map_err(|source| EvaluateError::Header {
        path: path.to_owned(),
        source,
    })?;
    let mut raw = Vec::new();
    for line in lines {
        let line = line.map_err(read_error)?;
        // Malformed rows are skipped here; `import` counts them.
        let _ = columns.events(&line, &mut raw);
    }
    let mut seen = HashSet::new();
    let mut events: Vec<Event> = raw
        .into_iter()
        .filter(|e| e.creator_id != 0 && e.viewer_id != e.creator_id && seen.insert(e.event_id.clone()))
        .filter_map(|e| {
            Some(Event {
                kind: e.kind?,
                event_id: e.event_id,
                viewer_id: e.viewer_id,
                creator_id: e.creator_id,
                timestamp_ms: e.timestamp_ms,
                amount: e.amount,
            })
        })
        .collect();
    events.sort_by_key(|e| e.timestamp_ms);
    Ok(events)
}

/// Per-creator counts in a window.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    impressions: u64,
    engagement: f64,
}

impl Counts {
    /// Layered engagement per impression.
    fn rate(&self) -> f64 {
        self.engagement / self.impressions.max(1) as f64
    }
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

fn counts(events: &[Event]) -> HashMap<u64, Counts> {
    let mut out: HashMap<u64, Counts> = HashMap::new();
    for e in events {
        let c = out.entry(e.creator_id).or_default();
        if e.kind == EventKind::View {
            c.impressions += 1;
        }
        c.engagement += target_weight(e.kind);
    }
    out
}

/// The history of a window replayed into aggregates.
struct Replay {
    creators: HashMap<u64, CreatorAggregate>,
    global: CreatorAggregate,
}

fn replay(events: &[Event], ingest: &IngestParams) -> Replay {
    let decay = ingest.decay();
    let mut creators: HashMap<u64, CreatorAggregate> = HashMap::new();
    let mut viewers: HashMap<u64, ViewerRecord> = HashMap::new();
    let mut global = CreatorAggregate::default();
    for e in events {
        let creator = creators.entry(e.creator_id).or_default();
        let viewer = viewers.entry(e.viewer_id).or_default();
        apply_event(e, ingest, &decay, creator, &mut global, Some(viewer));
    }
    Replay { creators, global }
}

/// Spearman rank correlation (average ranks for ties).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &order[i..=j] {
            out[*k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Scores of one split: correlations with the next window.
#[derive(Clone, Debug)]
pub struct SplitResult {
    /// Creators judged.
    pub creators: usize,
    /// Spearman of creator_value.
    pub model: f64,
    /// Spearman of impressions in the earlier window.
    pub popularity: f64,
    /// Spearman of the raw engagement rate in the earlier window.
    pub raw_rate: f64,
    /// (creator_value, next-window rate) per judged creator, for the chart.
    pub points: Vec<(f64, f64)>,
    /// Raw engagement rate per judged creator, in the order of `points`.
    pub raw: Vec<f64>,
    /// Public boosts of every creator with history, for the chart.
    pub boosts: Vec<f64>,
}

struct Split<'a> {
    history: &'a [Event],
    future_counts: HashMap<u64, Counts>,
    past_counts: HashMap<u64, Counts>,
    split_ms: i64,
}

impl<'a> Split<'a> {
    fn new(events: &'a [Event], start_ms: i64, split_ms: i64, end_ms: i64) -> Split<'a> {
        let from = events.partition_point(|e| e.timestamp_ms < start_ms);
        let cut = events.partition_point(|e| e.timestamp_ms < split_ms);
        let to = events.partition_point(|e| e.timestamp_ms < end_ms);
        Split {
            history: &events[from..cut],
            future_counts: counts(&events[cut..to]),
            past_counts: counts(&events[from..cut]),
            split_ms,
        }
    }

    fn judge(&self, replayed: &Replay, ingest: &IngestParams, params: &ModelParams, min: u64) -> SplitResult {
        let scorer = Scorer::new(params, &ingest.decay(), &replayed.global, self.split_ms);
        let mut ids: Vec<u64> = self
            .past_counts
            .iter()
            .filter(|(id, c)| c.impressions >= min && self.future_counts.get(id).is_some_and(|f| f.impressions >= min))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut model = Vec::new();
        let mut popularity = Vec::new();
        let mut raw = Vec::new();
        let mut target = Vec::new();
        for id in &ids {
            let past = self.past_counts[id];
            model.push(scorer.creator(replayed.creators.get(id)).creator_value);
            popularity.push(past.impressions as f64);
            raw.push(past.rate());
            target.push(self.future_counts[id].rate());
        }
        let boosts = replayed
            .creators
            .values()
            .map(|a| scorer.creator(Some(a)).public_boost)
            .collect();
        SplitResult {
            creators: ids.len(),
            model: spearman(&model, &target),
            popularity: spearman(&popularity, &target),
            raw_rate: spearman(&raw, &target),
            points: model.into_iter().zip(target).collect(),
            raw,
            boosts,
        }
    }
}

/// One grid point.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Ingest parameters.
    pub ingest: IngestParams,
    /// Model parameters.
    pub params: ModelParams,
}

/// The grid searched on the inner split. Layer weights shape what is stored
/// (the per-account depth cap), so the ingest's `depth_weights` follow them.
/// `fan_spread` stops at 0.8: from 1.0 on, ten full-depth accounts come
/// within 2% of a creator whose 5% of 1,000 real viewers like, and above it
/// they outrank it (tests/robustness.rs): robustness bounds the search.
fn grid(base_ingest: &IngestParams, base: &ModelParams) -> Vec<Candidate> {
    let mut out = Vec::new();
    for half_life in [90.0, 365.0] {
        for view in [0.02, 0.05] {
            for profile_visit in [0.0, 0.25, 0.5, 1.0] {
                for fan_spread in [0.4, 0.6, 0.8] {
                    for m_engagement in [5.0, 10.0, 20.0] {
                        for ltv in [0.0, 0.5] {
                            let mut params = base.clone();
                            params.weights.view = view;
                            params.weights.profile_visit = profile_visit;
                            params.fan_spread = fan_spread;
                            params.m_engagement = m_engagement;
                            params.long_term_value_weight = ltv;
                            let ingest = IngestParams {
                                engagement_half_life_days: half_life,
                                depth_weights: params.weights,
                                ..base_ingest.clone()
                            };
                            out.push(Candidate { ingest, params });
                        }
                    }
                }
            }
        }
    }
    out
}

/// What a replay depends on: half-life and depth weights.
fn replay_key(ingest: &IngestParams) -> (u64, [u64; 8]) {
    (
        ingest.engagement_half_life_days.to_bits(),
        ingest.depth_weights.as_array().map(f64::to_bits),
    )
}

/// The whole evaluation, as a Markdown report.
///
/// # Errors
/// [`EvaluateError`] when the data cannot be read or split, or a chart
/// cannot be written.
pub fn run(options: &EvalOptions) -> Result<String, EvaluateError> {
    let events = load_kuairand(&options.file)?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(EvaluateError::NoEvents {
            path: options.file.clone(),
        });
    };
    let (start, end) = (first.timestamp_ms, last.timestamp_ms + 1);
    let split = options.split_ms.unwrap_or(start + (end - start) / 2);
    if split <= start || split >= end {
        return Err(EvaluateError::SplitOutside {
            split_ms: split,
            start_ms: start,
            end_ms: end,
        });
    }
    let mut report = String::new();
    let _ = writeln!(
        report,
        "events {} from {} to {}; split at {}; creators need >= {} impressions in both windows\n",
        events.len(),
        crate::time::format_time(start),
        crate::time::format_time(end),
        crate::time::format_time(split),
        options.min_impressions
    );
    let outer = Split::new(&events, start, split, end);
    let min = options.min_impressions;

    let configured = outer.judge(
        &replay(outer.history, &options.ingest),
        &options.ingest,
        &options.params,
        min,
    );
    let _ = writeln!(
        report,
        "| split | creators | creator_value (configured) | popularity | raw engagement rate |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    let _ = writeln!(
        report,
        "| outer | {} | {:.4} | {:.4} | {:.4} |",
        configured.creators, configured.model, configured.popularity, configured.raw_rate
    );
    let (low, high) = bootstrap_interval(&configured, 2_000, 1);
    let _ = writeln!(
        report,
        "| outer, creator_value: 95% bootstrap interval [{low:.4}, {high:.4}] | | | | |"
    );

    if options.tune {
        // Inner split: the first half's own first half predicts its second half.
        let inner_split = start + (split - start) / 2;
        let inner = Split::new(&events, start, inner_split, split);
        // Half the floor on the shorter inner windows judges about as many
        // creators as the outer split does, so the choice is less noisy.
        let tuning_min = (min / 2).max(1);
        let mut replays: HashMap<(u64, [u64; 8]), Replay> = HashMap::new();
        let mut best: Option<(f64, Candidate)> = None;
        let candidates = grid(&options.ingest, &options.params);
        for candidate in &candidates {
            let key = replay_key(&candidate.ingest);
            let replayed = replays
                .entry(key)
                .or_insert_with(|| replay(inner.history, &candidate.ingest));
            let result = inner.judge(replayed, &candidate.ingest, &candidate.params, tuning_min);
            if best.as_ref().is_none_or(|(score, _)| result.model > *score) {
                best = Some((result.model, candidate.clone()));
            }
        }
        if let Some((inner_score, tuned)) = best {
            let inner_base = inner.judge(
                &replay(inner.history, &options.ingest),
                &options.ingest,
                &options.params,
                tuning_min,
            );
            let outer_tuned = outer.judge(&replay(outer.history, &tuned.ingest), &tuned.ingest, &tuned.params, min);
            let _ = writeln!(
                report,
                "| outer, tuned | {} | {:.4} | {:.4} | {:.4} |",
                outer_tuned.creators, outer_tuned.model, outer_tuned.popularity, outer_tuned.raw_rate
            );
            let (low, high, share) = bootstrap_gain(&outer_tuned, 2_000, 1);
            let _ = writeln!(
                report,
                "| outer, tuned minus raw rate: 95% bootstrap interval [{low:.4}, {high:.4}], positive in {:.1}% of resamples | | | | |",
                share * 100.0
            );
            let _ = writeln!(
                report,
                "| inner (tuning), configured | {} | {:.4} | {:.4} | {:.4} |",
                inner_base.creators, inner_base.model, inner_base.popularity, inner_base.raw_rate
            );
            let _ = writeln!(
                report,
                "| inner (tuning), tuned | {} | {inner_score:.4} | | |",
                inner_base.creators
            );
            let p = &tuned.params;
            let _ = writeln!(
                report,
                "\ngrid of {} points; tuned: engagement_half_life_days {}, weights.view {}, weights.profile_visit {}, fan_spread {}, m_engagement {}, long_term_value_weight {}",
                candidates.len(),
                tuned.ingest.engagement_half_life_days,
                p.weights.view,
                p.weights.profile_visit,
                p.fan_spread,
                p.m_engagement,
                p.long_term_value_weight
            );
        }
    }

    if let Some(dir) = &options.chart_dir {
        std::fs::create_dir_all(dir).map_err(|source| EvaluateError::WriteChart {
            path: dir.clone(),
            source,
        })?;
        let scatter = scatter_svg(
            &configured.points,
            "creator_value (earlier window)",
            "engagement per impression (next window)",
        );
        let histogram = histogram_svg(
            &configured.boosts,
            options.params.boost_min,
            options.params.boost_max,
            "public_boost",
        );
        for (name, svg) in [
            ("evaluation-scatter.svg", scatter),
            ("evaluation-boosts.svg", histogram),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, svg).map_err(|source| EvaluateError::WriteChart {
                path: path.clone(),
                source,
            })?;
            let _ = writeln!(report, "wrote {}", path.display());
        }
    }
    Ok(report)
}

/// Resamples the judged creators with replacement `resamples` times and
/// returns `statistic(model, raw, target)` of each resample, sorted (empty
/// below 3 creators).
fn bootstrap(
    result: &SplitResult,
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[f64], &[f64], &[f64]) -> f64,
) -> Vec<f64> {
    let n = result.points.len();
    if n < 3 {
        return Vec::new();
    }
    let mut rng = crate::offline::generate::Rng::new(seed);
    let mut values = Vec::with_capacity(resamples);
    let (mut model, mut raw, mut target) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for i in 0..n {
            let j = rng.below(n as u64) as usize;
            model[i] = result.points[j].0;
            target[i] = result.points[j].1;
            raw[i] = result.raw[j];
        }
        values.push(statistic(&model, &raw, &target));
    }
    values.sort_by(f64::total_cmp);
    values
}

/// The 2.5% and 97.5% quantiles of sorted bootstrap values (0 when empty).
fn interval(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let quantile = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (quantile(0.025), quantile(0.975))
}

/// Bootstrap over creators of spearman(model): the 2.5% and 97.5% quantiles.
fn bootstrap_interval(result: &SplitResult, resamples: usize, seed: u64) -> (f64, f64) {
    interval(&bootstrap(result, resamples, seed, |model, _, target| {
        spearman(model, target)
    }))
}

/// Paired bootstrap over creators of spearman(model) − spearman(raw rate):
/// the 2.5% and 97.5% quantiles and the share of resamples above zero.
fn bootstrap_gain(result: &SplitResult, resamples: usize, seed: u64) -> (f64, f64, f64) {
    let gains = bootstrap(result, resamples, seed, |model, raw, target| {
        spearman(model, target) - spearman(raw, target)
    });
    if gains.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let (low, high) = interval(&gains);
    let positive = gains.iter().filter(|g| **g > 0.0).count() as f64 / gains.len() as f64;
    (low, high, positive)
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const MARGIN: f64 = 64.0;

fn frame(title_x: &str, title_y: &str, x: (f64, f64), y: (f64, f64)) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{MARGIN}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{MARGIN}\" y1=\"{MARGIN}\" x2=\"{MARGIN}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">{title_x}</text>\n\
         <text x=\"14\" y=\"{cy}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {cy})\">{title_y}</text>\n",
        b = HEIGHT - MARGIN,
        r = WIDTH - 16.0,
        cx = (WIDTH + MARGIN) / 2.0,
        ty = HEIGHT - 14.0,
        cy = HEIGHT / 2.0,
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let px = MARGIN + f * (WIDTH - 16.0 - MARGIN);
        let py = HEIGHT - MARGIN - f * (HEIGHT - 2.0 * MARGIN);
        let _ = writeln!(
            svg,
            "<text x=\"{px}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - MARGIN + 16.0,
            tick(x.0 + f * (x.1 - x.0), x)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{py}\" text-anchor=\"end\">{}</text>",
            MARGIN - 4.0,
            tick(y.0 + f * (y.1 - y.0), y)
        );
    }
    svg
}

/// A tick label with as many decimals as the axis range needs.
fn tick(value: f64, (low, high): (f64, f64)) -> String {
    let span = (high - low).abs();
    if span >= 20.0 {
        format!("{value:.0}")
    } else if span >= 2.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn scale(value: f64, (low, high): (f64, f64), from: f64, to: f64) -> f64 {
    let f = if high > low { (value - low) / (high - low) } else { 0.5 };
    from + f.clamp(0.0, 1.0) * (to - from)
}

/// A scatter plot of `points` (x, y).
pub fn scatter_svg(points: &[(f64, f64)], title_x: &str, title_y: &str) -> String {
    let range = |values: Vec<f64>| {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if low.is_finite() && high.is_finite() {
            (low, high)
        } else {
            (0.0, 1.0)
        }
    };
    let x = range(points.iter().map(|p| p.0).collect());
    let y = range(points.iter().map(|p| p.1).collect());
    let mut svg = frame(title_x, title_y, x, y);
    for (px, py) in points {
        let cx = scale(*px, x, MARGIN, WIDTH - 16.0);
        let cy = scale(*py, y, HEIGHT - MARGIN, MARGIN);
        let _ = writeln!(
            svg,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"2.5\" fill=\"#1f77b4\" fill-opacity=\"0.6\"/>"
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A histogram of `values` over [low, high] in 30 bins.
pub fn histogram_svg(values: &[f64], low: f64, high: f64, title: &str) -> String {
    const BINS: usize = 30;
    let mut bins = [0u64; BINS];
    for v in values {
        let i = (((v - low) / (high - low)) * BINS as f64)
            .floor()
            .clamp(0.0, BINS as f64 - 1.0) as usize;
        bins[i] += 1;
    }
    let top = bins.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut svg = frame(title, "creators", (low, high), (0.0, top));
    let width = (WIDTH - 16.0 - MARGIN) / BINS as f64;
    for (i, count) in bins.iter().enumerate() {
        let h = *count as f64 / top * (HEIGHT - 2.0 * MARGIN);
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#ff7f0e\"/>",
            MARGIN + i as f64 * width,
            HEIGHT - MARGIN - h,
            width - 1.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_basics() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(ranks(&[5.0, 1.0, 5.0, 3.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn charts_are_svg() {
        let svg = scatter_svg(&[(0.0, 1.0), (1.0, 2.0)], "x", "y");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("<circle"));
        let svg = histogram_svg(&[0.5, 1.0, 2.0, 7.0], 0.5, 2.0, "boost");
        assert_eq!(svg.matches("<rect").count(), 31);
    }
}
