//! The control plane end to end: `control init`, the admin API over HTTPS driven by a
//! plain HTTP client, the server's own log searched for a credential, and
//! `audit verify` catching a row edited in the SQLite file.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

const PASSWORD: &str = "owner password 0123";
const SECRET: &str = "tok-E2E-NEVER-SHOWN-42";

fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl made a test certificate");
    (cert, key)
}

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
             tls_cert_path = \"{}\"\ntls_key_path = \"{}\"\nmaster_key_file = \"{}\"\n",
            database.display(),
            cert.display(),
            key.display(),
            dir.path().join("master.key").display()
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
    let line = BufReader::new(server.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("a line")
        .expect("text");
    let url = line
        .strip_prefix("control listening on ")
        .expect("address line")
        .to_string();
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
    assert_eq!(rows, 3, "workspace, source and destination creation");
    assert!(log.contains("audited"), "the log was captured at trace level");
    assert!(!log.contains(SECRET), "a credential reached the server log");

    let verified = switchyard(&["audit", "verify"], &config);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
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
