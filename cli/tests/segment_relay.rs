//! The `segment` destination end to end, relaying between two Switchyards as a
//! migration or a second region would: the real Segment Python library sends mixed
//! events to Switchyard A (ingest → Kafka → router), whose `segment` destination
//! forwards them to Switchyard B's `/v1/batch` with B's write key; every messageId must
//! reach B's topic once, each field as A had it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Message;
use serde_json::Value;
use support::Switchyard;
use switchyard_testkit::{Tansu, read_records, unique_topic};

const APP_KEY: &str = "relay-app-write-key-0123456789";
const RELAY_KEY: &str = "relay-in-write-key-0123456789";
const COUNT: usize = 400;

#[tokio::test]
async fn segment_python_events_relayed_to_another_switchyard_arrive_once_unchanged() {
    let broker = Tansu::start();
    let (first, second) = (unique_topic("relay-a"), unique_topic("relay-b"));
    for topic in [&first, &second] {
        broker.create_topic(topic, 2).await;
    }
    broker.create_topic(&format!("{first}.dead"), 1).await;
    broker.create_topic(&format!("{first}.retry"), 1).await;
    let dir = tempfile::tempdir().expect("temp dir");

    let receiving = dir.path().join("b.toml");
    std::fs::write(
        &receiving,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic = \"{second}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [[sources]]\nid = \"relay-in\"\nwrite_key = \"{RELAY_KEY}\"\n",
            broker.brokers()
        ),
    )
    .expect("write B's config");
    let b = Switchyard::start("ingest", &receiving);
    let b_url = b.ingest_url.clone().expect("B's address");

    let sending = dir.path().join("a.toml");
    std::fs::write(
        &sending,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic = \"{first}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n\
             [router]\ngroup_id = \"{first}-group\"\ndead_letter_topic = \"{first}.dead\"\nretry_topic = \"{first}.retry\"\n\n\
             [[sources]]\nid = \"python-app\"\nwrite_key = \"{APP_KEY}\"\n\n\
             [[destinations]]\nid = \"region-b\"\nsources = [\"python-app\"]\nkind = \"segment\"\n\
             endpoint = \"{b_url}\"\nwrite_key = \"{RELAY_KEY}\"\nbatch_max_events = 100\nlinger_ms = 20\n",
            broker.brokers()
        ),
    )
    .expect("write A's config");
    let a = Switchyard::start("run", &sending);
    let a_url = a.ingest_url.clone().expect("A's address");

    let sent_path = dir.path().join("sent.jsonl");
    support::send_with_segment_python(&a_url, APP_KEY, COUNT, &sent_path);

    let in_a: HashMap<String, Value> = read_records(&broker.brokers(), &first, COUNT, Duration::from_secs(60))
        .iter()
        .map(|record| {
            let value: Value = serde_json::from_slice(record.payload().expect("payload")).expect("JSON");
            (value["messageId"].as_str().expect("messageId").to_string(), value)
        })
        .collect();
    assert_eq!(in_a.len(), COUNT, "every event reached A's topic");

    let records = read_records(&broker.brokers(), &second, COUNT, Duration::from_secs(60));
    let mut in_b: HashMap<String, Value> = HashMap::new();
    for record in &records {
        let value: Value = serde_json::from_slice(record.payload().expect("payload")).expect("JSON");
        let id = value["messageId"].as_str().expect("messageId").to_string();
        let source = record
            .headers()
            .and_then(|headers| {
                use rdkafka::message::Headers;
                headers
                    .iter()
                    .find(|h| h.key == "switchyard-source-id")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            })
            .expect("source header");
        assert_eq!(source, "relay-in", "B took them with its own write key");
        assert!(in_b.insert(id.clone(), value).is_none(), "{id} relayed twice");
    }
    assert_eq!(in_b.len(), COUNT, "every event relayed");
    for (id, relayed) in &in_b {
        let original = in_a.get(id).unwrap_or_else(|| panic!("{id} is not one A took"));
        // Unchanged on the way: what the client sent and what A added (timestamps, library).
        for field in support::CLIENT_FIELDS.into_iter().chain(["integrations"]) {
            assert_eq!(relayed[field], original[field], "{field} of {id}");
        }
        assert_eq!(relayed["context"]["library"], original["context"]["library"], "{id}");
        // Dated as A dated it: B's own correction, fed the relay's sentAt, lands on A's time.
        assert_eq!(relayed["originalTimestamp"], original["timestamp"], "{id}");
        let time = |v: &Value| {
            v.as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .expect("time")
        };
        let drift = time(&relayed["timestamp"]) - time(&original["timestamp"]);
        assert!(drift.num_milliseconds().abs() < 1_000, "{id} moved by {drift}");
    }
    drop(a);
    drop(b);
}
