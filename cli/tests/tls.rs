//! Ingest over HTTPS: a certificate from the config file, a client that verifies it,
//! and plain HTTP refused on the TLS port.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::certificate;
use switchyard_testkit::{Tansu, read_records, unique_topic};

const WRITE_KEY: &str = "tls-write-key-0123456789";

#[tokio::test]
async fn ingest_serves_https_with_the_configured_certificate() {
    let broker = Tansu::start();
    let topic = unique_topic("tls");
    broker.create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(dir.path());
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\n\
             tls_cert_path = \"{}\"\ntls_key_path = \"{}\"\n\n[[sources]]\nid = \"secure\"\nwrite_key = \"{WRITE_KEY}\"\n",
            broker.brokers(),
            cert.display(),
            key.display()
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ingest", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start switchyard");
    // Skips the ops line.
    let line = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .find(|line| line.as_ref().is_ok_and(|l| l.starts_with("ingest ")))
        .expect("a line")
        .expect("text");
    let url = line
        .strip_prefix("ingest listening on ")
        .expect("address line")
        .to_string();
    assert!(url.starts_with("https://"), "{url}");

    let script = r#"
import ssl, sys, requests
url, ca, key = sys.argv[1:4]
response = requests.post(url + "/v1/track", auth=(key, ""), json={"userId": "u", "event": "Over TLS"}, verify=ca, timeout=20)
assert response.status_code == 200, response.text
context = ssl.create_default_context(cafile=ca)
host, port = url.removeprefix("https://").split(":")
import socket
with socket.create_connection((host, int(port))) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
    assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
try:
    requests.post(url.replace("https://", "http://") + "/v1/track", auth=(key, ""), json={}, timeout=5)
    sys.exit("plain HTTP was answered on the TLS port")
except requests.exceptions.ConnectionError:
    pass
"#;
    let output = Command::new("python3")
        .args(["-c", script, &url])
        .arg(&cert)
        .arg(WRITE_KEY)
        .output()
        .expect("run python3");
    let _ = child.kill();
    let _ = child.wait();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        read_records(&broker.brokers(), &topic, 1, Duration::from_secs(15)).len(),
        1
    );
}
