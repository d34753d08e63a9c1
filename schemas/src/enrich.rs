//! What the server adds to every accepted event: receivedAt, a messageId when the
//! client sent none, a timestamp corrected for the client's clock skew, context.ip, and
//! the batch-level context and integrations.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::event::{Event, Object};

#[derive(Debug, Clone, Copy)]
pub struct EnrichContext<'a> {
    pub received_at: DateTime<Utc>,
    /// The client's address as the server saw it.
    pub ip: Option<IpAddr>,
    pub batch_sent_at: Option<DateTime<Utc>>,
    pub batch_context: Option<&'a Object>,
    pub batch_integrations: Option<&'a Object>,
}

pub fn enrich(event: &mut Event, ctx: &EnrichContext<'_>) {
    let common = event.common_mut();
    common.received_at = Some(ctx.received_at);
    if common.message_id.as_deref().is_none_or(str::is_empty) {
        common.message_id = Some(Uuid::new_v4().to_string());
    }

    // Segment's rule: the client's own clock only tells how long ago the event happened
    // (sentAt - originalTimestamp); the server's receivedAt anchors it.
    let original = common.original_timestamp.or(common.timestamp);
    let sent_at = common.sent_at.or(ctx.batch_sent_at);
    common.original_timestamp = original;
    common.sent_at = sent_at;
    common.timestamp = match (original, sent_at) {
        (Some(original), Some(sent_at)) => ctx
            .received_at
            .checked_sub_signed(sent_at.signed_duration_since(original))
            .or(Some(original)),
        (Some(original), None) => Some(original),
        (None, _) => Some(ctx.received_at),
    };

    let context = common.context.get_or_insert_with(Object::new);
    if let Some(batch_context) = ctx.batch_context {
        fill_missing(context, batch_context);
    }
    if let Some(ip) = ctx.ip
        && context.get("ip").is_none_or(Value::is_null)
    {
        context.insert("ip".into(), Value::String(ip.to_string()));
    }
    if let Some(batch_integrations) = ctx.batch_integrations {
        fill_missing(common.integrations.get_or_insert_with(Object::new), batch_integrations);
    }
}

