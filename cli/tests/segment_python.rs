//! End to end: the real Segment Python library sends 1,000 mixed events to a running
//! `switchyard ingest`, and every messageId must arrive in Kafka once, fields intact.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::Message;
use serde_json::Value;
use support::KillOnDrop;
use switchyard_testkit::{Tansu, read_records, unique_topic};

const WRITE_KEY: &str = "e2e-write-key-0123456789";
const COUNT: usize = 1000;

fn start_ingest(config: &Path) -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ingest", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start switchyard ingest");
    let stdout = child.stdout.take().expect("stdout piped");
    let running = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    // Skips the ops line.
    let line = lines
        .find(|line| line.as_ref().is_ok_and(|l| l.starts_with("ingest ")))
        .expect("switchyard printed its address")
        .expect("readable stdout");
    let url = line
        .strip_prefix("ingest listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (running, url.to_string())
}

#[tokio::test]
async fn segment_python_events_arrive_once_with_their_fields() {
    let broker = Tansu::start();
    let topic = unique_topic("e2e");
    broker.create_topic(&topic, 4).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [[sources]]\nid = \"python-app\"\nwrite_key = \"{WRITE_KEY}\"\n",
            broker.brokers()
        ),
    )
    .expect("write config");
    let (_ingest, url) = start_ingest(&config);

    let sent_path = dir.path().join("sent.jsonl");
    support::send_with_segment_python(&url, WRITE_KEY, COUNT, &sent_path);

    let sent: Vec<Value> = std::fs::read_to_string(&sent_path)
        .expect("sent events")
        .lines()
        .map(|line| serde_json::from_str(line).expect("sent line is JSON"))
        .collect();
    assert_eq!(sent.len(), COUNT);

    let records = read_records(&broker.brokers(), &topic, COUNT, Duration::from_secs(60));
    let mut arrived: HashMap<String, (Value, String)> = HashMap::new();
    for record in &records {
        let value: Value = serde_json::from_slice(record.payload().expect("payload")).expect("JSON value");
        let id = value["messageId"].as_str().expect("messageId").to_string();
        let key = String::from_utf8_lossy(record.key().expect("key")).into_owned();
        assert!(
            arrived.insert(id.clone(), (value, key)).is_none(),
            "messageId {id} arrived twice"
        );
    }
    assert_eq!(arrived.len(), COUNT, "every event arrives");

    for message in &sent {
        let id = message["messageId"].as_str().expect("sent messageId");
        let (value, key) = arrived.get(id).unwrap_or_else(|| panic!("{id} never arrived"));
        for field in support::CLIENT_FIELDS {
            let expected = &message[field];
            if !expected.is_null() {
                assert_eq!(&value[field], expected, "{field} of {id}");
            }
        }
        assert_eq!(value["context"]["library"], message["context"]["library"]);
        // The same instant, to the millisecond: the library writes +00:00, we write Z.
        let client_time = message["timestamp"].as_str().expect("sent timestamp");
        let original = value["originalTimestamp"].as_str().expect("originalTimestamp");
        assert_eq!(original.get(..23), client_time.get(..23), "originalTimestamp of {id}");
        assert!(
            original.ends_with('Z') && original.len() == 24,
            "millisecond RFC 3339 in UTC: {original}"
        );
        assert!(
            value["receivedAt"].is_string() && value["sentAt"].is_string(),
            "{value}"
        );
        let user = message["userId"]
            .as_str()
            .or(message["anonymousId"].as_str())
            .expect("identity");
        assert_eq!(key, &format!("python-app/{user}"));
    }
}
