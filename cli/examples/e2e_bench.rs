//! End-to-end latency: events POSTed to a running Switchyard (ingest → Kafka → router)
//! at fixed rates, timed until a local webhook receiver (started here) gets them, beside
//! the same requests sent straight to the receiver (one HTTP hop: the baseline).
//!
//! Usage: e2e_bench INGEST_URL WRITE_KEY RECEIVER_PORT SECONDS RATE...
//! Prints per rate: `e2e RATE achieved p50_ms p99_ms p999_ms lost failed_requests
//! ack_p50_ms ack_p99_ms` (the last two: from sending a request to its answer, which
//! for ingest includes Kafka's acknowledgement; the rest of the latency is the Kafka hop,
//! the router and the webhook) and the same for `bare`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// What the receiver saw: latencies (µs) and the ids, for the current phase.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    ids: HashSet<String>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

fn record(seen: &Mutex<Seen>, event: &Value, at: u64) {
    let sent = event["properties"]["sent_at_us"].as_u64().unwrap_or(at);
    let id = event["messageId"].as_str().unwrap_or_default().to_string();
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if seen.ids.insert(id) {
        seen.latencies_us.push(at.saturating_sub(sent));
    }
}

fn start_receiver(port: u16, seen: Arc<Mutex<Seen>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let seen = seen.clone();
                App::new().app_data(web::PayloadConfig::new(16 * 1024 * 1024)).route(
                    "/{t:.*}",
                    web::post().to(move |body: web::Bytes| {
                        let seen = seen.clone();
                        async move {
                            let at = now_us();
                            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            match value.get("batch").and_then(Value::as_array) {
                                Some(events) => events.iter().for_each(|e| record(&seen, e, at)),
                                None => record(&seen, &value, at),
                            }
                            HttpResponse::Ok().finish()
                        }
                    }),
                )
            })
            .workers(2)
            .bind(("127.0.0.1", port))
            .expect("bind receiver");
            let _ = tx.send(());
            server.run().await
        })
    });
    rx.recv().expect("receiver started");
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Sends `rate` events/s for `seconds` to `url` (batches at 200 requests/s), waits for
/// the receiver to have them all (at most 15 s more), and prints the figures.
async fn phase(label: &str, url: &str, key: &str, rate: u64, seconds: u64, seen: &Arc<Mutex<Seen>>) {
    *seen.lock().unwrap_or_else(|e| e.into_inner()) = Seen::default();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .connector(awc::Connector::new().limit(1024))
        .finish();
    let per_request = (rate / 200).max(1);
    let interval = Duration::from_secs_f64(per_request as f64 / rate as f64);
    let requests = rate * seconds / per_request;
    let mut ticker = actix_web::rt::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let answered_us = Arc::new(Mutex::new(Vec::new()));
    let mut sent = 0u64;
    for request in 0..requests {
        ticker.tick().await;
        let batch: Vec<Value> = (0..per_request)
            .map(|n| {
                sent += 1;
                json!({"type": "track", "userId": format!("user-{}", (request + n) % 1000),
                       "event": "Latency Probe", "messageId": format!("{label}-{rate}-{request}-{n}"),
                       "properties": {"sent_at_us": now_us(), "plan": "pro", "items": 3}})
            })
            .collect();
        let (client, url, key, failures) = (client.clone(), url.to_string(), key.to_string(), failures.clone());
        let answered_us = answered_us.clone();
        actix_web::rt::spawn(async move {
            let asked = Instant::now();
            let ok = client
                .post(url)
                .basic_auth(key, "")
                .send_json(&json!({"batch": batch}))
                .await
                .is_ok_and(|response| response.status().is_success());
            let took = asked.elapsed().as_micros() as u64;
            answered_us.lock().unwrap_or_else(|e| e.into_inner()).push(took);
            if !ok {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let sending = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && (seen.lock().unwrap_or_else(|e| e.into_inner()).ids.len() as u64) < sent {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = std::mem::take(&mut seen.lock().unwrap_or_else(|e| e.into_inner()).latencies_us);
    latencies.sort_unstable();
    let received = latencies.len() as u64;
    let mut answered = std::mem::take(&mut *answered_us.lock().unwrap_or_else(|e| e.into_inner()));
    answered.sort_unstable();
    println!(
        "{label} {rate} {:.0} {:.2} {:.2} {:.2} {} {} {:.2} {:.2}",
        sent as f64 / sending.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        sent.saturating_sub(received),
        failures.load(std::sync::atomic::Ordering::Relaxed),
        percentile(&answered, 0.50),
        percentile(&answered, 0.99),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: e2e_bench INGEST_URL WRITE_KEY RECEIVER_PORT SECONDS RATE...";
    let ingest = args.next().ok_or(usage)?;
    let key = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let seconds: u64 = args.next().ok_or(usage)?.parse()?;
    let rates: Vec<u64> = args.map(|r| r.parse()).collect::<Result<_, _>>()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    start_receiver(port, seen.clone());
    actix_web::rt::System::new().block_on(async move {
        let batch_url = format!("{ingest}/v1/batch");
        // Warm up connections, the router's consumer and the destination's client.
        phase("warmup", &batch_url, &key, 1000, 2, &seen).await;
        for rate in rates {
            phase(
                "bare",
                &format!("http://127.0.0.1:{port}/bare"),
                &key,
                rate,
                seconds,
                &seen,
            )
            .await;
            phase("e2e", &batch_url, &key, rate, seconds, &seen).await;
        }
    });
    Ok(())
}
