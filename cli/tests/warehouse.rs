//! Warehouse and export destinations end to end: events posted to ingest go through
//! the real broker to a Postgres warehouse, a bucket (moto) and a webhook. The warehouse
//! user first may not write: its events wait in retry with the reason while the other
//! destinations get everything; once granted, every event loads exactly once.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use support::{Behaviour, Receiver, Switchyard, broker_with_topics, pipeline_config, send_batch, track};
use switchyard_testkit::postgres::{drop_role, unique};
use switchyard_testkit::{Moto, TestDatabase};

const KEY: &str = "wk-warehouse-0123456789";
const APP_KEY: &str = "wk-warehouse-app-0123456789";

#[actix_web::test]
async fn a_warehouse_without_rights_waits_in_retry_and_blocks_no_other_destination() {
    let (broker, topic) = broker_with_topics("warehouse", 2).await;
    let db = TestDatabase::create("switchyard_e2e").await;
    let role = format!("switchyard_loader_{}", unique());
    db.execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'loader-pw'"))
        .await;
    let moto = Moto::start();
    moto.create_bucket("exports");
    let hook = Receiver::start(Behaviour::Healthy);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "{pipeline}\
             [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n\n[[sources]]\nid = \"app\"\nwrite_key = \"{APP_KEY}\"\n\n\
             [[destinations]]\nid = \"warehouse\"\nsources = [\"shop\", \"app\"]\nkind = \"postgres_warehouse\"\n\
             url = \"{warehouse}\"\nbatch_max_events = 25\nbatch_max_wait_ms = 300\n\
             breaker_failures = 1000\nretry = {{ min_backoff_ms = 100, max_backoff_ms = 500 }}\n\n\
             [[destinations]]\nid = \"export\"\nsources = [\"shop\"]\nkind = \"object_storage_export\"\n\
             bucket = \"exports\"\nendpoint = \"{endpoint}\"\n\
             access_key_id = \"customer\"\nsecret_access_key = \"customer-secret\"\nbatch_max_wait_ms = 300\n\n\
             [[destinations]]\nid = \"hook\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{hook}\"\n\
             ",
            pipeline = pipeline_config(&broker.brokers(), &topic),
            warehouse = db.url_as(&role, "loader-pw"),
            endpoint = moto.endpoint(),
            hook = hook.url(),
        ),
    )
    .expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let (ingest, ops) = (
        switchyard.ingest_url.clone().expect("ingest"),
        switchyard.ops_url.clone().expect("ops"),
    );
    let client = awc::Client::default();
    let ids: Vec<String> = (0..60).map(|i| format!("wh-{i}")).collect();
    for chunk in ids.chunks(20) {
        let events: Vec<_> = chunk.iter().map(|id| track(id, "u-1")).collect();
        send_batch(&client, &ingest, KEY, &events).await;
    }
    // A second source into the same warehouse: its actor shares the first one's pool.
    let app_events: Vec<_> = (0..20).map(|i| track(&format!("app-{i}"), "u-2")).collect();
    send_batch(&client, &ingest, APP_KEY, &app_events).await;

    // The webhook gets everything while the warehouse can't write.
    let got = hook.wait_for(Duration::from_secs(30), |counts| {
        ids.iter().all(|id| counts.contains_key(id))
    });
    assert!(
        ids.iter().all(|id| got.contains_key(id)),
        "the webhook got {} of 60",
        got.len()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let warehouse = loop {
        let mut response = awc::Client::default()
            .get(format!("{ops}/actors"))
            .send()
            .await
            .expect("ops answers");
        let body: serde_json::Value = response.json().limit(16 << 20).await.expect("JSON");
        let actor = body["actors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["destination_id"] == "warehouse" && a["source_id"] == "shop")
            .cloned()
            .expect("the warehouse is listed");
        if actor["buffered"] == 60 && actor["retried"].as_u64().is_some_and(|n| n >= 2) {
            break actor;
        }
        assert!(
            Instant::now() < deadline,
            "the warehouse's events are not waiting in retry: {actor}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        warehouse["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("may not write")),
        "{warehouse}"
    );
    assert_eq!(warehouse["dead_lettered"], 0, "{warehouse}");

    // The bucket has every event, as gzip JSONL under the source's partition.
    let reader = AmazonS3Builder::new()
        .with_bucket_name("exports")
        .with_region("us-east-1")
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_access_key_id("customer")
        .with_secret_access_key("customer-secret")
        .build()
        .expect("reader");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut exported = Vec::new();
        for key in moto.keys("exports") {
            assert!(key.starts_with("source_id=shop/received_date="), "{key}");
            let bytes = reader
                .get(&key.as_str().into())
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("gzip");
            for line in text.lines() {
                let event: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                exported.push(event["messageId"].as_str().expect("id").to_string());
            }
        }
        if ids.iter().all(|id| exported.contains(id)) {
            break;
        }
        assert!(Instant::now() < deadline, "exported {} of 60", exported.len());
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }

    // Granted: the waiting events load, each once.
    db.execute(&format!("GRANT CREATE ON DATABASE {} TO {role}", db.name))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tables = db
            .json_rows("SELECT to_regclass('shop.tracks') IS NOT NULL AND to_regclass('shop.order_completed') IS NOT NULL AS made")
            .await;
        let mut loaded = Vec::new();
        if tables[0]["made"] == true {
            loaded = db
                .json_rows(
                    "SELECT (SELECT count(*) FROM shop.tracks) AS tracks, \
                     (SELECT count(DISTINCT id) FROM shop.order_completed) AS events",
                )
                .await;
            if loaded[0]["tracks"] == 60 && loaded[0]["events"] == 60 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "loaded so far: {loaded:?}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let app = db
            .json_rows("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'app' AND table_name = 'tracks'")
            .await;
        if app[0]["n"] == 1 && db.json_rows("SELECT id FROM app.tracks").await.len() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the second source's events did not load");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    let revenue = db.json_rows("SELECT revenue FROM shop.order_completed LIMIT 1").await;
    assert_eq!(revenue[0]["revenue"], 9.5, "properties become typed columns");
    drop(switchyard);
    db.drop_now().await;
    drop_role(&role).await;
}
