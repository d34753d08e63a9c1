//! Native destinations end to end: the real Segment Python library sends mixed events
//! to a running `switchyard run` (ingest → Kafka → router), whose native destination
//! delivers them to a local receiver holding requests to the vendor's documented API
//! (`switchyard_testkit::vendors`). Every event must arrive once, mapped, including
//! those of a user the vendor throttles on the way.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Switchyard;
use switchyard_testkit::vendors::{AmplitudeReceiver, MixpanelReceiver};
use switchyard_testkit::{Tansu, unique_topic};

const APP_KEY: &str = "native-app-write-key-0123456789";
const AMPLITUDE_KEY: &str = "amplitude-project-api-key";
const MIXPANEL_TOKEN: &str = "mixpanel-project-token";
const COUNT: usize = 300;

fn config(broker: &Tansu, topic: &str, destination: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
         [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
         [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n\
         [router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n\n\
         [[sources]]\nid = \"python-app\"\nwrite_key = \"{APP_KEY}\"\n\n{destination}",
        broker.brokers()
    )
}

/// A broker with the ingest topic and its dead-letter and retry topics.
async fn broker_with_topics(prefix: &str) -> (Tansu, String) {
    let broker = Tansu::start();
    let topic = unique_topic(prefix);
    broker.create_topic(&topic, 2).await;
    for suffix in ["dead", "retry"] {
        broker.create_topic(&format!("{topic}.{suffix}"), 1).await;
    }
    (broker, topic)
}

fn sent_messages(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the client's record")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect()
}

#[tokio::test]
async fn segment_python_events_reach_amplitude_mapped_once_through_a_throttle() {
    let (broker, topic) = broker_with_topics("native-amp").await;
    let amplitude = AmplitudeReceiver::start(AMPLITUDE_KEY);
    // The library's user-3 sends too fast for Amplitude for a while.
    amplitude.throttle("user-3", 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchyard.toml");
    let destination = format!(
        "[[destinations]]\nid = \"amplitude\"\nsources = [\"python-app\"]\nkind = \"amplitude\"\n\
         api_key = \"{AMPLITUDE_KEY}\"\nendpoint = \"{}\"\nbatch_max_events = 100\nlinger_ms = 20\n\
         ordering = \"per_user\"\n\n[destinations.retry]\nmax_retry_after_secs = 2\n",
        amplitude.url
    );
    std::fs::write(&path, config(&broker, &topic, &destination)).expect("write the config");
    let switchyard = Switchyard::start("run", &path);
    let url = switchyard.ingest_url.clone().expect("ingest address");

    let sent_path = dir.path().join("sent.jsonl");
    support::send_with_segment_python(&url, APP_KEY, COUNT, &sent_path);
    let sent = sent_messages(&sent_path);
    // A group with traits is two Amplitude events (`$identify`, `$groupidentify`).
    let groups = sent.iter().filter(|m| m["type"] == "group").count();

    let deadline = Instant::now() + Duration::from_secs(60);
    let arrived = loop {
        let arrived = amplitude.events();
        if arrived.len() >= COUNT + groups || Instant::now() > deadline {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_id: HashMap<&str, &Value> = arrived
        .iter()
        .map(|e| (e["insert_id"].as_str().expect("insert_id"), e))
        .collect();
    assert_eq!(by_id.len(), arrived.len(), "each once");
    assert_eq!(arrived.len(), COUNT + groups, "every event arrived");
    for message in &sent {
        let id = message["messageId"].as_str().expect("messageId");
        let event = by_id.get(id).unwrap_or_else(|| panic!("{id} did not arrive"));
        let expected = match message["type"].as_str().expect("type") {
            "identify" | "group" | "alias" => "$identify".to_string(),
            "track" => message["event"].as_str().expect("event").to_string(),
            "page" => format!("Viewed {} Page", message["name"].as_str().expect("name")),
            "screen" => format!("Viewed {} Screen", message["name"].as_str().expect("name")),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(event["event_type"], expected.as_str(), "{id}");
        if let Some(user) = message["userId"].as_str() {
            assert_eq!(event["user_id"], user, "{id}");
        }
        assert!(
            event["library"]
                .as_str()
                .is_some_and(|l| l.starts_with("analytics-python/")),
            "{event}"
        );
        match message["type"].as_str() {
            Some("track") => assert_eq!(event["event_properties"], message["properties"], "{id}"),
            Some("identify") => assert_eq!(event["user_properties"]["$set"], message["traits"], "{id}"),
            Some("alias") => assert_eq!(event["device_id"], message["previousId"], "{id}"),
            _ => {}
        }
    }
    let throttles = amplitude.refusals().iter().filter(|(status, _)| *status == 429).count();
    assert_eq!(throttles, 2, "the throttle was met and waited out");
    drop(switchyard);
}

#[tokio::test]
async fn segment_python_events_reach_mixpanel_as_events_and_profiles() {
    let (broker, topic) = broker_with_topics("native-mp").await;
    let mixpanel = MixpanelReceiver::start(MIXPANEL_TOKEN);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchyard.toml");
    let destination = format!(
        "[[destinations]]\nid = \"mixpanel\"\nsources = [\"python-app\"]\nkind = \"mixpanel\"\n\
         project_token = \"{MIXPANEL_TOKEN}\"\nendpoint = \"{}\"\nbatch_max_events = 100\nlinger_ms = 20\n",
        mixpanel.url
    );
    std::fs::write(&path, config(&broker, &topic, &destination)).expect("write the config");
    let switchyard = Switchyard::start("run", &path);
    let url = switchyard.ingest_url.clone().expect("ingest address");

    let sent_path = dir.path().join("sent.jsonl");
    support::send_with_segment_python(&url, APP_KEY, COUNT, &sent_path);
    let sent = sent_messages(&sent_path);
    let count = |kind: &str| sent.iter().filter(|m| m["type"] == kind).count();
    // identify (with a userId) and track, page, screen, alias are events; group is profiles only.
    let expected_events = COUNT - count("group");
    let expected_profiles = count("identify") + count("group");

    let deadline = Instant::now() + Duration::from_secs(60);
    while (mixpanel.events().len() < expected_events
        || mixpanel.profiles().len() < expected_profiles
        || mixpanel.groups().len() < count("group"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let arrived = mixpanel.events();
    let by_id: HashMap<&str, &Value> = arrived
        .iter()
        .map(|e| (e["properties"]["$insert_id"].as_str().expect("$insert_id"), e))
        .collect();
    assert_eq!(by_id.len(), expected_events, "every event once");
    for message in sent.iter().filter(|m| m["type"] != "group") {
        let id = message["messageId"].as_str().expect("messageId");
        let insert_id = switchyard_actors::destination::kinds::mixpanel::insert_id(id);
        let event = by_id
            .get(insert_id.as_str())
            .unwrap_or_else(|| panic!("{id} did not arrive"));
        let properties = &event["properties"];
        match message["type"].as_str().expect("type") {
            "track" => {
                assert_eq!(event["event"], message["event"], "{id}");
                for (key, value) in message["properties"].as_object().expect("properties") {
                    assert_eq!(&properties[key], value, "{key} of {id}");
                }
            }
            "identify" => assert_eq!(properties["$identified_id"], message["userId"], "{id}"),
            "alias" => assert_eq!(properties["distinct_id"], message["previousId"], "{id}"),
            _ => {}
        }
        assert!(
            properties["mp_lib"]
                .as_str()
                .is_some_and(|l| l.starts_with("analytics-python")),
            "{event}"
        );
    }
    assert_eq!(
        mixpanel.profiles().len(),
        expected_profiles,
        "each identify and group once"
    );
    assert_eq!(mixpanel.groups().len(), count("group"));
    assert!(
        mixpanel.requests().iter().all(|(_, _, _, gzip)| *gzip),
        "gzip by default"
    );
    drop(switchyard);
}
