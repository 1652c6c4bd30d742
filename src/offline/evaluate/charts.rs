//! The evaluation's SVG charts: creator_value against the next window's
//! engagement, and the spread of public boosts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::EvaluateError;
use super::compute::SplitResult;
use crate::model::ModelParams;

/// Writes the scatter and the boost histogram of `configured` into `dir`.
///
/// # Errors
/// [`EvaluateError::WriteChart`] when the folder or a file cannot be written.
pub(super) fn write(dir: &Path, configured: &SplitResult, params: &ModelParams) -> Result<Vec<PathBuf>, EvaluateError> {
    std::fs::create_dir_all(dir).map_err(|source| EvaluateError::WriteChart {
        path: dir.to_owned(),
        source,
    })?;
    let scatter = scatter_svg(
        &configured.points,
        "creator_value (earlier window)",
        "engagement per impression (next window)",
    );
    let histogram = histogram_svg(&configured.boosts, params.boost_min, params.boost_max, "public_boost");
    let mut written = Vec::new();
    for (name, svg) in [
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
    fn charts_are_svg() {
        let svg = scatter_svg(&[(0.0, 1.0), (1.0, 2.0)], "x", "y");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("<circle"));
        let svg = histogram_svg(&[0.5, 1.0, 2.0, 7.0], 0.5, 2.0, "boost");
        assert_eq!(svg.matches("<rect").count(), 31);
    }
}
