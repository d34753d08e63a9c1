//! Object-storage export against a local S3-compatible server (moto): gzip JSONL per
//! source and received date, with the destination's own credentials, and a retried
//! batch overwriting its own object instead of adding a copy.

use std::io::Read;
use std::sync::Arc;

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use serde_json::{Value, json};
use switchyard_egress::EgressPolicy;
use switchyard_schemas::Event;
use switchyard_testkit::Moto;
use switchyard_warehouse::{ExportConfig, Exporter};

#[tokio::test]
async fn batches_land_as_gzip_jsonl_partitioned_by_source_and_received_date() {
    let moto = Moto::start();
    moto.create_bucket("customer-exports");
    let config: ExportConfig = serde_json::from_value(json!({
        "bucket": "customer-exports", "endpoint": moto.endpoint(),
        "access_key_id": "customer-key", "secret_access_key": "customer-secret", "prefix": "segment/"
    }))
    .expect("config");
    let local = Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["127.0.0.1"]),
    );
    let exporter = Exporter::new(&config, &local).expect("exporter");
    let events: Vec<Arc<Event>> = [
        ("m1", "2024-05-01T23:59:59.000Z"),
        ("m2", "2024-05-02T00:00:01.000Z"),
        ("m3", "2024-05-02T08:00:00.000Z"),
    ]
    .into_iter()
    .map(|(id, at)| {
        let event = json!({"type": "track", "messageId": id, "userId": "u1", "event": "Viewed", "receivedAt": at});
        Arc::new(serde_json::from_value(event).expect("event"))
    })
    .collect();
    let written = exporter.export("web-app", &events).await.expect("export");
    let mut keys: Vec<String> = written.iter().map(ToString::to_string).collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with("segment/source_id=web-app/received_date=2024-05-01/") && keys[0].ends_with(".jsonl.gz")
    );
    assert!(keys[1].starts_with("segment/source_id=web-app/received_date=2024-05-02/"));

    // Read back through S3 with the same credentials.
    let reader = AmazonS3Builder::new()
        .with_bucket_name("customer-exports")
        .with_region("us-east-1")
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_access_key_id("customer-key")
        .with_secret_access_key("customer-secret")
        .build()
        .expect("reader");
    let mut ids = Vec::new();
    for path in &written {
        let bytes = reader.get(path).await.expect("get").bytes().await.expect("bytes");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("gzip");
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).expect("one JSON event per line");
            ids.push(event["messageId"].as_str().expect("id").to_string());
        }
    }
    ids.sort();
    assert_eq!(ids, ["m1", "m2", "m3"]);

    // The same batch again writes the same objects.
    let again = exporter.export("web-app", &events).await.expect("export again");
    assert_eq!(again, written);
    assert_eq!(moto.keys("customer-exports").len(), 2, "no copy added");
}

/// Answers as a DNS server the attacker controls: a public address when the settings
/// are checked, then the address of the S3 server inside the operator's network.
struct Rebinding(std::sync::atomic::AtomicUsize, std::net::SocketAddr);

impl switchyard_egress::Resolve for Rebinding {
    fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ip = if n == 0 {
            "93.184.216.34".parse().expect("ip")
        } else {
            self.1.ip()
        };
        Ok(vec![std::net::SocketAddr::new(ip, port)])
    }
}

#[tokio::test]
async fn an_endpoint_re_pointed_at_an_internal_address_is_refused_when_it_connects() {
    let moto = Moto::start();
    moto.create_bucket("internal");
    let internal: std::net::SocketAddr = moto
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("moto address");
    let config: ExportConfig = serde_json::from_value(json!({
        "bucket": "internal", "endpoint": format!("http://rebind.example:{}", internal.port()),
        "access_key_id": "k", "secret_access_key": "s", "timeout_ms": 3000
    }))
    .expect("config");
    let egress = EgressPolicy::default()
        .allowing_plain_http(&["rebind.example"])
        .with_resolver(Arc::new(Rebinding(Default::default(), internal)));
    // The name looked public when it was first resolved...
    assert!(egress.resolve("rebind.example", internal.port()).is_ok());
    let egress = Arc::new(egress);
    let exporter = Exporter::new(&config, &egress).expect("exporter");
    let event = json!({"type": "track", "messageId": "m1", "userId": "u1", "event": "Viewed"});
    let events = vec![Arc::new(serde_json::from_value::<Event>(event).expect("event"))];
    // ...and now points at loopback: the connection is refused before it is made.
    let error = exporter.export("web", &events).await.expect_err("refused");
    assert!(error.reason.contains("egress policy blocks"), "{}", error.reason);

    let reader = AmazonS3Builder::new()
        .with_bucket_name("internal")
        .with_region("us-east-1")
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .with_access_key_id("k")
        .with_secret_access_key("s")
        .build()
        .expect("reader");
    let listed: Vec<_> = futures::TryStreamExt::try_collect(object_store::ObjectStore::list(&reader, None))
        .await
        .expect("list");
    assert!(listed.is_empty(), "nothing reached the internal bucket: {listed:?}");
}
