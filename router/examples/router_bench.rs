//! Router throughput from a pre-filled topic, beside a bare rdkafka consumer reading the
//! same records in the same run. Prints one line per case:
//! `<case> <events/s> <process CPU seconds> <events>`.
//!
//! Usage: router_bench <brokers> <records> [blackhole|webhook]   (the last: only that case,
//! for profiling)

use std::time::{Duration, Instant};
use switchyard_testkit::process_cpu_seconds;

use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use switchyard_actors::destination::{BlackholeConfig, DestinationKind, RetryConfig, WebhookConfig};
use switchyard_actors::{DedupSettings, DestinationConfig, TransformConfig};
use switchyard_config::{KafkaConfig, SourceConfig};
use switchyard_router::{DeadLetterWriter, RouterConsumer, Topology};

const PARTITIONS: i32 = 4;

/// The same allocator as the switchyard binary, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn client(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4");
    config
}

fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "track", "userId": format!("user-{}", i % 1000), "event": "Product Viewed",
        "messageId": format!("bench-{i}"), "timestamp": "2026-11-29T12:00:00.000Z",
        "receivedAt": "2026-11-29T12:00:00.100Z",
        "properties": {"product_id": format!("sku-{i}"), "name": "Fleece-lined waterproof hiking jacket",
                       "category": "Outdoor/Clothing/Jackets", "price": 149.99, "currency": "EUR",
                       "url": format!("https://shop.example.com/products/sku-{i}?utm_source=newsletter"),
                       "tags": ["outdoor", "waterproof", "winter"]},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "locale": "en-GB",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0",
                    "page": {"path": format!("/products/sku-{i}"), "title": "Hiking jacket"}}
    })
}

async fn fill(brokers: &str, topic: &str, records: usize) -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = client(brokers).create()?;
    let new_topic = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    admin.create_topics([&new_topic], &AdminOptions::new()).await?;
    let producer: FutureProducer = client(brokers).set("linger.ms", "5").create()?;
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..records {
        let value = serde_json::to_vec(&event(i))?;
        let key = format!("bench/user-{}", i % 1000);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "switchyard-source-id",
                value: Some("bench"),
            })
            .insert(Header {
                key: "switchyard-schema-version",
                value: Some("1"),
            });
        let record = FutureRecord::to(topic).key(&key).payload(&value).headers(headers);
        pending.push(producer.send_result(record).map_err(|(error, _)| error)?);
        if pending.len() == 10_000 {
            for delivery in pending.drain(..) {
                delivery.await?.map_err(|(error, _)| error)?;
            }
        }
    }
    for delivery in pending.drain(..) {
        delivery.await?.map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

/// Reads every record once; the clock starts at the first record, after the assignment.
fn bare_consumer(brokers: &str, topic: &str, records: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut config = client(brokers);
    config.set("group.id", format!("{topic}-bare"));
    // The router's own fetch settings, so the two read the broker the same way.
    for (key, value) in switchyard_router::consumer::FETCH_SETTINGS {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut read, mut started, mut cpu_start) = (0, None, 0.0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while read < records && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            if started.is_none() {
                started = Some(Instant::now());
                cpu_start = process_cpu_seconds();
            }
            read += 1;
        }
    }
    let started = started.ok_or("no records read")?;
    Ok((
        read as f64 / started.elapsed().as_secs_f64(),
        process_cpu_seconds() - cpu_start,
    ))
}

fn destination(kind: DestinationKind) -> DestinationConfig {
    DestinationConfig {
        id: "bench".into(),
        sources: vec!["bench".into()],
        kind,
        retry: RetryConfig::default(),
        concurrency: 8,
        max_buffered_events: 20_000,
        breaker_failures: 5,
        breaker_cooldown_ms: 1_000,
        stall_after_secs: 120,
        ordering: Default::default(),
        integration_name: None,
        honor_integrations: true,
        consent_categories: Vec::new(),
        require_consent: false,
        transforms: Vec::new(),
    }
}

