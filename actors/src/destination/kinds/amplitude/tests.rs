//! Contract tests against `switchyard_testkit::vendors::AmplitudeReceiver`, which
//! holds requests to Amplitude's HTTP V2 API as documented
//! (<https://amplitude.com/docs/apis/analytics/http-v2>) and answers as Amplitude does.
//! The answer bodies in `amplitudes_documented_answers_are_read_per_event` are the
//! examples of that page's "Response Format" section.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use awc::http::StatusCode;
use awc::http::header::HeaderMap;
use serde_json::{Value, json};
use switchyard_testkit::vendors::{AmplitudeReceiver, Scripted};

use super::*;
use crate::destination::actor::{DestinationActor, GetDestinationStats};
use crate::destination::config::{DestinationKind, Ordering as Ordered};
use crate::destination::kinds::fixtures::{destination, events, every_call_type, finished, route};
use crate::destination::kinds::http::HttpAnswer;
use crate::protocol::Budget;
use crate::test_support::Collect;

const KEY: &str = "amplitude-test-api-key";

fn local_egress() -> Arc<EgressPolicy> {
    Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["127.0.0.1"]),
    )
}

fn settings(receiver: &AmplitudeReceiver, api_key: &str) -> AmplitudeConfig {
    serde_json::from_value(json!({"api_key": api_key, "endpoint": receiver.url})).expect("settings")
}

fn client(receiver: &AmplitudeReceiver) -> AmplitudeClient {
    AmplitudeClient::new(&settings(receiver, KEY), local_egress()).expect("client")
}

fn by_insert_id(events: &[Value]) -> std::collections::HashMap<String, Value> {
    events
        .iter()
        .map(|e| (e["insert_id"].as_str().unwrap_or_default().to_string(), e.clone()))
        .collect()
}

#[actix_rt::test]
async fn every_call_type_arrives_mapped_as_the_table_says() {
    let receiver = AmplitudeReceiver::start(KEY);
    let answer = client(&receiver)
        .deliver(Arc::from("web"), events(&every_call_type()))
        .await;
    assert_eq!(answer, Answer::Delivered);
    let got = by_insert_id(&receiver.events());
    assert_eq!(receiver.requests().len(), 1, "one request");
    assert_eq!(got.len(), 7, "six calls, the group with its traits as two: {got:?}");
    let time = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00.000Z")
        .expect("time")
        .timestamp_millis();
    for event in got.values() {
        assert_eq!(event["user_id"], "user-1");
        assert_eq!(event["time"], time);
        assert_eq!(event["library"], "analytics-python/2.3.2");
        assert_eq!(event["ip"], "203.0.113.9");
        assert_eq!(event["language"], "en-GB");
    }
    let identify = &got["m-identify"];
    assert_eq!(identify["event_type"], "$identify");
    assert_eq!(identify["device_id"], "anon-1");
    assert_eq!(
        identify["user_properties"],
        json!({"$set": {"email": "a@example.com", "plan": "pro"}})
    );
    let track = &got["m-track"];
    assert_eq!(track["event_type"], "Order Completed");
    assert_eq!(
        track["event_properties"],
        json!({"revenue": 42.5, "currency": "EUR", "products": [{"sku": "a"}]})
    );
    assert_eq!(track["revenue"], 42.5);
    assert_eq!(got["m-page"]["event_type"], "Viewed Pricing Page");
    assert_eq!(
        got["m-page"]["event_properties"],
        json!({"url": "https://example.com/pricing"})
    );
    assert_eq!(got["m-screen"]["event_type"], "Viewed Home Screen");
    let joins = &got["m-group"];
    assert_eq!(joins["event_type"], "$identify");
    assert_eq!(joins["groups"], json!({"group": "acme"}));
    assert_eq!(joins["user_properties"], json!({"$set": {"group": "acme"}}));
    let describes = &got["m-group:group"];
    assert_eq!(describes["event_type"], "$groupidentify");
    assert_eq!(describes["group_properties"], json!({"$set": {"employees": 120}}));
    let alias = &got["m-alias"];
    assert_eq!(alias["event_type"], "$identify");
    assert_eq!(
        alias["device_id"], "anon-1",
        "previousId as the device merged into the user"
    );
}

