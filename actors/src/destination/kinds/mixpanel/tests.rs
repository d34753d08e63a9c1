//! Contract tests against `switchyard_testkit::vendors::MixpanelReceiver`, which holds
//! requests to Mixpanel's `/import` (strict), `/engage` and `/groups` as documented
//! (<https://developer.mixpanel.com/reference/import-events>) and answers as Mixpanel
//! does. The 400 body in `mixpanels_documented_400_dead_letters_exactly_its_failed_records`
//! is the example of <https://docs.mixpanel.com/troubleshooting/errors/400-bad-request>.

use std::collections::HashMap;
use std::sync::Arc;

use awc::http::StatusCode;
use awc::http::header::HeaderMap;
use serde_json::{Value, json};
use switchyard_testkit::vendors::{MixpanelReceiver, Scripted};

use super::*;
use crate::destination::kinds::fixtures::{events, every_call_type};
use crate::destination::kinds::http::HttpAnswer;

const TOKEN: &str = "mixpanel-test-project-token";

fn local_egress() -> Arc<EgressPolicy> {
    Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["127.0.0.1"]),
    )
}

fn client_with(receiver: &MixpanelReceiver, extra: Value) -> MixpanelClient {
    let mut settings = json!({"project_token": TOKEN, "endpoint": receiver.url});
    settings
        .as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    let config: MixpanelConfig = serde_json::from_value(settings).expect("settings");
    MixpanelClient::new(&config, local_egress()).expect("client")
}

