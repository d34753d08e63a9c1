//! Warehouse load benchmark: ~1 KB track events loaded into Postgres (127.0.0.1:5432
//! or SWITCHYARD_TEST_POSTGRES, a fresh database) through the loader, in batches, beside
//! a bare `COPY` of the very same rows into a table of the same shape (the baseline).
//!
//! `warehouse_bench [EVENTS] [BATCH] [CONCURRENT]` (defaults 200000 5000 2) prints
//! `warehouse EVENTS_PER_S ROWS_PER_S P50_MS P99_MS LOADER_CPU_S` and `bare-copy ROWS_PER_S` lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use switchyard_schemas::Event;
use switchyard_testkit::TestDatabase;
use switchyard_warehouse::{Warehouse, WarehouseConfig};

// As the switchyard binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn event(n: usize) -> Arc<Event> {
    let event = json!({
        "type": "track", "messageId": format!("bench-{n:09}"), "userId": format!("user-{}", n % 5000),
        "event": "Order Completed",
        "receivedAt": "2024-05-01T12:00:00.123Z", "timestamp": "2024-05-01T12:00:00.100Z",
        "sentAt": "2024-05-01T12:00:00.110Z", "originalTimestamp": "2024-05-01T12:00:00.090Z",
        "context": {"ip": "203.0.113.7", "library": {"name": "analytics-python", "version": "2.3.3"},
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("numbers"));
    let total = args.next().unwrap_or(200_000);
    let batch = args.next().unwrap_or(5_000);
    let concurrent = args.next().unwrap_or(2);
    let db = TestDatabase::create("switchyard_bench").await;
    let events: Vec<Arc<Event>> = (0..total).map(event).collect();
    let size = serde_json::to_vec(&*events[0]).expect("json").len();
    let config: WarehouseConfig = serde_json::from_value(json!({
        "url": db.url, "max_connections": concurrent
    }))
    .expect("config");
    let warehouse = Arc::new(
        Warehouse::new(
            &config,
            &switchyard_egress::EgressPolicy::default().allowing(&["127.0.0.0/8", "::1/128"]),
        )
        .expect("warehouse"),
    );
    // Tables and columns made before the clock starts, as in a running pipeline.
    warehouse.load("bench", &events[..1]).await.expect("first load");

    let chunks: Vec<Vec<Arc<Event>>> = events[1..].chunks(batch).map(<[_]>::to_vec).collect();
    let queue = std::sync::Mutex::new(chunks);
    let (started, cpu_before) = (Instant::now(), switchyard_testkit::process_cpu_seconds());
    // Loads at once on one task: the loader's futures wait on the database, not the CPU.
    let loaders = (0..concurrent).map(|_| async {
        let mut latencies = Vec::new();
        loop {
            let Some(chunk) = queue.lock().expect("queue").pop() else {
                break;
            };
            let at = Instant::now();
            warehouse.load("bench", &chunk).await.expect("load");
            latencies.push(at.elapsed());
        }
        latencies
    });
    let mut latencies: Vec<Duration> = futures::future::join_all(loaders).await.into_iter().flatten().collect();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = switchyard_testkit::process_cpu_seconds() - cpu_before;
    latencies.sort();
    let loaded = (total - 1) as f64;
    println!(
        "warehouse {:.0} {:.0} {:.1} {:.1} {cpu:.2}",
        loaded / elapsed,
        2.0 * loaded / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // The baseline: the event table's rows, copied out and back in by Postgres alone.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    let mut connection = pool.acquire().await.expect("connection");
    sqlx::raw_sql("CREATE TABLE bench.baseline (LIKE bench.order_completed INCLUDING ALL)")
        .execute(&mut *connection)
        .await
        .expect("baseline table");
    let mut rows = Vec::new();
    {
        use futures::TryStreamExt;
        let mut out = connection
            .copy_out_raw("COPY bench.order_completed TO STDOUT")
            .await
            .expect("copy out");
        while let Some(chunk) = out.try_next().await.expect("chunk") {
            rows.extend_from_slice(&chunk);
        }
    }
    let at = Instant::now();
    let mut copy = connection
        .copy_in_raw("COPY bench.baseline FROM STDIN")
        .await
        .expect("copy in");
    copy.send(rows).await.expect("send");
    let copied = copy.finish().await.expect("finish");
    let bare = copied as f64 / at.elapsed().as_secs_f64();
    println!("bare-copy {bare:.0}");
    eprintln!(
        "{} events of {size} bytes in batches of {batch}, {concurrent} at once: {:.0} events/s ({:.0} rows/s: \
         tracks + order_completed), batch p50 {:.1} ms p99 {:.1} ms, loader CPU {cpu:.2} s of {elapsed:.2} s; bare COPY of the same event rows {bare:.0} rows/s",
        total - 1,
        loaded / elapsed,
        2.0 * loaded / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    drop((connection, pool, warehouse));
    db.drop_now().await;
}
