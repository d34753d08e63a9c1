//! The ops port end to end: metric values after known traffic, `/actors` showing a
//! backing-off destination, and readiness following the broker.

mod support;

use std::time::{Duration, Instant};

use support::{Behaviour, Receiver, Switchyard, broker_with_topics, get_text, send_batch, track};
use switchyard_testkit::Tansu;

const KEY: &str = "ops-write-key-0123456789";

struct Setup {
    broker: Tansu,
    topic: String,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let (broker, topic) = broker_with_topics("ops", 2).await;
    Setup {
        broker,
        topic,
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

fn config(setup: &Setup, destinations: &str) -> std::path::PathBuf {
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\ntopic = \"{t}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
         [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
         [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n[router]\ngroup_id = \"{t}-group\"\ndead_letter_topic = \"{t}.dead\"\nretry_topic = \"{t}.retry\"\n\n\
         [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n{destinations}",
        setup.broker.brokers(),
        t = setup.topic,
    );
    let path = setup.dir.path().join("switchyard.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn webhook(id: &str, receiver: &Receiver, extra: &str) -> String {
    format!(
        "\n[[destinations]]\nid = \"{id}\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\n\
         {extra}\n",
        receiver.url()
    )
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[actix_web::test]
async fn metrics_count_exactly_the_traffic_sent_including_failures() {
    let setup = setup().await;
    let good = Receiver::start(Behaviour::Healthy);
    let picky = Receiver::start(Behaviour::RefuseBad);
    let destinations = webhook("good", &good, "") + &webhook("picky", &picky, "");
    let switchyard = Switchyard::start("run", &config(&setup, &destinations));
    let (ingest, ops) = (
        switchyard.ingest_url.clone().expect("ingest"),
        switchyard.ops_url.clone().expect("ops"),
    );
    let client = awc::Client::default();

    let events: Vec<_> = (0..20)
        .map(|i| track(&format!("m-{i}"), if i % 4 == 0 { "bad" } else { "u-1" }))
        .collect();
    send_batch(&client, &ingest, KEY, &events).await;
    for _ in 0..3 {
        let response = client
            .post(format!("{ingest}/v1/batch"))
            .basic_auth("not-a-key-0123456789", "")
            .send_json(&serde_json::json!({"batch": [track("x", "u")]}))
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 401);
    }
    let invalid = client
        .post(format!("{ingest}/v1/track"))
        .basic_auth(KEY, "")
        .send_json(&serde_json::json!({"event": "No user"}))
        .await
        .expect("answers");
    assert_eq!(invalid.status().as_u16(), 400);

    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (status, text) = get_text(&client, &format!("{ops}/metrics")).await;
        assert_eq!(status, 200);
        let dead = sample(
            &text,
            "switchyard_destination_events_total",
            &[("destination", "picky"), ("outcome", "dead_lettered")],
        );
        let delivered = sample(
            &text,
            "switchyard_destination_events_total",
            &[("destination", "good"), ("outcome", "delivered")],
        );
        // Lag comes with librdkafka's statistics, every 5 s.
        let lag = text.contains("switchyard_consumer_lag{");
        if dead == Some(5.0) && delivered == Some(20.0) && lag {
            break text;
        }
        assert!(Instant::now() < deadline, "metrics never settled:\n{text}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    let expect = |name: &str, labels: &[(&str, &str)], value: f64| {
        assert_eq!(sample(&text, name, labels), Some(value), "{name} {labels:?} in\n{text}");
    };
    expect("switchyard_ingest_events_accepted_total", &[("source", "shop")], 20.0);
    expect(
        "switchyard_errors_total",
        &[("stage", "ingest"), ("error_type", "unauthorized")],
        3.0,
    );
    expect(
        "switchyard_errors_total",
        &[("stage", "ingest"), ("error_type", "invalid_event")],
        1.0,
    );
    expect(
        "switchyard_errors_total",
        &[("stage", "deliver"), ("error_type", "permanent")],
        5.0,
    );
    expect("switchyard_consumer_records_total", &[], 20.0);
    expect(
        "switchyard_source_events_total",
        &[("source", "shop"), ("outcome", "received")],
        20.0,
    );
    expect(
        "switchyard_source_events_total",
        &[("source", "shop"), ("outcome", "delivered")],
        20.0,
    );
    expect(
        "switchyard_destination_events_total",
        &[("destination", "good"), ("kind", "webhook"), ("outcome", "received")],
        20.0,
    );
    expect(
        "switchyard_destination_events_total",
        &[("destination", "picky"), ("outcome", "delivered")],
        15.0,
    );
    expect(
        "switchyard_destination_delivery_seconds_count",
        &[("destination", "good")],
        20.0,
    );
    expect(
        "switchyard_destination_delivery_seconds_count",
        &[("destination", "picky")],
        15.0,
    );
    expect("switchyard_source_mailbox_records", &[("source", "shop")], 0.0);
    expect(
        "switchyard_actor_state",
        &[("destination", "good"), ("state", "running")],
        1.0,
    );

    // Every metric the shipped Grafana dashboard queries exists.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../helm/switchyard/dashboards/switchyard.json"
    ))
    .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if name.starts_with("switchyard_") {
                    queried += 1;
                    // A sample, or (for a family with no series yet, like lag before the
                    // first statistics) its declaration.
                    let base = ["_total", "_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix))
                        .unwrap_or(name);
                    let exposed = text.lines().any(|l| {
                        (l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
                            || l.strip_prefix("# TYPE ")
                                .is_some_and(|t| t.split(' ').next() == Some(base))
                    });
                    assert!(
                        exposed,
                        "panel {:?} queries {name}, which /metrics doesn't have",
                        panel["title"]
                    );
                }
            }
        }
    }
    assert!(queried >= 10, "{queried}");

    let (status, body) = get_text(&client, &format!("{ops}/overview")).await;
    assert_eq!(status, 200);
    let overview: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let shop = &overview["sources"][0];
    assert_eq!(
        (shop["id"].as_str(), shop["received"].as_u64()),
        (Some("shop"), Some(20)),
        "{shop}"
    );
    let picky = shop["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["id"] == "picky")
        .expect("picky listed");
    assert_eq!(
        (picky["delivered"].as_u64(), picky["dead_lettered"].as_u64()),
        (Some(15), Some(5)),
        "{picky}"
    );
    let errors = picky["recent_errors"].as_array().expect("samples");
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e["reason"].as_str().is_some_and(|r| r.contains("400"))),
        "{picky}"
    );
}

