//! Bulk import of event history: KuaiRand CSV logs (plain or gzip) and JSON
//! Lines, into the embedded store directly or into a running server over
//! `StreamEvents`.
//!
//! A reader thread parses files into batches; the async side hands each batch
//! to the sink and counts what the store says. Malformed rows are counted by
//! reason, never fatal.

pub mod impressions;

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::engine::ingest::RawEvent;
use crate::engine::{Engine, RecordOutcome};

/// Input file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// KuaiRand interaction log CSV (with header), plain or `.gz`.
    Kuairand,
    /// One JSON event per line, plain or `.gz`.
    Jsonl,
}

impl Format {
    /// Guesses the format from the file name (`.jsonl`/`.json` → JSON Lines, else KuaiRand).
    pub fn guess(path: &Path) -> Format {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
            Format::Jsonl
        } else {
            Format::Kuairand
        }
    }
}

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Input files, read in order.
    pub files: Vec<PathBuf>,
    /// Forced format; `None` = guess per file.
    pub format: Option<Format>,
    /// Skip events at or after this instant (unix ms).
    pub until_ms: Option<i64>,
    /// Events per batch.
    pub batch_size: usize,
}

/// Counts of one import.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportStats {
    /// Data rows (lines) read.
    pub rows: u64,
    /// Events produced from the rows.
    pub events: u64,
    /// Events the store accepted.
    pub accepted: u64,
    /// Events already seen.
    pub duplicates: u64,
    /// Events rejected by validation, by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Rows that could not be parsed, by reason.
    pub malformed: BTreeMap<String, u64>,
    /// Rows skipped by `--until`.
    pub after_until: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl ImportStats {
    /// Rejected events, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Malformed rows, all reasons.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }

    fn add_outcome(&mut self, outcome: &RecordOutcome) {
        self.accepted += u64::from(outcome.accepted);
        self.duplicates += u64::from(outcome.duplicates);
        for (_, reason) in &outcome.rejected {
            *self.rejected.entry(reason.code().to_owned()).or_default() += 1;
        }
    }
}

impl fmt::Display for ImportStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "rows {} ({:.0} rows/s), events {}, accepted {}, duplicates {}, rejected {}, malformed rows {}, after --until {}, {:.2} s",
            self.rows,
            self.rows as f64 / seconds,
            self.events,
            self.accepted,
            self.duplicates,
            self.rejected_total(),
            self.malformed_total(),
            self.after_until,
            seconds
        )?;
        for (reason, count) in self.rejected.iter().chain(&self.malformed) {
            write!(f, "\n  {reason}: {count}")?;
        }
        Ok(())
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be opened or read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A KuaiRand file's first line is not a usable header.
    #[error("reading the header of {}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// The column it lacks.
        #[source]
        source: impressions::MissingColumn,
    },
    /// The sink failed (store error, server error); counts so far are kept.
    #[error("import stopped")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where batches go.
pub trait Sink {
    /// Why a batch was not recorded.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends one batch and waits for its outcome.
    fn send(
        &mut self,
        batch: Vec<RawEvent>,
    ) -> impl std::future::Future<Output = Result<RecordOutcome, Self::Error>> + Send;
}

/// Writes through an engine (the embedded store, server stopped).
pub struct EngineSink(pub Arc<Engine>);

impl Sink for EngineSink {
    type Error = crate::error::Error;

    async fn send(&mut self, batch: Vec<RawEvent>) -> Result<RecordOutcome, Self::Error> {
        self.0.record(batch).await
    }
}

enum Parsed {
    Batch(Vec<RawEvent>),
    Progress {
        rows: u64,
        malformed: BTreeMap<String, u64>,
        after_until: u64,
    },
    Failed(ImportError),
}

