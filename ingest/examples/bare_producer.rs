//! The broker baseline: a bare rdkafka producer with ingest's settings (acks=all,
//! idempotent) sending ~1 KB records as fast as the broker acknowledges them. Ingest's
//! events/s are read against it: the gap is what ingest itself costs.
//!
//! Usage: bare_producer <brokers> <topic> <records> <payload file>

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().ok_or("brokers")?;
    let topic = args.next().ok_or("topic")?;
    let records: usize = args.next().ok_or("records")?.parse()?;
    let payload = std::fs::read(args.next().ok_or("payload file")?)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("broker.address.family", "v4")
        .create()?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(1000);
    let mut latencies = Vec::with_capacity(records);
    for i in 0..records {
        let key = format!("bench/user-{}", i % 1000);
        let sent_at = Instant::now();
        let delivery = producer
            .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
            .map_err(|(error, _)| error)?;
        pending.push((sent_at, delivery));
        // Windows of 1,000 in flight, like 10 concurrent batches of 100.
        if pending.len() == 1000 {
            for (sent_at, delivery) in pending.drain(..) {
                delivery.await?.map_err(|(error, _)| error)?;
                latencies.push(sent_at.elapsed());
            }
        }
    }
    for (sent_at, delivery) in pending.drain(..) {
        delivery.await?.map_err(|(error, _)| error)?;
        latencies.push(sent_at.elapsed());
    }
    let elapsed = started.elapsed();
    producer.flush(Duration::from_secs(10))?;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{} {:.2}ms {:.2}ms",
        (records as f64 / elapsed.as_secs_f64()).round(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}
