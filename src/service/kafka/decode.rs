//! One Kafka message → one event, or the reason it goes to the dead-letter
//! topic. The JSON format is a line of the JSON Lines import format and is
//! parsed by the same code; the protobuf format is the `Event` message.

use prost::Message as _;

use crate::config::KafkaFormat;
use crate::engine::ingest::RawEvent;
use crate::engine::jsonl::{JsonLineError, parse_line};
use crate::proto;

/// Why a message could not be read as an event (before validation).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No payload (a tombstone or an empty message).
    #[error("empty message")]
    Empty,
    /// A JSON payload that is not UTF-8.
    #[error("payload is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// A JSON payload that is not one event.
    #[error("{}", .0.reason())]
    Json(#[source] JsonLineError),
    /// A protobuf payload that is not an `Event`.
    #[error("invalid protobuf Event: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// The dead-letter reasons of decoding, as counted in the metrics (the
/// validation reasons are [`crate::engine::ingest::RejectReason::code`]).
pub const DECODE_REASONS: [&str; 5] = ["empty", "not_utf8", "invalid_json", "unknown_kind", "invalid_protobuf"];

impl DecodeError {
    /// Short stable code, one of [`DECODE_REASONS`].
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::NotUtf8(_) => "not_utf8",
            DecodeError::Json(JsonLineError::UnknownKindName(_) | JsonLineError::UnknownKindNumber(_)) => {
                "unknown_kind"
            }
            DecodeError::Json(JsonLineError::Json(_) | JsonLineError::KindNotNameOrNumber(_)) => "invalid_json",
            DecodeError::Protobuf(_) => "invalid_protobuf",
        }
    }
}

/// Where a message sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Reads one payload as an event; an event without an `event_id` gets one
/// derived from its position, so a replay of it is a duplicate too.
///
/// # Errors
/// [`DecodeError`] when the payload is not one event of `format`.
pub fn decode(format: KafkaFormat, payload: Option<&[u8]>, position: Position<'_>) -> Result<RawEvent, DecodeError> {
    let payload = payload.filter(|p| !p.is_empty()).ok_or(DecodeError::Empty)?;
    let mut event = match format {
        KafkaFormat::Json => {
            let text = std::str::from_utf8(payload).map_err(DecodeError::NotUtf8)?;
            parse_line(text.trim()).map_err(DecodeError::Json)?
        }
        KafkaFormat::Protobuf => RawEvent::from(proto::Event::decode(payload).map_err(DecodeError::Protobuf)?),
    };
    if event.event_id.is_empty() {
        event.event_id = derived_event_id(position);
    }
    Ok(event)
}

/// Longest derived id: fits the smallest sensible `max_event_id_bytes`.
const DERIVED_ID_MAX: usize = 48;

/// `TOPIC:PARTITION:OFFSET`, or with the topic replaced by its 64-bit FNV-1a
/// hash when that would be longer than [`DERIVED_ID_MAX`] bytes. Stable
/// across processes and versions: replays must derive the same id.
pub fn derived_event_id(position: Position<'_>) -> String {
    let Position {
        topic,
        partition,
        offset,
    } = position;
    let readable = format!("{topic}:{partition}:{offset}");
    if readable.len() <= DERIVED_ID_MAX {
        return readable;
    }
    let hash = topic.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}:{partition}:{offset}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EventKind;

    const AT: Position<'static> = Position {
        topic: "events",
        partition: 3,
        offset: 42,
    };

    #[test]
    fn a_json_line_is_an_event_and_a_missing_id_is_derived_from_the_position() {
        let line = br#"{"kind":"LIKE","viewer_id":7,"creator_id":100,"timestamp_ms":5}"#;
        let event = decode(KafkaFormat::Json, Some(line), AT).expect("event");
        assert_eq!(event.kind, Some(EventKind::Like));
        assert_eq!(event.event_id, "events:3:42");
        let with_id = br#"{"event_id":"e1","kind":"LIKE","viewer_id":7,"creator_id":100}"#;
        assert_eq!(
            decode(KafkaFormat::Json, Some(with_id), AT).expect("event").event_id,
            "e1"
        );
    }

    #[test]
    fn malformed_payloads_name_their_reason() {
        let code = |format, payload: &[u8]| decode(format, Some(payload), AT).expect_err("bad").code();
        assert_eq!(decode(KafkaFormat::Json, None, AT).expect_err("bad").code(), "empty");
        assert_eq!(code(KafkaFormat::Json, b"\xff\xfe"), "not_utf8");
        assert_eq!(code(KafkaFormat::Json, b"{not json"), "invalid_json");
        assert_eq!(
            code(KafkaFormat::Json, br#"{"kind":"HUG","creator_id":1}"#),
            "unknown_kind"
        );
        assert_eq!(code(KafkaFormat::Protobuf, b"\xff\xff\xff"), "invalid_protobuf");
        for payload in [&b""[..], b"\xff", b"{", br#"{"kind":"HUG","creator_id":1}"#] {
            let error = decode(KafkaFormat::Json, Some(payload), AT).expect_err("bad");
            assert!(DECODE_REASONS.contains(&error.code()), "{error}");
        }
    }

    #[test]
    fn a_protobuf_event_decodes() {
        let event = proto::Event {
            event_id: String::new(),
            kind: proto::EventKind::Tip as i32,
            viewer_id: 1,
            creator_id: 2,
            timestamp_ms: 3,
            amount: 4.0,
        };
        let decoded = decode(KafkaFormat::Protobuf, Some(&event.encode_to_vec()), AT).expect("event");
        assert_eq!(decoded.kind, Some(EventKind::Tip));
        assert_eq!(decoded.amount, 4.0);
        assert_eq!(decoded.event_id, "events:3:42");
    }

    #[test]
    fn a_refund_decodes_from_json_and_protobuf() {
        let line = br#"{"event_id":"r1","kind":"REFUND","viewer_id":7,"creator_id":100,"amount":12.5}"#;
        let event = decode(KafkaFormat::Json, Some(line), AT).expect("json refund");
        assert_eq!((event.kind, event.amount), (Some(EventKind::Refund), 12.5));
        let message = proto::Event {
            event_id: "r2".into(),
            kind: proto::EventKind::Refund as i32,
            viewer_id: 7,
            creator_id: 100,
            timestamp_ms: 3,
            amount: 12.5,
        };
        let decoded = decode(KafkaFormat::Protobuf, Some(&message.encode_to_vec()), AT).expect("protobuf refund");
        assert_eq!((decoded.kind, decoded.amount), (Some(EventKind::Refund), 12.5));
    }

    #[test]
    fn a_long_topic_derives_a_short_stable_id() {
        let topic = "a".repeat(200);
        let at = Position {
            topic: &topic,
            partition: 1_000_000,
            offset: i64::MAX,
        };
        let id = derived_event_id(at);
        assert!(id.len() <= DERIVED_ID_MAX, "{id}");
        assert_eq!(id, derived_event_id(at));
        assert_ne!(id, derived_event_id(Position { offset: 0, ..at }));
    }
}