/// Reads every file and sends its events through `sink`, batch by batch.
///
/// # Errors
/// [`ImportError`] when a file cannot be read or the sink fails; malformed
/// rows are counted, not errors.
pub async fn run_import(options: ImportOptions, sink: &mut impl Sink) -> Result<ImportStats, ImportError> {
    let started = Instant::now();
    let (sender, mut receiver) = mpsc::channel::<Parsed>(8);
    let reader_options = options.clone();
    let reader = std::thread::spawn(move || read_files(&reader_options, &sender));
    let progress = progress_bar();
    let mut stats = ImportStats::default();
    let mut failure = None;
    while let Some(parsed) = receiver.recv().await {
        match parsed {
            Parsed::Batch(batch) => {
                stats.events += batch.len() as u64;
                match sink.send(batch).await {
                    Ok(outcome) => stats.add_outcome(&outcome),
                    Err(error) => {
                        failure = Some(ImportError::Sink(Box::new(error)));
                        break;
                    }
                }
                progress.set_message(format!(
                    "{} events, {} accepted, {} duplicates",
                    stats.events, stats.accepted, stats.duplicates
                ));
            }
            Parsed::Progress {
                rows,
                malformed,
                after_until,
            } => {
                stats.rows = rows;
                stats.malformed = malformed;
                stats.after_until = after_until;
                progress.set_position(rows);
            }
            Parsed::Failed(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    drop(receiver);
    // The reader ends on its own once the channel is closed.
    let _ = reader.join();
    progress.finish_and_clear();
    stats.elapsed = started.elapsed();
    match failure {
        Some(error) => {
            eprintln!("partial import: {stats}");
            Err(error)
        }
        None => Ok(stats),
    }
}

fn progress_bar() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {pos} rows ({per_sec}) {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reads every file on the reader thread, sending batches and progress
/// until the files end, one fails, or the async side hangs up.
fn read_files(options: &ImportOptions, sender: &mpsc::Sender<Parsed>) {
    let mut reader = FileReader::new(options, sender);
    for path in &options.files {
        match reader.read_file(path) {
            Ok(()) => {}
            Err(Stop::Failed(error)) => {
                // The async side may be gone already; nothing is left to tell.
                let _ = reader.send(Parsed::Failed(error));
                return;
            }
            Err(Stop::Closed) => return,
        }
    }
    reader.finish();
}

/// Why the reader thread stops early.
enum Stop {
    /// A file cannot be read; the async side is told.
    Failed(ImportError),
    /// The async side closed the channel (the sink failed).
    Closed,
}

/// The reader thread: counts so far, the batch being filled, and the channel
/// to the async side.
struct FileReader<'a> {
    options: &'a ImportOptions,
    sender: &'a mpsc::Sender<Parsed>,
    rows: u64,
    after_until: u64,
    malformed: BTreeMap<String, u64>,
    batch: Vec<RawEvent>,
}

impl<'a> FileReader<'a> {
    fn new(options: &'a ImportOptions, sender: &'a mpsc::Sender<Parsed>) -> FileReader<'a> {
        FileReader {
            options,
            sender,
            rows: 0,
            after_until: 0,
            malformed: BTreeMap::new(),
            batch: Self::empty_batch(options),
        }
    }

    /// Room for a full batch and the few events of the row that fills it.
    fn empty_batch(options: &ImportOptions) -> Vec<RawEvent> {
        Vec::with_capacity(options.batch_size + 8)
    }

    /// Reads one file line by line; a KuaiRand file's first line is its header.
    fn read_file(&mut self, path: &Path) -> Result<(), Stop> {
        let format = self.options.format.unwrap_or_else(|| Format::guess(path));
        let read_error = |source| {
            Stop::Failed(ImportError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mut lines = super::open_events(path).map_err(read_error)?;
        let mut columns = None;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).map_err(read_error)? == 0 {
                return Ok(());
            }
            if line.trim().is_empty() {
                continue;
            }
            if format == Format::Kuairand && columns.is_none() {
                let found = impressions::Columns::from_header(&line).map_err(|source| {
                    Stop::Failed(ImportError::Header {
                        path: path.to_owned(),
                        source,
                    })
                })?;
                columns = Some(found);
                continue;
            }
            self.row(&line, columns.as_ref())?;
        }
    }

    /// One data row: its events join the batch unless the row is malformed or
    /// reaches `--until`; a full batch is sent.
    fn row(&mut self, line: &str, columns: Option<&impressions::Columns>) -> Result<(), Stop> {
        self.rows += 1;
        let before = self.batch.len();
        let parsed = match columns {
            Some(columns) => columns.events(line, &mut self.batch).map_err(str::to_owned),
            None => crate::engine::jsonl::parse_line(line.trim())
                .map(|event| self.batch.push(event))
                .map_err(|error| error.reason()),
        };
        if let Err(reason) = parsed {
            self.batch.truncate(before);
            *self.malformed.entry(format!("malformed: {reason}")).or_default() += 1;
            return Ok(());
        }
        if let Some(until) = self.options.until_ms
            && self.batch[before..].iter().any(|e| e.timestamp_ms >= until)
        {
            self.batch.truncate(before);
            self.after_until += 1;
            return Ok(());
        }
        if self.batch.len() >= self.options.batch_size {
            let full = std::mem::replace(&mut self.batch, Self::empty_batch(self.options));
            self.send(self.progress())?;
            self.send(Parsed::Batch(full))?;
        }
        Ok(())
    }

    fn progress(&self) -> Parsed {
        Parsed::Progress {
            rows: self.rows,
            malformed: self.malformed.clone(),
            after_until: self.after_until,
        }
    }

    fn send(&self, message: Parsed) -> Result<(), Stop> {
        self.sender.blocking_send(message).map_err(|_| Stop::Closed)
    }

    /// Sends the last, partial batch and the final counts.
    fn finish(mut self) {
        let last = std::mem::take(&mut self.batch);
        if !last.is_empty() && self.send(Parsed::Batch(last)).is_err() {
            return;
        }
        let _ = self.send(self.progress());
    }
}
