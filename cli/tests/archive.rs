//! The archive end to end: ingest → Kafka → the source's archive actor → age-encrypted
//! objects on the local store → `switchyard archive export` gives back exactly what
//! was sent.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{Behaviour, Receiver, Switchyard, broker_with_topics, send_batch, track};
use switchyard_testkit::Moto;

const KEY: &str = "archive-write-key-0123456789";

/// A configuration with source "shop" and `archive` as the `[archive]` section's body.
fn config_text(brokers: &str, topic: &str, archive: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
         [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
         [router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n\n\
         [archive]\n{archive}\nmax_object_age_secs = 1\n\n\
         [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n"
    )
}

/// The `[archive]` body for a local store under `dir`.
fn local_archive(dir: &std::path::Path) -> String {
    format!(
        "store = {{ kind = \"local\", path = \"{}\" }}\nkey_dir = \"{}\"",
        dir.join("archive").display(),
        dir.join("keys").display()
    )
}

#[actix_web::test]
async fn every_event_sent_comes_back_from_an_encrypted_export() {
    let (broker, topic) = broker_with_topics("archive", 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, keys) = (dir.path().join("archive"), dir.path().join("keys"));
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        config_text(&broker.brokers(), &topic, &local_archive(dir.path())),
    )
    .expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    let mut sent = BTreeSet::new();
    for round in 0..3 {
        let events: Vec<_> = (0..10)
            .map(|i| track(&format!("a-{round}-{i}"), &format!("u-{i}")))
            .collect();
        send_batch(&client, switchyard.ingest_url.as_deref().expect("ingest"), KEY, &events).await;
        sent.extend(events.iter().map(|e| e["messageId"].as_str().expect("id").to_string()));
    }

    let export = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["archive", "export", "--source", "shop", "--config"])
            .arg(&config)
            .output()
            .expect("export runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let text = export();
        let ids: BTreeSet<String> = text
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
            .map(|event| event["messageId"].as_str().expect("id").to_string())
            .collect();
        if ids.len() >= sent.len() {
            assert_eq!(text.lines().count(), sent.len(), "each event exactly once");
            break ids;
        }
        assert!(Instant::now() < deadline, "archive has {} of {}", ids.len(), sent.len());
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(exported, sent);

    // The archive reports itself on the ops port.
    let ops = switchyard.ops_url.clone().expect("ops");
    let mut response = client.get(format!("{ops}/metrics")).send().await.expect("metrics");
    let metrics = String::from_utf8_lossy(&response.body().limit(16 << 20).await.expect("body")).into_owned();
    assert!(
        metrics.contains(r#"switchyard_archive_events_total{source="shop",outcome="archived"} 30"#),
        "{metrics}"
    );

    // On disk: encrypted objects partitioned by source, date and hour; the key is the
    // source's, in the key directory.
    let objects: Vec<_> = walk(&store);
    assert!(!objects.is_empty());
    for object in &objects {
        let path = object.to_string_lossy();
        assert!(
            path.contains("/archive/source_id=shop/date=") && path.contains("/hour="),
            "{path}"
        );
        assert!(path.ends_with(".jsonl.zst.age"), "{path}");
        let bytes = std::fs::read(object).expect("object");
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{path} is an age file");
        assert!(!bytes.windows(3).any(|w| w == b"a-1"), "{path} holds no plaintext");
    }
    assert!(keys.join("shop.age").exists());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[actix_web::test]
async fn objects_go_to_s3_with_server_side_encryption_and_reach_a_replica_that_comes_back() {
    let (broker, topic) = broker_with_topics("archive-s3", 1).await;
    let s3 = Moto::start();
    s3.create_bucket("primary");
    // The replica bucket doesn't exist yet: its writes fail until it does.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = |bucket: &str| {
        format!(
            "{{ kind = \"s3\", bucket = \"{bucket}\", endpoint = \"{}\", allow_http = true, sse = \"s3\" }}",
            s3.endpoint()
        )
    };
    let config = dir.path().join("switchyard.toml");
    let archive = format!(
        "store = {}\nreplica = {}\nkey_dir = \"{}\"",
        store("primary"),
        store("replica"),
        dir.path().join("keys").display()
    );
    std::fs::write(&config, config_text(&broker.brokers(), &topic, &archive)).expect("write config");
    let credentials = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let switchyard = Switchyard::start_with_env("run", &config, &credentials);
    let events: Vec<_> = (0..10).map(|i| track(&format!("s3-{i}"), "u-1")).collect();
    send_batch(
        &awc::Client::default(),
        switchyard.ingest_url.as_deref().expect("ingest"),
        KEY,
        &events,
    )
    .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let primary = loop {
        let keys = s3.keys("primary");
        if !keys.is_empty() {
            break keys;
        }
        assert!(Instant::now() < deadline, "nothing archived to S3");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(primary[0].starts_with("archive/source_id=shop/date="), "{primary:?}");
    let head = s3.curl(&["-I"], &format!("primary/{}", primary[0].replace('=', "%3D")));
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amz-server-side-encryption: aes256"),
        "SSE-S3 asked for: {head}"
    );
    let exported = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["archive", "export", "--source", "shop", "--config"])
        .arg(&config)
        .envs(credentials)
        .output()
        .expect("export runs");
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&exported.stdout).lines().count(),
        10,
        "all ten, from S3"
    );

    // The replica comes back: every object the primary has reaches it.
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    assert!(s3.keys("replica").is_empty());
    s3.create_bucket("replica");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (mut want, mut have) = (s3.keys("primary"), s3.keys("replica"));
        want.sort();
        have.sort();
        if want == have {
            break;
        }
        assert!(Instant::now() < deadline, "replica has {have:?} of {want:?}");
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }

    // A replica object lost: `archive verify` finds the gap and copies it back.
    let lost = s3.keys("replica")[0].clone();
    s3.curl(&["-X", "DELETE"], &format!("replica/{}", lost.replace('=', "%3D")));
    assert!(!s3.keys("replica").contains(&lost), "deleted");
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["archive", "verify", "--config"])
        .arg(&config)
        .envs(credentials)
        .output()
        .expect("verify runs");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("JSON report");
    assert_eq!(report["copied_to_replica"], serde_json::json!([lost]), "{report}");
    assert!(s3.keys("replica").contains(&lost), "copied back");
}

