//! The control plane end to end: `control init`, the admin API over HTTPS driven by a
//! plain HTTP client, the server's own log searched for a credential, and
//! `audit verify` catching a row edited in the SQLite file.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

use support::{Behaviour, Receiver, Switchyard, broker_with_topics, certificate, track};

const PASSWORD: &str = "owner password 0123";
const SECRET: &str = "tok-E2E-NEVER-SHOWN-42";

fn switchyard(args: &[&str], config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SWITCHYARD_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("switchyard runs")
}

#[test]
fn the_admin_api_over_https_audits_every_change_and_never_logs_a_credential() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(dir.path());
    let database = dir.path().join("control.db");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\ndatabase_url = \"sqlite://{}?mode=rwc\"\nlisten = \"127.0.0.1:0\"\n\
             tls_cert_path = \"{}\"\ntls_key_path = \"{}\"\nmaster_key_file = \"{}\"\n\
             [control.backup]\nstore = {{ kind = \"local\", path = \"{}\" }}\n",
            database.display(),
            cert.display(),
            key.display(),
            dir.path().join("master.key").display(),
            dir.path().join("backups").display()
        ),
    )
    .expect("write config");
    let init = switchyard(
        &["control", "init", "--email", "owner@example.com", "--workspace", "Acme"],
        &config,
    );
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let created: serde_json::Value = serde_json::from_slice(&init.stdout).expect("init JSON");
    let workspace = created["workspace"].as_str().expect("workspace id").to_string();

    let mut server = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["control", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace,h2=info,hyper=info,rustls=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start control");
    let url = switchyard_testkit::control_url(&mut server);
    assert!(url.starts_with("https://"), "{url}");
    // Drained all along: a full pipe would block the server's logging.
    let mut stderr = server.stderr.take().expect("stderr");
    let log_reader = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = stderr.read_to_string(&mut log);
        log
    });

    let script = r#"
import json, ssl, socket, sys, requests
url, ca, workspace, password, secret = sys.argv[1:6]
s = requests.Session(); s.verify = ca; s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
s.request = __import__("functools").partial(s.request, timeout=20)
r = s.post(url + "/v1/login", json={"email": "owner@example.com", "password": password}, timeout=20)
assert r.status_code == 200, r.text
s.headers["Authorization"] = "Bearer " + r.json()["token"]
base = url + "/v1/workspaces/" + workspace
r = s.post(base + "/sources", json={"id": "web", "name": "Website"})
assert r.status_code == 201, r.text
assert r.json()["write_key"].startswith("wk_")
r = s.post(base + "/destinations", json={"id": "hook", "kind": "webhook", "sources": ["web"],
    "settings": {"url": "https://93.184.216.34/hook"}, "credentials": {"bearer_token": secret}})
assert r.status_code == 201, r.text
for response in [r, s.get(base + "/destinations/hook"), s.get(base + "/destinations"), s.get(base + "/audit")]:
    assert response.status_code == 200 or response.status_code == 201, response.text
    assert secret not in response.text, response.text
assert s.get(base + "/destinations/hook").json()["credentials"] == {"bearer_token": "<redacted>"}
r = s.post(base + "/sources", json={"id": "web", "colour": "red"})
assert r.status_code == 400 and "colour" in r.json()["message"], r.text
assert requests.get(url + "/v1/workspaces", verify=ca).status_code == 401
assert "/v1/login" in requests.get(url + "/openapi.json", verify=ca).json()["paths"]
host, port = url.removeprefix("https://").split(":")
with socket.create_connection((host, int(port))) as raw, ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host) as tls:
    assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
