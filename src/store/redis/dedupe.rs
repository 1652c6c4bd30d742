//! A viewer's dedupe window and pending deltas, kept inside the viewer's
//! own hash (no key per event):
//!
//! - `d`: one 16-byte entry per event with an id accepted inside the
//!   window: the low 64 bits of its hash, then its accepting time in ms,
//!   both big-endian. Rewritten, pruned of entries past the window, with
//!   every new record version (so the version check covers it).
//! - `p`: one line per event whose steps 2 and 3 are not known to be done,
//!   `<event hash>;<accepted ms>;<deltas>`: what a resend needs to complete
//!   them. The settle step drops the line once they are done.
//!
//! 64 bits of hash per viewer: two of one viewer's event ids collide with
//! probability ~n²/2⁶⁵ for n ids in the window (10⁻¹¹ at a million).

use std::collections::HashSet;

use super::codec::EventDeltaText;
use crate::store::StoreError;

/// Bytes of one packed entry.
const ENTRY_BYTES: usize = 16;

/// The event ids a viewer sent inside the window.
pub(super) struct DedupeWindow {
    /// `(short hash, accepted ms)`, oldest first.
    entries: Vec<(u64, i64)>,
    /// The short hashes, for lookups.
    hashes: HashSet<u64>,
}

impl DedupeWindow {
    /// Parses a stored `d` field, keeping the entries still inside the window at `now_ms`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the length is not a whole number of entries.
    pub(super) fn parse(bytes: &[u8], now_ms: i64, window_ms: i64) -> Result<DedupeWindow, StoreError> {
        if !bytes.len().is_multiple_of(ENTRY_BYTES) {
            return Err(StoreError::Corrupt(format!("dedupe entries of {} bytes", bytes.len())));
        }
        let mut entries = Vec::with_capacity(bytes.len() / ENTRY_BYTES);
        for entry in bytes.chunks_exact(ENTRY_BYTES) {
            let (hash, at) = entry.split_at(8);
            let hash = u64::from_be_bytes(hash.try_into().unwrap_or_default());
            let at = i64::from_be_bytes(at.try_into().unwrap_or_default());
            if now_ms - at < window_ms {
                entries.push((hash, at));
            }
        }
        let hashes = entries.iter().map(|(hash, _)| *hash).collect();
        Ok(DedupeWindow { entries, hashes })
    }

    /// Whether the event of this hash was accepted inside the window.
    pub(super) fn contains(&self, hash: u128) -> bool {
        self.hashes.contains(&short(hash))
    }

    /// Remembers an event accepted at `now_ms`.
    pub(super) fn push(&mut self, hash: u128, now_ms: i64) {
        self.entries.push((short(hash), now_ms));
        self.hashes.insert(short(hash));
    }

    /// The packed form, as stored.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for (hash, at) in &self.entries {
            out.extend_from_slice(&hash.to_be_bytes());
            out.extend_from_slice(&at.to_be_bytes());
        }
        out
    }
}

/// The low 64 bits of an event hash (the key is per viewer already).
fn short(hash: u128) -> u64 {
    hash as u64
}

/// The pending line of an event.
pub(super) fn pending_line(hash: u128, now_ms: i64, delta: &EventDeltaText) -> String {
    format!("{}{};{}\n", hash_text(hash), now_ms, delta.as_str())
}

/// How an event's hash starts its pending line (and is named to the settle step).
pub(super) fn hash_text(hash: u128) -> String {
    format!("{hash:032x};")
}

/// The stored deltas of an event, if its pending line is in `pending`.
pub(super) fn find_pending(pending: &[u8], hash: u128) -> Option<EventDeltaText> {
    let start = hash_text(hash);
    let text = std::str::from_utf8(pending).ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(start.as_str())?;
        let (_, delta) = rest.split_once(';')?;
        Some(EventDeltaText::stored(delta.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_expire_with_the_window() {
        let mut window = DedupeWindow::parse(b"", 0, 100).unwrap();
        window.push(7, 1_000);
        window.push(u128::MAX, 1_050);
        let bytes = window.encode();
        assert_eq!(bytes.len(), 32);
        let later = DedupeWindow::parse(&bytes, 1_099, 100).unwrap();
        assert!(later.contains(7) && later.contains(u128::MAX) && !later.contains(8));
        let past = DedupeWindow::parse(&bytes, 1_100, 100).unwrap();
        assert!(!past.contains(7) && past.contains(u128::MAX));
        assert_eq!(past.encode().len(), 16);
        assert!(DedupeWindow::parse(&bytes[..15], 0, 100).is_err());
    }

    #[test]
    fn pending_lines_are_found_by_event_hash() {
        let delta = EventDeltaText::stored("5|1|0|2=1e0~5|1|0|2=1e0".to_owned());
        let text = format!("{}{}", pending_line(1, 10, &delta), pending_line(2, 11, &delta));
        assert_eq!(find_pending(text.as_bytes(), 2), Some(delta));
        assert_eq!(find_pending(text.as_bytes(), 3), None);
    }
}
