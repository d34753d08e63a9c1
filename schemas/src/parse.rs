//! Turning request bodies into validated events, with limits checked on the bytes the
//! client actually sent.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::event::{Event, EventType, Object};
use crate::validate::{Limits, ValidationError, validate};

/// The events of one request plus the batch-level fields that enrichment applies to
/// each of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedRequest {
    pub events: Vec<Event>,
    pub sent_at: Option<DateTime<Utc>>,
    pub context: Option<Object>,
    pub integrations: Option<Object>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("request body is {size} bytes, over the limit of {limit} bytes")]
    RequestTooLarge { size: usize, limit: usize },
    #[error("{}event is {size} bytes, over the limit of {limit} bytes", at(*index))]
    EventTooLarge {
        index: Option<usize>,
        size: usize,
        limit: usize,
    },
    #[error("batch has {count} events, over the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("batch is empty: send at least one event")]
    EmptyBatch,
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("request body must be a JSON object{0}")]
    NotAnObject(&'static str),
    #[error("{}{reason}", at(*index))]
    MalformedEvent { index: Option<usize>, reason: String },
    #[error("{}{error}", at(*index))]
    Invalid {
        index: Option<usize>,
        error: ValidationError,
    },
}

fn at(index: Option<usize>) -> String {
    index.map(|i| format!("batch[{i}]: ")).unwrap_or_default()
}

impl ParseError {
    /// A stable, machine-readable name for what went wrong.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::RequestTooLarge { .. } => "request_too_large",
            ParseError::EventTooLarge { .. } => "event_too_large",
            ParseError::TooManyEvents { .. } => "too_many_events",
            ParseError::EmptyBatch => "empty_batch",
            ParseError::NotJson(_) => "invalid_json",
            ParseError::NotAnObject(_) => "invalid_json",
            ParseError::MalformedEvent { .. } => "malformed_event",
            ParseError::Invalid { error, .. } => error.code(),
        }
    }

    /// Whether the refusal is about size (HTTP 413) rather than content (HTTP 400).
    pub fn is_size_limit(&self) -> bool {
        matches!(
            self,
            ParseError::RequestTooLarge { .. } | ParseError::EventTooLarge { .. } | ParseError::TooManyEvents { .. }
        )
    }

    /// The position in the batch of the event at fault, when one is.
    pub fn index(&self) -> Option<usize> {
        match self {
            ParseError::EventTooLarge { index, .. }
            | ParseError::MalformedEvent { index, .. }
            | ParseError::Invalid { index, .. } => *index,
            _ => None,
        }
    }
}

/// Fields a client never means to store: browsers put their write key in the body.
const STRIPPED_FIELDS: [&str; 1] = ["writeKey"];

/// Parses a body posted to a single-event path (`/v1/track`, `/v1/t`, ...). The path
/// decides the type; a `type` field in the body is overwritten.
pub fn parse_single(body: &[u8], event_type: EventType, limits: &Limits) -> Result<ParsedRequest, ParseError> {
    check_request_size(body, limits)?;
    if body.len() > limits.max_event_bytes {
        return Err(ParseError::EventTooLarge {
            index: None,
            size: body.len(),
            limit: limits.max_event_bytes,
        });
    }
    let mut object: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(ParseError::NotAnObject("")),
        Err(error) => return Err(ParseError::NotJson(error.to_string())),
    };
    object.insert("type".into(), Value::String(event_type.as_str().into()));
    let event = finish_event(serde_json::from_value(Value::Object(object)), None)?;
    Ok(ParsedRequest {
        events: vec![event],
        ..ParsedRequest::default()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default, deserialize_with = "crate::event::timestamp")]
    sent_at: Option<DateTime<Utc>>,
    context: Option<Object>,
    integrations: Option<Object>,
}

/// Parses a batch body (`/v1/batch`, `/v1/import`, `/v1/b`). All or nothing: one bad
/// event refuses the whole request, so a client never has to guess which part landed.
pub fn parse_batch(body: &[u8], limits: &Limits) -> Result<ParsedRequest, ParseError> {
    check_request_size(body, limits)?;
    let envelope: Envelope = serde_json::from_slice(body).map_err(|error| ParseError::NotJson(error.to_string()))?;
    let Some(raw_events) = envelope.batch else {
        return Err(ParseError::NotAnObject(" with a \"batch\" array of events"));
    };
    if raw_events.is_empty() {
        return Err(ParseError::EmptyBatch);
    }
    if raw_events.len() > limits.max_batch_events {
        return Err(ParseError::TooManyEvents {
            count: raw_events.len(),
            limit: limits.max_batch_events,
        });
    }
    let mut events = Vec::with_capacity(raw_events.len());
    for (index, raw) in raw_events.iter().enumerate() {
        let size = raw.get().len();
        if size > limits.max_event_bytes {
            return Err(ParseError::EventTooLarge {
                index: Some(index),
                size,
                limit: limits.max_event_bytes,
            });
        }
        events.push(finish_event(serde_json::from_str(raw.get()), Some(index))?);
    }
    Ok(ParsedRequest {
        events,
        sent_at: envelope.sent_at,
        context: envelope.context,
        integrations: envelope.integrations,
    })
}