/// The event's own keys win over the batch's.
fn fill_missing(target: &mut Object, defaults: &Object) {
    for (key, value) in defaults {
        if !target.contains_key(key) {
            target.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use serde_json::json;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn context(received_at: &str) -> EnrichContext<'static> {
        EnrichContext {
            received_at: time(received_at),
            ip: Some("203.0.113.7".parse().expect("ip")),
            batch_sent_at: None,
            batch_context: None,
            batch_integrations: None,
        }
    }

    fn track(value: serde_json::Value) -> Event {
        serde_json::from_value(value).expect("sample parses")
    }

    #[test]
    fn timestamp_is_corrected_for_client_clock_skew() {
        // The client's clock runs 1 hour fast; the event happened 10 s before sending.
        let mut event = track(json!({
            "type": "track", "userId": "u", "event": "e",
            "timestamp": "2024-05-01T13:00:00Z", "sentAt": "2024-05-01T13:00:10Z"
        }));
        enrich(&mut event, &context("2024-05-01T12:00:10.500Z"));
        let common = event.common();
        assert_eq!(common.timestamp, Some(time("2024-05-01T12:00:00.500Z")));
        assert_eq!(common.original_timestamp, Some(time("2024-05-01T13:00:00Z")));
        assert_eq!(common.received_at, Some(time("2024-05-01T12:00:10.500Z")));
    }

    #[test]
    fn batch_sent_at_applies_when_the_event_has_none() {
        let mut event =
            track(json!({"type": "track", "userId": "u", "event": "e", "timestamp": "2024-05-01T00:00:00Z"}));
        let mut ctx = context("2024-05-01T00:00:05Z");
        ctx.batch_sent_at = Some(time("2024-05-01T00:00:02Z"));
        enrich(&mut event, &ctx);
        assert_eq!(event.common().timestamp, Some(time("2024-05-01T00:00:03Z")));
        assert_eq!(event.common().sent_at, Some(time("2024-05-01T00:00:02Z")));
    }

    #[test]
    fn without_sent_at_the_client_timestamp_stands_and_without_either_received_at_is_used() {
        let mut dated =
            track(json!({"type": "track", "userId": "u", "event": "e", "timestamp": "2020-01-01T00:00:00Z"}));
        enrich(&mut dated, &context("2024-05-01T00:00:00Z"));
        assert_eq!(dated.common().timestamp, Some(time("2020-01-01T00:00:00Z")));

        let mut undated = track(json!({"type": "track", "userId": "u", "event": "e"}));
        enrich(&mut undated, &context("2024-05-01T00:00:00Z"));
        assert_eq!(undated.common().timestamp, Some(time("2024-05-01T00:00:00Z")));
        assert_eq!(undated.common().original_timestamp, None);
    }

    #[test]
    fn extreme_skew_never_panics() {
        let mut event = track(json!({
            "type": "track", "userId": "u", "event": "e",
            "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"
        }));
        enrich(&mut event, &context("2024-05-01T00:00:00Z"));
        let corrected = event.common().timestamp.expect("set");
        assert!(corrected < time("2024-05-01T00:00:00Z") - TimeDelta::days(365 * 1000));
    }

    #[test]
    fn times_are_written_with_at_least_milliseconds() {
        let mut event =
            track(json!({"type": "track", "userId": "u", "event": "e", "timestamp": "2024-05-01T12:00:00Z"}));
        enrich(&mut event, &context("2024-05-01T12:00:00.123456Z"));
        let written = serde_json::to_value(&event).expect("serialises");
        assert_eq!(written["originalTimestamp"], "2024-05-01T12:00:00.000Z");
        assert_eq!(written["receivedAt"], "2024-05-01T12:00:00.123456Z");
    }

    #[test]
    fn message_id_is_generated_only_when_missing() {
        let mut kept = track(json!({"type": "track", "userId": "u", "event": "e", "messageId": "m-1"}));
        enrich(&mut kept, &context("2024-05-01T00:00:00Z"));
        assert_eq!(kept.message_id(), Some("m-1"));

        let mut first = track(json!({"type": "track", "userId": "u", "event": "e"}));
        let mut second = first.clone();
        enrich(&mut first, &context("2024-05-01T00:00:00Z"));
        enrich(&mut second, &context("2024-05-01T00:00:00Z"));
        let (first, second) = (first.message_id().expect("set"), second.message_id().expect("set"));
        assert_eq!(first.len(), 36);
        assert_ne!(first, second);
    }

    #[test]
    fn ip_comes_from_the_connection_unless_the_client_sent_one() {
        let mut bare = track(json!({"type": "track", "userId": "u", "event": "e"}));
        enrich(&mut bare, &context("2024-05-01T00:00:00Z"));
        assert_eq!(
            bare.common().context.as_ref().and_then(|c| c.get("ip")),
            Some(&json!("203.0.113.7"))
        );

        let mut own = track(json!({"type": "track", "userId": "u", "event": "e", "context": {"ip": "198.51.100.1"}}));
        enrich(&mut own, &context("2024-05-01T00:00:00Z"));
        assert_eq!(
            own.common().context.as_ref().and_then(|c| c.get("ip")),
            Some(&json!("198.51.100.1"))
        );
    }

    #[test]
    fn batch_context_fills_gaps_without_overriding_the_event() {
        let batch_context = json!({"library": {"name": "batch-lib"}, "locale": "fr-FR"});
        let batch_context = batch_context.as_object().expect("object");
        let mut event = track(json!({"type": "track", "userId": "u", "event": "e", "context": {"locale": "en-GB"}}));
        let mut ctx = context("2024-05-01T00:00:00Z");
        ctx.batch_context = Some(batch_context);
        enrich(&mut event, &ctx);
        let context = event.common().context.as_ref().expect("context");
        assert_eq!(context["locale"], json!("en-GB"));
        assert_eq!(context["library"], json!({"name": "batch-lib"}));
    }
}