#[actix_web::test]
async fn actors_show_a_backing_off_destination_and_readiness_follows_the_broker() {
    let mut setup = setup().await;
    let down = Receiver::start(Behaviour::FailUntil(Instant::now() + Duration::from_secs(3600)));
    let slow_retries = "breaker_failures = 1000\nretry = { min_backoff_ms = 30000, max_backoff_ms = 30000 }";
    let switchyard = Switchyard::start("run", &config(&setup, &webhook("down", &down, slow_retries)));
    let (ingest, ops) = (
        switchyard.ingest_url.clone().expect("ingest"),
        switchyard.ops_url.clone().expect("ops"),
    );
    let client = awc::Client::default();
    // A probe asks again; the first answer may come before the broker knows the topic.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get_text(&client, &format!("{ops}/readyz")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready with the broker up: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }

    let events: Vec<_> = (0..3).map(|i| track(&format!("d-{i}"), "u-1")).collect();
    send_batch(&client, &ingest, KEY, &events).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let actor = loop {
        let (_, body) = get_text(&client, &format!("{ops}/actors")).await;
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let actor = body["actors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["destination_id"] == "down")
            .cloned()
            .expect("the destination is listed");
        if actor["state"] == "backing_off" && actor["buffered"] == 3 {
            break actor;
        }
        assert!(Instant::now() < deadline, "never backing off: {actor}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        actor["last_error"].as_str().is_some_and(|e| e.contains("500")),
        "{actor}"
    );
    // Full jitter can bring a retry early, so at least one failure each.
    assert!(actor["retried"].as_u64().is_some_and(|n| n >= 3), "{actor}");

    setup.broker.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = get_text(&client, &format!("{ops}/readyz")).await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready with the broker down: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(body.contains("broker"), "{body}");
    let (status, _) = get_text(&client, &format!("{ops}/healthz")).await;
    assert_eq!(status, 200, "alive, only not ready");
}
