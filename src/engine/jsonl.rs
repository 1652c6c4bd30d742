//! JSON Lines events: one JSON object per line, fields as in the `Event`
//! message. `kind` is a name (`"LIKE"` or `"like"`) or the enum number.
//!
//! ```json
//! {"event_id":"e1","kind":"LIKE","viewer_id":7,"creator_id":100,"timestamp_ms":1650812741436,"amount":0}
//! ```
//! `event_id`, `timestamp_ms` (0 = now) and `amount` may be left out.

use serde::{Deserialize, Serialize};

use crate::engine::ingest::RawEvent;
use crate::model::EventKind;

/// One line of the JSON Lines format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonEvent {
    /// Idempotency key.
    #[serde(default)]
    pub event_id: String,
    /// Kind name or number.
    pub kind: serde_json::Value,
    /// Viewer (0 = anonymous).
    #[serde(default)]
    pub viewer_id: u64,
    /// Creator.
    pub creator_id: u64,
    /// Unix milliseconds (0 = now).
    #[serde(default)]
    pub timestamp_ms: i64,
    /// Money or fraction watched.
    #[serde(default)]
    pub amount: f64,
}

/// Why a line is not an event.
#[derive(Debug, thiserror::Error)]
pub enum JsonLineError {
    /// Not JSON, or not an object with the event's fields.
    #[error("invalid JSON event")]
    Json(#[source] serde_json::Error),
    /// `kind` names no event kind.
    #[error("unknown kind `{0}`")]
    UnknownKindName(String),
    /// `kind` numbers no event kind.
    #[error("unknown kind number {0}")]
    UnknownKindNumber(serde_json::Number),
    /// `kind` is neither a string nor a number.
    #[error("kind must be a name or number, got {0}")]
    KindNotNameOrNumber(serde_json::Value),
}

impl JsonLineError {
    /// What is wrong, without where in the line, so that rows counted by
    /// reason aggregate.
    pub fn reason(&self) -> String {
        match self {
            JsonLineError::Json(error) => {
                let text = error.to_string();
                let kind = text.split(" at line").next().unwrap_or(&text);
                format!("{self}: {kind}")
            }
            other => other.to_string(),
        }
    }
}

/// Parses one line.
///
/// # Errors
/// [`JsonLineError`] says what is wrong with the line.
pub fn parse_line(line: &str) -> Result<RawEvent, JsonLineError> {
    let event: JsonEvent = serde_json::from_str(line).map_err(JsonLineError::Json)?;
    let kind = match &event.kind {
        serde_json::Value::String(name) => {
            let name = name.to_ascii_lowercase();
            if name == "event_kind_unspecified" {
                None
            } else {
                Some(
                    EventKind::ALL
                        .into_iter()
                        .find(|k| k.name() == name)
                        .ok_or(JsonLineError::UnknownKindName(name))?,
                )
            }
        }
        serde_json::Value::Number(number) => match number.as_u64() {
            Some(0) => None,
            Some(n) if (n as usize) <= EventKind::ALL.len() => Some(EventKind::ALL[n as usize - 1]),
            _ => return Err(JsonLineError::UnknownKindNumber(number.clone())),
        },
        other => return Err(JsonLineError::KindNotNameOrNumber(other.clone())),
    };
    Ok(RawEvent {
        event_id: event.event_id,
        kind,
        viewer_id: event.viewer_id,
        creator_id: event.creator_id,
        timestamp_ms: event.timestamp_ms,
        amount: event.amount,
    })
}

/// Writes one event as a JSON line (without the newline).
pub fn to_line(event: &RawEvent) -> String {
    let kind = event
        .kind
        .map_or("EVENT_KIND_UNSPECIFIED".to_owned(), |k| k.name().to_ascii_uppercase());
    let json = JsonEvent {
        event_id: event.event_id.clone(),
        kind: serde_json::Value::String(kind),
        viewer_id: event.viewer_id,
        creator_id: event.creator_id,
        timestamp_ms: event.timestamp_ms,
        amount: event.amount,
    };
    // Serializing this plain struct cannot fail (no maps with non-string keys).
    serde_json::to_string(&json).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_defaults() {
        let e = parse_line(
            r#"{"event_id":"a","kind":"LIKE","viewer_id":7,"creator_id":100,"timestamp_ms":5,"amount":0.5}"#,
        )
        .expect("line");
        assert_eq!(e.kind, Some(EventKind::Like));
        assert_eq!((e.viewer_id, e.creator_id, e.timestamp_ms, e.amount), (7, 100, 5, 0.5));
        let e = parse_line(r#"{"kind":7,"creator_id":1}"#).expect("numbered");
        assert_eq!(e.kind, Some(EventKind::Tip));
        assert_eq!(e.event_id, "");
        assert_eq!(
            parse_line(r#"{"kind":"follow","creator_id":1,"viewer_id":2}"#)
                .expect("lower")
                .kind,
            Some(EventKind::Follow)
        );
        assert_eq!(parse_line(r#"{"kind":0,"creator_id":1}"#).expect("zero").kind, None);
    }

    /// Every kind reads by its name (any case) and by its protocol number,
    /// the same numbers as the proto enum (REFUND is 13).
    #[test]
    fn every_kind_reads_by_name_and_number() {
        for kind in EventKind::ALL {
            let number = crate::proto::EventKind::from(kind) as i32;
            for line in [
                format!(r#"{{"kind":"{}","creator_id":1}}"#, kind.name()),
                format!(r#"{{"kind":"{}","creator_id":1}}"#, kind.name().to_ascii_uppercase()),
                format!(r#"{{"kind":{number},"creator_id":1}}"#),
            ] {
                assert_eq!(parse_line(&line).expect("kind").kind, Some(kind), "{line}");
            }
        }
        let refund = parse_line(r#"{"kind":"REFUND","viewer_id":2,"creator_id":1,"amount":19.5}"#).expect("refund");
        assert_eq!((refund.kind, refund.amount), (Some(EventKind::Refund), 19.5));
        assert_eq!(
            parse_line(r#"{"kind":13,"creator_id":1}"#).expect("13").kind,
            Some(EventKind::Refund)
        );
    }

    #[test]
    fn round_trips() {
        let event = RawEvent {
            event_id: "x".into(),
            kind: Some(EventKind::JoinFanGroup),
            viewer_id: 1,
            creator_id: 2,
            timestamp_ms: 3,
            amount: 0.25,
        };
        assert_eq!(parse_line(&to_line(&event)).expect("round trip"), event);
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"kind":"LIKE"}"#,
            r#"{"kind":"SMILE","creator_id":1}"#,
            r#"{"kind":14,"creator_id":1}"#,
            r#"{"kind":true,"creator_id":1}"#,
            r#"{"kind":"LIKE","creator_id":-1}"#,
            r#"{"kind":"LIKE","creator_id":1,"extra":1}"#,
            r#"{"kind":"LIKE","creator_id":18446744073709551616}"#,
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reasons_leave_out_the_position() {
        let reason = |line: &str| parse_line(line).map(|_| ()).map_err(|e| e.reason());
        assert_eq!(
            reason("{"),
            Err("invalid JSON event: EOF while parsing an object".to_owned())
        );
        assert_eq!(
            reason(r#"{"kind":"LIKE"}"#),
            Err("invalid JSON event: missing field `creator_id`".to_owned())
        );
        assert_eq!(
            reason(r#"{"kind":"SMILE","creator_id":1}"#),
            Err("unknown kind `smile`".to_owned())
        );
    }
}
