//! One trace across the Kafka hop: the caller's span → ingest → the source supervisor
//! → the delivery attempt, exported over OTLP/HTTP to a receiver in this test that
//! decodes the protobuf requests.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use support::{Behaviour, Receiver, Switchyard, broker_with_topics, pipeline_config};

const KEY: &str = "traces-write-key-0123456789";

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn collect(body: web::Bytes, spans: web::Data<Spans>) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut seen = spans.lock().expect("not poisoned");
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Value::StringValue(text)) => text.clone(),
                            Some(Value::IntValue(number)) => number.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect();
                seen.push(Span {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    attributes,
                });
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

/// An OTLP/HTTP receiver on 127.0.0.1; returns its base URL and what it received.
fn otlp_receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let data = web::Data::new(spans.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .app_data(web::PayloadConfig::new(16 << 20))
                    .route("/v1/traces", web::post().to(collect))
            })
            .workers(1)
            .bind("127.0.0.1:0")
            .expect("bind");
            let _ = tx.send(server.addrs()[0]);
            server.run().await
        })
    });
    let addr = rx.recv().expect("receiver address");
    (format!("http://{addr}"), spans)
}

#[actix_web::test]
async fn one_trace_runs_from_the_callers_span_through_kafka_to_the_delivery() {
    let (broker, topic) = broker_with_topics("traces", 1).await;
    let hook = Receiver::start(Behaviour::Healthy);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "{pipeline}\
             [[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n\n\
             [[destinations]]\nid = \"hook\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{hook_url}\"\n",
            pipeline = pipeline_config(&broker.brokers(), &topic),
            hook_url = hook.url()
        ),
    )
    .expect("write config");
    let (otlp, spans) = otlp_receiver();
    let switchyard = Switchyard::start_with_env(
        "run",
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );

    let (trace_id, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = awc::Client::default()
        .post(format!(
            "{}/v1/track",
            switchyard.ingest_url.as_deref().expect("ingest")
        ))
        .basic_auth(KEY, "")
        .insert_header(("traceparent", format!("00-{trace_id}-{caller_span}-01")))
        .send_json(&serde_json::json!({"userId": "u-1", "event": "Traced", "messageId": "traced-1"}))
        .await
        .expect("ingest answers");
    assert_eq!(response.status().as_u16(), 200);

    let deadline = Instant::now() + Duration::from_secs(30);
    let find = |spans: &[Span], name: &str| spans.iter().find(|s| s.name == name && s.trace_id == trace_id).cloned();
    let (ingest, route, deliver) = loop {
        let seen = spans.lock().expect("not poisoned").clone();
        if let (Some(i), Some(r), Some(d)) = (find(&seen, "ingest"), find(&seen, "route"), find(&seen, "deliver")) {
            break (i, r, d);
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace never all arrived: {seen:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ingest.parent, caller_span, "ingest continues the caller's span");
    assert_eq!(
        route.parent, ingest.span_id,
        "the supervisor continues ingest's span across Kafka"
    );
    assert_eq!(
        deliver.parent, route.span_id,
        "the delivery attempt continues the supervisor's span"
    );
    assert_eq!(ingest.attributes.get("source_id").map(String::as_str), Some("shop"));
    assert_eq!(route.attributes.get("message_id").map(String::as_str), Some("traced-1"));
    assert_eq!(route.attributes.get("outcome").map(String::as_str), Some("routed"));
    assert_eq!(
        deliver.attributes.get("destination_id").map(String::as_str),
        Some("hook")
    );
    assert_eq!(deliver.attributes.get("outcome").map(String::as_str), Some("delivered"));
    assert!(hook.counts().contains_key("traced-1"));
}
