//! Shared pieces of the end-to-end tests: real local HTTP receivers and the switchyard
//! binary as a child process.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;

/// Every event any receiver of this test process accepted, whole.
static EVENTS: Mutex<Vec<Value>> = Mutex::new(Vec::new());

/// The accepted event with this messageId, as the receiver got it.
pub fn received_event(message_id: &str) -> Option<Value> {
    EVENTS
        .lock()
        .expect("not poisoned")
        .iter()
        .find(|e| e["messageId"] == message_id)
        .cloned()
}

/// How a receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Healthy,
    /// 500 until this moment, then 200.
    FailUntil(Instant),
    /// 400 for events whose userId is "bad".
    RefuseBad,
    /// 200 after this long.
    Slow(Duration),
    /// 503 with `Retry-After: 2` for the first `remaining` requests carrying an event
    /// of `user`, then 200.
    FailFirst {
        user: &'static str,
        remaining: u32,
    },
}

/// A webhook receiver on 127.0.0.1; keeps each accepted messageId with its arrival time.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    refused: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start(behaviour: Behaviour) -> Receiver {
        Receiver::start_with(behaviour, None)
    }

    /// An HTTPS receiver with this server configuration (certificate, client verifier).
    pub fn start_tls(behaviour: Behaviour, tls: rustls::ServerConfig) -> Receiver {
        Receiver::start_with(behaviour, Some(tls))
    }

    fn start_with(behaviour: Behaviour, tls: Option<rustls::ServerConfig>) -> Receiver {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (tx, rx) = std::sync::mpsc::channel();
        let refused = Arc::new(AtomicUsize::new(0));
        let (a, b, r) = (arrivals.clone(), behaviour.clone(), refused.clone());
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let (a, b, r) = (a.clone(), b.clone(), r.clone());
                    App::new().route(
                        "/{tail:.*}",
                        web::post().to(move |body: web::Bytes| {
                            let (a, b, r) = (a.clone(), b.clone(), r.clone());
                            async move {
                                let response = answer(&a, &b, &body).await;
                                if !response.status().is_success() {
                                    r.fetch_add(1, Ordering::SeqCst);
                                }
                                response
                            }
                        }),
                    )
                })
                .workers(1);
                let server = match tls {
                    Some(tls) => server.bind_rustls_0_23("127.0.0.1:0", tls),
                    None => server.bind("127.0.0.1:0"),
                }
                .expect("bind receiver");
                tx.send(server.addrs()[0]).expect("report address");
                server.run().await.expect("receiver runs");
            })
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).expect("receiver started");
        Receiver {
            addr,
            scheme,
            arrivals,
            behaviour,
            refused,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/hook", self.scheme, self.addr)
    }

    pub fn arrivals(&self) -> Vec<(String, Instant)> {
        self.arrivals.lock().expect("not poisoned").clone()
    }

    /// messageId -> how many times it was accepted.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (id, _) in self.arrivals() {
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }

    /// Requests answered with an error status.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("not poisoned") = behaviour;
    }

    /// Waits until `done` holds for the distinct messageIds received, or `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&HashMap<String, usize>) -> bool,
    ) -> HashMap<String, usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.counts();
            if done(&counts) || Instant::now() > deadline {
                return counts;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn answer(arrivals: &Mutex<Vec<(String, Instant)>>, behaviour: &Mutex<Behaviour>, body: &[u8]) -> HttpResponse {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return HttpResponse::BadRequest().body("not JSON");
    };
    let events = match value.get("batch") {
        Some(Value::Array(batch)) => batch.clone(),
        _ => vec![value],
    };
    let behaviour = {
        let mut current = behaviour.lock().expect("not poisoned");
        if let Behaviour::FailFirst { user, remaining } = &mut *current
            && *remaining > 0
            && events.iter().any(|e| e["userId"] == *user)
        {
            *remaining -= 1;
            // Retry-After makes the wait certain: full jitter alone may retry at once.
            return HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "2"))
                .body("failing this user's first request");
        }
        *current
    };
    match behaviour {
        Behaviour::FailUntil(until) if Instant::now() < until => {
            return HttpResponse::InternalServerError().body("down for maintenance");
        }
        Behaviour::RefuseBad if events.iter().any(|e| e["userId"] == "bad") => {
            return HttpResponse::BadRequest().body("userId bad is not allowed here");
        }
        Behaviour::Slow(delay) => actix_web::rt::time::sleep(delay).await,
        _ => {}
    }
    let now = Instant::now();
    let mut arrivals = arrivals.lock().expect("not poisoned");
    for event in events {
        arrivals.push((event["messageId"].as_str().unwrap_or_default().to_string(), now));
        EVENTS.lock().expect("not poisoned").push(event);
    }
    HttpResponse::Ok().finish()
}

