//! The threat model's attacks (SECURITY.md), each performed against a running
//! `switchyard control serve` (or `switchyard run`) and shown to fail. The attacker is
//! a workspace member, or an API token, never the operator: the server runs with the
//! default egress policy (public addresses over TLS only), as the operator left it.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const PASSWORD: &str = "owner password 0123";
const MEMBER_PASSWORD: &str = "member password 0123";

struct Server {
    _child: support::KillOnDrop,
    api: String,
    workspace: String,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// `control serve` on SQLite, plain HTTP on loopback, no `[egress]` section.
fn control_server() -> Server {
    control_server_with(|_| (String::new(), String::new()))
}

/// The `[control]` lines every server here shares: one database and master key in `dir`.
fn control_lines(dir: &std::path::Path) -> String {
    format!(
        "[control]\ndatabase_url = \"sqlite://{}?mode=rwc\"\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\
         master_key_file = \"{}\"\n",
        dir.join("control.db").display(),
        dir.join("master.key").display()
    )
}

/// `control serve` (as [`control_server`]) with, once the workspace exists, more lines
/// in `[control]` and more sections after it: `extra(workspace)` gives both.
fn control_server_with(extra: impl Fn(&str) -> (String, String)) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, control_lines(dir.path())).expect("write config");
    let init = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["control", "init", "--email", "owner@example.com", "--config"])
        .arg(&config)
        .env("SWITCHYARD_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("init runs");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let created: Value = serde_json::from_slice(&init.stdout).expect("init JSON");
    let workspace = created["workspace"].as_str().expect("workspace").to_string();
    let (in_control, after) = extra(&workspace);
    std::fs::write(&config, format!("{}{in_control}\n{after}", control_lines(dir.path()))).expect("write config");
    let (child, api) = serve_control(&config);
    Server {
        _child: support::KillOnDrop(child),
        api,
        workspace,
        config,
        _dir: dir,
    }
}

fn serve_control(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["control", "serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start control");
    let api = switchyard_testkit::control_url(&mut child);
    (child, api)
}

