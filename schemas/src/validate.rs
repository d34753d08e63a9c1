//! The rules an event must meet to be accepted, with the reason spelled out when it
//! doesn't. Ingest applies them before anything reaches Kafka; the router applies them
//! again to records written by external producers.

use crate::event::{Event, non_empty};

/// Size and count limits, the same as Segment's HTTP tracking API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single event, as the JSON the client sent.
    pub max_event_bytes: usize,
    /// Largest request body after decompression.
    pub max_request_bytes: usize,
    /// Most events in one batch request.
    pub max_batch_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 32 * 1024,
            max_request_bytes: 500 * 1024,
            max_batch_events: 2_500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{event_type} needs a userId or an anonymousId (a non-empty string)")]
    MissingIdentity { event_type: &'static str },
    #[error("{event_type} needs {field} (a non-empty string)")]
    MissingField {
        event_type: &'static str,
        field: &'static str,
    },
}

impl ValidationError {
    /// A stable, machine-readable name for the rule that failed.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::MissingIdentity { .. } => "missing_identity",
            ValidationError::MissingField { .. } => "missing_field",
        }
    }
}

/// Checks the spec's required fields. Sizes are checked where the raw bytes are known
/// (see [`crate::parse`]).
pub fn validate(event: &Event) -> Result<(), ValidationError> {
    let event_type = event.event_type().as_str();
    let missing = |field| ValidationError::MissingField { event_type, field };
    match event {
        // An alias links previousId to userId; anonymousId alone can't stand in.
        Event::Alias(alias) => {
            if non_empty(alias.previous_id.as_deref()).is_none() {
                return Err(missing("previousId"));
            }
            if non_empty(alias.common.user_id.as_deref()).is_none() {
                return Err(missing("userId"));
            }
        }
        _ if event.user_key().is_none() => {
            return Err(ValidationError::MissingIdentity { event_type });
        }
        Event::Group(group) if non_empty(group.group_id.as_deref()).is_none() => {
            return Err(missing("groupId"));
        }
        Event::Track(track) if non_empty(track.event.as_deref()).is_none() => {
            return Err(missing("event"));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).expect("sample event parses")
    }

    #[test]
    fn identity_is_required_for_every_type_but_alias() {
        for kind in ["identify", "track", "page", "screen", "group"] {
            let error = validate(&event(json!({"type": kind, "event": "x", "groupId": "g"})))
                .expect_err("no identity must be refused");
            assert_eq!(error, ValidationError::MissingIdentity { event_type: kind });
        }
        let empty = event(json!({"type": "identify", "userId": "", "anonymousId": ""}));
        assert!(validate(&empty).is_err(), "empty strings are not an identity");
        assert!(validate(&event(json!({"type": "identify", "anonymousId": "a1"}))).is_ok());
        assert!(validate(&event(json!({"type": "page", "userId": "u1"}))).is_ok());
    }

    #[test]
    fn track_needs_an_event_name() {
        let error = validate(&event(json!({"type": "track", "userId": "u"}))).expect_err("refused");
        assert_eq!(error.to_string(), "track needs event (a non-empty string)");
        assert!(validate(&event(json!({"type": "track", "userId": "u", "event": "Signed Up"}))).is_ok());
    }

    #[test]
    fn group_needs_a_group_id() {
        let error = validate(&event(json!({"type": "group", "userId": "u"}))).expect_err("refused");
        assert_eq!(
            error,
            ValidationError::MissingField {
                event_type: "group",
                field: "groupId"
            }
        );
        assert!(validate(&event(json!({"type": "group", "userId": "u", "groupId": 42}))).is_ok());
    }

    #[test]
    fn alias_needs_previous_id_and_user_id() {
        let no_previous = event(json!({"type": "alias", "userId": "u"}));
        assert_eq!(validate(&no_previous).expect_err("refused").code(), "missing_field");
        let anonymous_only = event(json!({"type": "alias", "previousId": "p", "anonymousId": "a"}));
        assert_eq!(
            validate(&anonymous_only).expect_err("refused"),
            ValidationError::MissingField {
                event_type: "alias",
                field: "userId"
            }
        );
        assert!(validate(&event(json!({"type": "alias", "previousId": "p", "userId": "u"}))).is_ok());
    }
}