fn by_insert_id(events: &[Value]) -> HashMap<String, Value> {
    events
        .iter()
        .map(|e| {
            (
                e["properties"]["$insert_id"].as_str().unwrap_or_default().to_string(),
                e.clone(),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn every_call_type_arrives_mapped_gzipped_to_its_endpoint() {
    let receiver = MixpanelReceiver::start(TOKEN);
    let answer = client_with(&receiver, json!({}))
        .deliver(Arc::from("web"), events(&every_call_type()))
        .await;
    assert_eq!(answer, Answer::Delivered);
    let requests = receiver.requests();
    assert!(requests.iter().all(|(_, _, _, gzip)| *gzip), "{requests:?}");
    let got = by_insert_id(&receiver.events());
    assert_eq!(got.len(), 5, "track, page, screen, $identify, $create_alias: {got:?}");
    let time = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00.000Z")
        .expect("time")
        .timestamp_millis();
    let track = &got["m-track"];
    assert_eq!(track["event"], "Order Completed");
    let properties = &track["properties"];
    for (field, expected) in [
        ("distinct_id", json!("user-1")),
        ("$user_id", json!("user-1")),
        ("$device_id", json!("anon-1")),
        ("time", json!(time)),
        ("ip", json!("203.0.113.9")),
        ("mp_lib", json!("analytics-python")),
        ("$lib_version", json!("2.3.2")),
        ("revenue", json!(42.5)),
        ("currency", json!("EUR")),
        ("products", json!([{"sku": "a"}])),
    ] {
        assert_eq!(properties[field], expected, "{field} in {properties}");
    }
    assert_eq!(got["m-page"]["event"], "Viewed Pricing Page");
    assert_eq!(got["m-page"]["properties"]["category"], "Docs");
    assert_eq!(got["m-screen"]["event"], "Viewed Home Screen");
    let identify = &got["m-identify"];
    assert_eq!(identify["event"], "$identify");
    assert_eq!(identify["properties"]["$identified_id"], "user-1");
    assert_eq!(identify["properties"]["$anon_id"], "anon-1");
    let alias = &got["m-alias"];
    assert_eq!(alias["event"], "$create_alias");
    assert_eq!(alias["properties"]["distinct_id"], "anon-1");
    assert_eq!(alias["properties"]["alias"], "user-1");

    let profiles = receiver.profiles();
    assert_eq!(profiles.len(), 2, "identify's $set and group's $union: {profiles:?}");
    assert_eq!(profiles[0]["$distinct_id"], "user-1");
    assert_eq!(profiles[0]["$set"], json!({"$email": "a@example.com", "plan": "pro"}));
    assert_eq!(profiles[0]["$ip"], "203.0.113.9");
    assert_eq!(profiles[1]["$union"], json!({"company_id": ["acme"]}));
    let groups = receiver.groups();
    assert_eq!(
        groups,
        [json!({"$token": TOKEN, "$group_key": "company_id", "$group_id": "acme", "$set": {"employees": 120}})]
    );
}

#[actix_rt::test]
async fn a_strict_400_dead_letters_exactly_the_failed_records_and_resends_nothing() {
    let receiver = MixpanelReceiver::start(TOKEN);
    let client = client_with(&receiver, json!({"gzip": false}));
    let sent = vec![
        json!({"type": "track", "messageId": "ok-1", "userId": "u-1", "event": "Signed Up"}),
        json!({"type": "track", "messageId": "placeholder", "userId": "null", "event": "Signed Up"}),
        json!({"type": "track", "messageId": "ok-2", "userId": "u-2", "event": "Upgraded"}),
        json!({"type": "track", "messageId": "unnamed", "userId": "u-3"}),
    ];
    let Answer::Partial(failures) = client.deliver(Arc::from("web"), events(&sent)).await else {
        panic!("a partial answer")
    };
    let indexes: Vec<usize> = failures.iter().map(|(at, _)| *at).collect();
    assert_eq!(indexes, [1, 3], "{failures:?}");
    assert!(failures.iter().all(|(_, e)| !e.retryable), "{failures:?}");
    assert!(failures[0].1.reason.contains("distinct_id") && failures[0].1.reason.contains("placeholder"));
    assert!(failures[1].1.reason.contains("'event'"), "{failures:?}");
    let ids: Vec<String> = by_insert_id(&receiver.events()).into_keys().collect();
    assert_eq!(ids.len(), 2, "the valid ones were imported by that request: {ids:?}");
}

#[test]
fn mixpanels_documented_400_dead_letters_exactly_its_failed_records() {
    let documented = HttpAnswer {
        status: StatusCode::BAD_REQUEST,
        headers: HeaderMap::new(),
        body: serde_json::to_vec(&json!({
            "code": 400,
            "error": "some data points in the request failed validation",
            "status": "Bad Request",
            "num_records_imported": 999,
            "failed_records": [{"index": 0, "insert_id": "13c0b661-f48b-51cd-ba54-97c5999169c0",
                                "field": "properties.time",
                                "message": "'properties.time' is invalid: must be specified as seconds since epoch"}]
        }))
        .expect("encodes"),
    };
    let Outcome::Refused(refused) = answer::import(&documented, 1_000) else {
        panic!("per record")
    };
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, 0);
    assert!(!refused[0].1.retryable);
    assert!(refused[0].1.reason.contains("properties.time"), "{refused:?}");
}

#[actix_rt::test]
async fn credentials_throttles_and_refused_profiles_are_answered_as_mixpanel_means() {
    let receiver = MixpanelReceiver::start(TOKEN);
    let track = || events(&every_call_type()[1..2]);
    let wrong = client_with(&receiver, json!({"project_token": "not-the-token"}));
    match wrong.deliver(Arc::from("web"), track()).await {
        Answer::Failed(error) => assert!(error.retryable && error.reason.contains("credentials"), "{error:?}"),
        other => panic!("a wrong token: {other:?}"),
    }
    let client = client_with(&receiver, json!({}));
    receiver.script([
        Scripted::new(429, r#"{"error":"rate limit exceeded"}"#).with_header("Retry-After", "3"),
        Scripted::new(502, "bad gateway"),
    ]);
    match client.deliver(Arc::from("web"), track()).await {
        Answer::Failed(error) => {
            assert!(error.retryable);
            assert_eq!(error.retry_after, Some(std::time::Duration::from_secs(3)));
        }
        other => panic!("429: {other:?}"),
    }
    assert!(matches!(client.deliver(Arc::from("web"), track()).await, Answer::Failed(e) if e.retryable));
    // A group is two profile requests; the group profile refused, the event with it.
    receiver.script([Scripted::new(200, r#"{"status":1,"error":null}"#)]);
    receiver.script([Scripted::new(
        200,
        r#"{"status":0,"error":"$group_key is not a group key of this project"}"#,
    )]);
    let group = events(&every_call_type()[4..5]);
    let Answer::Partial(failures) = client.deliver(Arc::from("web"), group).await else {
        panic!("partial")
    };
    assert_eq!(failures.len(), 1);
    assert!(
        !failures[0].1.retryable && failures[0].1.reason.contains("group key"),
        "{failures:?}"
    );
    assert!(receiver.events().is_empty());
}

#[actix_rt::test]
async fn a_service_account_imports_with_its_project_and_long_message_ids_are_hashed() {
    let receiver = MixpanelReceiver::start(TOKEN);
    receiver.allow_service_account("sa.user", "sa-secret", "3141592");
    let client = client_with(
        &receiver,
        json!({"service_account_username": "sa.user", "service_account_secret": "sa-secret", "project_id": "3141592"}),
    );
    let long = "ajs-next-1733572800000-0f8fad5b-d9cb-469f-a165-70867728950e";
    let sent = [json!({"type": "track", "messageId": long, "anonymousId": "anon-77", "event": "Opened"})];
    assert_eq!(client.deliver(Arc::from("web"), events(&sent)).await, Answer::Delivered);
    let got = receiver.events();
    let id = got[0]["properties"]["$insert_id"].as_str().expect("insert id");
    assert_eq!(id, insert_id(long), "the same on every retry");
    assert_eq!(id.len(), 36);
    assert_eq!(got[0]["properties"]["distinct_id"], "anon-77");
    assert_eq!(insert_id("m-short-1"), "m-short-1");
}
