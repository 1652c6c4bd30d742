//! The evaluation (`creator-boost evaluate`): score creators on an earlier
//! window of logs and measure how well `creator_value` ranks them by their
//! fans' behaviour in the following window, on a fixed panel of four
//! targets (layered engagement, conversion into the private domain,
//! per-account engagement, fans who return), each beside one-line baselines
//! (popularity, the target's own formula on the earlier window, per-account
//! shares raw and shrunk). A small grid search on an inner split chooses
//! parameters, which are then judged on the outer split they never saw.
//!
//! Here: the options, loading the log and [`run`]; `panel` defines the
//! targets and baselines, `compute` measures, `report` writes the Markdown
//! tables, `charts` draws the SVG charts.

mod charts;
mod compute;
mod panel;
mod report;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use compute::spearman;
pub use panel::target_weight;

use crate::config::Limits;
use crate::engine::ingest::RawEvent;
use crate::model::{Event, IngestParams, ModelParams};
use crate::offline::import::Format;
use crate::offline::import::impressions::{Columns, MissingColumn};

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Event log (plain or gzip), in an import format.
    pub file: PathBuf,
    /// Its format; `None` = guessed from the file name, as `import` does.
    pub format: Option<Format>,
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
        report::format_time(*.split_ms),
        report::format_time(*.start_ms),
        report::format_time(*.end_ms)
    )]
    SplitOutside {
        /// The split asked for, unix ms.
        split_ms: i64,
        /// The first event, unix ms.
        start_ms: i64,
        /// Just after the last event, unix ms.
        end_ms: i64,
    },
    /// A chart could not be drawn.
    #[error("drawing the {chart} chart")]
    DrawChart {
        /// Which chart.
        chart: &'static str,
        /// What went wrong.
        #[source]
        source: charts::DrawError,
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

/// Loads an event log in an import format (`format`, or guessed from the
/// name) as events the service would accept, duplicates (same event id)
/// dropped, sorted by time. Events `import` would reject (by the default
/// limits, `ingest`'s half-lives and the clock now) are skipped; `import`
/// counts them.
///
/// # Errors
/// [`EvaluateError`] when the file cannot be read or a KuaiRand log has no
/// usable header.
pub fn load_events(path: &Path, format: Option<Format>, ingest: &IngestParams) -> Result<Vec<Event>, EvaluateError> {
    use std::io::BufRead;
    let read_error = |source| EvaluateError::Read {
        path: path.to_owned(),
        source,
    };
    let mut lines = crate::offline::open_events(path).map_err(read_error)?.lines();
    let mut raw: Vec<RawEvent> = Vec::new();
    match format.unwrap_or_else(|| Format::guess(path)) {
        Format::Kuairand => {
            let header = lines
                .next()
                .ok_or_else(|| EvaluateError::Empty { path: path.to_owned() })?
                .map_err(read_error)?;
            let columns = Columns::from_header(&header).map_err(|source| EvaluateError::Header {
                path: path.to_owned(),
                source,
            })?;
            for line in lines {
                let line = line.map_err(read_error)?;
                // Malformed rows are skipped here; `import` counts them.
                let _ = columns.events(&line, &mut raw);
            }
        }
        Format::Jsonl => {
            for line in lines {
                let line = line.map_err(read_error)?;
                if line.trim().is_empty() {
                    continue;
                }
                if let Ok(event) = crate::engine::jsonl::parse_line(&line) {
                    raw.push(event);
                }
            }
        }
    }
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let (limits, decay) = (Limits::default(), ingest.decay());
    let mut seen = HashSet::new();
    let mut events: Vec<Event> = raw
        .into_iter()
        .filter(|e| seen.insert(e.event_id.clone()))
        .filter_map(|e| crate::engine::ingest::validate(e, now_ms, &limits, &decay).ok())
        .collect();
    events.sort_by_key(|e| e.timestamp_ms);
    Ok(events)
}

/// The judged period: the history before the split, the future from it.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// The first event, unix ms.
    start_ms: i64,
    /// Where history ends and the judged future begins, unix ms.
    split_ms: i64,
    /// Just after the last event, unix ms.
    end_ms: i64,
}

impl Window {
    /// The window of sorted `events`, split at `split_ms` or in the middle.
    fn of(events: &[Event], split_ms: Option<i64>, path: &Path) -> Result<Window, EvaluateError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Err(EvaluateError::NoEvents { path: path.to_owned() });
        };
        let (start_ms, end_ms) = (first.timestamp_ms, last.timestamp_ms + 1);
        let split_ms = split_ms.unwrap_or(start_ms + (end_ms - start_ms) / 2);
        if split_ms <= start_ms || split_ms >= end_ms {
            return Err(EvaluateError::SplitOutside {
                split_ms,
                start_ms,
                end_ms,
            });
        }
        Ok(Window {
            start_ms,
            split_ms,
            end_ms,
        })
    }
}

/// The whole evaluation, as a Markdown report (and charts when asked).
///
/// # Errors
/// [`EvaluateError`] when the data cannot be read or split, or a chart
/// cannot be written.
pub fn run(options: &EvalOptions) -> Result<String, EvaluateError> {
    let events = load_events(&options.file, options.format, &options.ingest)?;
    let window = Window::of(&events, options.split_ms, &options.file)?;
    let evaluation = compute::evaluate(&events, window, options);
    let mut report = report::render(&evaluation);
    if let Some(dir) = &options.chart_dir {
        for path in charts::write(dir, &evaluation, &options.params)? {
            let _ = writeln!(report, "wrote {}", path.display());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::engine::jsonl;
    use crate::offline::generate::{GenerateOptions, generate};

    /// `evaluate` reads a log in the JSON Lines import format, prints the
    /// whole panel and draws the charts.
    #[test]
    fn evaluates_a_json_lines_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("events.jsonl");
        let events = generate(&GenerateOptions {
            seed: 3,
            creators: 40,
            viewers: 3_000,
            events: 60_000,
            end_ms: 1_700_000_000_000,
            days: 14,
        });
        let mut out = std::fs::File::create(&file).expect("create");
        for event in &events {
            writeln!(out, "{}", jsonl::to_line(event)).expect("write");
        }
        drop(out);
        let options = EvalOptions {
            file,
            format: None,
            split_ms: None,
            min_impressions: 20,
            ingest: IngestParams::default(),
            params: ModelParams::default(),
            chart_dir: Some(dir.path().join("charts")),
            tune: false,
        };
        let report = run(&options).expect("evaluate");
        for target in panel::TARGETS {
            assert!(report.contains(target.name()), "{report}");
        }
        for baseline in panel::BASELINES {
            assert!(report.contains(baseline.name()), "{report}");
        }
        assert!(!report.contains("NaN"), "{report}");
        let judged: usize = report
            .lines()
            .find_map(|line| line.strip_prefix("| creators | "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a creators row");
        assert!(judged >= 10, "{report}");
        let panel_chart = std::fs::read_to_string(dir.path().join("charts/evaluation-panel.svg")).expect("panel chart");
        assert!(panel_chart.contains("<circle"));
    }
}
