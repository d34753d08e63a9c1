//! Hostile input at the HTTP edge, over real sockets against a bound ingest server
//! (events go to a real broker, tansu): malformed JSON, invalid UTF-8, deep nesting, a
//! gzip bomb, oversized bodies and headers, clients that send their head or body too
//! slowly. Each gets a clear 4xx or a closed connection, memory stays bounded, and the
//! server keeps answering well-behaved clients throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use switchyard_config::{KafkaConfig, SourceConfig};
use switchyard_ingest::{IngestConfig, IngestState, KafkaSink, SourceRegistry, server};
use switchyard_schemas::Limits;
use switchyard_testkit::{Tansu, unique_topic};

const KEY: &str = "hostile-write-key-0123456789";

async fn start(broker: &Tansu) -> SocketAddr {
    let mut kafka = KafkaConfig::new(broker.brokers());
    kafka.topic = unique_topic("hostile");
    broker.create_topic(&kafka.topic, 1).await;
    let limits = Limits::default();
    let source = SourceConfig {
        id: "web".into(),
        name: String::new(),
        write_key: KEY.into(),
        rate_limit_events_per_sec: None,
        rate_limit_burst_events: None,
        kind: Default::default(),
        webhook: None,
    };
    let state = Arc::new(IngestState {
        sources: SourceRegistry::new(&[source], limits.max_batch_events),
        sink: KafkaSink::new(&kafka).expect("producer"),
        limits,
        trusted_proxies: 0,
        refused: Default::default(),
        dead_letter_topic: None,
        replays: Default::default(),
        browser: Default::default(),
    });
    let config = IngestConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        allow_plain_http: true,
        workers: 2,
        ..IngestConfig::default()
    };
    let bound = server::bind(&config, state).expect("bind");
    actix_web::rt::spawn(bound.server);
    bound.addr
}

fn auth() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    format!("Basic {encoded}")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(40))).expect("timeout");
    stream
}

/// Sends `head` (request line and headers, without the blank line) and `body`;
/// returns the status and body of the answer, or `None` when the server closed the
/// connection without one.
fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut stream = connect(addr);
    let request = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    // The server may answer and close before reading everything: write errors are fine.
    let _ = stream
        .write_all(request.as_bytes())
        .and_then(|_| stream.write_all(body));
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn post(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: {}\r\nContent-Type: application/json",
        auth()
    )
}

/// A well-behaved client's event is still accepted.
fn healthy(addr: SocketAddr, n: usize) {
    let body = format!(r#"{{"userId":"u-{n}","event":"Still Here","messageId":"ok-{n}"}}"#);
    let started = Instant::now();
    let answer = exchange(addr, &post("/v1/track"), body.as_bytes());
    assert_eq!(answer.map(|a| a.0), Some(200), "a normal request is served");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// A refusal with a JSON body that says why.
fn refused(answer: Option<(u16, String)>, status: u16, what: &str) {
    let (got, body) = answer.unwrap_or_else(|| panic!("{what}: the connection closed without an answer"));
    assert_eq!(got, status, "{what}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: JSON body: {body}"));
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

#[actix_web::test]
async fn hostile_requests_get_clear_refusals_and_the_server_keeps_serving_others() {
    let broker = Tansu::start();
    let addr = start(&broker).await;
    tokio::task::spawn_blocking(move || {
        // A body that never finishes: opened first, judged last (the deadline is 30 s).
        let mut slow_body = connect(addr);
        let head = format!("{}\r\nContent-Length: 1000\r\n\r\n{{\"userId\":", post("/v1/track"));
        slow_body.write_all(head.as_bytes()).expect("write");
        let slow_body_started = Instant::now();

        // Heads that never finish: 20 connections each hold a half-sent request line.
        let slow_heads: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut stream = connect(addr);
                stream.write_all(b"POST /v1/track HTTP/1.1\r\nHost: te").expect("write");
                stream
            })
            .collect();
        healthy(addr, 0);

        refused(
            exchange(addr, &post("/v1/track"), br#"{"userId": "u", "event": "#),
            400,
            "malformed JSON",
        );
        refused(
            exchange(addr, &post("/v1/track"), b"{\"userId\":\"\xff\xfe\",\"event\":\"x\"}"),
            400,
            "invalid UTF-8",
        );
        // Within the 32 KB event limit, far past any sane depth.
        let depth = 15_000;
        let nested = format!(
            r#"{{"userId":"u","event":"e","properties":{{"a":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        refused(
            exchange(addr, &post("/v1/track"), nested.as_bytes()),
            400,
            "deeply nested JSON",
        );
        healthy(addr, 1);

        let bomb = gzip(&vec![b' '; 200 * 1024 * 1024]);
        assert!(bomb.len() < 512 * 1024, "{} bytes compressed", bomb.len());
        let gzip_head = format!("{}\r\nContent-Encoding: gzip", post("/v1/batch"));
        let before = resident_kib();
        for _ in 0..5 {
            refused(exchange(addr, &gzip_head, &bomb), 413, "gzip bomb");
        }
        let oversized = vec![b'x'; 2 * 1024 * 1024];
        for _ in 0..5 {
            let answer = exchange(addr, &post("/v1/batch"), &oversized);
            refused(answer, 413, "oversized body");
        }
        let grown_mib = resident_kib().saturating_sub(before) / 1024;
        assert!(grown_mib < 64, "memory grew {grown_mib} MiB over 10 hostile bodies");

        // A huge declared length is refused before any of it is read.
        let mut stream = connect(addr);
        let head = format!("{}\r\nContent-Length: 100000000000\r\n\r\n", post("/v1/batch"));
        stream.write_all(head.as_bytes()).expect("write");
        refused(read_answer(&mut stream), 413, "declared 100 GB");

        // Headers far over the server's buffer: refused or the connection closed.
        let huge = format!("{}\r\nX-Padding: {}", post("/v1/track"), "p".repeat(256 * 1024));
        match exchange(addr, &huge, b"{}") {
            None => {}
            Some((status, _)) => assert!(matches!(status, 400 | 413 | 431), "oversized headers: {status}"),
        }
        healthy(addr, 2);

        // The half-sent heads are cut off by the request-head deadline (5 s).
        std::thread::sleep(Duration::from_secs(7));
        for mut stream in slow_heads {
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            if let Some((status, _)) = read_answer(&mut stream) {
                assert_eq!(status, 408, "a slow head gets 408 or a closed connection");
            }
        }
        healthy(addr, 3);

        let answer = read_answer(&mut slow_body);
        let waited = slow_body_started.elapsed();
        refused(answer, 408, "a body that never finishes");
        assert!(
            waited < Duration::from_secs(40),
            "cut off after the deadline: {waited:?}"
        );
        healthy(addr, 4);
    })
    .await
    .expect("hostile client");
}