async fn router(
    brokers: &str,
    topic: &str,
    records: usize,
    kind: DestinationKind,
    group: &str,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut kafka = KafkaConfig::new(brokers);
    kafka.topic = topic.to_string();
    let sources = [SourceConfig {
        id: "bench".into(),
        name: String::new(),
        write_key: "bench-write-key-0123456789".into(),
        rate_limit_events_per_sec: None,
        rate_limit_burst_events: None,
        kind: Default::default(),
        webhook: None,
    }];
    let writer = DeadLetterWriter::new(&kafka, &format!("{topic}.dead"))?.start();
    let dedup = DedupSettings {
        window: Duration::from_secs(60),
        capacity: 0,
    };
    // One transform on the path, as a real source would have: redact an address.
    let transforms = std::collections::HashMap::from([(
        "bench".to_string(),
        vec![TransformConfig::Redact {
            fields: vec!["context.userAgent".into()],
        }],
    )]);
    let topology = Topology::start(
        &sources,
        &transforms,
        &[destination(kind)],
        writer.recipient(),
        switchyard_router::TopologyOptions {
            dedup,
            egress: std::sync::Arc::new(
                switchyard_actors::EgressPolicy::default()
                    .allowing(&["127.0.0.0/8"])
                    .allowing_plain_http(&["127.0.0.1"]),
            ),
            ..Default::default()
        },
    )?;
    let consumer = RouterConsumer::start(&kafka, group, None, topology)?;
    // Watched from a thread of its own: this thread also runs the supervisors, and a
    // timer here fires late while they are busy (seen: 60% of the records done before
    // the clock started).
    let tracker = consumer.tracker().clone();
    let watch = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(180);
        while tracker.positions().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        let (started, cpu_start) = (Instant::now(), process_cpu_seconds());
        let finished_before = tracker.finished() as usize;
        while (tracker.finished() as usize) < records && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let cpu = process_cpu_seconds() - cpu_start;
        (
            started.elapsed().as_secs_f64(),
            cpu,
            finished_before,
            tracker.finished() as usize,
        )
    });
    let (elapsed, cpu, finished_before, finished) =
        actix_web::rt::task::spawn_blocking(move || watch.join().expect("watcher")).await?;
    actix_web::rt::task::spawn_blocking(move || consumer.stop()).await??;
    if finished < records {
        return Err(format!("router finished {finished} of {records} records").into());
    }
    // Seen once: every record done before the clock started, a rate of millions.
    if finished_before * 10 > records {
        return Err(
            format!("{finished_before} of {records} records were done before the clock started; run again").into(),
        );
    }
    Ok(((records - finished_before) as f64 / elapsed, cpu))
}

fn fast_receiver() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new().route(
                    "/{t:.*}",
                    web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }),
                )
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .expect("bind");
            let _ = tx.send(server.addrs()[0]);
            server.run().await
        })
    });
    rx.recv().expect("receiver address")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().ok_or("brokers")?;
    let records: usize = args.next().ok_or("records")?.parse()?;
    let only = args.next();
    let runs = |case: &str| only.as_deref().is_none_or(|only| only == case);
    let topic = format!("router-bench-{}", std::process::id());
    System::new().block_on(async {
        fill(&brokers, &topic, records).await?;
        let (b, t) = (brokers.clone(), topic.clone());
        let (rate, cpu) =
            actix_web::rt::task::spawn_blocking(move || bare_consumer(&b, &t, records).map_err(|e| e.to_string()))
                .await??;
        println!("bare-consumer {rate:.0} {cpu:.2} {records}");
        if runs("blackhole") {
            let blackhole = DestinationKind::Blackhole(BlackholeConfig::default());
            let (rate, cpu) = router(&brokers, &topic, records, blackhole, &format!("{topic}-blackhole")).await?;
            println!("router-blackhole {rate:.0} {cpu:.2} {records}");
        }
        if !runs("webhook") {
            return Ok(());
        }
        let receiver = fast_receiver();
        let webhook = DestinationKind::Webhook(WebhookConfig {
            url: format!("http://{receiver}/hook"),
            signing_secret: Some("bench-secret".into()),
            bearer_token: None,
            basic_auth: None,
            headers: Default::default(),
            timeout_ms: 10_000,
            batch_max_events: 100,
            tls: Default::default(),
        });
        let (rate, cpu) = router(&brokers, &topic, records, webhook, &format!("{topic}-webhook")).await?;
        println!("router-webhook {rate:.0} {cpu:.2} {records}");
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
