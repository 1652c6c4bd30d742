//! The evaluation (`creator-boost evaluate`): score creators on an earlier
//! window of real logs and measure how well `creator_value` ranks them by
//! their fan engagement in the following window, beside two baselines
//! (popularity, and the raw engagement rate of the earlier window). A small
//! grid search on an inner split chooses parameters, which are then judged on
//! the outer split they never saw.
//!
//! Here: the options, loading the log and [`run`]; `compute` measures,
//! `report` writes the Markdown report, `charts` draws the SVG charts.

mod charts;
mod compute;
mod report;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use compute::{spearman, target_weight};

use crate::model::{Event, IngestParams, ModelParams};
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
    let events = load_kuairand(&options.file)?;
    let window = Window::of(&events, options.split_ms, &options.file)?;
    let evaluation = compute::evaluate(&events, window, options);
    let mut report = report::render(&evaluation);
    if let Some(dir) = &options.chart_dir {
        for path in charts::write(dir, &evaluation.configured, &options.params)? {
            let _ = writeln!(report, "wrote {}", path.display());
        }
    }
    Ok(report)
}
