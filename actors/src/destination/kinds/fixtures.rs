//! Events the kinds' contract tests send: one of each Segment call type, as a client
//! library sends them.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_schemas::Event;

/// One event of each call type, as a client library would send it.
pub(crate) fn every_call_type() -> Vec<Value> {
    let context = json!({"library": {"name": "analytics-python", "version": "2.3.2"}, "ip": "203.0.113.9",
                         "locale": "en-GB", "page": {"path": "/pricing"}});
    let common = |kind: &str, id: &str| {
        json!({"type": kind, "messageId": id, "userId": "user-1", "anonymousId": "anon-1",
               "timestamp": "2026-12-07T10:00:00.000Z", "sentAt": "2026-12-07T10:00:00.500Z",
               "receivedAt": "2026-12-07T10:00:01.000Z", "context": context, "integrations": {"All": true}})
    };
    let mut out = Vec::new();
    let with = |mut base: Value, fields: Value| {
        base.as_object_mut()
            .expect("object")
            .extend(fields.as_object().expect("object").clone());
        base
    };
    out.push(with(
        common("identify", "m-identify"),
        json!({"traits": {"email": "a@example.com", "plan": "pro"}}),
    ));
    out.push(with(
        common("track", "m-track"),
        json!({"event": "Order Completed", "properties": {"revenue": 42.5, "currency": "EUR", "products": [{"sku": "a"}]}}),
    ));
    out.push(with(
        common("page", "m-page"),
        json!({"name": "Pricing", "category": "Docs", "properties": {"url": "https://example.com/pricing"}}),
    ));
    out.push(with(
        common("screen", "m-screen"),
        json!({"name": "Home", "properties": {"variant": "b"}}),
    ));
    out.push(with(
        common("group", "m-group"),
        json!({"groupId": "acme", "traits": {"employees": 120}}),
    ));
    out.push(with(common("alias", "m-alias"), json!({"previousId": "anon-1"})));
    out
}

pub(crate) fn events(values: &[Value]) -> Vec<Arc<Event>> {
    values
        .iter()
        .map(|value| Arc::new(serde_json::from_value(value.clone()).expect("a Segment event")))
        .collect()
}

/// A destination of `kind` for web's events, retrying fast, with room for 1,000 events.
pub(crate) fn destination(
    id: &str,
    kind: crate::destination::config::DestinationKind,
) -> crate::destination::config::DestinationConfig {
    use crate::destination::config::{DestinationConfig, RetryConfig};
    DestinationConfig {
        id: id.into(),
        sources: vec!["web".into()],
        kind,
        retry: RetryConfig {
            min_backoff_ms: 50,
            max_backoff_ms: 200,
            ..RetryConfig::default()
        },
        concurrency: 2,
        max_buffered_events: 1_000,
        breaker_failures: 5,
        breaker_cooldown_ms: 500,
        stall_after_secs: 60,
        ordering: Default::default(),
        integration_name: None,
        honor_integrations: true,
        consent_categories: Vec::new(),
        require_consent: false,
        transforms: Vec::new(),
    }
}

/// Hands `values` (Segment events) to a destination actor as the supervisor does,
/// each holding room in `budget`; the returned count goes up as each is finished
/// (delivered or dead-lettered).
pub(crate) async fn route(
    actor: &actix::Addr<crate::destination::actor::DestinationActor>,
    budget: &crate::protocol::Budget,
    values: &[Value],
) -> crate::test_support::Count {
    use crate::ack::Ack;
    use crate::protocol::{Routed, RoutedBatch};
    let completed = crate::test_support::Count::default();
    let mut room = budget.take(values.len()).await;
    let batch = values
        .iter()
        .map(|value| Routed {
            source_id: Arc::from("web"),
            event: Arc::new(serde_json::from_value(value.clone()).expect("a Segment event")),
            ack: Ack::new(completed.clone()),
            parked: None,
            trace: None,
            permit: room.split_one(),
        })
        .collect();
    actor.send(RoutedBatch(batch)).await.expect("alive");
    completed
}

/// Waits (up to 30 s) until `count` reaches `n`.
pub(crate) async fn finished(count: &crate::test_support::Count, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count.0.load(std::sync::atomic::Ordering::SeqCst) < n && std::time::Instant::now() < deadline {
        actix::clock::sleep(std::time::Duration::from_millis(20)).await;
    }
}