#[actix_web::test]
async fn replay_sends_the_chosen_range_to_a_new_destination_once_and_resumes() {
    let (broker, topic) = broker_with_topics("replay", 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let base = config_text(&broker.brokers(), &topic, &local_archive(dir.path()));
    let live = dir.path().join("live.toml");
    std::fs::write(&live, &base).expect("write config");
    let switchyard = Switchyard::start("run", &live);
    let client = awc::Client::default();
    let url = switchyard.ingest_url.clone().expect("ingest");
    let early: Vec<_> = (0..5).map(|i| track(&format!("early-{i}"), "u-1")).collect();
    send_batch(&client, &url, KEY, &early).await;
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    let cut = chrono::Utc::now();
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    let late: Vec<_> = (0..5)
        .map(|i| track(&format!("late-{i}"), if i < 2 { "u-2" } else { "u-1" }))
        .collect();
    send_batch(&client, &url, KEY, &late).await;

    // A new tool, added after the fact, gets what arrived after the cut.
    let hook = Receiver::start(Behaviour::Healthy);
    let replay_config = dir.path().join("replay.toml");
    std::fs::write(
        &replay_config,
        format!(
            "{base}\n[[destinations]]\nid = \"late\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\nallow_private_network = true\n",
            hook.url()
        ),
    )
    .expect("write config");
    let replay = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "replay",
                "--source",
                "shop",
                "--destination",
                "late",
                "--from",
                &cut.to_rfc3339(),
            ])
            .args(["--checkpoint"])
            .arg(dir.path().join("checkpoint"))
            .args(extra)
            .arg("--config")
            .arg(&replay_config)
            .output()
            .expect("replay runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // Wait until the archive holds all ten (objects are written after a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !replay(&["--dry-run"]).contains("would send 5 events") {
        assert!(Instant::now() < deadline, "the late events never reached the archive");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    let filtered = replay(&["--dry-run", "--where", ".userId == \"u-2\""]);
    assert!(
        filtered.contains("would send 2 events") && filtered.contains("3 left out by --where"),
        "{filtered}"
    );

    let summary = replay(&["--rate", "100"]);
    assert!(summary.contains("sent 5 events"), "{summary}");
    let got = hook.wait_for(Duration::from_secs(10), |c| c.len() >= 5);
    let mut ids: Vec<_> = got.keys().cloned().collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..5).map(|i| format!("late-{i}")).collect::<Vec<_>>(),
        "exactly the chosen range"
    );

    // Run again: the checkpoint says it's done, nothing is sent twice.
    let again = replay(&[]);
    assert!(again.contains("sent 0 events"), "{again}");
    assert!(hook.counts().values().all(|n| *n == 1), "{:?}", hook.counts());
}
