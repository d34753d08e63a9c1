//! Records a router never read are never skipped silently: here the broker trimmed its
//! log past the group's committed offset (the embedded broker keeps 5 MB per
//! partition), so the consumer resets to the earliest record left; the router counts
//! the records between as skipped, logs an error and answers `/readyz` with 503.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{KillOnDrop, Switchyard, get_text};

const TOPIC: &str = "trimmed";
const GROUP: &str = "trimmed-group";

/// `switchyard local-broker` in its own process; killed when dropped.
fn local_broker(dir: &Path) -> (KillOnDrop, String) {
    let address_file = dir.join("broker.address");
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["local-broker", "--topic", &format!("{TOPIC}:1"), "--topic"])
        .arg(format!("{TOPIC}.dead:1"))
        .arg("--address-file")
        .arg(&address_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the local broker");
    let broker = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !address_file.exists() {
        assert!(Instant::now() < deadline, "the local broker wrote no address");
        std::thread::sleep(Duration::from_millis(50));
    }
    let address = std::fs::read_to_string(&address_file).expect("address");
    (broker, address.trim().to_string())
}

fn produce(brokers: &str, count: usize, bytes: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let value = vec![b'x'; bytes];
    for _ in 0..count {
        producer
            .send(BaseRecord::<(), [u8]>::to(TOPIC).payload(&value))
            .expect("queued");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
}

#[actix_web::test]
async fn records_trimmed_before_the_router_read_them_are_reported_and_readiness_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, brokers) = local_broker(dir.path());

    // The group last committed offset 5 of the first ten records...
    produce(&brokers, 10, 16);
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", GROUP)
        .create()
        .expect("consumer");
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset(TOPIC, 0, Offset::Offset(5))
        .expect("position");
    group.commit(&position, CommitMode::Sync).expect("commit");
    drop(group);
    // ...and then 7.5 MB more arrived: the broker keeps 5 MB, so those ten are gone.
    produce(&brokers, 120, 64 * 1024);

    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{TOPIC}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [router]\ngroup_id = \"{GROUP}\"\ndead_letter_topic = \"{TOPIC}.dead\"\nretry_topic = \"\"\n\n\
             [[sources]]\nid = \"shop\"\nwrite_key = \"trimmed-write-key-0123456789\"\n"
        ),
    )
    .expect("write config");
    // A router on its own, fed by Kafka producers: no [ingest] settings, no TLS.
    let router = Switchyard::start("router", &config);
    let ops = router.ops_url.clone().expect("ops address");
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();

    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let (status, body) = get_text(&client, &format!("{ops}/readyz")).await;
        if body.contains("records skipped") || Instant::now() > deadline {
            break (status, body);
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&format!("of {TOPIC}/0 (offsets 5..")), "{body}");

    let (_, metrics) = get_text(&client, &format!("{ops}/metrics")).await;
    let skipped: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchyard_consumer_skipped_records_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the skipped-records counter");
    assert!(skipped >= 5.0, "at least offsets 5..10 were never read: {skipped}");
}
