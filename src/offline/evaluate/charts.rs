//! The evaluation's SVG charts, drawn with plotters: the panel (each
//! target's Spearman for the model and every baseline, with intervals),
//! creator_value against the next window's layered engagement, and the
//! spread of public boosts.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::EvaluateError;
use super::compute::{Estimate, Evaluation, Panel};
use crate::model::ModelParams;

/// A failure to draw (drawing into a string does not fail in practice).
pub(super) type DrawError = DrawingAreaErrorKind<std::io::Error>;

const SIZE: (u32, u32) = (640, 400);
const POINT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const BAR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const OTHER: RGBColor = RGBColor(0x99, 0x99, 0x99);
const PANEL_SIZE: (u32, u32) = (800, 440);
const BINS: usize = 30;

/// Writes the panel, the scatter and the boost histogram of the configured
/// parameters into `dir`.
///
/// # Errors
/// [`EvaluateError`] when a chart cannot be drawn, or the folder or a file
/// cannot be written.
pub(super) fn write(dir: &Path, evaluation: &Evaluation, params: &ModelParams) -> Result<Vec<PathBuf>, EvaluateError> {
    let draw_error = |chart: &'static str| move |source| EvaluateError::DrawChart { chart, source };
    let configured = &evaluation.configured;
    let panel = panel_svg(configured).map_err(draw_error("panel"))?;
    let scatter = scatter_svg(
        &configured.points,
        "creator_value (earlier window)",
        "engagement per impression (next window)",
    )
    .map_err(draw_error("scatter"))?;
    let histogram = histogram_svg(&configured.boosts, params.boost_min..params.boost_max, "public_boost")
        .map_err(draw_error("histogram"))?;
    std::fs::create_dir_all(dir).map_err(|source| EvaluateError::WriteChart {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, svg) in [
        ("evaluation-panel.svg", panel),
        ("evaluation-scatter.svg", scatter),
        ("evaluation-boosts.svg", histogram),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, svg).map_err(|source| EvaluateError::WriteChart {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The panel: per target, the Spearman of creator_value, of the best
/// baseline and of the other baselines, each with its 95% bootstrap interval.
pub(super) fn panel_svg(panel: &Panel) -> Result<String, DrawError> {
    let estimates = panel
        .targets
        .iter()
        .flat_map(|t| std::iter::once(&t.model).chain(&t.baselines));
    let low = estimates.clone().map(|e| e.low).fold(0.0, f64::min);
    let high = estimates.map(|e| e.high).fold(0.0, f64::max);
    let y = (low - 0.05).max(-1.0)..(high + 0.05).min(1.0);
    let count = panel.targets.len();
    let names: Vec<&str> = panel.targets.iter().map(|t| t.target.short_name()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PANEL_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..count as f64 - 0.5, y)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .y_desc("Spearman with the target (next window)")
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 15))
            .x_labels(count)
            .x_label_formatter(&|v| {
                let index = v.round();
                if (v - index).abs() < 1e-6 && index >= 0.0 {
                    names.get(index as usize).map_or(String::new(), |n| (*n).to_owned())
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| tick(*v, 2.0))
            .draw()?;
        // Each target's predictors side by side: the model first, then the baselines.
        let slots = 1 + panel.targets.first().map_or(0, |t| t.baselines.len());
        let offset = |slot: usize| -0.4 + 0.8 * (slot as f64 + 0.5) / slots as f64;
        let bar = |x: f64, e: &Estimate, color: RGBColor| {
            let style = color.stroke_width(2);
            [
                PathElement::new(vec![(x, e.low), (x, e.high)], style),
                PathElement::new(vec![(x - 0.02, e.low), (x + 0.02, e.low)], style),
                PathElement::new(vec![(x - 0.02, e.high), (x + 0.02, e.high)], style),
            ]
        };
        let mut series = |color: RGBColor, label: &str, pick: &dyn Fn(usize) -> Vec<(f64, Estimate)>| {
            let points: Vec<(f64, Estimate)> = (0..count).flat_map(pick).collect();
            chart
                .draw_series(points.iter().flat_map(|(x, e)| bar(*x, e, color)))
                .map(|_| ())?;
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|(x, e)| Circle::new((*x, e.value), 4, color.filled())),
                )?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
            Ok::<(), DrawError>(())
        };
        let targets = &panel.targets;
        series(POINT, "creator_value", &|t| {
            vec![(t as f64 + offset(0), targets[t].model)]
        })?;
        series(BAR, "best baseline", &|t| {
            let best = targets[t].best;
            vec![(t as f64 + offset(best + 1), targets[t].baselines[best])]
        })?;
        series(OTHER, "other baselines", &|t| {
            let target = &targets[t];
            (0..target.baselines.len())
                .filter(|b| *b != target.best)
                .map(|b| (t as f64 + offset(b + 1), target.baselines[b]))
                .collect()
        })?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(OTHER)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// A scatter plot of `points` (x, y).
pub(super) fn scatter_svg(points: &[(f64, f64)], title_x: &str, title_y: &str) -> Result<String, DrawError> {
    let x = span(points.iter().map(|p| p.0));
    let y = span(points.iter().map(|p| p.1));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = axes(&root, x, y, title_x, title_y)?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, POINT.mix(0.6).filled())))?;
        root.present()?;
    }
    Ok(svg)
}

