//! The collection API against a real Kafka broker (tansu): what lands in the topic,
//! and every refusal with its status and reason.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{App, test};
use base64::Engine;
use serde_json::{Value, json};
use switchyard_config::{KafkaConfig, SourceConfig};
use switchyard_ingest::{IngestState, KafkaSink, SourceRegistry, configure};
use switchyard_schemas::Limits;
use switchyard_testkit::{Tansu, header as record_header, read_records, read_until, unique_topic};

const WEB_KEY: &str = "web-write-key-0123456789";
const SLOW_KEY: &str = "slow-write-key-0123456789";

struct Harness {
    broker: Tansu,
    kafka: KafkaConfig,
}

async fn harness() -> Harness {
    let broker = Tansu::start();
    let mut kafka = KafkaConfig::new(broker.brokers());
    kafka.topic = unique_topic("ingest");
    kafka.delivery_timeout_ms = 3_000;
    broker.create_topic(&kafka.topic, 2).await;
    Harness { broker, kafka }
}

fn state(kafka: &KafkaConfig) -> Arc<IngestState> {
    let limits = Limits {
        max_batch_events: 50,
        ..Limits::default()
    };
    let sources = [
        SourceConfig {
            id: "web".into(),
            name: "Website".into(),
            write_key: WEB_KEY.into(),
            rate_limit_events_per_sec: None,
            rate_limit_burst_events: None,
            kind: Default::default(),
            webhook: None,
        },
        SourceConfig {
            id: "slow".into(),
            name: "Rate-limited app".into(),
            write_key: SLOW_KEY.into(),
            rate_limit_events_per_sec: Some(1),
            rate_limit_burst_events: Some(50),
            kind: Default::default(),
            webhook: None,
        },
    ];
    Arc::new(IngestState {
        sources: SourceRegistry::new(&sources, limits.max_batch_events),
        sink: KafkaSink::new(kafka).expect("producer"),
        limits,
        trusted_proxies: 0,
        refused: Default::default(),
        dead_letter_topic: None,
        replays: Default::default(),
        browser: Default::default(),
    })
}

fn basic(key: &str) -> (header::HeaderName, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    (header::AUTHORIZATION, format!("Basic {encoded}"))
}

macro_rules! service {
    ($state:expr) => {
        test::init_service(
            App::new()
                .wrap(switchyard_ingest::server::cors())
                .configure(configure($state)),
        )
        .await
    };
}

async fn error_body<B: actix_web::body::MessageBody>(response: actix_web::dev::ServiceResponse<B>) -> Value {
    let body = test::read_body(response).await;
    serde_json::from_slice(&body).expect("error bodies are JSON")
}

fn records(harness: &Harness, expected: usize) -> Vec<rdkafka::message::OwnedMessage> {
    read_records(
        &harness.broker.brokers(),
        &harness.kafka.topic,
        expected,
        Duration::from_secs(15),
    )
}

fn value(record: &rdkafka::message::OwnedMessage) -> Value {
    use rdkafka::Message;
    serde_json::from_slice(record.payload().expect("payload")).expect("value is JSON")
}

fn key(record: &rdkafka::message::OwnedMessage) -> String {
    use rdkafka::Message;
    String::from_utf8_lossy(record.key().expect("key")).into_owned()
}

/// Proves a refusal wrote nothing without waiting on a timeout: a valid event sent
/// afterwards, with the same key (so the same partition, in order), must be the first
/// record of that key in the topic.
macro_rules! assert_only_sentinel_landed {
    ($app:expr, $harness:expr) => {{
        let request = test::TestRequest::post()
            .uri("/v1/track")
            .insert_header(basic(WEB_KEY))
            .set_json(json!({"userId": "u", "event": "Sentinel"}))
            .to_request();
        assert_eq!(test::call_service($app, request).await.status(), StatusCode::OK);
        let landed = read_until(&$harness.broker.brokers(), &$harness.kafka.topic, Duration::from_secs(15), |records| {
            records.iter().any(|r| value(r)["event"] == "Sentinel")
        });
        let events: Vec<Value> = landed.iter().map(value).collect();
        assert_eq!(events.len(), 1, "refused requests wrote records: {events:?}");
        assert_eq!(events[0]["event"], "Sentinel");
    }};
}

