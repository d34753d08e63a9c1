//! What a deployment runs around the control plane (the Helm chart's setup Job, backup
//! CronJob and probes): `control migrate`, `control init --workspace-id --if-missing` run
//! on every upgrade, control commands that never read Kafka's secrets, the database URL
//! from the environment, `/healthz` and `/readyz` against a real Postgres, and sign-in
//! throttling behind a proxy that can't be dodged by forging `X-Forwarded-For`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use switchyard_testkit::postgres::TestDatabase;

const PASSWORD: &str = "owner password 0123";

fn switchyard(args: &[&str], config: &Path, database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SWITCHYARD_ADMIN_PASSWORD", PASSWORD)
        .env("SWITCHYARD_DATABASE_URL", database_url)
        .env_remove("SWITCHYARD_KAFKA_SASL_PASSWORD")
        .output()
        .expect("switchyard runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// A file as the chart renders it: Kafka over SASL_SSL (its CA file and password are not
/// where the Job runs), and a database URL in the file that is wrong on purpose.
fn deployment_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"kafka.invalid:9093\"\ntopic = \"t\"\nsecurity_protocol = \"sasl_ssl\"\n\
             tls = {{ ca_file = \"/etc/switchyard-kafka/ca.crt\" }}\n\
             sasl = {{ mechanism = \"SCRAM-SHA-512\", username = \"u\", password_env = \"SWITCHYARD_KAFKA_SASL_PASSWORD\" }}\n\
             [control]\ndatabase_url = \"postgres://nobody@127.0.0.1:1/none\"\nlisten = \"127.0.0.1:0\"\n\
             allow_plain_http = true\ntrusted_proxies = 1\nmaster_key_file = \"{}\"\nworkspace = \"acme\"\n",
            dir.join("master.key").display()
        ),
    )
    .expect("write config");
    config
}

#[actix_web::test]
async fn a_deployment_migrates_and_sets_up_its_workspace_once_without_kafka_secrets() {
    let database = TestDatabase::create("deploy").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = deployment_config(dir.path());

    let migrated = json(&switchyard(&["control", "migrate"], &config, &database.url));
    assert!(
        migrated["migrated"]
            .as_str()
            .is_some_and(|url| url.ends_with(&database.name)),
        "{migrated}"
    );
    let init = [
        "control",
        "init",
        "--email",
        "owner@acme.example",
        "--workspace",
        "Acme",
    ];
    let first = json(&switchyard(
        &[&init[..], &["--workspace-id", "acme", "--if-missing"]].concat(),
        &config,
        &database.url,
    ));
    assert_eq!(first["workspace"], "acme");
    assert_eq!(first["created"], true);
    let again = json(&switchyard(
        &[&init[..], &["--workspace-id", "acme", "--if-missing"]].concat(),
        &config,
        &database.url,
    ));
    assert_eq!(again["created"], false, "an upgrade makes nothing: {again}");
    // Without --if-missing, a second workspace of that id is refused, not duplicated.
    let duplicate = switchyard(
        &[&init[..], &["--workspace-id", "acme"]].concat(),
        &config,
        &database.url,
    );
    assert!(!duplicate.status.success());
    let bad_id = switchyard(
        &[&init[..], &["--workspace-id", "Acme Corp", "--if-missing"]].concat(),
        &config,
        &database.url,
    );
    assert!(!bad_id.status.success());
    assert!(String::from_utf8_lossy(&bad_id.stderr).contains("workspace_id"));

    let owners = database
        .json_rows(
            "SELECT u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = 'acme'",
        )
        .await;
    assert_eq!(
        owners,
        vec![serde_json::json!({"email": "owner@acme.example", "role": "owner"})]
    );

    let file = dir.path().join("workspace.yaml");
    std::fs::write(&file, "workspace: acme\nsources:\n  - id: web\n    name: Website\n").expect("write file");
    let applied = json(&switchyard(
        &["apply", "-f", file.to_str().expect("path")],
        &config,
        &database.url,
    ));
    assert_eq!(applied["report"]["created"], serde_json::json!(["source web"]));

    // The data path still reads Kafka's settings, and says which one is missing.
    let check = switchyard(&["check-config"], &config, &database.url);
    assert!(!check.status.success());
    let message = String::from_utf8_lossy(&check.stderr);
    assert!(
        message.contains("ca_file") || message.contains("SWITCHYARD_KAFKA_SASL_PASSWORD"),
        "{message}"
    );
    database.drop_now().await;
}

