//! The archive end to end: ingest → Kafka → the source's archive actor → age-encrypted
//! objects on the local store → `switchyard archive export` gives back exactly what
//! was sent.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{Switchyard, send_batch, track};
use switchyard_testkit::{Tansu, unique_topic};

const KEY: &str = "archive-write-key-0123456789";

#[actix_web::test]
async fn every_event_sent_comes_back_from_an_encrypted_export() {
    let broker = Tansu::start();
    let topic = unique_topic("archive");
    broker.create_topic(&topic, 2).await;
    broker.create_topic(&format!("{topic}.dead"), 1).await;
    broker.create_topic(&format!("{topic}.retry"), 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, keys) = (dir.path().join("archive"), dir.path().join("keys"));
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n\n\
             [archive]\npath = \"{}\"\nkey_dir = \"{}\"\nmax_object_age_secs = 1\n\n\
             [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n",
            broker.brokers(),
            store.display(),
            keys.display()
        ),
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