async fn call(client: &awc::Client, method: &str, url: &str, bearer: &str, body: Value) -> (u16, Value) {
    let mut response = client
        .request(method.parse().expect("method"), url)
        .insert_header(("authorization", format!("Bearer {bearer}")))
        .send_json(&body)
        .await
        .expect("the admin API answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

async fn login(client: &awc::Client, api: &str, email: &str, password: &str) -> String {
    let mut response = client
        .post(format!("{api}/v1/login"))
        .send_json(&json!({"email": email, "password": password}))
        .await
        .expect("login");
    assert_eq!(response.status().as_u16(), 200, "{email} signs in");
    let session: Value = response.json().await.expect("session");
    session["token"].as_str().expect("token").to_string()
}

/// The server, the owner's session and a member's session in its workspace.
async fn workspace_with_member(client: &awc::Client) -> (Server, String, String) {
    let server = control_server();
    let owner = login(client, &server.api, "owner@example.com", PASSWORD).await;
    let ws = format!("{}/v1/workspaces/{}", server.api, server.workspace);
    let (status, body) = call(client, "POST", &format!("{ws}/sources"), &owner, json!({"id": "web"})).await;
    assert!(status < 300, "{status} {body}");
    let (status, body) = call(
        client,
        "POST",
        &format!("{ws}/members"),
        &owner,
        json!({"email": "member@example.com", "role": "member", "password": MEMBER_PASSWORD}),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let member = login(client, &server.api, "member@example.com", MEMBER_PASSWORD).await;
    (server, owner, member)
}

fn error_text(body: &Value) -> String {
    body.to_string()
}

#[actix_web::test]
async fn a_member_cannot_widen_egress_or_point_a_destination_inside_the_network() {
    let client = awc::Client::default();
    let (server, _owner, member) = workspace_with_member(&client).await;
    let destinations = format!("{}/v1/workspaces/{}/destinations", server.api, server.workspace);
    let webhook =
        |id: &str, settings: Value| json!({"id": id, "kind": "webhook", "sources": ["web"], "settings": settings});

    // The old per-destination switches are the operator's now: refused, naming the field.
    for flag in ["allow_private_network", "allow_plain_http"] {
        let mut settings = json!({"url": "http://169.254.169.254/latest/meta-data"});
        settings[flag] = Value::Bool(true);
        let (status, body) = call(&client, "POST", &destinations, &member, webhook("meta", settings)).await;
        assert_eq!(status, 400, "{flag}: {body}");
        assert!(
            error_text(&body).contains(&format!("settings.{flag}")),
            "{flag}: {body}"
        );
    }
    // Internal addresses in every spelling, and plain http to a public one.
    for url in [
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.1:8080/",
        "https://[::1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://10.0.0.1/",
        "https://100.64.0.1/",
        "https://localhost/",
        "http://93.184.216.34/hook",
    ] {
        let (status, body) = call(
            &client,
            "POST",
            &destinations,
            &member,
            webhook("inside", json!({"url": url})),
        )
        .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(error_text(&body).contains("[egress]"), "{url}: {body}");
    }
    // A Kafka destination's options can't replace the broker list that was checked.
    let kafka = json!({"id": "topic", "kind": "kafka", "sources": ["web"],
        "settings": {"brokers": "93.184.216.34:9092", "topic": "events",
                     "options": {"bootstrap.servers": "169.254.169.254:80"}}});
    let (status, body) = call(&client, "POST", &destinations, &member, kafka).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_text(&body).contains("options.bootstrap.servers"), "{body}");
    // librdkafka has OpenSSL now: its options that load code or read the pod's files
    // (the service account's CA and token directory, a shared object) stay out of reach.
    for (option, value) in [
        ("ssl.engine.location", "/tmp/evil.so"),
        ("ssl.providers", "legacy,evil"),
        (
            "ssl.ca.location",
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        ),
        ("ssl.certificate.location", "/etc/switchyard-kafka/client.pem"),
        ("ssl.key.location", "/etc/switchyard-kafka/client.key"),
        ("ssl.keystore.location", "/etc/switchyard-kafka/keystore.p12"),
        (
            "ssl.crl.location",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
        ),
    ] {
        let kafka = json!({"id": "topic", "kind": "kafka", "sources": ["web"],
            "settings": {"brokers": "93.184.216.34:9092", "topic": "events",
                         "options": {"security.protocol": "ssl", option: value}}});
        let (status, body) = call(&client, "POST", &destinations, &member, kafka).await;
        assert_eq!(status, 400, "{option}: {body}");
        assert!(
            error_text(&body).contains(&format!("options.{option}")),
            "{option}: {body}"
        );
    }
    // Nor a warehouse URL connect elsewhere than the host that was checked.
    for param in ["host=10.0.0.5", "hostaddr=169.254.169.254", "port=6379"] {
        let warehouse = json!({"id": "wh", "kind": "postgres_warehouse", "sources": ["web"],
            "settings": {"url": format!("postgres://loader@93.184.216.34/wh?{param}")}});
        let (status, body) = call(&client, "POST", &destinations, &member, warehouse).await;
        assert_eq!(status, 400, "{param}: {body}");
        assert!(error_text(&body).contains("is not allowed"), "{param}: {body}");
    }
    // Nor hold a router's memory: a destination's buffer is bounded.
    let greedy = webhook(
        "greedy",
        json!({"url": "https://93.184.216.34/hook", "max_buffered_events": 1_000_000_000u64}),
    );
    let (status, body) = call(&client, "POST", &destinations, &member, greedy).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_text(&body).contains("max_buffered_events"), "{body}");
    // An export endpoint inside the network.
    let export = json!({"id": "export", "kind": "object_storage_export", "sources": ["web"],
        "settings": {"bucket": "b", "endpoint": "https://169.254.169.254"},
        "credentials": {"access_key_id": "k", "secret_access_key": "s"}});
    let (status, body) = call(&client, "POST", &destinations, &member, export).await;
    assert_eq!(status, 400, "{body}");
    // What a member may make: a public destination over TLS.
    let (status, body) = call(
        &client,
        "POST",
        &destinations,
        &member,
        webhook("public", json!({"url": "https://93.184.216.34/hook"})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
}

#[actix_web::test]
async fn an_api_token_cannot_enrol_a_second_factor_or_manage_the_users_tokens() {
    let client = awc::Client::default();
    let (server, owner, _member) = workspace_with_member(&client).await;
    let (status, token) = call(
        &client,
        "POST",
        &format!("{}/v1/tokens", server.api),
        &owner,
        json!({"name": "ci", "workspace": server.workspace}),
    )
    .await;
    assert!(status < 300, "a fresh session makes a token: {status} {token}");
    let token = token["token"].as_str().expect("token").to_string();
    for (method, path) in [
        ("POST", "/v1/me/mfa"),
        ("POST", "/v1/tokens"),
        ("GET", "/v1/tokens"),
        ("DELETE", "/v1/tokens/0123456789abcdef"),
    ] {
        let body = json!({"name": "more", "workspace": server.workspace});
        let (status, answer) = call(&client, method, &format!("{}{path}", server.api), &token, body).await;
        assert_eq!(status, 403, "{method} {path} with an API token: {answer}");
        assert_eq!(answer["error"], "session_required", "{method} {path}: {answer}");
    }
    // The same calls with the owner's own session work.
    let (status, body) = call(
        &client,
        "GET",
        &format!("{}/v1/tokens", server.api),
        &owner,
        Value::Null,
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let (status, body) = call(
        &client,
        "POST",
        &format!("{}/v1/me/mfa", server.api),
        &owner,
        Value::Null,
    )
    .await;
    assert!(status < 300, "{status} {body}");
}

#[test]
fn a_plain_http_start_never_logs_a_write_key() {
    const KEY: &str = "attack-write-key-SHOULD-NOT-APPEAR-0123";
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[ops]\nlisten = \"\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n"
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace,h2=info,hyper=info,rustls=info,librdkafka=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("ingest listening") {
        line.clear();
        if stdout.read_line(&mut line).expect("stdout") == 0 {
            break;
        }
    }
    assert!(line.contains("ingest listening"), "ingest started: {line:?}");
    // Give the start-up hint time to be written, then stop and read everything.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    assert!(logs.contains("try: curl"), "the hint is still there: {logs}");
    assert!(!logs.contains(KEY) && !rest.contains(KEY), "write key in the output");
}

#[actix_web::test]
async fn a_hash_salt_is_shown_to_no_viewer_and_written_in_no_audit_entry() {
    const SALT: &str = "attack-salt-NEVER-SHOWN-0123";
    let client = awc::Client::default();
    let (server, owner, member) = workspace_with_member(&client).await;
    let ws = format!("{}/v1/workspaces/{}", server.api, server.workspace);
    let hook = json!({"id": "hashed", "kind": "webhook", "sources": ["web"],
        "settings": {"url": "https://93.184.216.34/hook"},
        "transforms": [{"op": "hash", "fields": ["userId"], "salt": SALT}]});
    let (status, made) = call(&client, "POST", &format!("{ws}/destinations"), &member, hook).await;
    assert!(status < 300, "{status} {made}");
    for (who, bearer) in [("member", &member), ("owner", &owner)] {
        let (status, shown) = call(
            &client,
            "GET",
            &format!("{ws}/destinations/hashed"),
            bearer,
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{who}: {shown}");
        assert_eq!(shown["transforms"][0]["salt"], "<redacted>", "{who}: {shown}");
        let (_, list) = call(&client, "GET", &format!("{ws}/destinations"), bearer, Value::Null).await;
        assert!(!list.to_string().contains(SALT), "{who}: {list}");
    }
    assert!(!made.to_string().contains(SALT), "{made}");
    // The view sent back as it was shown keeps the salt rather than setting `<redacted>`.
    let (status, body) = call(
        &client,
        "PATCH",
        &format!("{ws}/destinations/hashed"),
        &member,
        json!({"transforms": made["transforms"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, audit) = call(&client, "GET", &format!("{ws}/audit"), &owner, Value::Null).await;
    assert_eq!(status, 200, "{audit}");
    assert!(audit.to_string().contains("destination.update"), "{audit}");
    assert!(
        !audit.to_string().contains(SALT),
        "the audit log holds the salt: {audit}"
    );
    let database = std::fs::read(server._dir.path().join("control.db")).expect("database file");
    assert!(
        !database.windows(SALT.len()).any(|w| w == SALT.as_bytes()),
        "the salt is in the clear in the database file"
    );
}

#[actix_web::test]
async fn a_member_cannot_take_the_id_of_a_source_in_the_operators_file() {
    const FILE_KEY: &str = "wk_file_source_key_0123456789";
    let (broker, topic) = support::broker_with_topics("reserved", 1).await;
    let server = control_server_with(|workspace| {
        (
            format!("workspace = \"{workspace}\"\nrefresh_secs = 1\n"),
            format!(
                "{}[[sources]]\nid = \"file-src\"\nwrite_key = \"{FILE_KEY}\"\n",
                support::pipeline_config(&broker.brokers(), &topic)
            ),
        )
    });
    let client = awc::Client::default();
    let owner = login(&client, &server.api, "owner@example.com", PASSWORD).await;
    let (status, body) = call(
        &client,
        "POST",
        &format!("{}/v1/workspaces/{}/members", server.api, server.workspace),
        &owner,
        json!({"email": "member@example.com", "role": "member", "password": MEMBER_PASSWORD}),
    )
    .await;
    assert!(status < 300, "{status} {body}");

    // A control plane started with the file knows its ids: 409, naming the reason.
    let member = login(&client, &server.api, "member@example.com", MEMBER_PASSWORD).await;
    let sources = format!("{}/v1/workspaces/{}/sources", server.api, server.workspace);
    let (status, body) = call(&client, "POST", &sources, &member, json!({"id": "file-src"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(error_text(&body).contains("operator"), "{body}");

    // One started without the file (another deployment's) lets the member make it, and a
    // second source: the running Switchyard keeps the file's source, leaves the tenant's
    // out, and goes on applying every other change.
    let running = support::Switchyard::start("run", &server.config);
    let ingest = running.ingest_url.clone().expect("ingest");
    let bare = server._dir.path().join("bare.toml");
    std::fs::write(&bare, control_lines(server._dir.path())).expect("write bare config");
    let (mut other, other_api) = serve_control(&bare);
    let member = login(&client, &other_api, "member@example.com", MEMBER_PASSWORD).await;
    let other_sources = format!("{other_api}/v1/workspaces/{}/sources", server.workspace);
    let (status, taken) = call(&client, "POST", &other_sources, &member, json!({"id": "file-src"})).await;
    assert!(status < 300, "{status} {taken}");
    let (status, later) = call(&client, "POST", &other_sources, &member, json!({"id": "later"})).await;
    assert!(status < 300, "{status} {later}");
    let post = |key: String, id: &'static str| {
        let request = client.post(format!("{ingest}/v1/track")).basic_auth(key, "");
        async move {
            request
                .send_json(&support::track(id, "u-1"))
                .await
                .map_or(0, |response| response.status().as_u16())
        }
    };
    let later_key = later["write_key"].as_str().expect("write key").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while post(later_key.clone(), "later-1").await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the later source never reached ingest"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        post(FILE_KEY.into(), "file-1").await,
        200,
        "the file's source still takes its key"
    );
    let taken_key = taken["write_key"].as_str().expect("write key").to_string();
    assert_eq!(
        post(taken_key, "taken-1").await,
        401,
        "the tenant's copy of the id never runs"
    );
    let _ = other.kill();
    let _ = other.wait();
}

/// Anyone on the internet reaches ingest's browser routes. They must not learn whether a
/// write key exists, make the settings send other browsers elsewhere (a forged `Host`
/// kept by a shared cache), read answers with a visitor's cookies, or turn analytics.js
/// telemetry into stored events.
#[actix_web::test]
async fn a_stranger_cannot_probe_write_keys_poison_settings_or_store_telemetry() {
    const KEY: &str = "browser-attack-write-key-0123456789";
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[ops]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
             [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n"
        ),
    )
    .expect("write config");
    let switchyard = support::Switchyard::start("run", &config);
    let ingest = switchyard.ingest_url.clone().expect("ingest");
    let ops = switchyard.ops_url.clone().expect("ops");
    let client = awc::Client::default();
    let settings = |key: &str, host: &str| {
        client
            .get(format!("{ingest}/v1/projects/{key}/settings"))
            .insert_header(("host", host.to_string()))
            .insert_header(("origin", "https://evil.example"))
            .send()
    };

    // Probing: a key that never existed and one a character off get the same answer.
    let mut never = settings("no-such-key-0123456789-abcdefghij", "collect.example.com")
        .await
        .expect("answer");
    let mut near = settings(&KEY.replace('0', "1"), "collect.example.com")
        .await
        .expect("answer");
    assert_eq!((never.status().as_u16(), near.status().as_u16()), (404, 404));
    assert_eq!(never.body().await.expect("body"), near.body().await.expect("body"));

    // The Host header reaches the answer (so the next checks can fail)...
    let mut honest = settings(KEY, "collect.example.com").await.expect("answer");
    let body: Value = honest.json().await.expect("json");
    assert_eq!(body["integrations"]["Segment.io"]["apiHost"], "collect.example.com/v1");
    // ...but a shared cache must keep it per host, and never hand it to other browsers
    // as the origin's own; and no visitor's cookies ever go with a cross-site read.
    let cache = honest
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(cache.contains("private"), "{cache}");
    let vary = honest
        .headers()
        .get("vary")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(vary.split(',').any(|name| name.trim() == "Host"), "{vary}");
    assert!(honest.headers().get("access-control-allow-credentials").is_none());
    // A Host that carries a path or quotes is not written into the settings at all.
    let mut forged = settings(KEY, "evil.example/steal?").await.expect("answer");
    let forged: Value = forged.json().await.expect("json");
    let api_host = forged["integrations"]["Segment.io"]["apiHost"]
        .as_str()
        .unwrap_or_default();
    assert!(!api_host.contains("evil"), "{api_host}");

    // Telemetry: bounded, counted, never an event.
    for _ in 0..3 {
        let mut response = client
            .post(format!("{ingest}/v1/m"))
            .insert_header(("content-type", "text/plain"))
            .send_body(r#"{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}"#)
            .await
            .expect("answer");
        assert_eq!(response.status().as_u16(), 200, "{:?}", response.body().await);
    }
    let huge = client
        .post(format!("{ingest}/v1/m"))
        .insert_header(("content-type", "text/plain"))
        .send_body(vec![b' '; 1024 * 1024])
        .await
        .expect("answer");
    assert_eq!(huge.status().as_u16(), 413);
    let (_, metrics) = support::get_text(&client, &format!("{ops}/metrics")).await;
    assert!(
        metrics.contains("switchyard_ingest_browser_telemetry_requests_total 3"),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|line| line.starts_with("switchyard_ingest_events_accepted_total{") && !line.ends_with(" 0")),
        "telemetry stored as events: {metrics}"
    );
}