struct Server(std::process::Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, database_url: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["control", "serve", "--config"])
        .arg(config)
        .env("SWITCHYARD_DATABASE_URL", database_url)
        .env("SWITCHYARD_KAFKA_SASL_PASSWORD", "unused")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start control");
    let url = switchyard_testkit::control_url(&mut child);
    Server(child, url)
}

async fn status(client: &awc::Client, url: &str) -> u16 {
    client.get(url).send().await.expect("request").status().as_u16()
}

async fn sign_in(client: &awc::Client, url: &str, email: &str, forwarded_for: &str) -> u16 {
    client
        .post(format!("{url}/v1/login"))
        .insert_header(("x-forwarded-for", forwarded_for))
        .send_json(&serde_json::json!({"email": email, "password": "not the password"}))
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[actix_web::test]
async fn probes_follow_the_database_and_sign_in_throttling_counts_the_client_behind_the_proxy() {
    let database = TestDatabase::create("deploy_serve").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = deployment_config(dir.path());
    // control serve taps Kafka for the debugger: without a CA file of its own it would
    // refuse to start, so this one trusts the public roots.
    let text = std::fs::read_to_string(&config)
        .expect("read")
        .replace("tls = { ca_file = \"/etc/switchyard-kafka/ca.crt\" }\n", "");
    config = dir.path().join("serve.toml");
    std::fs::write(&config, text).expect("write");
    let init = switchyard(
        &[
            "control",
            "init",
            "--email",
            "owner@acme.example",
            "--workspace-id",
            "acme",
        ],
        &config,
        &database.url,
    );
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let server = serve(&config, &database.url);
    let client = awc::Client::default();
    let url = &server.1;
    assert_eq!(status(&client, &format!("{url}/healthz")).await, 200);
    assert_eq!(status(&client, &format!("{url}/readyz")).await, 200);

    // The audit log names the client the proxy saw, not the proxy, nor what the client wrote.
    assert_eq!(
        sign_in(&client, url, "owner@acme.example", "6.6.6.6, 198.51.100.9").await,
        401
    );
    let remotes = database
        .json_rows("SELECT remote FROM audit_log WHERE action = 'user.login_failed'")
        .await;
    assert_eq!(remotes, vec![serde_json::json!({"remote": "198.51.100.9"})]);

    // The attacker forges what it puts left of the entry the proxy appends: every
    // attempt counts against the address the proxy saw (unknown accounts: no lockout).
    for attempt in 0..10 {
        let code = sign_in(
            &client,
            url,
            "nobody@acme.example",
            &format!("10.9.8.{attempt}, 198.51.100.7"),
        )
        .await;
        assert_eq!(code, 401, "attempt {attempt}");
    }
    assert_eq!(
        sign_in(&client, url, "nobody@acme.example", "10.9.9.9, 198.51.100.7").await,
        429
    );
    // Someone else behind the same proxy is not throttled by it.
    assert_eq!(sign_in(&client, url, "nobody@acme.example", "203.0.113.50").await, 401);

    // The database goes away: the pod stays alive but leaves the Service.
    let name = database.name.clone();
    database.drop_now().await;
    assert_eq!(status(&client, &format!("{url}/healthz")).await, 200);
    let readiness = status(&client, &format!("{url}/readyz")).await;
    assert_eq!(readiness, 503, "readyz without {name}");
}
