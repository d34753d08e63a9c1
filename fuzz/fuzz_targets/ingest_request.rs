//! The ingest request path, body and headers: the input picks an endpoint, how the
//! write key is sent, the content type and encoding, a traceparent, and the body. Every
//! request must get an answer (a 2xx or a 4xx/5xx with a JSON reason), never a panic.
//! Accepted events go to librdkafka's in-process mock cluster, which acknowledges in
//! about a millisecond (a closed port would hold each accepted request for the
//! delivery timeout, which librdkafka checks once a second: a few inputs a second).
//! One actix system per fuzzing thread, kept across inputs.
#![no_main]

use std::sync::{Arc, LazyLock};

use actix_web::http::header::HeaderValue;
use actix_web::{App, test};
use libfuzzer_sys::fuzz_target;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use switchyard_ingest::{IngestState, KafkaSink, SourceRegistry, configure};
use switchyard_schemas::Limits;
use switchyard_config::{KafkaConfig, SourceConfig};

const KEY: &str = "fuzz-write-key-0123456789";
const PATHS: [&str; 9] = [
    "/v1/track",
    "/v1/identify",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
    "/v1/import",
    "/v1/webhooks/hook",
];

static STATE: LazyLock<Arc<IngestState>> = LazyLock::new(|| {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).expect("mock cluster");
    let mut kafka = KafkaConfig::new(cluster.bootstrap_servers());
    cluster.create_topic(&kafka.topic, 1, 1).expect("topic");
    // The cluster serves as long as the fuzzing process runs.
    std::mem::forget(cluster);
    kafka.delivery_timeout_ms = 5_000;
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
    Arc::new(IngestState {
        sources: SourceRegistry::new(&[source], limits.max_batch_events),
        sink: KafkaSink::new(&kafka).expect("producer"),
        limits,
        trusted_proxies: 1,
        refused: Default::default(),
        dead_letter_topic: None,
        replays: Default::default(),
        browser: Default::default(),
    })
});

fuzz_target!(|data: &[u8]| {
    let [path, auth, kind, encoding, rest @ ..] = data else {
        return;
    };
    let (header_bytes, body) = rest.split_at(rest.len().min(64));
    // Any bytes a client could put in a header (no CR, LF or NUL): invalid ones are skipped.
    let header = HeaderValue::from_bytes(header_bytes).ok();
    thread_local! {
        static SYSTEM: actix_rt::SystemRunner = actix_rt::System::new();
    }
    SYSTEM.with(|system| system.block_on(async {
        let app = test::init_service(App::new().configure(configure(STATE.clone()))).await;
        let mut request = test::TestRequest::post().uri(PATHS[*path as usize % PATHS.len()]);
        let with = |request: test::TestRequest, name: &str| match &header {
            Some(value) => request.insert_header((name, value.clone())),
            None => request,
        };
        request = match auth % 4 {
            1 => with(request, "authorization"),
            2 => request.insert_header(("authorization", "Basic ZnV6ei13cml0ZS1rZXktMDEyMzQ1Njc4OTo=")),
            3 => with(request, "x-forwarded-for"),
            _ => request,
        };
        request = match kind % 4 {
            0 => request.insert_header(("content-type", "application/json")),
            1 => request.insert_header(("content-type", "text/plain")),
            2 => with(request, "content-type"),
            _ => request,
        };
        request = match encoding % 4 {
            1 => request.insert_header(("content-encoding", "gzip")),
            2 => with(request, "content-encoding"),
            3 => with(request, "traceparent"),
            _ => request,
        };
        let response = test::call_service(&app, request.set_payload(body.to_vec()).to_request()).await;
        let status = response.status();
        let bytes = test::read_body(response).await;
        if !status.is_success() {
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("refusals are JSON");
            assert!(value.is_object(), "{status}: {value}");
        }
    }));
});
