//! Impression logs in the KuaiRand format (CSV with a header row): one
//! impression per row.
//!
//! Mapping: the impression → VIEW (amount = fraction of the video played,
//! at least 0.01 so an unwatched impression is a minimal view rather than
//! "fraction not given"); `is_like` → LIKE, `is_comment` → COMMENT,
//! `is_forward` → SHARE, `is_profile_enter` → PROFILE_VISIT (when the log
//! has that column), `is_hate` → REPORT, then `is_follow` → FOLLOW (the
//! follow comes out of the impression, so it is applied after it). Event ids
//! are derived from the row (`kr-USER-VIDEO-TIME-kind`), so a re-import is all
//! duplicates; rows repeating the same (user, video, time) are duplicates too.

use crate::engine::ingest::RawEvent;
use crate::model::EventKind;

/// Smallest VIEW amount emitted for an impression.
pub const MIN_VIEW_FRACTION: f64 = 0.01;

/// A KuaiRand header without a column the mapping needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("KuaiRand header lacks column `{column}`")]
pub struct MissingColumn {
    /// The column's name.
    pub column: &'static str,
}

/// Column positions of the fields used, found from the header.
#[derive(Clone, Debug)]
pub struct Columns {
    user: usize,
    video: usize,
    time_ms: usize,
    like: usize,
    follow: usize,
    comment: usize,
    forward: usize,
    hate: usize,
    profile_enter: Option<usize>,
    play_time_ms: usize,
    duration_ms: usize,
    author: usize,
    count: usize,
}