/// Reads only `writeKey` from a body, for browsers that authenticate that way.
pub fn write_key_in_body(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct KeyOnly {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    serde_json::from_slice::<KeyOnly>(body).ok()?.write_key
}

fn check_request_size(body: &[u8], limits: &Limits) -> Result<(), ParseError> {
    if body.len() > limits.max_request_bytes {
        return Err(ParseError::RequestTooLarge {
            size: body.len(),
            limit: limits.max_request_bytes,
        });
    }
    Ok(())
}

fn finish_event(parsed: serde_json::Result<Event>, index: Option<usize>) -> Result<Event, ParseError> {
    let mut event = parsed.map_err(|error| ParseError::MalformedEvent {
        index,
        reason: strip_position(error),
    })?;
    for field in STRIPPED_FIELDS {
        event.extra_mut().remove(field);
    }
    validate(&event).map_err(|error| ParseError::Invalid { index, error })?;
    Ok(event)
}

/// serde reports positions inside its internal buffer for tagged enums, which mean
/// nothing to the client; the message alone names the problem.
fn strip_position(error: serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) if error.line() > 0 => text[..cut].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn small_limits() -> Limits {
        Limits {
            max_event_bytes: 200,
            max_request_bytes: 1_000,
            max_batch_events: 3,
        }
    }

    fn bytes(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).expect("serialises")
    }

    #[test]
    fn single_path_sets_the_type_and_keeps_unknown_fields() {
        let body = bytes(
            json!({"type": "identify", "userId": "u", "event": "e", "custom": {"deep": [1, 2]}, "writeKey": "k"}),
        );
        let parsed = parse_single(&body, EventType::Track, &Limits::default()).expect("valid");
        let event = &parsed.events[0];
        assert_eq!(event.event_type(), EventType::Track);
        assert_eq!(event.extra().get("custom"), Some(&json!({"deep": [1, 2]})));
        assert!(
            !event.extra().contains_key("writeKey"),
            "the write key is a credential, never stored"
        );
    }

    #[test]
    fn limits_are_enforced_on_the_bytes_sent() {
        let limits = small_limits();
        let big = "x".repeat(300);
        let single = bytes(json!({"userId": "u", "event": big}));
        assert!(matches!(
            parse_single(&single, EventType::Track, &limits),
            Err(ParseError::EventTooLarge { index: None, .. })
        ));

        let batch = bytes(
            json!({"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track", "userId": "u", "event": big}]}),
        );
        let error = parse_batch(&batch, &limits).expect_err("second event too large");
        assert_eq!(error.index(), Some(1));
        assert!(error.is_size_limit());
        assert!(error.to_string().starts_with("batch[1]: event is"), "{error}");

        let four = bytes(json!({"batch": vec![json!({"type": "page", "userId": "u"}); 4]}));
        assert_eq!(
            parse_batch(&four, &limits),
            Err(ParseError::TooManyEvents { count: 4, limit: 3 })
        );

        let huge = vec![b' '; 1_001];
        assert!(matches!(
            parse_batch(&huge, &limits),
            Err(ParseError::RequestTooLarge {
                size: 1_001,
                limit: 1_000
            })
        ));
    }

    #[test]
    fn a_batch_is_refused_whole_with_the_index_of_the_bad_event() {
        let body = bytes(json!({"batch": [
            {"type": "track", "userId": "u", "event": "ok"},
            {"type": "group", "userId": "u"},
        ]}));
        let error = parse_batch(&body, &Limits::default()).expect_err("refused");
        assert_eq!(error.code(), "missing_field");
        assert_eq!(error.to_string(), "batch[1]: group needs groupId (a non-empty string)");
        assert!(!error.is_size_limit());
    }

    #[test]
    fn malformed_events_name_the_problem() {
        let unknown_type = bytes(json!({"batch": [{"type": "purchase", "userId": "u"}]}));
        let error = parse_batch(&unknown_type, &Limits::default()).expect_err("refused");
        assert_eq!(error.code(), "malformed_event");
        assert!(error.to_string().contains("unknown variant `purchase`"), "{error}");

        let bad_time = bytes(json!({"userId": "u", "event": "e", "timestamp": "tuesday"}));
        let error = parse_single(&bad_time, EventType::Track, &Limits::default()).expect_err("refused");
        assert!(
            error.to_string().contains("\"tuesday\" is not an ISO-8601 date-time"),
            "{error}"
        );

        assert!(matches!(
            parse_batch(b"{not json", &Limits::default()),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            parse_single(b"[1]", EventType::Track, &Limits::default()),
            Err(ParseError::NotAnObject(_))
        ));
        assert_eq!(
            parse_batch(b"{\"batch\": []}", &Limits::default()),
            Err(ParseError::EmptyBatch)
        );
    }

    #[test]
    fn batch_level_fields_are_returned_for_enrichment() {
        let body = bytes(json!({
            "batch": [{"type": "track", "userId": "u", "event": "e"}],
            "sentAt": "2024-05-01T00:00:00+02:00", "context": {"locale": "de"}, "writeKey": "k", "metadata": {"x": 1}
        }));
        let parsed = parse_batch(&body, &Limits::default()).expect("valid");
        assert_eq!(
            parsed.sent_at.map(|t| t.to_rfc3339()),
            Some("2024-04-30T22:00:00+00:00".into())
        );
        assert_eq!(
            parsed.context,
            Some(json!({"locale": "de"}).as_object().cloned().expect("object"))
        );
        assert_eq!(write_key_in_body(&body).as_deref(), Some("k"));
    }
}
