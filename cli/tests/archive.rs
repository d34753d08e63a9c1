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
         [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n[router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n\n\
         [archive]\n{archive}\nmax_object_age_secs = 1\nsuppression_refresh_secs = 1\n\n\
         [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n"
    )
}

/// The `[archive]` body for a local store under `dir`.
fn local_archive(dir: &std::path::Path) -> String {
    format!(
        "store = {{ kind = \"local\", path = \"{}\" }}",
        dir.join("archive").display(),
    )
}

#[actix_web::test]
async fn every_event_sent_comes_back_from_an_encrypted_export() {
    let (broker, topic) = broker_with_topics("archive", 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("archive");
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

    // On disk: encrypted objects partitioned by source, date and hour; the source's key
    // beside them.
    let objects: Vec<_> = walk(&store.join("archive/source_id=shop"));
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
    assert_eq!(walk(&store.join("archive/_keys/source_id=shop")).len(), 1, "one key");
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
    let archive = format!("store = {}\nreplica = {}", store("primary"), store("replica"));
    std::fs::write(&config, config_text(&broker.brokers(), &topic, &archive)).expect("write config");
    let master = master_key(dir.path());
    let credentials = s3_env(&master);
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
        let keys = archived(&s3, "primary");
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
            "{base}\n[[destinations]]\nid = \"late\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\n\
             integration_name = \"Late Tool\"\n",
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
    // An integrations object given to replay decides for every event, as the events'
    // own would: the new tool answers to "Late Tool".
    let turned_off = replay(&["--dry-run", "--integrations", r#"{"late tool": false}"#]);
    assert!(
        turned_off.contains("would send 0 events") && turned_off.contains("5 not for a destination"),
        "{turned_off}"
    );
    let named = replay(&["--dry-run", "--integrations", r#"{"All": false, "Late Tool": {}}"#]);
    assert!(named.contains("would send 5 events"), "{named}");
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

/// The archive objects (not keys or lists) in a moto bucket.
fn archived(s3: &Moto, bucket: &str) -> Vec<String> {
    let mut keys = s3.keys(bucket);
    keys.retain(|key| key.starts_with("archive/source_id="));
    keys
}

/// A new master key file in `dir` (an S3 archive refuses to start without one), from
/// `switchyard master-key` as an operator would make it.
fn master_key(dir: &std::path::Path) -> String {
    let path = dir.join("master.key");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["master-key", "-o"])
        .arg(&path)
        .output()
        .expect("switchyard runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    path.to_str().expect("utf-8 path").to_string()
}

/// Writes the configuration of an archive in bucket "primary" at `endpoint`.
fn s3_config(dir: &std::path::Path, brokers: &str, topic: &str, endpoint: &str) -> std::path::PathBuf {
    let archive =
        format!("store = {{ kind = \"s3\", bucket = \"primary\", endpoint = \"{endpoint}\", allow_http = true }}");
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, config_text(brokers, topic, &archive)).expect("write config");
    config
}

/// moto's credentials and the master key file, as the environment of every command.
fn s3_env(master: &str) -> [(&str, &str); 4] {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("SWITCHYARD_MASTER_KEY_FILE", master),
    ]
}

/// Runs `switchyard <args> --config <config>`.
fn switchyard_cli(args: &[&str], config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("switchyard runs")
}

/// The messageId → userId of every exported event of "shop".
fn exported(config: &std::path::Path, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let output = switchyard_cli(&["archive", "export", "--source", "shop"], config, env);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
        .map(|event| {
            let text = |field: &str| event[field].as_str().unwrap_or_default().to_string();
            (text("messageId"), text("userId"))
        })
        .collect()
}

/// Waits (up to `within`) until the export holds `count` events.
async fn wait_for_export(
    config: &std::path::Path,
    env: &[(&str, &str)],
    count: usize,
    within: Duration,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + within;
    loop {
        let events = exported(config, env);
        if events.len() >= count {
            return events;
        }
        assert!(Instant::now() < deadline, "archive has {} of {count}", events.len());
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
}

#[actix_web::test]
async fn a_deleted_user_leaves_every_object_and_replay_and_a_deleted_source_leaves_nothing() {
    let (broker, topic) = broker_with_topics("delete", 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let base = config_text(&broker.brokers(), &topic, &local_archive(dir.path()));
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, &base).expect("write config");
    let mut switchyard = Switchyard::start("run", &config);
    let client = awc::Client::default();
    let url = switchyard.ingest_url.clone().expect("ingest");
    let user = |i: usize| {
        if i.is_multiple_of(2) {
            "gone@example.com"
        } else {
            "stays"
        }
    };
    let before: Vec<_> = (0..10).map(|i| track(&format!("before-{i}"), user(i))).collect();
    send_batch(&client, &url, KEY, &before).await;
    wait_for_export(&config, &[], 10, Duration::from_secs(30)).await;

    let deleted = switchyard_cli(
        &[
            "archive",
            "delete-user",
            "--source",
            "shop",
            "--user",
            "gone@example.com",
            "--settle",
            "3",
        ],
        &config,
        &[],
    );
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let record: serde_json::Value = serde_json::from_slice(&deleted.stdout).expect("deletion record");
    assert_eq!(record["kind"], "user");
    assert_eq!(record["events_removed"], 5, "{record}");
    assert!(
        !record.to_string().contains("gone@example.com"),
        "the record keeps no id: {record}"
    );
    let left = exported(&config, &[]);
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(left.iter().all(|(_, user)| user == "stays"), "{left:?}");

    // The user's new events are dropped; everyone else's still archived.
    let after: Vec<_> = (0..4).map(|i| track(&format!("after-{i}"), user(i))).collect();
    // A new client: the first one's idle connection may have been closed by now.
    let client = awc::Client::default();
    send_batch(&client, &url, KEY, &after).await;
    let events = wait_for_export(&config, &[], 7, Duration::from_secs(30)).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let events_later = exported(&config, &[]);
    assert_eq!(events_later, events, "nothing more arrives");
    assert!(events.iter().all(|(_, user)| user == "stays"), "{events:?}");
    let ops = switchyard.ops_url.clone().expect("ops");
    let mut response = client.get(format!("{ops}/metrics")).send().await.expect("metrics");
    let metrics = String::from_utf8_lossy(&response.body().limit(16 << 20).await.expect("body")).into_owned();
    assert!(
        metrics.contains(r#"switchyard_source_events_total{source="shop",outcome="suppressed"} 2"#),
        "{metrics}"
    );

    // Nor does replay send any of the user's events.
    let hook = Receiver::start(Behaviour::Healthy);
    let replay_config = dir.path().join("replay.toml");
    std::fs::write(
        &replay_config,
        format!(
            "{base}\n[[destinations]]\nid = \"new\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url()
        ),
    )
    .expect("write config");
    let replay = switchyard_cli(&["replay", "--source", "shop", "--dry-run"], &replay_config, &[]);
    let summary = String::from_utf8_lossy(&replay.stdout);
    assert!(summary.contains("would send 7 events"), "{summary}");

    // The source goes: refused while still configured, then keys and objects deleted.
    switchyard.terminate();
    let refused = switchyard_cli(&["archive", "delete-source", "--source", "shop"], &config, &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("still configured"));
    let gone = switchyard_cli(
        &["archive", "delete-source", "--source", "shop", "--force"],
        &config,
        &[],
    );
    assert!(gone.status.success(), "{}", String::from_utf8_lossy(&gone.stderr));
    let record: serde_json::Value = serde_json::from_slice(&gone.stdout).expect("deletion record");
    assert_eq!(record["kind"], "source");
    assert_eq!(record["keys_deleted"], 1, "{record}");
    let store = dir.path().join("archive/archive");
    assert!(walk(&store.join("source_id=shop")).is_empty(), "no object left");
    assert!(walk(&store.join("_keys")).is_empty(), "no key left");
    let export = switchyard_cli(&["archive", "export", "--source", "shop"], &config, &[]);
    assert!(!export.status.success());
    assert!(String::from_utf8_lossy(&export.stderr).contains("no key"), "{export:?}");
    let records = switchyard_cli(&["archive", "deletions"], &config, &[]);
    let kinds: Vec<String> = String::from_utf8_lossy(&records.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("record")["kind"].to_string())
        .collect();
    assert_eq!(kinds, vec!["\"user\"", "\"source\""]);
}

/// An HTTP pass-through to the S3 server that, while `hold` is set, takes archive
/// object uploads and never answers them: an upload cut off mid-way by a crash.
struct HoldingProxy {
    url: String,
    hold: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HoldingProxy {
    fn start(upstream: String) -> HoldingProxy {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        use std::sync::atomic::Ordering;
        let hold = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (server_hold, server_held) = (hold.clone(), held.clone());
        let server = HttpServer::new(move || {
            let (hold, held, upstream) = (server_hold.clone(), server_held.clone(), upstream.clone());
            App::new()
                .app_data(web::PayloadConfig::new(256 << 20))
                .default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                    let (hold, held, upstream) = (hold.clone(), held.clone(), upstream.clone());
                    async move {
                        let upload = request.method() == actix_web::http::Method::PUT
                            && request.path().contains("/archive/source_id");
                        if upload && hold.load(Ordering::SeqCst) {
                            held.fetch_add(1, Ordering::SeqCst);
                            std::future::pending::<()>().await;
                        }
                        let target = format!("{upstream}{}", request.uri());
                        let mut forward = awc::Client::new().request(request.method().clone(), target);
                        for (name, value) in request.headers() {
                            if name != "host" && name != "content-length" {
                                forward = forward.insert_header((name.clone(), value.clone()));
                            }
                        }
                        let Ok(mut response) = forward.send_body(body).await else {
                            return HttpResponse::BadGateway().finish();
                        };
                        let mut answer = HttpResponse::build(response.status());
                        for (name, value) in response.headers() {
                            if name != "content-length" && name != "transfer-encoding" {
                                answer.insert_header((name.clone(), value.clone()));
                            }
                        }
                        answer.body(response.body().limit(256 << 20).await.unwrap_or_default())
                    }
                }))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let url = format!("http://{}", server.addrs()[0]);
        actix_web::rt::spawn(server.run());
        HoldingProxy { url, hold, held }
    }
}

#[actix_web::test]
async fn a_crash_mid_upload_loses_nothing_because_offsets_were_not_committed() {
    use std::sync::atomic::Ordering;
    let (broker, topic) = broker_with_topics("crash-upload", 1).await;
    let s3 = Moto::start();
    s3.create_bucket("primary");
    let proxy = HoldingProxy::start(s3.endpoint());
    let dir = tempfile::tempdir().expect("temp dir");
    let config = s3_config(dir.path(), &broker.brokers(), &topic, &proxy.url);
    let master = master_key(dir.path());
    let credentials = s3_env(&master);
    let client = awc::Client::default();
    let mut switchyard = Switchyard::start_with_env("run", &config, &credentials);
    let url = switchyard.ingest_url.clone().expect("ingest");
    let first: Vec<_> = (0..5).map(|i| track(&format!("first-{i}"), "u-1")).collect();
    send_batch(&client, &url, KEY, &first).await;
    wait_for_export(&config, &credentials, 5, Duration::from_secs(30)).await;
    // Their offsets are committed within half a second of the object's write.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;

    proxy.hold.store(true, Ordering::SeqCst);
    let second: Vec<_> = (0..10).map(|i| track(&format!("second-{i}"), "u-1")).collect();
    send_batch(&client, &url, KEY, &second).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.held.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    switchyard.kill();
    assert_eq!(archived(&s3, "primary").len(), 1, "only the first object landed");
    // The killed member's session (6 s) runs out before the restart: a consumer that
    // joined at once sometimes got no partition from tansu within 90 s under load.
    actix_web::rt::time::sleep(Duration::from_secs(7)).await;

    // Restarted, the router gets the uncommitted records again and archives them once.
    proxy.hold.store(false, Ordering::SeqCst);
    let started = Instant::now();
    let _restarted = Switchyard::start_with_env("run", &config, &credentials);
    // The new consumer gets the partition once the killed one's session has expired.
    let events = wait_for_export(&config, &credentials, 15, Duration::from_secs(90)).await;
    println!("all archived {:?} after the restart", started.elapsed());
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let mut ids: Vec<String> = exported(&config, &credentials).into_iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut sent: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|e| e["messageId"].as_str().expect("id").to_string())
        .collect();
    sent.sort();
    assert_eq!(ids, sent, "every event exactly once ({} seen first)", events.len());
}

/// An attacker who can write to the bucket (not read the master key) plants newer key
/// objects for a source: one plain `age-keygen` text, one encrypted to the master key's
/// public key (anyone can do that) but without the MAC. The restarted router refuses
/// both, counts and logs them, and goes on encrypting to the genuine key: every object
/// opens with the archive's own keys and none with the planted one.
#[actix_web::test]
async fn a_key_object_planted_in_the_bucket_is_refused_counted_and_never_used() {
    use age::secrecy::ExposeSecret;
    let (broker, topic) = broker_with_topics("planted-key", 1).await;
    let s3 = Moto::start();
    s3.create_bucket("primary");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = s3_config(dir.path(), &broker.brokers(), &topic, &s3.endpoint());
    let master = master_key(dir.path());
    let credentials = s3_env(&master);
    let client = awc::Client::default();
    let mut switchyard = Switchyard::start_with_env("run", &config, &credentials);
    let url = switchyard.ingest_url.clone().expect("ingest");
    let first: Vec<_> = (0..5).map(|i| track(&format!("before-{i}"), "u-1")).collect();
    send_batch(&client, &url, KEY, &first).await;
    wait_for_export(&config, &credentials, 5, Duration::from_secs(30)).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    switchyard.terminate();

    let planted = age::x25519::Identity::generate();
    let planted_text = format!("{}\n", planted.to_string().expose_secret());
    let master_identity =
        switchyard_archive::keys::parse_identities(&std::fs::read_to_string(&master).expect("master"))
            .expect("identity")
            .pop()
            .expect("one");
    let to_master = switchyard_archive::object::encrypt(planted_text.as_bytes(), &master_identity.to_public())
        .expect("encrypted to the master's public key");
    for (name, bytes) in [
        ("99999999999999999998-plain", planted_text.into_bytes()),
        ("99999999999999999999-unsigned", to_master),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).expect("planted file");
        s3.curl(
            &["-X", "PUT", "--data-binary", &format!("@{}", file.display())],
            &format!("primary/archive/_keys/source_id%3Dshop/{name}.age"),
        );
    }
    assert_eq!(
        s3.keys("primary").iter().filter(|key| key.contains("_keys/")).count(),
        3,
        "the genuine key and two planted ones"
    );

    let switchyard = Switchyard::start_with_env("run", &config, &credentials);
    let url = switchyard.ingest_url.clone().expect("ingest");
    let second: Vec<_> = (0..5).map(|i| track(&format!("after-{i}"), "u-1")).collect();
    send_batch(&client, &url, KEY, &second).await;
    let events = wait_for_export(&config, &credentials, 10, Duration::from_secs(90)).await;
    assert_eq!(events.len(), 10, "every event opens with the archive's own keys");
    for key in archived(&s3, "primary") {
        let file = dir.path().join("object");
        s3.curl(
            &["-o", &file.display().to_string()],
            &format!("primary/{}", key.replace('=', "%3D")),
        );
        let sealed = std::fs::read(&file).expect("object");
        assert!(
            switchyard_archive::object::decrypt(&sealed, &planted).is_err(),
            "{key} was encrypted to the planted key"
        );
    }
    let ops = switchyard.ops_url.clone().expect("ops");
    let mut response = client.get(format!("{ops}/metrics")).send().await.expect("metrics");
    let metrics = String::from_utf8_lossy(&response.body().limit(16 << 20).await.expect("body")).into_owned();
    let refused: u64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("switchyard_archive_key_objects_refused_total{") && line.contains("source=\"shop\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no refused-key metric for shop: {metrics}"));
    assert!(refused >= 2, "both planted objects counted: {refused}");
}
