//! The Kafka record format of the ingest topic. Ingest writes it; external producers
//! may write it too (see `schemas/RECORD_FORMAT.md`); the router reads it.

use crate::event::Event;

/// Bumped when the value or headers change incompatibly.
pub const SCHEMA_VERSION: &str = "1";

/// Headers of the dead-letter topic's records (besides [`header::SOURCE_ID`]).
pub mod dead_letter {
    pub const DESTINATION_ID: &str = "switchyard-destination-id";
    /// Where the event was given up on: `ingest_webhook_mapping`, `validate`, `deliver`...
    pub const STAGE: &str = "switchyard-dead-letter-stage";
    pub const REASON: &str = "switchyard-dead-letter-reason";
    pub const ATTEMPTS: &str = "switchyard-dead-letter-attempts";
}

pub mod header {
    pub const SOURCE_ID: &str = "switchyard-source-id";
    pub const SCHEMA_VERSION: &str = "switchyard-schema-version";
    pub const MESSAGE_ID: &str = "switchyard-message-id";
    pub const EVENT_TYPE: &str = "switchyard-event-type";
    /// W3C Trace Context, so one trace follows the event across the Kafka hop.
    pub const TRACEPARENT: &str = "traceparent";
}

/// `<source id>/<userId, else anonymousId>`: Kafka's key hashing then keeps one user's
/// events in one partition, in order, and never mixes two sources' users.
pub fn record_key(source_id: &str, event: &Event) -> String {
    format!("{source_id}/{}", event.user_key().unwrap_or_default())
}

/// The headers of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeaders {
    pub source_id: String,
    pub schema_version: String,
    pub message_id: Option<String>,
    pub event_type: Option<String>,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no {0} header")]
    MissingHeader(&'static str),
    #[error("header {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("schema version {0:?} is not supported (this build reads version {SCHEMA_VERSION})")]
    UnsupportedVersion(String),
    #[error("record value is not a valid event: {0}")]
    InvalidValue(String),
}

impl RecordHeaders {
    pub fn new(source_id: &str, event: &Event, traceparent: Option<String>) -> Self {
        RecordHeaders {
            source_id: source_id.to_string(),
            schema_version: SCHEMA_VERSION.to_string(),
            message_id: event.message_id().map(str::to_string),
            event_type: Some(event.event_type().as_str().to_string()),
            traceparent,
        }
    }

    /// Header name and value pairs in the order they are written.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            (header::SOURCE_ID, self.source_id.as_str()),
            (header::SCHEMA_VERSION, self.schema_version.as_str()),
        ];
        let optional = [
            (header::MESSAGE_ID, &self.message_id),
            (header::EVENT_TYPE, &self.event_type),
            (header::TRACEPARENT, &self.traceparent),
        ];
        pairs.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.as_deref()?))),
        );
        pairs
    }

    /// Reads the headers of a record. Only the source id is required; a missing schema
    /// version means the current one, so hand-written producers stay simple.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Result<Self, RecordError> {
        let mut headers = RecordHeaders {
            source_id: String::new(),
            schema_version: SCHEMA_VERSION.to_string(),
            message_id: None,
            event_type: None,
            traceparent: None,
        };
        let mut has_source = false;
        for (name, value) in pairs {
            let Some(value) = value else { continue };
            let (known, slot): (&'static str, &mut Option<String>) = match name {
                header::SOURCE_ID => {
                    headers.source_id = utf8(header::SOURCE_ID, value)?;
                    has_source = true;
                    continue;
                }
                header::SCHEMA_VERSION => {
                    headers.schema_version = utf8(header::SCHEMA_VERSION, value)?;
                    continue;
                }
                header::MESSAGE_ID => (header::MESSAGE_ID, &mut headers.message_id),
                header::EVENT_TYPE => (header::EVENT_TYPE, &mut headers.event_type),
                header::TRACEPARENT => (header::TRACEPARENT, &mut headers.traceparent),
                _ => continue,
            };
            *slot = Some(utf8(known, value)?);
        }
        if !has_source || headers.source_id.is_empty() {
            return Err(RecordError::MissingHeader(header::SOURCE_ID));
        }
        if headers.schema_version != SCHEMA_VERSION {
            return Err(RecordError::UnsupportedVersion(headers.schema_version));
        }
        Ok(headers)
    }
}

fn utf8(name: &'static str, value: &[u8]) -> Result<String, RecordError> {
    String::from_utf8(value.to_vec()).map_err(|_| RecordError::NotUtf8(name))
}

/// Reads a record value back into an event.
pub fn decode_value(value: &[u8]) -> Result<Event, RecordError> {
    serde_json::from_slice(value).map_err(|error| RecordError::InvalidValue(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).expect("sample parses")
    }

    #[test]
    fn key_prefers_user_id_and_falls_back_to_anonymous_id() {
        let known = event(json!({"type": "track", "userId": "u1", "anonymousId": "a1", "event": "e"}));
        assert_eq!(record_key("web", &known), "web/u1");
        let anonymous = event(json!({"type": "page", "anonymousId": "a1"}));
        assert_eq!(record_key("web", &anonymous), "web/a1");
    }

    #[test]
    fn headers_round_trip_and_require_a_source() {
        let sample = event(json!({"type": "track", "userId": "u1", "event": "e", "messageId": "m1"}));
        let headers = RecordHeaders::new(
            "web",
            &sample,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        let pairs = headers.pairs();
        let read = RecordHeaders::from_pairs(pairs.iter().map(|(name, value)| (*name, Some(value.as_bytes()))))
            .expect("round trip");
        assert_eq!(read, headers);
        assert_eq!(
            RecordHeaders::from_pairs([(header::MESSAGE_ID, Some(&b"m1"[..]))]),
            Err(RecordError::MissingHeader(header::SOURCE_ID))
        );
        assert_eq!(
            RecordHeaders::from_pairs([
                (header::SOURCE_ID, Some(&b"web"[..])),
                (header::SCHEMA_VERSION, Some(&b"9"[..]))
            ]),
            Err(RecordError::UnsupportedVersion("9".into()))
        );
    }
}
