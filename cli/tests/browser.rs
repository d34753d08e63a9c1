//! A real browser: analytics.js (`@segment/analytics-next` from npm, bundled, no CDN) in
//! Debian's headless Chromium, loading its settings from `switchyard ingest` and sending
//! to it in both delivery modes, then through 429s (the source's rate limit) and 503s
//! (no broker). Every messageId the page made must be in Kafka once.
//! The browser side is `tests/browser/send_with_analytics_js.mjs`.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::Message;
use serde_json::Value;
use support::Switchyard;
use switchyard_testkit::{Tansu, read_until, unique_topic};

const KEY: &str = "browser-write-key-0123456789";

struct Page {
    sent: Vec<String>,
    answered: HashSet<String>,
    statuses: HashMap<String, u64>,
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

fn start_page(ingest: &str, mode: &str, count: usize) -> Child {
    Command::new("node")
        .arg(browser_dir().join("send_with_analytics_js.mjs"))
        .args(["--ingest", ingest, "--write-key", KEY, "--mode", mode])
        .args(["--count", &count.to_string(), "--wave", "30", "--timeout-secs", "90"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node (make test-tools installs tests/browser's packages and chromium)")
}

fn finish_page(child: Child) -> Page {
    let output = child.wait_with_output().expect("page ran");
    assert!(output.status.success(), "the browser script failed");
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    let ids = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect()
    };
    Page {
        sent: ids("sent"),
        answered: ids("answered").into_iter().collect(),
        statuses: serde_json::from_value(report["statuses"].clone()).expect("statuses"),
    }
}

/// Every messageId of `pages` is in the topic exactly once.
fn assert_each_once(broker: &Tansu, topic: &str, pages: &[&Page]) {
    let wanted: HashSet<&String> = pages.iter().flat_map(|page| &page.sent).collect();
    let id_of = |record: &rdkafka::message::OwnedMessage| -> String {
        let value: Value = serde_json::from_slice(record.payload().unwrap_or_default()).unwrap_or_default();
        value["messageId"].as_str().unwrap_or_default().to_string()
    };
    let records = read_until(&broker.brokers(), topic, Duration::from_secs(60), |records| {
        let seen: HashSet<String> = records.iter().map(id_of).collect();
        wanted.iter().all(|id| seen.contains(*id))
    });
    let mut counts: HashMap<String, usize> = HashMap::new();
    for record in &records {
        *counts.entry(id_of(record)).or_default() += 1;
    }
    let missing: Vec<_> = wanted.iter().filter(|id| !counts.contains_key(**id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} never reached Kafka: {missing:?}",
        missing.len(),
        wanted.len()
    );
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "in Kafka more than once: {twice:?}");
}

#[tokio::test]
async fn analytics_js_in_chromium_keeps_every_event_through_429s_and_an_unavailable_broker() {
    let broker = Tansu::start();
    let topic = unique_topic("browser");
    broker.create_topic(&topic, 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    // 10 events/s with bursts of 100. The single-event run (150) meets 429s and leaves
    // the bucket empty, so the batching run that follows meets them too. The batching
    // run stays under max_batch_events in all: analytics.js merges a retried batch with
    // what came since, up to ~450 KB, and drops a batch answered 413.
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\ndelivery_timeout_ms = 3000\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\nmax_batch_events = 100\n\n\
             [[sources]]\nid = \"web\"\nwrite_key = \"{KEY}\"\nrate_limit_events_per_sec = 10\nrate_limit_burst_events = 100\n",
            broker.brokers()
        ),
    )
    .expect("write config");
    let ingest = Switchyard::start("ingest", &config);
    let url = ingest.ingest_url.clone().expect("ingest url");

    let single = finish_page(start_page(&url, "single", 150));
    let batching = finish_page(start_page(&url, "batching", 90));
    for (mode, page, count) in [("single", &single, 150), ("batching", &batching, 90)] {
        assert_eq!(page.sent.len(), count, "{mode}");
        assert!(
            page.statuses.get("429").copied().unwrap_or(0) > 0,
            "{mode}: no 429 met: {:?}",
            page.statuses
        );
        assert!(
            page.sent.iter().all(|id| page.answered.contains(id)),
            "{mode}: not all answered 2xx"
        );
    }
    assert_each_once(&broker, &topic, &[&single, &batching]);

    // A broker that is down while the page sends (ingest answers 503), then comes up.
    // tansu 0.6 can't take over an idempotent producer whose sends timed out across its
    // own restart (its storage refuses every request after), so the outage here is a
    // second ingest whose broker is not up yet, rather than a restart of the first's.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let late_config = dir.path().join("late.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &late_config,
        text.replace(&broker.brokers(), &format!("127.0.0.1:{port}")),
    )
    .expect("write");
    let late_ingest = Switchyard::start("ingest", &late_config);
    let late_url = late_ingest.ingest_url.clone().expect("ingest url");
    let outage = start_page(&late_url, "single", 30);
    std::thread::sleep(Duration::from_secs(6));
    let late_broker = Tansu::start_on(port);
    late_broker.create_topic(&topic, 2).await;
    let outage = finish_page(outage);
    assert!(
        outage.statuses.get("503").copied().unwrap_or(0) > 0,
        "no 503 met: {:?}",
        outage.statuses
    );
    let unanswered = outage.sent.iter().filter(|id| !outage.answered.contains(*id)).count();
    assert_eq!(
        unanswered, 0,
        "not answered 2xx after the outage: {:?}",
        outage.statuses
    );
    assert_each_once(&late_broker, &topic, &[&outage]);
}
