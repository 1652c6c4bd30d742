//! The offline tools: they read event files and the store, never a running
//! server.
//!
//! - [`import`]: bulk import of event files (JSON lines, KuaiRand) into a store.
//! - [`scores`]: every creator's score as of an instant, from a store.
//! - [`generate`]: synthetic events with a seeded, reproducible generator.
//! - [`evaluate`]: the model against later behaviour on real logs, and its
//!   report and charts.
//!
//! [`open_events`] is how every one of them opens an event file.

pub mod evaluate;
pub mod generate;
pub mod import;
pub mod scores;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// Read buffer of event files: large enough that the decompressor and the
/// line splitter rarely wait on a system call.
const READ_BUFFER: usize = 1 << 16;

/// Opens an event file for reading lines, decompressing gzip (recognised by
/// its magic bytes, whatever the file is called; concatenated members too).
///
/// # Errors
/// The I/O error of opening the file or reading its first bytes.
pub fn open_events(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    let gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::bufread::MultiGzDecoder::new(file),
        ))
    } else {
        Box::new(file)
    })
}