#[actix_rt::test]
async fn revenue_device_and_place_come_from_properties_and_context() {
    let receiver = AmplitudeReceiver::start(KEY);
    let sent = json!({"type": "track", "messageId": "m-buy", "anonymousId": "device-7", "event": "Product Added",
        "properties": {"price": "19.90", "quantity": 3, "productId": "sku-9", "revenueType": "purchase"},
        "context": {"device": {"type": "ios", "advertisingId": "AEBE52E7-03EE-455A-B3C4-E57283966239",
                               "manufacturer": "Apple", "model": "iPhone16,1"},
                    "os": {"name": "iOS", "version": "18.1"}, "app": {"version": "2.1.3"},
                    "network": {"carrier": "Verizon"},
                    "location": {"country": "United States", "city": "San Francisco", "latitude": 37.77, "longitude": -122.39}},
        "integrations": {"Amplitude": {"session_id": 1396381378123_i64}}});
    let answer = client(&receiver).deliver(Arc::from("web"), events(&[sent])).await;
    assert_eq!(answer, Answer::Delivered);
    let got = receiver.events().pop().expect("ingested");
    for (field, expected) in [
        ("user_id", Value::Null),
        ("device_id", json!("device-7")),
        ("price", json!(19.9)),
        ("quantity", json!(3)),
        ("productId", json!("sku-9")),
        ("revenueType", json!("purchase")),
        ("revenue", Value::Null),
        ("platform", json!("ios")),
        ("idfa", json!("AEBE52E7-03EE-455A-B3C4-E57283966239")),
        ("adid", Value::Null),
        ("device_manufacturer", json!("Apple")),
        ("device_model", json!("iPhone16,1")),
        ("os_name", json!("iOS")),
        ("os_version", json!("18.1")),
        ("app_version", json!("2.1.3")),
        ("carrier", json!("Verizon")),
        ("country", json!("United States")),
        ("city", json!("San Francisco")),
        ("location_lat", json!(37.77)),
        ("location_lng", json!(-122.39)),
        ("session_id", json!(1396381378123_i64)),
    ] {
        assert_eq!(
            got.get(field).cloned().unwrap_or(Value::Null),
            expected,
            "{field} in {got}"
        );
    }
}

