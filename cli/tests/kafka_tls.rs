//! Kafka over TLS, end to end: a broker reachable only through a TLS terminator that
//! asks for a client certificate (tansu behind stunnel), events posted to ingest
//! arriving at a webhook through it; and the start refused, naming the setting, when
//! the CA is wrong or the client certificate is missing. Then SASL_SSL with
//! SCRAM-SHA-512 against a broker that authenticates (tansu `--authentication`), as
//! Amazon MSK or Strimzi's SCRAM listener: delivered with the right password, refused at
//! start naming `kafka.sasl` with a wrong one.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Behaviour, Receiver, Switchyard, send_batch, track};
use switchyard_testkit::{TestCa, TlsBroker, unique_topic};

const KEY: &str = "kafka-tls-write-key-0123456789";

/// The configuration for `broker`, with `tls` as the `[kafka.tls]` table's contents.
fn config(broker: &TlsBroker, topic: &str, tls: &str, receiver: &Receiver) -> String {
    config_with(
        broker,
        topic,
        &format!("security_protocol = \"SSL\"\ntls = {{ {tls} }}"),
        receiver,
    )
}

/// The configuration for `broker`, with `security` as the rest of `[kafka]`.
fn config_with(broker: &TlsBroker, topic: &str, security: &str, receiver: &Receiver) -> String {
    format!(
        "[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n{security}\n\n\
         [ops]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
         [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n\
         [router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n\n\
         [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n\n\
         [[destinations]]\nid = \"hook\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{url}\"\n",
        brokers = broker.brokers(),
        url = receiver.url(),
    )
}

fn mutual_tls(broker: &TlsBroker) -> String {
    format!(
        "ca_file = {:?}, cert_file = {:?}, key_file = {:?}",
        broker.ca_file(),
        broker.client_cert_file(),
        broker.client_key_file()
    )
}

/// Runs `switchyard run` expecting it to refuse to start; returns what it printed.
fn refused_start(path: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run switchyard");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut said = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut said)
        .expect("read");
    let status = status.unwrap_or_else(|| panic!("it started when it should have refused: {said}"));
    assert!(!status.success(), "it must not start: {said}");
    said
}

/// The event topic and its dead-letter and retry topics.
async fn create_topics(broker: &TlsBroker, topic: &str) {
    for (name, partitions) in [
        (topic.to_string(), 2),
        (format!("{topic}.dead"), 1),
        (format!("{topic}.retry"), 1),
    ] {
        broker.create_topic(&name, partitions).await;
    }
}

#[actix_web::test]
async fn events_reach_a_webhook_through_a_broker_that_speaks_only_mutual_tls() {
    let broker = TlsBroker::start(true);
    let topic = unique_topic("tls");
    create_topics(&broker, &topic).await;
    let receiver = Receiver::start(Behaviour::Healthy);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config(&broker, &topic, &mutual_tls(&broker), &receiver)).expect("write config");
    let process = Switchyard::start("run", &path);
    let ingest = process.ingest_url.clone().expect("serves ingest");
    let client = awc::Client::default();
    let events: Vec<_> = (0..40)
        .map(|i| track(&format!("tls-{i}"), &format!("user-{}", i % 5)))
        .collect();
    send_batch(&client, &ingest, KEY, &events).await;
    let counts = receiver.wait_for(Duration::from_secs(60), |counts| counts.len() == events.len());
    for i in 0..40 {
        assert!(counts.contains_key(&format!("tls-{i}")), "tls-{i} arrived: {counts:?}");
    }
}

#[test]
fn a_wrong_ca_or_a_missing_client_certificate_stops_the_start_naming_the_setting() {
    let broker = TlsBroker::start(true);
    let receiver = Receiver::start(Behaviour::Healthy);
    let dir = tempfile::tempdir().expect("temp dir");
    let stranger = dir.path().join("other-ca.pem");
    std::fs::write(&stranger, TestCa::new("not the broker's ca").pem()).expect("write ca");
    let path = dir.path().join("wrong-ca.toml");
    let wrong_ca = format!(
        "ca_file = {stranger:?}, cert_file = {:?}, key_file = {:?}",
        broker.client_cert_file(),
        broker.client_key_file()
    );
    std::fs::write(&path, config(&broker, "tls-refused", &wrong_ca, &receiver)).expect("write config");
    let said = refused_start(&path);
    assert!(said.contains("kafka.tls.ca_file"), "names the CA setting: {said}");
    assert!(said.contains("not trusted"), "says why: {said}");

    let path = dir.path().join("no-client-cert.toml");
    let no_cert = format!("ca_file = {:?}", broker.ca_file());
    std::fs::write(&path, config(&broker, "tls-refused", &no_cert, &receiver)).expect("write config");
    let said = refused_start(&path);
    assert!(
        said.contains("kafka.tls.cert_file"),
        "names the client certificate setting: {said}"
    );

    let path = dir.path().join("missing-file.toml");
    let missing = format!("ca_file = {:?}", dir.path().join("absent.pem"));
    std::fs::write(&path, config(&broker, "tls-refused", &missing, &receiver)).expect("write config");
    let said = refused_start(&path);
    assert!(
        said.contains("kafka.tls.ca_file") && said.contains("absent.pem"),
        "{said}"
    );
}

const SCRAM_USER: &str = "switchyard";
const SCRAM_PASSWORD: &str = "scram-password-0123456789";

fn scram(broker: &TlsBroker) -> String {
    format!(
        "security_protocol = \"SASL_SSL\"\ntls = {{ ca_file = {:?} }}\n\
         sasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"{SCRAM_USER}\", password_env = \"SWITCHYARD_KAFKA_SASL_PASSWORD\" }}",
        broker.ca_file()
    )
}

#[actix_web::test]
async fn events_reach_a_webhook_through_sasl_ssl_with_scram_and_a_wrong_password_is_refused_at_start() {
    let broker = TlsBroker::start_scram(SCRAM_USER, SCRAM_PASSWORD);
    let topic = unique_topic("scram");
    create_topics(&broker, &topic).await;
    let receiver = Receiver::start(Behaviour::Healthy);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config_with(&broker, &topic, &scram(&broker), &receiver)).expect("write config");

    let wrong = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["create-topic", "--config"])
        .arg(&path)
        .env("SWITCHYARD_KAFKA_SASL_PASSWORD", "not the password")
        .output()
        .expect("run create-topic");
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "a wrong password must not pass: {said}");
    assert!(said.contains("kafka.sasl"), "names the SASL setting: {said}");
    assert!(!said.contains("not the password"), "never prints the password: {said}");

    let process = Switchyard::start_with_env("run", &path, &[("SWITCHYARD_KAFKA_SASL_PASSWORD", SCRAM_PASSWORD)]);
    let ingest = process.ingest_url.clone().expect("serves ingest");
    let client = awc::Client::default();
    let events: Vec<_> = (0..30)
        .map(|i| track(&format!("scram-{i}"), &format!("user-{}", i % 3)))
        .collect();
    send_batch(&client, &ingest, KEY, &events).await;
    let counts = receiver.wait_for(Duration::from_secs(60), |counts| counts.len() == events.len());
    for i in 0..30 {
        assert!(
            counts.contains_key(&format!("scram-{i}")),
            "scram-{i} arrived: {counts:?}"
        );
    }
}
