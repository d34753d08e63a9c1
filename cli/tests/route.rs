//! The router end to end: ingest and router against a real broker (tansu), delivering
//! to real local HTTP receivers.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::Message;
use support::{Behaviour, Receiver, Switchyard, get_text, percentile, received_event, send_batch, track};
use switchyard_testkit::{Tansu, header, produce_events, read_records, read_until, unique_topic};

const KEY: &str = "route-write-key-0123456789";

struct Setup {
    broker: Tansu,
    topic: String,
    dead_letters: String,
    retries: String,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let broker = Tansu::start();
    let topic = unique_topic("route");
    let dead_letters = format!("{topic}.dead");
    let retries = format!("{topic}.retry");
    broker.create_topic(&topic, 4).await;
    broker.create_topic(&dead_letters, 1).await;
    broker.create_topic(&retries, 2).await;
    Setup {
        broker,
        topic,
        dead_letters,
        retries,
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

fn config_text(setup: &Setup, destinations: &[(&str, &Receiver, usize)]) -> String {
    let mut text = format!(
        "[kafka]\nbrokers = \"{}\"\ntopic = \"{}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
         [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n[router]\ngroup_id = \"{}-group\"\ndead_letter_topic = \"{}\"\nretry_topic = \"{}\"\n\n\
         [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n",
        setup.broker.brokers(),
        setup.topic,
        setup.topic,
        setup.dead_letters,
        setup.retries
    );
    for (id, receiver, concurrency) in destinations {
        text.push_str(&destination_block(id, "shop", receiver, *concurrency));
    }
    text
}

fn destination_block(id: &str, source: &str, receiver: &Receiver, concurrency: usize) -> String {
    format!(
        "\n[[destinations]]\nid = \"{id}\"\nsources = [\"{source}\"]\nkind = \"webhook\"\nurl = \"{}\"\n\
         concurrency = {concurrency}\nbreaker_cooldown_ms = 200\n\
         retry = {{ min_backoff_ms = 50, max_backoff_ms = 400 }}\n",
        receiver.url()
    )
}

fn write_config(setup: &Setup, destinations: &[(&str, &Receiver, usize)]) -> PathBuf {
    let path = setup.dir.path().join("switchyard.toml");
    std::fs::write(&path, config_text(setup, destinations)).expect("write config");
    path
}

/// Every fourth round's first event comes from user "bad", whom one receiver refuses.
fn is_bad(message_id: &str) -> bool {
    let mut parts = message_id.split('-').skip(1);
    let (round, index) = (parts.next().and_then(|r| r.parse::<u32>().ok()), parts.next());
    round.is_some_and(|r| r.is_multiple_of(4)) && index == Some("0")
}

fn ingest_url(process: &Switchyard) -> &str {
    process.ingest_url.as_deref().expect("serves ingest")
}

#[actix_web::test]
async fn every_destination_gets_every_event_and_a_failing_one_slows_no_other() {
    let setup = setup().await;
    let healthy = Receiver::start(Behaviour::Healthy);
    let flaky = Receiver::start(Behaviour::Healthy);
    let picky = Receiver::start(Behaviour::RefuseBad);
    let config = write_config(
        &setup,
        &[("healthy", &healthy, 4), ("flaky", &flaky, 4), ("picky", &picky, 4)],
    );
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();

    // Warm up: the consumer group has joined once the first event arrives.
    send_batch(&client, ingest_url(&switchyard), KEY, &[track("warm-up", "u-0")]).await;
    healthy.wait_for(Duration::from_secs(30), |c| c.contains_key("warm-up"));

    // The flaky destination answers 500 for the next 2 seconds; sending takes about 4.
    let outage_end = Instant::now() + Duration::from_secs(2);
    flaky.set(Behaviour::FailUntil(outage_end));
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut expected = vec!["warm-up".to_string()];
    for round in 0..40 {
        let events: Vec<_> = (0..10)
            .map(|i| {
                let id = format!("m-{round}-{i}");
                let user = if is_bad(&id) {
                    "bad".to_string()
                } else {
                    format!("u-{i}")
                };
                track(&id, &user)
            })
            .collect();
        send_batch(&client, ingest_url(&switchyard), KEY, &events).await;
        let now = Instant::now();
        for event in &events {
            let id = event["messageId"].as_str().expect("id").to_string();
            sent_at.insert(id.clone(), now);
            expected.push(id);
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // A client retry of an accepted batch: the same messageIds again.
    let repeat: Vec<_> = (0..10)
        .map(|i| track(&format!("m-0-{i}"), if i == 0 { "bad" } else { "u" }))
        .collect();
    send_batch(&client, ingest_url(&switchyard), KEY, &repeat).await;

    let all = |counts: &HashMap<String, usize>| expected.iter().all(|id| counts.contains_key(id));
    let healthy_counts = healthy.wait_for(Duration::from_secs(60), all);
    let flaky_counts = flaky.wait_for(Duration::from_secs(60), all);
    assert!(
        all(&healthy_counts),
        "healthy missed {} events",
        expected.iter().filter(|id| !healthy_counts.contains_key(*id)).count()
    );
    assert!(all(&flaky_counts), "flaky missed events after recovering");
    assert!(
        flaky.refused() >= 3,
        "the outage happened: {} refusals",
        flaky.refused()
    );
    assert!(
        healthy_counts.values().all(|n| *n == 1),
        "dedup: every messageId once without a crash"
    );

    // During the outage the healthy destination kept the pace it had after it.
    let latencies = |during_outage: bool| -> Vec<Duration> {
        healthy
            .arrivals()
            .iter()
            .filter_map(|(id, at)| {
                let sent = sent_at.get(id)?;
                ((*sent < outage_end) == during_outage).then(|| at.duration_since(*sent))
            })
            .collect()
    };
    let (during, after) = (latencies(true), latencies(false));
    assert!(
        during.len() >= 100 && after.len() >= 30,
        "events during / after the outage: {} / {}",
        during.len(),
        after.len()
    );
    let (p99_during, p99_after) = (percentile(during, 0.99), percentile(after, 0.99));
    println!(
        "healthy destination p99: {p99_during:?} during the outage, {p99_after:?} after; flaky refused {} requests",
        flaky.refused()
    );
    assert!(
        p99_during < (p99_after * 2).max(Duration::from_millis(250)),
        "healthy p99 {p99_during:?} during the outage vs {p99_after:?} after"
    );
    // The picky destination refused "bad" users (4xx): those are dead-lettered with the reason.
    let bad: Vec<&String> = expected.iter().filter(|id| is_bad(id)).collect();
    assert_eq!(bad.len(), 10);
    let picky_counts = picky.wait_for(Duration::from_secs(30), |c| c.len() >= expected.len() - bad.len());
    assert!(bad.iter().all(|id| !picky_counts.contains_key(*id)));
    let letters = read_records(
        &setup.broker.brokers(),
        &setup.dead_letters,
        bad.len(),
        Duration::from_secs(30),
    );
    assert_eq!(letters.len(), bad.len(), "one dead letter per refused event");
    for letter in &letters {
        assert_eq!(header(letter, "switchyard-destination-id").as_deref(), Some("picky"));
        let reason = header(letter, "switchyard-dead-letter-reason").unwrap_or_default();
        assert!(
            reason.contains("HTTP 400") && reason.contains("userId bad is not allowed"),
            "{reason}"
        );
        let value: serde_json::Value = serde_json::from_slice(letter.payload().expect("payload")).expect("event JSON");
        assert_eq!(value["userId"], "bad");
    }
}

#[actix_web::test]
async fn a_router_killed_mid_stream_redelivers_everything_after_restart() {
    let setup = setup().await;
    let receiver = Receiver::start(Behaviour::Slow(Duration::from_millis(20)));
    let config: &Path = &write_config(&setup, &[("slow", &receiver, 2)]);
    let ingest = Switchyard::start("ingest", config);
    let mut router = Switchyard::start("router", config);
    let client = awc::Client::default();

    let mut expected = Vec::new();
    for round in 0..30 {
        let events: Vec<_> = (0..10)
            .map(|i| track(&format!("k-{round}-{i}"), &format!("u-{i}")))
            .collect();
        send_batch(&client, ingest_url(&ingest), KEY, &events).await;
        expected.extend(events.iter().map(|e| e["messageId"].as_str().expect("id").to_string()));
    }
    let before = receiver.wait_for(Duration::from_secs(60), |c| c.len() >= 60);
    assert!(
        before.len() >= 60 && before.len() < expected.len(),
        "mid-stream: {} of {}",
        before.len(),
        expected.len()
    );
    router.kill();
    let at_kill = receiver.counts().len();

    let _router = Switchyard::start("router", config);
    let counts = receiver.wait_for(Duration::from_secs(90), |c| {
        expected.iter().all(|id| c.contains_key(id))
    });
    let missing = expected.iter().filter(|id| !counts.contains_key(*id)).count();
    assert_eq!(
        missing, 0,
        "{missing} events never delivered after the restart (had {at_kill} at the kill)"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "killed at {at_kill} of {} delivered; {duplicates} duplicates after the restart",
        expected.len()
    );
    // Redelivery repeats at most what was uncommitted at the kill: the commit interval's
    // worth plus what was in flight, never the whole stream again.
    assert!(duplicates < expected.len() / 2, "{duplicates} duplicates");
}

#[actix_web::test]
async fn two_routers_share_the_partitions_through_rebalances_without_losing_events() {
    let setup = setup().await;
    let receiver = Receiver::start(Behaviour::Slow(Duration::from_millis(10)));
    let config: &Path = &write_config(&setup, &[("slow", &receiver, 2)]);
    let ingest = Switchyard::start("ingest", config);
    let mut first = Switchyard::start("router", config);
    let client = awc::Client::default();

    let mut expected = Vec::new();
    let mut second = None;
    for round in 0..60 {
        let events: Vec<_> = (0..10)
            .map(|i| track(&format!("r-{round}-{i}"), &format!("user-{i}")))
            .collect();
        send_batch(&client, ingest_url(&ingest), KEY, &events).await;
        expected.extend(events.iter().map(|e| e["messageId"].as_str().expect("id").to_string()));
        match round {
            // A second router joins the group: the partitions are split between the two.
            15 => second = Some(Switchyard::start("router", config)),
            // The first one leaves cleanly: the second takes every partition.
            40 => first.terminate(),
            _ => {}
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = receiver.wait_for(Duration::from_secs(90), |c| {
        expected.iter().all(|id| c.contains_key(id))
    });
    let missing = expected.iter().filter(|id| !counts.contains_key(*id)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} events never delivered across the rebalances",
        expected.len()
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    println!(
        "{} events through two rebalances, {duplicates} duplicates",
        expected.len()
    );
    assert!(duplicates < expected.len() / 4, "{duplicates} duplicates");
    drop(second);
}

#[actix_web::test]
async fn a_kafka_destination_receives_the_events_in_the_record_format() {
    let setup = setup().await;
    let out_topic = format!("{}.out", setup.topic);
    setup.broker.create_topic(&out_topic, 2).await;
    let config = write_config(&setup, &[]);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[[destinations]]\nid = \"warehouse-feed\"\nsources = [\"shop\"]\nkind = \"kafka\"\nbrokers = \"{}\"\n\
         topic = \"{out_topic}\"\nbatch_max_events = 10\n",
        setup.broker.brokers()
    ));
    std::fs::write(&config, text).expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    let events: Vec<_> = (0..30)
        .map(|i| track(&format!("kafka-{i}"), &format!("user-{}", i % 3)))
        .collect();
    send_batch(&client, ingest_url(&switchyard), KEY, &events).await;

    let records = read_records(
        &setup.broker.brokers(),
        &out_topic,
        events.len(),
        Duration::from_secs(60),
    );
    assert_eq!(records.len(), events.len(), "every event reaches the destination topic");
    let mut ids: Vec<String> = records
        .iter()
        .map(|record| {
            let key = String::from_utf8_lossy(record.key().expect("key")).into_owned();
            let value: serde_json::Value = serde_json::from_slice(record.payload().expect("payload")).expect("JSON");
            assert_eq!(key, format!("shop/{}", value["userId"].as_str().expect("userId")));
            assert_eq!(header(record, "switchyard-source-id").as_deref(), Some("shop"));
            assert_eq!(
                header(record, "switchyard-message-id").as_deref(),
                value["messageId"].as_str()
            );
            assert_eq!(value["properties"]["revenue"], 9.5);
            value["messageId"].as_str().expect("messageId").to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
}

#[actix_web::test]
async fn per_user_ordering_holds_a_users_later_events_while_one_retries() {
    let setup = setup().await;
    let receiver = Receiver::start(Behaviour::FailFirst {
        user: "x",
        remaining: 1,
    });
    let config = write_config(&setup, &[]);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[[destinations]]\nid = \"ordered\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\n\
         concurrency = 4\nordering = \"per_user\"\n\
         retry = {{ min_backoff_ms = 600, max_backoff_ms = 600 }}\n",
        receiver.url()
    ));
    std::fs::write(&config, text).expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    send_batch(&client, ingest_url(&switchyard), KEY, &[track("warm-up", "w")]).await;
    receiver.wait_for(Duration::from_secs(30), |c| c.contains_key("warm-up"));

    for i in 1..=5 {
        send_batch(&client, ingest_url(&switchyard), KEY, &[track(&format!("x-{i}"), "x")]).await;
        send_batch(&client, ingest_url(&switchyard), KEY, &[track(&format!("y-{i}"), "y")]).await;
    }
    receiver.wait_for(Duration::from_secs(30), |c| {
        (1..=5).all(|i| c.contains_key(&format!("x-{i}")))
    });
    let arrivals = receiver.arrivals();
    let order = |user: &str| -> Vec<String> {
        arrivals
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| id.starts_with(user))
            .collect()
    };
    assert_eq!(
        order("x-"),
        ["x-1", "x-2", "x-3", "x-4", "x-5"],
        "x's events in order despite the retry"
    );
    assert_eq!(order("y-"), ["y-1", "y-2", "y-3", "y-4", "y-5"]);
    assert_eq!(receiver.refused(), 1, "x's first request failed once");
    let at = |id: &str| {
        arrivals
            .iter()
            .find(|(a, _)| a == id)
            .map(|(_, t)| *t)
            .expect("arrived")
    };
    assert!(at("y-5") < at("x-1"), "y was not held back by x's retry");
}

#[actix_web::test]
async fn source_and_destination_transforms_filter_and_scrub_events() {
    let setup = setup().await;
    let receiver = Receiver::start(Behaviour::Healthy);
    let config = write_config(&setup, &[]);
    let text = std::fs::read_to_string(&config).expect("config").replace(
        &format!("write_key = \"{KEY}\"\n"),
        &format!(
            "write_key = \"{KEY}\"\ntransforms = [{{ op = \"drop_if\", condition = '.properties.internal == true' }}]\n"
        ),
    );
    let text = format!(
        "{text}\n[[destinations]]\nid = \"scrubbed\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\n\
         transforms = [\n  {{ op = \"hash\", fields = [\"properties.email\"], salt = \"pepper-123\" }},\n\
         {{ op = \"redact\", fields = [\"context.ip\"] }},\n  {{ op = \"drop_fields\", fields = [\"userId\"] }},\n]\n",
        receiver.url()
    );
    std::fs::write(&config, text).expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    let event = |id: &str, internal: bool| {
        serde_json::json!({"type": "track", "userId": "u-1", "anonymousId": "a-1", "event": "Signed Up", "messageId": id,
                           "properties": {"email": "ada@example.com", "internal": internal}})
    };
    send_batch(
        &client,
        ingest_url(&switchyard),
        KEY,
        &[event("kept", false), event("internal", true)],
    )
    .await;
    // userId dropped on a track: still valid through its anonymousId. Dropping it from an
    // event without one would make it invalid: that one is dead-lettered with the reason.
    send_batch(&client, ingest_url(&switchyard), KEY, &[track("broken", "u-2")]).await;
    send_batch(&client, ingest_url(&switchyard), KEY, &[event("sentinel", false)]).await;

    let counts = receiver.wait_for(Duration::from_secs(30), |c| c.contains_key("sentinel"));
    assert!(
        counts.contains_key("kept") && !counts.contains_key("internal") && !counts.contains_key("broken"),
        "{counts:?}"
    );
    let kept = received_event("kept").expect("kept arrived");
    assert_eq!(
        kept["properties"]["email"].as_str().map(str::len),
        Some(64),
        "hashed: {kept}"
    );
    assert_eq!(kept["context"]["ip"], "[redacted]");
    assert!(kept.get("userId").is_none() && kept["anonymousId"] == "a-1");

    let letters = read_records(&setup.broker.brokers(), &setup.dead_letters, 1, Duration::from_secs(30));
    assert_eq!(letters.len(), 1);
    assert_eq!(
        header(&letters[0], "switchyard-dead-letter-stage").as_deref(),
        Some("transform")
    );
    assert_eq!(header(&letters[0], "switchyard-message-id").as_deref(), Some("broken"));
    let reason = header(&letters[0], "switchyard-dead-letter-reason").unwrap_or_default();
    assert!(reason.contains("no longer valid"), "{reason}");
}

#[test]
fn a_bad_condition_stops_the_start_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nallow_plain_http = true\n\n[[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n\
             transforms = [{{ op = \"drop_if\", condition = '.event == ' }}]\n"
        ),
    )
    .expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run switchyard");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sources[0].transforms[0]: condition") && stderr.contains(":1:"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn sighup_swaps_destinations_without_a_restart() {
    let setup = setup().await;
    let first = Receiver::start(Behaviour::Healthy);
    let second = Receiver::start(Behaviour::Healthy);
    let config = write_config(&setup, &[("first", &first, 2)]);
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    let batch = |prefix: &str| {
        (0..10)
            .map(|i| track(&format!("{prefix}-{i}"), &format!("u-{i}")))
            .collect::<Vec<_>>()
    };
    send_batch(&client, ingest_url(&switchyard), KEY, &batch("before")).await;
    let got = first.wait_for(Duration::from_secs(30), |c| c.len() >= 10);
    assert_eq!(got.len(), 10);

    // Same source, the destination replaced by another one.
    std::fs::write(
        &config,
        std::fs::read_to_string(write_config(&setup, &[("second", &second, 2)])).expect("config"),
    )
    .expect("rewrite config");
    let pid = switchyard.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;

    send_batch(&client, ingest_url(&switchyard), KEY, &batch("after")).await;
    let got = second.wait_for(Duration::from_secs(30), |c| c.len() >= 10);
    assert!((0..10).all(|i| got.contains_key(&format!("after-{i}"))), "{got:?}");
    assert!(
        got.keys().all(|id| id.starts_with("after-")),
        "the new destination got only later events: {got:?}"
    );
    let old = first.counts();
    assert!(
        old.keys().all(|id| id.starts_with("before-")),
        "the removed destination got nothing new: {old:?}"
    );
}

/// The status ingest answers a one-event batch with, under `write_key`.
async fn batch_status(client: &awc::Client, url: &str, write_key: &str, message_id: &str) -> u16 {
    let response = client
        .post(format!("{url}/v1/batch"))
        .basic_auth(write_key, "")
        .send_json(&serde_json::json!({ "batch": [track(message_id, "u-1")] }))
        .await
        .expect("ingest answers");
    response.status().as_u16()
}

#[actix_web::test]
async fn editing_the_file_adds_and_removes_sources_without_a_restart() {
    const APP_KEY: &str = "route-app-write-key-0123456789";
    let setup = setup().await;
    let first = Receiver::start(Behaviour::Healthy);
    let second = Receiver::start(Behaviour::Healthy);
    let config = write_config(&setup, &[("first", &first, 2)]);
    let mut switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    let url = &ingest_url(&switchyard).to_string();
    assert_eq!(
        batch_status(&client, url, APP_KEY, "probe-0").await,
        401,
        "not a source yet"
    );

    // No signal: the file's change is noticed on its own.
    let app = format!(
        "\n[[sources]]\nid = \"app\"\nwrite_key = \"{APP_KEY}\"\n{}",
        destination_block("second", "app", &second, 2)
    );
    std::fs::write(&config, config_text(&setup, &[("first", &first, 2)]) + &app).expect("rewrite config");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probes = 1;
    while batch_status(&client, url, APP_KEY, &format!("probe-{probes}")).await != 200 {
        assert!(Instant::now() < deadline, "the added source was never accepted");
        probes += 1;
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let app_batch: Vec<_> = (0..10).map(|i| track(&format!("app-{i}"), &format!("u-{i}"))).collect();
    send_batch(&client, url, APP_KEY, &app_batch).await;
    let got = second.wait_for(Duration::from_secs(30), |c| {
        (0..10).all(|i| c.contains_key(&format!("app-{i}")))
    });
    assert!((0..10).all(|i| got.contains_key(&format!("app-{i}"))), "{got:?}");
    let shop_batch: Vec<_> = (0..5).map(|i| track(&format!("shop-{i}"), &format!("u-{i}"))).collect();
    send_batch(&client, url, KEY, &shop_batch).await;
    let got = first.wait_for(Duration::from_secs(30), |c| c.len() >= 5);
    assert!(
        got.keys().all(|id| id.starts_with("shop-")),
        "sources keep their own destinations: {got:?}"
    );

    // The first source goes away: its key is refused, the other keeps flowing.
    let only_app = config_text(&setup, &[])
        .replace("id = \"shop\"", "id = \"app\"")
        .replace(KEY, APP_KEY)
        + &destination_block("second", "app", &second, 2);
    std::fs::write(&config, only_app).expect("rewrite config");
    let deadline = Instant::now() + Duration::from_secs(20);
    while batch_status(&client, url, KEY, "shop-late").await != 401 {
        assert!(Instant::now() < deadline, "the removed source's key was still accepted");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    send_batch(&client, url, APP_KEY, &[track("app-after", "u-1")]).await;
    let got = second.wait_for(Duration::from_secs(30), |c| c.contains_key("app-after"));
    assert!(got.contains_key("app-after"), "{got:?}");
    assert!(switchyard.child.try_wait().expect("status").is_none(), "no restart");
}

#[actix_web::test]
async fn a_full_destination_parks_its_overflow_and_never_holds_back_the_others() {
    let setup = setup().await;
    let steady = Receiver::start(Behaviour::Healthy);
    let down = Receiver::start(Behaviour::FailUntil(Instant::now() + Duration::from_secs(3600)));
    let mut text = config_text(&setup, &[("steady", &steady, 2), ("down", &down, 1)]);
    // The last table is "down": a buffer of 20 events, then parking.
    text.push_str("max_buffered_events = 20\n");
    let config = setup.dir.path().join("switchyard.toml");
    std::fs::write(&config, text).expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();

    let events: Vec<_> = (0..300)
        .map(|i| track(&format!("p-{i}"), &format!("u-{}", i % 7)))
        .collect();
    for chunk in events.chunks(50) {
        send_batch(&client, ingest_url(&switchyard), KEY, chunk).await;
    }
    let got = steady.wait_for(Duration::from_secs(30), |c| c.len() >= 300);
    assert_eq!(
        got.len(),
        300,
        "the healthy destination got everything while the other is down"
    );
    assert!(down.counts().is_empty(), "nothing reached the failing destination yet");

    let parked = read_until(
        &setup.broker.brokers(),
        &setup.retries,
        Duration::from_secs(30),
        |records| records.len() >= 250,
    );
    assert!(parked.len() >= 250, "overflow parked: {}", parked.len());
    let first = &parked[0];
    assert_eq!(header(first, "switchyard-destination-id").as_deref(), Some("down"));
    assert!(header(first, "switchyard-retry-not-before-ms").is_some());

    // Recovery: every parked event comes back and is delivered.
    down.set(Behaviour::Healthy);
    let got = down.wait_for(Duration::from_secs(60), |c| c.len() >= 300);
    let missing: Vec<_> = (0..300)
        .map(|i| format!("p-{i}"))
        .filter(|id| !got.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "never delivered after recovery: {missing:?}");
}

#[actix_web::test]
async fn a_source_that_cannot_keep_up_pauses_its_partition_and_others_keep_flowing() {
    const FLOW_KEY: &str = "route-flow-write-key-0123456789";
    let setup = setup().await;
    let held = Receiver::start(Behaviour::FailUntil(Instant::now() + Duration::from_secs(3600)));
    let open = Receiver::start(Behaviour::Healthy);
    // Per-user ordering never parks: the failing destination fills up and its source waits.
    let mut text = config_text(&setup, &[("held", &held, 2)]);
    text.push_str("ordering = \"per_user\"\nmax_buffered_events = 5\n");
    text.push_str(&format!("\n[[sources]]\nid = \"flow\"\nwrite_key = \"{FLOW_KEY}\"\n"));
    text.push_str(&destination_block("open", "flow", &open, 2));
    let config = setup.dir.path().join("switchyard.toml");
    std::fs::write(&config, text).expect("write config");
    let _switchyard = Switchyard::start("router", &config);

    // External producers: "shop" fills partition 0 far past its supervisor's mailbox.
    let shop: Vec<_> = (0..1600)
        .map(|i| track(&format!("s-{i}"), &format!("u-{}", i % 10)))
        .collect();
    produce_events(&setup.broker.brokers(), &setup.topic, 0, "shop", &shop).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.refused() < 10 {
        assert!(
            Instant::now() < deadline,
            "the router never reached the failing destination"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for the supervisor's mailbox to fill behind the full destination.
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    let flow: Vec<_> = (0..100).map(|i| track(&format!("f-{i}"), "u-1")).collect();
    produce_events(&setup.broker.brokers(), &setup.topic, 1, "flow", &flow).await;

    let got = open.wait_for(Duration::from_secs(30), |c| c.len() >= 100);
    assert_eq!(
        got.len(),
        100,
        "the other partition kept flowing while one source was stuck"
    );
    assert!(held.counts().is_empty());

    held.set(Behaviour::Healthy);
    let got = held.wait_for(Duration::from_secs(120), |c| c.len() >= 1600);
    let missing = (0..1600).filter(|i| !got.contains_key(&format!("s-{i}"))).count();
    assert_eq!(missing, 0, "the paused partition resumed and delivered everything");
}

/// Which of the three destinations each case of `tests/e2e/send_with_integrations.py`
/// must reach: `mixpanel` (named "Mixpanel", needs consent to analytics), `warehouse`
/// (named "Warehouse", needs analytics and advertising) and `everything`, which
/// ignores the integrations object.
const ROUTING_CASES: [(&str, [bool; 3]); 7] = [
    ("plain", [true, true, true]),
    ("only-mixpanel", [true, false, true]),
    ("not-mixpanel", [false, true, true]),
    ("only-warehouse-options", [false, true, true]),
    ("none", [false, false, true]),
    ("consent-analytics", [true, false, true]),
    ("consent-all", [true, true, true]),
];

#[actix_web::test]
async fn the_integrations_object_and_consent_route_events_sent_by_both_server_sdks() {
    let setup = setup().await;
    let receivers = [
        Receiver::start(Behaviour::Healthy),
        Receiver::start(Behaviour::Healthy),
        Receiver::start(Behaviour::Healthy),
    ];
    let mut text = config_text(&setup, &[]);
    let rules = [
        "integration_name = \"Mixpanel\"\nconsent_categories = [\"analytics\"]\n",
        "integration_name = \"Warehouse\"\nconsent_categories = [\"analytics\", \"advertising\"]\n",
        "honor_integrations = false\n",
    ];
    for ((id, receiver), rule) in ["mixpanel", "warehouse", "everything"]
        .iter()
        .zip(&receivers)
        .zip(rules)
    {
        // One request at a time: a destination's events arrive in the topic's order, so
        // once its last expected event is in, nothing it should not get is still coming.
        text.push_str(&destination_block(id, "shop", receiver, 1));
        text.push_str(rule);
    }
    let config = setup.dir.path().join("switchyard.toml");
    std::fs::write(&config, text).expect("write config");
    let switchyard = Switchyard::start("run", &config);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/send_with_integrations.py");
    for sdk in ["segment", "rudderstack"] {
        let status = std::process::Command::new("python3")
            .arg(&script)
            .args([
                "--sdk",
                sdk,
                "--host",
                ingest_url(&switchyard),
                "--write-key",
                KEY,
                "--prefix",
                sdk,
            ])
            .status()
            .expect("run python3 (pip install segment-analytics-python rudder-sdk-python)");
        assert!(status.success(), "the {sdk} library reported errors");
    }

    for (index, receiver) in receivers.iter().enumerate() {
        let expected: std::collections::BTreeSet<String> = ["segment", "rudderstack"]
            .iter()
            .flat_map(|sdk| {
                ROUTING_CASES
                    .iter()
                    .filter(move |(_, reaches)| reaches[index])
                    .map(move |(case, _)| format!("{sdk}-{case}"))
            })
            .collect();
        let counts = receiver.wait_for(Duration::from_secs(30), |counts| {
            expected.iter().all(|id| counts.contains_key(id))
        });
        let arrived: std::collections::BTreeSet<String> = counts.keys().cloned().collect();
        assert_eq!(arrived, expected, "destination {index}");
        assert!(counts.values().all(|count| *count == 1), "{counts:?}");
    }

    // Each skip is counted with its reason.
    let ops = switchyard.ops_url.as_deref().expect("ops");
    let (_, metrics) = get_text(&awc::Client::default(), &format!("{ops}/metrics")).await;
    let filtered = |destination: &str, reason: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("switchyard_destination_events_filtered_total{")
                    && line.contains(&format!("destination=\"{destination}\""))
                    && line.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
    };
    // Per SDK: mixpanel skips not-mixpanel, only-warehouse-options and none by name...
    assert_eq!(filtered("mixpanel", "integrations"), Some(6), "{metrics}");
    assert_eq!(filtered("mixpanel", "consent"), Some(0));
    // ...warehouse skips only-mixpanel and none by name, consent-analytics by consent.
    assert_eq!(filtered("warehouse", "integrations"), Some(4));
    assert_eq!(filtered("warehouse", "consent"), Some(2));
    assert_eq!(filtered("everything", "integrations"), Some(0));
}