#[actix_rt::test]
async fn a_400_dead_letters_exactly_the_events_amplitude_names_and_the_rest_go_again() {
    let receiver = AmplitudeReceiver::start(KEY);
    let client = client(&receiver);
    let sent = vec![
        json!({"type": "track", "messageId": "ok-1", "userId": "user-good", "event": "Signed Up"}),
        json!({"type": "track", "messageId": "reserved", "userId": "user-good", "event": "[Amplitude] Revenue"}),
        json!({"type": "track", "messageId": "short-id", "userId": "abc", "event": "Signed Up"}),
        json!({"type": "track", "messageId": "nobody", "event": "Signed Up"}),
        json!({"type": "track", "messageId": "ok-2", "userId": "user-good", "event": "Upgraded"}),
    ];
    let batch = events(&sent);
    let Answer::Partial(failures) = client.deliver(Arc::from("web"), batch.clone()).await else {
        panic!("a partial answer")
    };
    let failure = |index: usize| &failures.iter().find(|(at, _)| *at == index).expect("listed").1;
    assert_eq!(failures.len(), 5, "nothing was ingested: {failures:?}");
    assert!(
        !failure(1).retryable && failure(1).reason.contains("invalid event_type"),
        "{failures:?}"
    );
    assert!(
        !failure(2).retryable && failure(2).reason.contains("user_id"),
        "{failures:?}"
    );
    assert!(
        !failure(3).retryable && failure(3).reason.contains("requires a user_id or device_id"),
        "refused without a request: {failures:?}"
    );
    for again in [0, 4] {
        assert!(failure(again).retryable, "{failures:?}");
    }
    assert!(receiver.events().is_empty());
    // The actor sends the retryable ones again, alone.
    let again: Vec<Arc<Event>> = vec![batch[0].clone(), batch[4].clone()];
    assert_eq!(client.deliver(Arc::from("web"), again).await, Answer::Delivered);
    let ids: Vec<String> = by_insert_id(&receiver.events()).into_keys().collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

fn documented(status: u16, body: Value) -> HttpAnswer {
    HttpAnswer {
        status: StatusCode::from_u16(status).expect("status"),
        headers: HeaderMap::new(),
        body: serde_json::to_vec(&body).expect("encodes"),
    }
}

#[test]
fn amplitudes_documented_answers_are_read_per_event() {
    let batch = events(
        &(0..8)
            .map(
                |i| json!({"type": "track", "messageId": format!("m{i}"), "userId": format!("user-{i}"), "event": "E"}),
            )
            .collect::<Vec<_>>(),
    );
    let origin: Vec<usize> = (0..8).collect();
    let bad = documented(
        400,
        json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key",
               "events_with_invalid_fields": {"time": [3, 4, 7]},
               "events_with_missing_fields": {"event_type": [3, 4, 7]}}),
    );
    let Outcome::Each(each) = answer::classify(&bad, &origin, &batch) else {
        panic!("per event")
    };
    let refused: Vec<usize> = each.iter().filter(|(_, e)| !e.retryable).map(|(i, _)| *i).collect();
    assert_eq!(refused, [3, 4, 7]);
    assert_eq!(each.len(), 8);
    let throttled = documented(
        429,
        json!({"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 10,
               "throttled_devices": {"C8F9E604-F01A-4BD9-95C6-8E5357DF265D": 11},
               "throttled_users": {"datamonster@amplitude.com": 12}, "throttled_events": [3, 4, 7]}),
    );
    let Outcome::Each(each) = answer::classify(&throttled, &origin, &batch) else {
        panic!("per event")
    };
    let paused: Vec<usize> = each
        .iter()
        .filter(|(_, e)| e.retry_after == Some(answer::THROTTLE_PAUSE))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(paused, [3, 4, 7]);
    assert!(
        each.iter().all(|(_, e)| e.retryable),
        "a throttle loses nothing: {each:?}"
    );
    let key = documented(400, json!({"code": 400, "error": "Invalid API key"}));
    assert!(matches!(answer::classify(&key, &origin, &batch), Outcome::All(e) if e.retryable));
    let too_large = documented(413, json!({"code": 413, "error": "Payload too large"}));
    assert!(matches!(
        answer::classify(&too_large, &origin, &batch),
        Outcome::TooLarge(4)
    ));
    assert!(matches!(answer::classify(&too_large, &[0], &batch), Outcome::All(e) if !e.retryable));
    let unavailable = documented(503, json!({}));
    assert!(matches!(answer::classify(&unavailable, &origin, &batch), Outcome::All(e) if e.retryable));
}

#[actix_rt::test]
async fn a_wrong_key_holds_the_events_and_a_user_over_its_daily_quota_is_dead_lettered_alone() {
    let receiver = AmplitudeReceiver::start(KEY);
    let one = events(&every_call_type()[1..2]);
    let wrong = AmplitudeClient::new(&settings(&receiver, "not-the-key"), local_egress()).expect("client");
    match wrong.deliver(Arc::from("web"), one.clone()).await {
        Answer::Failed(error) => assert!(error.retryable && error.reason.contains("API key"), "{error:?}"),
        other => panic!("a wrong key: {other:?}"),
    }
    receiver.over_quota("user-1");
    let two = events(&[
        every_call_type()[1].clone(),
        json!({"type": "track", "messageId": "other", "userId": "someone-else", "event": "E"}),
    ]);
    let Answer::Partial(failures) = client(&receiver).deliver(Arc::from("web"), two).await else {
        panic!("partial")
    };
    assert!(
        !failures[0].1.retryable && failures[0].1.reason.contains("daily quota"),
        "{failures:?}"
    );
    assert!(
        failures[1].1.retryable && failures[1].1.retry_after.is_none(),
        "{failures:?}"
    );
}