#[actix_web::test]
async fn a_tracked_event_lands_with_its_key_headers_and_fields() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = test::TestRequest::post()
        .uri("/v1/track")
        .insert_header(basic(WEB_KEY))
        .insert_header(("traceparent", parent))
        .peer_addr("198.51.100.23:5000".parse().expect("addr"))
        .set_json(json!({
            "userId": "u-1", "event": "Order Completed", "messageId": "msg-1",
            "properties": {"revenue": 12.5, "items": [{"sku": "a"}]},
            "timestamp": "2024-05-01T12:00:00Z", "sentAt": "2024-05-01T12:00:05Z",
            "customTopLevel": {"kept": true}
        }))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);

    let landed = records(&harness, 1);
    assert_eq!(landed.len(), 1);
    let record = &landed[0];
    assert_eq!(key(record), "web/u-1");
    assert_eq!(record_header(record, "switchyard-source-id").as_deref(), Some("web"));
    assert_eq!(record_header(record, "switchyard-schema-version").as_deref(), Some("1"));
    assert_eq!(record_header(record, "switchyard-message-id").as_deref(), Some("msg-1"));
    assert_eq!(record_header(record, "switchyard-event-type").as_deref(), Some("track"));
    let traceparent = record_header(record, "traceparent").expect("traceparent");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert_ne!(traceparent, parent, "ingest adds its own span");

    let event = value(record);
    assert_eq!(event["type"], "track");
    assert_eq!(event["event"], "Order Completed");
    assert_eq!(event["properties"], json!({"revenue": 12.5, "items": [{"sku": "a"}]}));
    assert_eq!(event["customTopLevel"], json!({"kept": true}));
    assert_eq!(event["originalTimestamp"], "2024-05-01T12:00:00.000Z");
    assert_eq!(event["context"]["ip"], "198.51.100.23");
    assert!(event["receivedAt"].is_string());
    assert!(event.get("writeKey").is_none());
}

#[actix_web::test]
async fn a_browser_batch_as_text_plain_with_the_key_in_the_body_lands_whole() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let body = json!({
        "writeKey": WEB_KEY,
        "sentAt": "2024-05-01T12:00:00Z",
        "context": {"library": {"name": "analytics.js"}},
        "batch": [
            {"type": "identify", "anonymousId": "a-1", "traits": {"plan": "free"}, "writeKey": WEB_KEY},
            {"type": "page", "anonymousId": "a-1", "name": "Home"},
            {"type": "alias", "previousId": "a-1", "userId": "u-9"}
        ]
    });
    let request = test::TestRequest::post()
        .uri("/v1/b")
        .insert_header((header::CONTENT_TYPE, "text/plain;charset=UTF-8"))
        .insert_header((header::ORIGIN, "https://shop.example.com"))
        .set_payload(body.to_string())
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let landed = records(&harness, 3);
    let mut types: Vec<String> = landed
        .iter()
        .map(|r| value(r)["type"].as_str().unwrap_or_default().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["alias", "identify", "page"]);
    for record in &landed {
        let event = value(record);
        assert!(
            event.get("writeKey").is_none(),
            "the write key must not be stored: {event}"
        );
        assert_eq!(event["context"]["library"]["name"], "analytics.js");
        assert!(
            event["messageId"].as_str().is_some_and(|id| id.len() == 36),
            "a messageId is generated"
        );
    }
    let alias = landed
        .iter()
        .find(|r| value(r)["type"] == "alias")
        .expect("alias landed");
    assert_eq!(key(alias), "web/u-9");
}

#[actix_web::test]
async fn a_batch_with_one_invalid_event_is_refused_whole_and_nothing_lands() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let body = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Fine"},
        {"type": "track", "userId": "u"}
    ]});
    let request = test::TestRequest::post()
        .uri("/v1/batch")
        .insert_header(basic(WEB_KEY))
        .set_json(body)
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error = error_body(response).await;
    assert_eq!(error["code"], "missing_field");
    assert_eq!(error["index"], 1);
    assert_eq!(error["message"], "batch[1]: track needs event (a non-empty string)");
    assert_only_sentinel_landed!(&app, &harness);
}

#[actix_web::test]
async fn unknown_or_missing_write_keys_are_401() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let event = json!({"userId": "u", "event": "e"});
    let cases = [
        (Some(basic("not-a-real-key-at-all")), "invalid_write_key"),
        (
            Some((header::AUTHORIZATION, "Bearer abc".to_string())),
            "invalid_authorization",
        ),
        (None, "missing_write_key"),
    ];
    for (auth, code) in cases {
        let mut request = test::TestRequest::post().uri("/v1/track").set_json(&event);
        if let Some(auth) = auth {
            request = request.insert_header(auth);
        }
        let response = test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(error_body(response).await["code"], code);
    }
}