print(len(s.get(base + "/audit").json()))
"#;
    let output = Command::new("python3")
        .args(["-c", script, &url])
        .arg(&cert)
        .args([&workspace, PASSWORD, SECRET])
        .output()
        .expect("run python3");
    let _ = server.kill();
    let _ = server.wait();
    let log = log_reader.join().expect("server log");
    assert!(
        output.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("audit rows");
    assert_eq!(rows, 4, "the sign-in, and workspace, source and destination creation");
    assert!(log.contains("audited"), "the log was captured at trace level");
    assert!(!log.contains(SECRET), "a credential reached the server log");

    let verified = switchyard(&["audit", "verify"], &config);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    // Backup, then restore into a new database: the same audit chain, still whole.
    let backed_up = switchyard(&["backup"], &config);
    assert!(
        backed_up.status.success(),
        "{}",
        String::from_utf8_lossy(&backed_up.stderr)
    );
    let restored_config = dir.path().join("restored.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&restored_config, text.replace("control.db", "restored.db")).expect("write config");
    let restored = switchyard(&["restore"], &restored_config);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let verified = switchyard(&["audit", "verify"], &restored_config);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("report");
    assert_eq!(
        report["rows"], 5,
        "user, workspace, sign-in, source and destination: {report}"
    );
    let again = switchyard(&["restore"], &restored_config);
    assert!(
        !again.status.success(),
        "a database in use is not overwritten without --force"
    );
    let tamper = Command::new("python3")
        .args(["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE audit_log SET actor = 'mallory' WHERE seq = 3\"); c.commit()"])
        .arg(&database)
        .status()
        .expect("python3");
    assert!(tamper.success());
    let broken = switchyard(&["audit", "verify"], &config);
    assert!(!broken.status.success(), "a tampered row is caught");
    let message = String::from_utf8_lossy(&broken.stderr);
    assert!(message.contains("broken at row 3"), "{message}");
}

/// Posts one event with `write_key`; the status ingest answered.
async fn post(client: &awc::Client, ingest: &str, write_key: &str, message_id: &str) -> u16 {
    client
        .post(format!("{ingest}/v1/track"))
        .basic_auth(write_key, "")
        .send_json(&track(message_id, "u-1"))
        .await
        .map_or(0, |response| response.status().as_u16())
}

/// Asks until ingest answers `want` for `write_key` (the control plane is read every second here).
async fn until_status(client: &awc::Client, ingest: &str, write_key: &str, message_id: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = post(client, ingest, write_key, message_id).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ingest still answers {status} for {message_id}, want {want}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn sources_and_destinations_made_through_the_admin_api_reach_running_ingest_and_routers() {
    let (broker, topic) = broker_with_topics("live", 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database = dir.path().join("control.db");
    let control_section = |workspace: &str| {
        format!(
            "[control]\ndatabase_url = \"sqlite://{}?mode=rwc\"\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\
             master_key_file = \"{}\"\nworkspace = \"{workspace}\"\nrefresh_secs = 1\n",
            database.display(),
            dir.path().join("master.key").display()
        )
    };
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, control_section("none-yet")).expect("write config");
    let init = switchyard(&["control", "init", "--email", "owner@example.com"], &config);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let created: serde_json::Value = serde_json::from_slice(&init.stdout).expect("init JSON");
    let workspace = created["workspace"].as_str().expect("workspace").to_string();
    std::fs::write(
        &config,
        format!(
            "{}\n[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n[router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n",
            control_section(&workspace),
            broker.brokers()
        ),
    )
    .expect("write config");

    // The admin API and a running Switchyard with no source of its own.
    let mut admin = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["control", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start control");
    let line = BufReader::new(admin.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("a line")
        .expect("text");
    let api = line.strip_prefix("control listening on ").expect("address").to_string();
    let running = Switchyard::start("run", &config);
    let ingest = running.ingest_url.clone().expect("ingest");
    let client = awc::Client::default();
    let mut response = client
        .post(format!("{api}/v1/login"))
        .send_json(&serde_json::json!({"email": "owner@example.com", "password": PASSWORD}))
        .await
        .expect("login");
    let session: serde_json::Value = response.json().await.expect("session");
    let bearer = format!("Bearer {}", session["token"].as_str().expect("token"));
    let call = |method: &str, path: &str, body: serde_json::Value| {
        let request = client
            .request(
                method.parse().expect("method"),
                format!("{api}/v1/workspaces/{workspace}{path}"),
            )
            .insert_header(("authorization", bearer.clone()));
        let path = path.to_string();
        async move {
            let mut response = request.send_json(&body).await.expect("admin API answers");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert!(status < 300, "{path}: {status} {body}");
            body
        }
    };

    let created = call("POST", "/sources", serde_json::json!({"id": "web"})).await;
    let first_key = created["write_key"].as_str().expect("write key").to_string();
    let hook = Receiver::start(Behaviour::Healthy);
    call(
        "POST",
        "/destinations",
        serde_json::json!({"id": "hook", "kind": "webhook", "sources": ["web"],
            "settings": {"url": hook.url(), "batch_max_events": 1},
            "credentials": {"bearer_token": "live-token-0123"}}),
    )
    .await;
    until_status(&client, &ingest, &first_key, "live-1", 200).await;
    let got = hook.wait_for(Duration::from_secs(20), |c| c.contains_key("live-1"));
    assert!(
        got.contains_key("live-1"),
        "delivered to the destination made through the API"
    );

    // The event debugger: the owner watches web's events arrive through the real broker.
    let watcher = awc::Client::default();
    let mut stream = watcher
        .get(format!(
            "{api}/v1/workspaces/{workspace}/sources/web/debugger?per_second=100"
        ))
        .insert_header(("authorization", bearer.clone()))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("debugger stream");
    assert_eq!(stream.status().as_u16(), 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    // The tap reads from the topic's end once it has found its partitions: post until
    // an event sent after that shows up.
    while !seen.contains("\nid: debug-") {
        assert!(Instant::now() < deadline, "no event in the debugger stream: {seen}");
        n += 1;
        assert_eq!(post(&client, &ingest, &first_key, &format!("debug-{n}")).await, 200);
        if let Ok(Some(chunk)) = actix_web::rt::time::timeout(Duration::from_secs(1), stream.next()).await {
            seen.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
        }
    }
    assert!(seen.starts_with("event: hello\n"), "{seen}");
    let frame = seen
        .split("\n\n")
        .find(|frame| frame.contains("\nid: debug-"))
        .expect("event frame");
    let data: serde_json::Value =
        serde_json::from_str(frame.rsplit_once("data: ").expect("data").1).expect("event JSON");
    assert_eq!(data["type"], "track");
    assert!(
        data.get("writeKey").is_none() && data["receivedAt"].is_string(),
        "{data}"
    );
    drop(stream);

    // A webhook source made through the API takes signed deliveries within seconds.
    let made = call(
        "POST",
        "/sources",
        serde_json::json!({"id": "gh", "webhook": {"preset": "github", "secret": "gh-live-secret-0123"}}),
    )
    .await;
    assert_eq!(made["webhook_path"], "/v1/webhooks/gh");
    assert_eq!(made["source"]["webhook"]["secret"], "<redacted>");
    let body = br#"{"action":"opened","sender":{"login":"octocat"},"repository":{"full_name":"o/r"}}"#;
    let signature = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"gh-live-secret-0123").expect("key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client
            .post(format!("{ingest}/v1/webhooks/gh"))
            .insert_header(("content-type", "application/json"))
            .insert_header(("x-github-event", "issues"))
            .insert_header(("x-github-delivery", "live-webhook-1"))
            .insert_header(("x-hub-signature-256", signature.clone()))
            .send_body(body.to_vec())
            .await
            .map_or(0, |response| response.status().as_u16());
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingest still answers {status} for the new webhook source"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }

    // A rotation with no overlap: the old key stops working within seconds, the new one works.
    let rotated = call(
        "POST",
        "/sources/web/write-keys",
        serde_json::json!({"overlap_secs": 0}),
    )
    .await;
    let second_key = rotated["write_key"].as_str().expect("write key").to_string();
    until_status(&client, &ingest, &first_key, "refused", 401).await;
    until_status(&client, &ingest, &second_key, "live-2", 200).await;
    hook.wait_for(Duration::from_secs(20), |c| c.contains_key("live-2"));

    // A destination deleted through the API gets nothing more.
    call("DELETE", "/destinations/hook", serde_json::json!({})).await;
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(post(&client, &ingest, &second_key, "after-delete").await, 200);
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !hook.counts().contains_key("after-delete"),
        "a deleted destination received an event"
    );
    let _ = admin.kill();
    let _ = admin.wait();
}

#[test]
fn apply_and_export_config_round_trip_from_the_command_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\ndatabase_url = \"sqlite://{}?mode=rwc\"\nmaster_key_file = \"{}\"\n",
            dir.path().join("control.db").display(),
            dir.path().join("master.key").display()
        ),
    )
    .expect("write config");
    let init = switchyard(&["control", "init", "--email", "owner@example.com"], &config);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let created: serde_json::Value = serde_json::from_slice(&init.stdout).expect("init JSON");
    let workspace = created["workspace"].as_str().expect("workspace");
    let file = dir.path().join("workspace.yaml");
    std::fs::write(
        &file,
        format!(
            "workspace: {workspace}\nsources:\n  - id: web\ndestinations:\n  - id: hook\n    kind: webhook\n    sources: [web]\n    \
             settings: {{url: \"https://93.184.216.34/hook\"}}\n    credentials: {{bearer_token: \"${{HOOK_TOKEN}}\"}}\n"
        ),
    )
    .expect("write file");
    let apply = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["apply", "-f"])
            .arg(file)
            .arg("--config")
            .arg(&config)
            .env("HOOK_TOKEN", "cli-secret-31")
            .env("HOOK_BEARER_TOKEN", "cli-secret-31")
            .output()
            .expect("apply runs")
    };
    let first = apply(&file);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let result: serde_json::Value = serde_json::from_slice(&first.stdout).expect("apply JSON");
    assert!(
        result["new_write_keys"]["web"]
            .as_str()
            .is_some_and(|key| key.starts_with("wk_")),
        "{result}"
    );
    let exported = switchyard(&["export-config", "--workspace", workspace], &config);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let yaml = String::from_utf8_lossy(&exported.stdout).into_owned();
    assert!(
        !yaml.contains("cli-secret-31") && yaml.contains("${HOOK_BEARER_TOKEN}"),
        "{yaml}"
    );
    let round = dir.path().join("exported.yaml");
    std::fs::write(&round, yaml).expect("write export");
    let again = apply(&round);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(summary.contains("0 created, 0 updated, 2 unchanged"), "{summary}");
}