/// A histogram of `values` over `range` in 30 bins (values outside it count
/// in the first or last bin).
pub(super) fn histogram_svg(values: &[f64], range: Range<f64>, title: &str) -> Result<String, DrawError> {
    let mut bins = [0u64; BINS];
    let width = (range.end - range.start) / BINS as f64;
    for v in values {
        let i = ((v - range.start) / width).floor().clamp(0.0, BINS as f64 - 1.0) as usize;
        bins[i] += 1;
    }
    let top = bins.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let mut chart = axes(&root, range.clone(), 0.0..top * 1.05, title, "creators")?;
        let bars = bins.iter().enumerate().filter(|(_, count)| **count > 0);
        chart.draw_series(bars.map(|(i, count)| {
            let left = range.start + i as f64 * width;
            let mut bar = Rectangle::new([(left, 0.0), (left + width, *count as f64)], BAR.filled());
            bar.set_margin(0, 0, 0, 1);
            bar
        }))?;
        root.present()?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white chart with both axes labelled and no grid.
fn axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    x: Range<f64>,
    y: Range<f64>,
    title_x: &str,
    title_y: &str,
) -> Result<Chart<'a, 'b>, DrawError> {
    root.fill(&WHITE)?;
    let (x_span, y_span) = (x.end - x.start, y.end - y.start);
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)?;
    // plotters draws SVG text at 1/1.24 of the size asked: these come out
    // at about 13 and 12 px.
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(title_x)
        .y_desc(title_y)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 15))
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|v| tick(*v, x_span))
        .y_label_formatter(&|v| tick(*v, y_span))
        .draw()?;
    Ok(chart)
}

/// A tick label with as many decimals as the axis span needs, never `-0`.
fn tick(value: f64, span: f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    match text.strip_prefix('-') {
        Some(positive) if positive.bytes().all(|b| b == b'0' || b == b'.') => positive.to_owned(),
        _ => text,
    }
}

/// The range of `values`, widened when they are all equal (or absent) so
/// that the axis has a length.
fn span(values: impl Iterator<Item = f64> + Clone) -> Range<f64> {
    let low = values.clone().fold(f64::INFINITY, f64::min);
    let high = values.fold(f64::NEG_INFINITY, f64::max);
    if !(low.is_finite() && high.is_finite()) {
        0.0..1.0
    } else if high > low {
        low..high
    } else {
        low - 0.5..high + 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let svg = scatter_svg(&[(0.0, 1.0), (1.0, 2.0)], "x", "y").expect("scatter");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 2);
        let svg = histogram_svg(&[0.5, 1.0, 2.0, 7.0], 0.5..2.0, "boost").expect("histogram");
        // Three non-empty bins (0.5, 1.0, and 2.0 with 7.0 in the last).
        assert_eq!(svg.matches("fill=\"#FF7F0E\"").count(), 3, "{svg}");
        let svg = scatter_svg(&[(1.0, 1.0)], "x", "y").expect("one point");
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn panel_chart_has_a_point_per_predictor() {
        use super::super::compute::TargetResult;
        use super::super::panel::TARGETS;
        let estimate = |value: f64| Estimate {
            value,
            low: value - 0.1,
            high: value + 0.1,
            positive: 1.0,
        };
        let panel = Panel {
            targets: TARGETS
                .iter()
                .map(|target| TargetResult {
                    target: *target,
                    creators: 10,
                    model: estimate(0.5),
                    baselines: vec![estimate(0.1), estimate(0.4), estimate(-0.2)],
                    best: 1,
                    gain: estimate(0.1),
                })
                .collect(),
            points: Vec::new(),
            boosts: Vec::new(),
        };
        let svg = panel_svg(&panel).expect("panel");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // 4 targets × 4 predictors, and one mark per legend entry.
        assert_eq!(svg.matches("<circle").count(), 16 + 3, "{svg}");
        assert!(svg.contains("4 fans return") && svg.contains("best baseline"));
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick(-0.0001, 0.7), "0.00");
        assert_eq!(tick(-0.25, 0.7), "-0.25");
        assert_eq!(tick(1.5, 3.0), "1.5");
        assert_eq!(tick(2500.0, 3000.0), "2500");
    }
}