/// The fields of a Segment message that its client library sets (those a call type
/// lacks are absent): what must arrive as sent.
pub const CLIENT_FIELDS: [&str; 10] = [
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "properties",
    "traits",
];

/// Sends `count` mixed events to `url` with the real Segment Python library
/// (tests/e2e/send_with_segment_python.py), which writes what it sent to `out`, one
/// JSON per line; insists the library reported no errors.
pub fn send_with_segment_python(url: &str, write_key: &str, count: usize, out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/send_with_segment_python.py");
    let status = Command::new("python3")
        .arg(&script)
        .args([
            "--host",
            url,
            "--write-key",
            write_key,
            "--count",
            &count.to_string(),
            "--out",
        ])
        .arg(out)
        .status()
        .expect("run python3 (pip install segment-analytics-python)");
    assert!(status.success(), "the Segment Python client reported errors");
}

/// A switchyard child process, killed (SIGKILL) when dropped.
pub struct Switchyard {
    pub child: Child,
    pub ingest_url: Option<String>,
    pub ops_url: Option<String>,
}

impl Switchyard {
    /// Starts `switchyard <role> --config <config>`; for roles that serve ingest, waits
    /// for its address.
    pub fn start(role: &str, config: &Path) -> Switchyard {
        Switchyard::start_with_env(role, config, &[])
    }

    /// As [`Switchyard::start`], with extra environment variables.
    pub fn start_with_env(role: &str, config: &Path, env: &[(&str, &str)]) -> Switchyard {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([role, "--config"])
            .arg(config)
            .envs(env.iter().copied())
            // SWITCHYARD_TEST_LOG=info (say) shows more of the child's log when debugging.
            .env(
                "RUST_LOG",
                std::env::var("SWITCHYARD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start switchyard");
        // The ops line comes first (the configs here all serve ops), then ingest's.
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || lines.next().expect("a line").expect("text");
        let ops_url = Some(
            next()
                .strip_prefix("ops listening on ")
                .expect("ops address line")
                .to_string(),
        );
        let mut ingest_url = None;
        if role != "router" {
            ingest_url = Some(
                next()
                    .strip_prefix("ingest listening on ")
                    .expect("address line")
                    .to_string(),
            );
        }
        Switchyard {
            child,
            ingest_url,
            ops_url,
        }
    }

    /// Asks for a clean stop (SIGTERM) and waits for the process to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("switchyard did not stop within 20 s of SIGTERM");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Switchyard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no
/// server behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A GET's status and body as text (an ops page: `/metrics`, `/readyz`).
pub async fn get_text(client: &awc::Client, url: &str) -> (u16, String) {
    let mut response = client.get(url).send().await.expect("answers");
    let body = response.body().limit(16 << 20).await.expect("body");
    (response.status().as_u16(), String::from_utf8_lossy(&body).into_owned())
}

/// Posts a batch to ingest and insists on 200.
pub async fn send_batch(client: &awc::Client, ingest_url: &str, write_key: &str, events: &[Value]) {
    let mut response = client
        .post(format!("{ingest_url}/v1/batch"))
        .basic_auth(write_key, "")
        .send_json(&serde_json::json!({ "batch": events }))
        .await
        .expect("ingest answers");
    let body = response.body().await.unwrap_or_default();
    assert_eq!(
        response.status().as_u16(),
        200,
        "ingest refused: {}",
        String::from_utf8_lossy(&body)
    );
}

pub fn track(message_id: &str, user_id: &str) -> Value {
    serde_json::json!({"type": "track", "userId": user_id, "event": "Order Completed", "messageId": message_id,
                       "properties": {"revenue": 9.5}})
}

/// The p-th percentile of durations.
pub fn percentile(mut values: Vec<Duration>, p: f64) -> Duration {
    values.sort();
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

/// The sections an end-to-end configuration starts with: the broker and the topics
/// [`broker_with_topics`] made, and ops, ingest (plain HTTP) and router on free ports.
pub fn pipeline_config(brokers: &str, topic: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n\
         [ingest]\nlisten = \"127.0.0.1:0\"\nallow_plain_http = true\n\n\
         [egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n[router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{topic}.dead\"\nretry_topic = \"{topic}.retry\"\n\n"
    )
}

/// A broker with an ingest topic of `partitions` and its `.dead` and `.retry` topics
/// (the names the tests' configurations use); returns the broker and the topic.
pub async fn broker_with_topics(prefix: &str, partitions: i32) -> (switchyard_testkit::Tansu, String) {
    let broker = switchyard_testkit::Tansu::start();
    let topic = switchyard_testkit::unique_topic(prefix);
    broker.create_topic(&topic, partitions).await;
    broker.create_topic(&format!("{topic}.dead"), 1).await;
    broker.create_topic(&format!("{topic}.retry"), 1).await;
    (broker, topic)
}

/// A self-signed certificate and key for 127.0.0.1 (openssl), in `dir`.
pub fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
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