impl Columns {
    /// Reads the header row.
    ///
    /// # Errors
    /// [`MissingColumn`] names the first required column that is missing.
    pub fn from_header(header: &str) -> Result<Columns, MissingColumn> {
        let names: Vec<&str> = header
            .trim_end_matches(['\r', '\n'])
            .split(',')
            .map(str::trim)
            .collect();
        let find = |column: &'static str| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(column))
                .ok_or(MissingColumn { column })
        };
        Ok(Columns {
            user: find("user_id")?,
            video: find("video_id")?,
            time_ms: find("time_ms")?,
            like: find("is_like")?,
            follow: find("is_follow")?,
            comment: find("is_comment")?,
            forward: find("is_forward")?,
            hate: find("is_hate")?,
            // Optional: logs without it still import, without profile visits.
            profile_enter: find("is_profile_enter").ok(),
            play_time_ms: find("play_time_ms")?,
            duration_ms: find("duration_ms")?,
            author: find("author_id")?,
            count: names.len(),
        })
    }

    /// The timestamp of a row, without building its events (for cut-offs).
    pub fn timestamp(&self, line: &str) -> Option<i64> {
        line.split(',').nth(self.time_ms).and_then(|f| f.trim().parse().ok())
    }

    /// The events of one data row.
    ///
    /// # Errors
    /// A short reason when the row has the wrong number of fields or a field
    /// that is not a number.
    pub fn events(&self, line: &str, out: &mut Vec<RawEvent>) -> Result<(), &'static str> {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut fields = [""; 64];
        let mut count = 0;
        for field in line.split(',') {
            if count == fields.len() {
                return Err("too many fields");
            }
            fields[count] = field.trim();
            count += 1;
        }
        if count != self.count {
            return Err("wrong number of fields");
        }
        let int = |index: usize| {
            fields[index]
                .parse::<u64>()
                .map_err(|_| "field is not a non-negative integer")
        };
        let flag = |index: usize| -> Result<bool, &'static str> {
            match fields[index] {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err("flag is not 0 or 1"),
            }
        };
        let user = int(self.user)?;
        let video = int(self.video)?;
        let time_ms = i64::try_from(int(self.time_ms)?).map_err(|_| "time_ms out of range")?;
        let author = int(self.author)?;
        let play = fields[self.play_time_ms]
            .parse::<f64>()
            .map_err(|_| "play_time_ms is not a number")?;
        let duration = fields[self.duration_ms]
            .parse::<f64>()
            .map_err(|_| "duration_ms is not a number")?;
        let fraction = if duration > 0.0 && play.is_finite() {
            (play / duration).clamp(MIN_VIEW_FRACTION, 1.0)
        } else {
            MIN_VIEW_FRACTION
        };

        let mut push = |kind: EventKind, amount: f64| {
            out.push(RawEvent {
                event_id: format!("kr-{user}-{video}-{time_ms}-{}", kind.name()),
                kind: Some(kind),
                viewer_id: user,
                creator_id: author,
                timestamp_ms: time_ms,
                amount,
            });
        };
        // Check every flag before emitting anything, so a bad row emits nothing.
        let flags = [
            (EventKind::Like, flag(self.like)?),
            (EventKind::Comment, flag(self.comment)?),
            (EventKind::Share, flag(self.forward)?),
            (
                EventKind::ProfileVisit,
                self.profile_enter.map(flag).transpose()?.unwrap_or(false),
            ),
            (EventKind::Report, flag(self.hate)?),
            (EventKind::Follow, flag(self.follow)?),
        ];
        push(EventKind::View, fraction);
        for (kind, set) in flags {
            if set {
                push(kind, 0.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab,author_id";

    #[test]
    fn maps_a_row_to_events() {
        let columns = Columns::from_header(HEADER).expect("header");
        let mut out = Vec::new();
        columns
            .events(
                "712,5239,20220425,0,1650812741436,1,1,1,0,0,0,1,24933,49866,0,0,0,0,1,8079479\r\n",
                &mut out,
            )
            .expect("row");
        let kinds: Vec<EventKind> = out.iter().filter_map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::View, EventKind::Like, EventKind::Follow]);
        assert_eq!(out[0].amount, 0.5);
        assert_eq!(out[0].viewer_id, 712);
        assert_eq!(out[0].creator_id, 8079479);
        assert_eq!(out[0].timestamp_ms, 1_650_812_741_436);
        assert_eq!(out[2].event_id, "kr-712-5239-1650812741436-follow");

        out.clear();
        columns
            .events(
                "9,2,20220425,0,1650812741436,1,0,0,0,0,0,0,5,10,3000,0,1,0,1,3",
                &mut out,
            )
            .expect("profile visit");
        let kinds: Vec<EventKind> = out.iter().filter_map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::View, EventKind::ProfileVisit]);

        out.clear();
        columns
            .events("1,2,20220425,0,1650812741436,0,0,0,0,0,0,0,0,0,0,0,0,0,1,3", &mut out)
            .expect("unwatched");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].amount, MIN_VIEW_FRACTION);
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        let columns = Columns::from_header(HEADER).expect("header");
        let mut out = Vec::new();
        for bad in [
            "",
            "1,2,3",
            "x,5239,20220425,0,1650812741436,1,1,1,0,0,0,1,24933,49866,0,0,0,0,1,8079479",
            "712,5239,20220425,0,1650812741436,1,2,1,0,0,0,1,24933,49866,0,0,0,0,1,8079479",
            "712,5239,20220425,0,-5,1,1,1,0,0,0,1,24933,49866,0,0,0,0,1,8079479",
            "712,5239,20220425,0,1650812741436,1,1,1,0,0,0,1,abc,49866,0,0,0,0,1,8079479",
            "712,5239,20220425,0,1650812741436,1,1,1,0,0,0,1,24933,49866,0,0,0,0,1,8079479,extra",
            &",".repeat(100),
        ] {
            assert!(columns.events(bad, &mut out).is_err(), "{bad:?}");
            assert!(out.is_empty(), "{bad:?} emitted events");
        }
        assert_eq!(
            Columns::from_header("user_id,video_id").map(|_| ()),
            Err(MissingColumn { column: "time_ms" })
        );
    }
}