#[actix_web::test]
async fn limits_are_413_with_the_reason() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let big = "x".repeat(33 * 1024);
    let oversized_event =
        json!({"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"blob": big}}]});
    let too_many = json!({"batch": vec![json!({"type": "track", "userId": "u", "event": "e"}); 51]});
    let oversized_body = "y".repeat(600 * 1024);
    let cases = [
        (
            "/v1/batch",
            oversized_event.to_string(),
            "event_too_large",
            "batch[0]: event is",
        ),
        (
            "/v1/batch",
            too_many.to_string(),
            "too_many_events",
            "batch has 51 events, over the limit of 50",
        ),
        (
            "/v1/track",
            json!({"userId": "u", "event": "e", "properties": {"blob": big}}).to_string(),
            "event_too_large",
            "event is",
        ),
        (
            "/v1/batch",
            oversized_body,
            "request_too_large",
            "over the limit of 512000 bytes",
        ),
    ];
    for (uri, body, code, message) in cases {
        let request = test::TestRequest::post()
            .uri(uri)
            .insert_header(basic(WEB_KEY))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body)
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{code}");
        let error = error_body(response).await;
        assert_eq!(error["code"], code);
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(message)),
            "{error}"
        );
    }
    assert_only_sentinel_landed!(&app, &harness);
}

#[actix_web::test]
async fn a_source_over_its_rate_limit_gets_429_with_retry_after() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let batch = json!({"batch": vec![json!({"type": "track", "userId": "u", "event": "e"}); 50]});
    let first = test::TestRequest::post()
        .uri("/v1/batch")
        .insert_header(basic(SLOW_KEY))
        .set_json(&batch)
        .to_request();
    assert_eq!(test::call_service(&app, first).await.status(), StatusCode::OK);
    let second = test::TestRequest::post()
        .uri("/v1/batch")
        .insert_header(basic(SLOW_KEY))
        .set_json(&batch)
        .to_request();
    let response = test::call_service(&app, second).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get(header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    assert_eq!(error_body(response).await["code"], "rate_limited");
    // The other source is not affected.
    let other = test::TestRequest::post()
        .uri("/v1/batch")
        .insert_header(basic(WEB_KEY))
        .set_json(&batch)
        .to_request();
    assert_eq!(test::call_service(&app, other).await.status(), StatusCode::OK);
    assert_eq!(records(&harness, 100).len(), 100);
}

#[actix_web::test]
async fn gzip_bodies_are_inflated_and_bad_encodings_refused() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let batch = json!({"batch": [{"type": "screen", "userId": "u", "name": "Home"}, {"type": "group", "userId": "u", "groupId": "g"}]});
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(batch.to_string().as_bytes()).expect("in memory");
    let gzipped = encoder.finish().expect("in memory");
    let request = test::TestRequest::post()
        .uri("/v1/batch")
        .insert_header(basic(WEB_KEY))
        .insert_header((header::CONTENT_ENCODING, "gzip"))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(gzipped)
        .to_request();
    assert_eq!(test::call_service(&app, request).await.status(), StatusCode::OK);
    assert_eq!(records(&harness, 2).len(), 2);

    let brotli = test::TestRequest::post()
        .uri("/v1/batch")
        .insert_header(basic(WEB_KEY))
        .insert_header((header::CONTENT_ENCODING, "br"))
        .set_payload("whatever")
        .to_request();
    let response = test::call_service(&app, brotli).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let form = test::TestRequest::post()
        .uri("/v1/track")
        .insert_header(basic(WEB_KEY))
        .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
        .set_payload("a=b")
        .to_request();
    assert_eq!(
        test::call_service(&app, form).await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let not_json = test::TestRequest::post()
        .uri("/v1/track")
        .insert_header(basic(WEB_KEY))
        .set_payload("{nope")
        .to_request();
    let response = test::call_service(&app, not_json).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_body(response).await["code"], "invalid_json");
}

fn preflight(path: &str, headers: &str) -> test::TestRequest {
    test::TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri(path)
        .insert_header((header::ORIGIN, "https://shop.example.com"))
        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
        .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, headers))
}

#[actix_web::test]
async fn every_header_the_browser_sdks_send_passes_the_preflight_on_every_collection_path() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    // analytics.js' retry (X-Retry-Count), RudderStack's AnonymousId, trace context.
    let sdk_headers = "authorization,content-type,content-encoding,x-retry-count,traceparent,anonymousid";
    for path in [
        "/v1/t",
        "/v1/track",
        "/v1/i",
        "/v1/p",
        "/v1/s",
        "/v1/g",
        "/v1/a",
        "/v1/b",
        "/v1/batch",
        "/v1/m",
    ] {
        let response = test::call_service(&app, preflight(path, sdk_headers).to_request()).await;
        assert!(response.status().is_success(), "{path}: {}", response.status());
        let allowed = response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        for wanted in sdk_headers.split(',') {
            assert!(allowed.contains(wanted), "{path}: {wanted} not in {allowed}");
        }
        // Any site may post, but never with its cookies: nothing of one origin's
        // session is readable by another.
        assert_eq!(
            response.headers().get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None,
            "{path}"
        );
    }
    let unknown = test::call_service(&app, preflight("/v1/t", "x-made-up").to_request()).await;
    assert!(unknown.status().is_client_error(), "{}", unknown.status());
}

