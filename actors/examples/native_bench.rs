//! Native destinations' benchmark: ~1 KB track events delivered by each kind's client
//! to its local receiver (`switchyard_testkit::vendors`, which checks every request as
//! the vendor documents it), as the destination actor sends them: requests of the
//! kind's own batching, `CONCURRENT` in flight.
//!
//! `native_bench [EVENTS] [CONCURRENT]` (defaults 50000 2) prints, per kind,
//! `native KIND EVENTS_PER_S EVENTS_PER_CPU_S P50_MS P99_MS`: CPU is the client's own
//! thread's (mapping, encoding, the HTTP client, reading the answers); the receiver
//! serves on threads of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use switchyard_actors::destination::config::{DestinationKind, EgressPolicy};
use switchyard_actors::destination::delivery::Answer;
use switchyard_actors::destination::kinds;
use switchyard_schemas::Event;
use switchyard_testkit::thread_cpu_seconds;
use switchyard_testkit::vendors::{AmplitudeReceiver, MixpanelReceiver, SegmentReceiver};

// As the switchyard binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-key-0123456789";

fn event(n: usize) -> Arc<Event> {
    let event = json!({
        "type": "track", "messageId": format!("bench-{n:09}"), "userId": format!("user-{}", n % 5000),
        "anonymousId": format!("anon-{}", n % 5000), "event": "Order Completed",
        "receivedAt": "2026-12-07T12:00:00.123Z", "timestamp": "2026-12-07T12:00:00.100Z",
        "sentAt": "2026-12-07T12:00:00.110Z", "originalTimestamp": "2026-12-07T12:00:00.090Z",
        "context": {"ip": "203.0.113.7", "library": {"name": "analytics-python", "version": "2.3.3"},
                    "locale": "en-GB", "os": {"name": "Linux"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                    "page": {"path": "/checkout/complete", "url": "https://shop.example.com/checkout/complete?step=3"}},
        "properties": {"orderId": format!("order-{n}"), "revenue": 12.5 + (n % 100) as f64, "currency": "EUR",
                       "coupon": "SPRING-SALE", "discount": 2.5, "shipping": 4.99, "tax": 1.93, "items": n % 7,
                       "paymentMethod": "card", "firstOrder": n.is_multiple_of(2), "affiliation": "web-store",
                       "note": "x".repeat(180), "category": "Garden", "brand": "Acme"}
    });
    Arc::new(serde_json::from_value(event).expect("event"))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

async fn run(name: &str, kind: DestinationKind, events: &[Arc<Event>], concurrent: usize) {
    let egress = Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["127.0.0.1"]),
    );
    let client = kinds::connect(&kind, &egress).expect("client");
    let batching = client.batching();
    let size = serde_json::to_vec(&*events[0]).expect("json").len();
    let per_request = batching
        .max_events
        .min(batching.max_bytes.map_or(usize::MAX, |bytes| (bytes / size).max(1)));
    let cpu = thread_cpu_seconds();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(events.chunks(per_request))
        .map(|batch| {
            let request = client.deliver(Arc::from("bench"), batch.to_vec());
            async move {
                let at = Instant::now();
                let answer = request.await;
                assert_eq!(answer, Answer::Delivered, "{name}");
                at.elapsed()
            }
        })
        .buffer_unordered(concurrent)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = (thread_cpu_seconds() - cpu).max(0.01);
    latencies.sort();
    println!(
        "native {name} {:.0} {:.0} {:.2} {:.2}",
        events.len() as f64 / wall,
        events.len() as f64 / cpu,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("numbers"));
    let total = args.next().unwrap_or(50_000);
    let concurrent = args.next().unwrap_or(2);
    let events: Vec<Arc<Event>> = (0..total).map(event).collect();
    let segment = SegmentReceiver::start(KEY);
    let amplitude = AmplitudeReceiver::start(KEY);
    let mixpanel = MixpanelReceiver::start(KEY);
    let kind = |value: serde_json::Value| -> DestinationKind { serde_json::from_value(value).expect("settings") };
    actix_rt::System::new().block_on(async {
        run(
            "segment",
            kind(json!({"kind": "segment", "write_key": KEY, "endpoint": segment.url})),
            &events,
            concurrent,
        )
        .await;
        run(
            "amplitude",
            kind(json!({"kind": "amplitude", "api_key": KEY, "endpoint": amplitude.url})),
            &events,
            concurrent,
        )
        .await;
        run(
            "mixpanel",
            kind(json!({"kind": "mixpanel", "project_token": KEY, "endpoint": mixpanel.url})),
            &events,
            concurrent,
        )
        .await;
    });
    assert_eq!(amplitude.events().len(), total, "every event ingested once");
    assert_eq!(mixpanel.events().len(), total, "every event imported once");
}
