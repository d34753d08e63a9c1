//! Contract tests against `switchyard_testkit::vendors::SegmentReceiver`, which holds
//! requests to Segment's HTTP Tracking API as documented
//! (<https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/>).
//! Answers can be scripted ahead (429 with `Retry-After`, 5xx, 400) for the
//! classification.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde_json::{Value, json};
use switchyard_testkit::vendors::{Scripted, SegmentReceiver};

use super::*;
use crate::destination::actor::{DestinationActor, GetDestinationStats};
use crate::destination::config::DestinationKind;
use crate::destination::kinds::fixtures::{destination, events, every_call_type, finished, route};
use crate::protocol::Budget;
use crate::test_support::Collect;

const KEY: &str = "segment-test-write-key";

fn local_egress() -> Arc<EgressPolicy> {
    Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["127.0.0.1"]),
    )
}

fn settings(receiver: &SegmentReceiver, write_key: &str) -> SegmentConfig {
    serde_json::from_value(json!({"write_key": write_key, "endpoint": format!("{}/", receiver.url)})).expect("settings")
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().and_then(|t| t.parse().ok()).expect("an RFC 3339 time")
}

#[actix_rt::test]
async fn every_call_type_arrives_unchanged_in_one_batch_with_the_write_key() {
    let receiver = SegmentReceiver::start(KEY);
    let client = SegmentClient::new(&settings(&receiver, KEY), local_egress()).expect("client");
    let sent = every_call_type();
    let before = chrono::Utc::now();
    assert_eq!(client.deliver(Arc::from("web"), events(&sent)).await, Answer::Delivered);
    let after = chrono::Utc::now();
    let batches = receiver.batches();
    assert_eq!(batches.len(), 1, "one request");
    assert_eq!(batches[0].len(), sent.len());
    for (arrived, original) in batches[0].iter().zip(&sent) {
        let (mut arrived, mut original) = (arrived.clone(), original.clone());
        // The receiver dates the event as Segment does: receivedAt - (sentAt - originalTimestamp).
        let received = chrono::Utc::now();
        let dated = received - (time(&arrived["sentAt"]) - time(&arrived["originalTimestamp"]));
        let meant = time(&original["timestamp"]);
        assert!(
            (dated - meant).num_milliseconds().abs() < 1_000,
            "dated {dated}, the event's time {meant}: {arrived}"
        );
        let sent_at = time(&arrived["sentAt"]);
        assert!(sent_at >= before && sent_at <= after, "sentAt is the request's time");
        assert_eq!(arrived["originalTimestamp"], json!("2026-12-07T10:00:00.000Z"));
        for relayed in ["sentAt", "originalTimestamp"] {
            arrived.as_object_mut().expect("object").remove(relayed);
            original.as_object_mut().expect("object").remove(relayed);
        }
        assert_eq!(arrived, original, "every other field as the client sent it");
    }
}

#[actix_rt::test]
async fn an_event_over_32_kb_is_dead_lettered_alone_with_the_reason_and_the_rest_arrive() {
    let receiver = SegmentReceiver::start(KEY);
    let client = SegmentClient::new(&settings(&receiver, KEY), local_egress()).expect("client");
    let mut sent = every_call_type();
    sent[1]["properties"]["blob"] = Value::String("x".repeat(40_000));
    let answer = client.deliver(Arc::from("web"), events(&sent)).await;
    let Answer::Partial(refused) = answer else {
        panic!("expected a partial answer, got {answer:?}")
    };
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 1);
    assert!(!refused[0].1.retryable);
    assert!(
        refused[0].1.reason.contains("over Segment's limit of 32000"),
        "{}",
        refused[0].1.reason
    );
    let batches = receiver.batches();
    let ids: Vec<&str> = batches[0]
        .iter()
        .map(|e| e["messageId"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["m-identify", "m-page", "m-screen", "m-group", "m-alias"]);
}

#[actix_rt::test]
async fn each_answer_is_classified_as_segment_means_it() {
    let receiver = SegmentReceiver::start(KEY);
    let client = SegmentClient::new(&settings(&receiver, KEY), local_egress()).expect("client");
    receiver.script([
        Scripted::new(429, "Too Many Requests").with_header("Retry-After", "7"),
        Scripted::new(503, "upstream unavailable"),
        Scripted::new(400, r#"{"success":false,"message":"invalid JSON"}"#),
    ]);
    let one = || events(&every_call_type()[..1]);
    match client.deliver(Arc::from("web"), one()).await {
        Answer::Failed(error) => {
            assert!(error.retryable, "{error:?}");
            assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("429: {other:?}"),
    }
    match client.deliver(Arc::from("web"), one()).await {
        Answer::Failed(error) => assert!(error.retryable && error.reason.contains("503"), "{error:?}"),
        other => panic!("503: {other:?}"),
    }
    match client.deliver(Arc::from("web"), one()).await {
        Answer::Failed(error) => {
            assert!(!error.retryable, "{error:?}");
            assert!(
                error.reason.contains("HTTP 400") && error.reason.contains("invalid JSON"),
                "{error:?}"
            );
        }
        other => panic!("400: {other:?}"),
    }
    let wrong = SegmentClient::new(&settings(&receiver, "not-the-key"), local_egress()).expect("client");
    match wrong.deliver(Arc::from("web"), one()).await {
        Answer::Failed(error) => {
            assert!(error.retryable, "a refused key holds the events: {error:?}");
            assert!(error.reason.contains("write key"), "{error:?}");
        }
        other => panic!("401: {other:?}"),
    }
    assert!(receiver.batches().is_empty());
}

/// Through the destination actor, as the router runs it: 600 events of ~2 KB (1.2 MB)
/// go out in requests the receiver accepts (each under 500 KB), every one arrives once,
/// and a throttle on the way only delays them.
#[actix_rt::test]
async fn a_backlog_goes_out_in_requests_under_500_kb_and_a_throttle_loses_nothing() {
    let receiver = SegmentReceiver::start(KEY);
    receiver.script([Scripted::new(429, "slow down").with_header("Retry-After", "1")]);
    let config = destination("segment", DestinationKind::Segment(settings(&receiver, KEY)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dead = Collect(seen.clone()).start();
    let budget = Budget::new(1_000);
    let actor = DestinationActor::new("web", config, dead.recipient(), budget.clone(), local_egress()).start();
    let values: Vec<Value> = (0..600)
        .map(|i| {
            json!({"type": "track", "userId": format!("u{}", i % 7), "event": "Viewed",
                   "messageId": format!("m{i}"), "properties": {"note": "y".repeat(2_000)}})
        })
        .collect();
    let completed = route(&actor, &budget, &values).await;
    finished(&completed, 600).await;
    let stats = actor.send(GetDestinationStats).await.expect("alive");
    let dead_letters = seen.lock().expect("not poisoned").clone();
    assert_eq!(
        stats.delivered,
        600,
        "{} dead-lettered, the first: {:?}",
        dead_letters.len(),
        dead_letters.first()
    );
    assert!(stats.retried >= 1, "the throttled request was retried: {stats:?}");
    let batches = receiver.batches();
    assert!(
        batches.len() >= 3,
        "1.2 MB needs at least three requests: {}",
        batches.len()
    );
    let mut ids: Vec<String> = batches
        .iter()
        .flatten()
        .map(|e| e["messageId"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 600, "every event arrived");
}