/// Through the destination actor with per-user ordering: one user is throttled for two
/// requests; every other user's events arrive without waiting for it, the throttled
/// user's arrive after the pause in their order, and nothing is lost or doubled.
#[actix_rt::test]
async fn a_throttled_user_waits_alone_and_in_order_while_the_others_arrive() {
    let receiver = AmplitudeReceiver::start(KEY);
    receiver.throttle("heavy-user", 2);
    let mut config = destination("amplitude", DestinationKind::Amplitude(settings(&receiver, KEY)));
    config.ordering = Ordered::PerUser;
    // Amplitude's 30 s pause, clamped by the operator's ceiling on waits.
    config.retry.max_retry_after_secs = 2;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dead = Collect(seen.clone()).start();
    let budget = Budget::new(1_000);
    let actor = DestinationActor::new("web", config, dead.recipient(), budget.clone(), local_egress()).start();
    let values: Vec<Value> = (0..200)
        .map(|i| {
            let user = if i % 4 == 0 {
                "heavy-user".to_string()
            } else {
                format!("light-{}", i % 9)
            };
            json!({"type": "track", "userId": user, "event": "Played", "messageId": format!("m{i:03}"),
                   "properties": {"n": i}})
        })
        .collect();
    let completed = route(&actor, &budget, &values).await;
    finished(&completed, 200).await;
    let stats = actor.send(GetDestinationStats).await.expect("alive");
    assert_eq!(
        stats.delivered,
        200,
        "dead letters: {:?}",
        seen.lock().expect("not poisoned")
    );
    assert_eq!(stats.kind, "amplitude");
    let arrived = receiver.events();
    assert_eq!(by_insert_id(&arrived).len(), 200, "each once");
    let heavy: Vec<&str> = arrived
        .iter()
        .filter(|e| e["user_id"] == "heavy-user")
        .map(|e| e["insert_id"].as_str().unwrap_or_default())
        .collect();
    let mut sorted = heavy.clone();
    sorted.sort();
    assert_eq!(heavy, sorted, "the throttled user's events kept their order");
    let first_heavy = arrived
        .iter()
        .position(|e| e["user_id"] == "heavy-user")
        .expect("heavy arrived");
    let light_after = arrived[first_heavy..]
        .iter()
        .filter(|e| e["user_id"] != "heavy-user")
        .count();
    assert_eq!(light_after, 0, "no other user waited for the throttled one");
    assert_eq!(
        receiver.refusals().iter().filter(|(status, _)| *status == 429).count(),
        2
    );
}

/// A backlog of ~3 KB events goes out in requests Amplitude accepts (under 1 MB and
/// 2,000 events) even with the most events per request.
#[actix_rt::test]
async fn a_backlog_goes_out_in_requests_under_amplitudes_limits() {
    let receiver = AmplitudeReceiver::start(KEY);
    let mut settings = settings(&receiver, KEY);
    settings.batch_max_events = 2_000;
    let config = destination("amplitude", DestinationKind::Amplitude(settings));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dead = Collect(seen.clone()).start();
    let budget = Budget::new(1_000);
    let actor = DestinationActor::new("web", config, dead.recipient(), budget.clone(), local_egress()).start();
    let values: Vec<Value> = (0..900)
        .map(|i| {
            json!({"type": "track", "userId": format!("user-{}", i % 13), "event": "Viewed", "messageId": format!("m{i}"),
                   "properties": {"note": "z".repeat(3_000)},
                   "context": {"os": {"name": "Android", "version": "15"}, "device": {"manufacturer": "Google"}}})
        })
        .collect();
    let completed = route(&actor, &budget, &values).await;
    finished(&completed, 900).await;
    let stats = actor.send(GetDestinationStats).await.expect("alive");
    assert_eq!(
        stats.delivered,
        900,
        "dead letters: {:?}",
        seen.lock().expect("not poisoned")
    );
    let requests = receiver.requests();
    assert!(requests.len() >= 3, "2.7 MB needs three requests: {requests:?}");
    assert!(requests.iter().all(|(bytes, _)| *bytes <= 1_000_000), "{requests:?}");
    assert_eq!(by_insert_id(&receiver.events()).len(), 900);
}

#[actix_rt::test]
async fn a_413_sends_the_events_again_in_smaller_requests() {
    let receiver = AmplitudeReceiver::start(KEY);
    receiver.script([Scripted::new(413, r#"{"code":413,"error":"Payload too large"}"#)]);
    let client = client(&receiver);
    assert_eq!(client.batching().max_events, 500);
    let batch = events(&every_call_type());
    let Answer::Partial(failures) = client.deliver(Arc::from("web"), batch.clone()).await else {
        panic!("partial")
    };
    assert!(failures.iter().all(|(_, e)| e.retryable), "{failures:?}");
    assert_eq!(failures.len(), 6);
    assert_eq!(client.batching().max_events, 3);
    assert_eq!(
        client.deliver(Arc::from("web"), batch[..3].to_vec()).await,
        Answer::Delivered
    );
}