#[actix_web::test]
async fn analytics_js_gets_its_settings_pointed_at_this_ingest_and_unknown_keys_get_404() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let request = test::TestRequest::get()
        .uri(&format!("/v1/projects/{WEB_KEY}/settings"))
        .insert_header((header::HOST, "collect.example.com:8443"))
        .insert_header((header::ORIGIN, "https://shop.example.com"))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let settings: Value = test::read_body_json(response).await;
    let segment = &settings["integrations"]["Segment.io"];
    assert_eq!(segment["apiKey"], WEB_KEY);
    assert_eq!(segment["apiHost"], "collect.example.com:8443/v1");
    assert_eq!(segment["protocol"], "http", "no TLS here and no trusted proxy");
    assert_eq!(
        settings["metrics"]["host"], "collect.example.com:8443/v1",
        "telemetry stays here"
    );

    let unknown = |key: &str| {
        test::TestRequest::get()
            .uri(&format!("/v1/projects/{key}/settings"))
            .to_request()
    };
    let never = test::call_service(&app, unknown("no-such-write-key-0123456789")).await;
    assert_eq!(never.status(), StatusCode::NOT_FOUND);
    let never_body = test::read_body(never).await;
    let almost = test::call_service(&app, unknown(&WEB_KEY.replace('0', "1"))).await;
    assert_eq!(almost.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        test::read_body(almost).await,
        never_body,
        "the same answer whatever the key"
    );
}

#[actix_web::test]
async fn analytics_js_telemetry_is_answered_and_counted_not_stored() {
    let harness = harness().await;
    let state = state(&harness.kafka);
    let app = service!(state.clone());
    let metrics = json!({"series": [{"type": "Counter", "metric": "analytics_js.invoke", "value": 1,
                                     "tags": {"method": "track"}}]});
    let request = test::TestRequest::post()
        .uri("/v1/m")
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .set_payload(metrics.to_string())
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(state.browser.telemetry_posts(), 1);
    let huge = test::TestRequest::post()
        .uri("/v1/m")
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .set_payload(vec![b' '; 100 * 1024])
        .to_request();
    assert_eq!(
        test::call_service(&app, huge).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(state.browser.telemetry_posts(), 1);
    // Nothing of it is an event: the sentinel is the topic's first record.
    assert_only_sentinel_landed!(&app, &harness);
}

#[actix_web::test]
async fn a_stopped_broker_means_503_with_retry_after_not_a_false_200() {
    let mut harness = harness().await;
    let app = service!(state(&harness.kafka));
    let event = json!({"userId": "u", "event": "before"});
    let warm = test::TestRequest::post()
        .uri("/v1/track")
        .insert_header(basic(WEB_KEY))
        .set_json(&event)
        .to_request();
    assert_eq!(test::call_service(&app, warm).await.status(), StatusCode::OK);

    harness.broker.stop();
    let request = test::TestRequest::post()
        .uri("/v1/track")
        .insert_header(basic(WEB_KEY))
        .set_json(json!({"userId": "u", "event": "after"}))
        .to_request();
    let response = tokio_timeout(test::call_service(&app, request)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let error = error_body(response).await;
    assert_eq!(error["code"], "broker_unavailable");
}

/// The produce gives up after the 3 s delivery timeout; anything much longer is a hang.
async fn tokio_timeout<F: std::future::Future>(future: F) -> F::Output {
    actix_web::rt::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("answered within 30 s")
}

#[actix_web::test]
async fn every_single_event_path_is_served() {
    let harness = harness().await;
    let app = service!(state(&harness.kafka));
    let paths = [
        ("/v1/identify", json!({"userId": "u"})),
        ("/v1/i", json!({"userId": "u"})),
        ("/v1/track", json!({"userId": "u", "event": "e"})),
        ("/v1/t", json!({"userId": "u", "event": "e"})),
        ("/v1/page", json!({"anonymousId": "a"})),
        ("/v1/p", json!({"anonymousId": "a"})),
        ("/v1/screen", json!({"anonymousId": "a"})),
        ("/v1/s", json!({"anonymousId": "a"})),
        ("/v1/group", json!({"userId": "u", "groupId": "g"})),
        ("/v1/g", json!({"userId": "u", "groupId": "g"})),
        ("/v1/alias", json!({"userId": "u", "previousId": "p"})),
        ("/v1/a", json!({"userId": "u", "previousId": "p"})),
        (
            "/v1/import",
            json!({"batch": [{"type": "track", "userId": "u", "event": "e", "timestamp": "2019-01-01T00:00:00Z"}]}),
        ),
    ];
    for (path, body) in &paths {
        let request = test::TestRequest::post()
            .uri(path)
            .insert_header(basic(WEB_KEY))
            .set_json(body)
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let landed = records(&harness, paths.len());
    assert_eq!(landed.len(), paths.len());
}
