//! Webhook sources against a real Kafka broker (tansu), with payloads written from each
//! provider's documentation (tests/fixtures/webhooks) signed here as the provider signs
//! them: accepted and mapped, refused when tampered, signed with another secret,
//! expired or replayed, a provider's retry kept as the same messageId, and a payload
//! the mapping can't use written to the dead-letter topic with the reason.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, test};
use base64::Engine;
use hmac::{Hmac, Mac};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use serde_json::{Value, json};
use sha2::Sha256;
use switchyard_config::{KafkaConfig, SourceConfig};
use switchyard_ingest::{IngestState, KafkaSink, SourceRegistry, configure};
use switchyard_schemas::Limits;
use switchyard_testkit::{Tansu, header, read_until, unique_topic};

const SECRET: &str = "whsec_switchyard_test_0123456789";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/webhooks/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn hmac256(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn stripe_signature(secret: &str, at: i64, body: &[u8]) -> String {
    format!(
        "t={at},v1={}",
        hex::encode(hmac256(secret, &[format!("{at}.").as_bytes(), body]))
    )
}

/// `t=..,v1=<hex>` with the hex in upper case (hex decoders take either).
fn upper_case_signature(signed: &str) -> String {
    let (time, signature) = signed.split_once(",v1=").expect("a v1 signature");
    format!("{time},v1={}", signature.to_uppercase())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn source(id: &str, settings: Value) -> SourceConfig {
    serde_json::from_value(json!({"id": id, "kind": "webhook", "webhook": settings})).expect("source")
}

fn state(kafka: &KafkaConfig, dead_letters: &str) -> Arc<IngestState> {
    let sources = [
        source("stripe", json!({"preset": "stripe", "secret": SECRET})),
        source("github", json!({"preset": "github", "secret": SECRET})),
        source("shopify", json!({"preset": "shopify", "secret": SECRET})),
        source("intercom", json!({"preset": "intercom", "secret": SECRET})),
        source(
            "billing",
            json!({"preset": "generic", "secret": SECRET, "signature_header": "x-billing-signature",
                   "mapping": ".event.event = (\"Invoice \" + .payload.status) ?? \"Invoice\"\n.event.properties.plan = .payload.plan"}),
        ),
    ];
    let limits = Limits::default();
    Arc::new(IngestState {
        sources: SourceRegistry::new(&sources, limits.max_batch_events),
        sink: KafkaSink::new(kafka).expect("producer"),
        limits,
        trusted_proxies: 0,
        refused: Default::default(),
        dead_letter_topic: Some(dead_letters.to_string()),
        replays: Default::default(),
        browser: Default::default(),
    })
}

fn post(source: &str, body: &[u8], headers: &[(&str, String)]) -> test::TestRequest {
    let mut request = test::TestRequest::post()
        .uri(&format!("/v1/webhooks/{source}"))
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_vec());
    for (name, value) in headers {
        request = request.insert_header((*name, value.clone()));
    }
    request
}

fn value(record: &OwnedMessage) -> Value {
    serde_json::from_slice(record.payload().expect("payload")).expect("JSON")
}

#[actix_web::test]
async fn signed_deliveries_are_mapped_and_everything_else_refused_or_dead_lettered() {
    let broker = Tansu::start();
    let mut kafka = KafkaConfig::new(broker.brokers());
    kafka.topic = unique_topic("webhooks");
    kafka.delivery_timeout_ms = 5_000;
    let dead_letters = format!("{}.dead", kafka.topic);
    broker.create_topic(&kafka.topic, 1).await;
    broker.create_topic(&dead_letters, 1).await;
    let state = state(&kafka, &dead_letters);
    let app = test::init_service(App::new().configure(configure(state.clone()))).await;
    let status = |response: actix_web::dev::ServiceResponse| response.status();

    // Stripe: accepted once, then every kind of forgery refused with the reason.
    let stripe = fixture("stripe_charge_succeeded");
    let signed = stripe_signature(SECRET, now(), &stripe);
    let response = test::call_service(
        &app,
        post("stripe", &stripe, &[("stripe-signature", signed.clone())]).to_request(),
    )
    .await;
    assert_eq!(status(response), StatusCode::OK);
    let mut tampered = stripe.clone();
    let at = tampered.windows(4).position(|w| w == b"1099").expect("amount");
    tampered[at..at + 4].copy_from_slice(b"9999");
    for (name, body, signature, reason) in [
        ("tampered body", tampered.clone(), signed.clone(), "matches"),
        (
            "wrong secret",
            stripe.clone(),
            stripe_signature("whsec_someone_else", now(), &stripe),
            "matches",
        ),
        (
            "expired",
            stripe.clone(),
            stripe_signature(SECRET, now() - 400, &stripe),
            "tolerance",
        ),
        ("replayed", stripe.clone(), signed.clone(), "replay"),
        // The same MAC spelled in upper-case hex, and again behind a decoy: still the same
        // signature, so still a replay.
        (
            "replayed in upper case",
            stripe.clone(),
            upper_case_signature(&signed),
            "replay",
        ),
        (
            "replayed behind a decoy",
            stripe.clone(),
            signed.replacen(",v1=", ",v1=00ff,v1=", 1),
            "replay",
        ),
        ("unsigned", stripe.clone(), String::new(), "missing"),
    ] {
        let headers = if signature.is_empty() {
            vec![]
        } else {
            vec![("stripe-signature", signature)]
        };
        let response = test::call_service(&app, post("stripe", &body, &headers).to_request()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = test::read_body_json(response).await;
        assert_eq!(body["code"], "bad_signature", "{name}");
        assert!(
            body["message"].as_str().expect("message").contains(reason),
            "{name}: {body}"
        );
    }

    // GitHub, delivered twice (a provider retry): same messageId both times.
    let github = fixture("github_issues_opened");
    let github_headers = [
        ("x-github-event", "issues".to_string()),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(hmac256(SECRET, &[&github]))),
        ),
    ];
    for _ in 0..2 {
        let response = test::call_service(&app, post("github", &github, &github_headers).to_request()).await;
        assert_eq!(status(response), StatusCode::OK);
    }
    let shopify = fixture("shopify_orders_create");
    let shopify_headers = [
        ("x-shopify-topic", "orders/create".to_string()),
        (
            "x-shopify-webhook-id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".to_string(),
        ),
        (
            "x-shopify-hmac-sha256",
            base64::engine::general_purpose::STANDARD.encode(hmac256(SECRET, &[&shopify])),
        ),
    ];
    assert_eq!(
        status(test::call_service(&app, post("shopify", &shopify, &shopify_headers).to_request()).await),
        StatusCode::OK
    );
    let intercom = fixture("intercom_conversation_user_created");
    let mut sha1 = Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes()).expect("key");
    sha1.update(&intercom);
    let intercom_headers = [(
        "x-hub-signature",
        format!("sha1={}", hex::encode(sha1.finalize().into_bytes())),
    )];
    assert_eq!(
        status(test::call_service(&app, post("intercom", &intercom, &intercom_headers).to_request()).await),
        StatusCode::OK
    );
    let invoice = br#"{"id": "inv_77", "status": "paid", "plan": "pro", "userId": "acct-9"}"#;
    let billing_headers = [(
        "x-billing-signature",
        format!("sha256={}", hex::encode(hmac256(SECRET, &[invoice]))),
    )];
    assert_eq!(
        status(test::call_service(&app, post("billing", invoice, &billing_headers).to_request()).await),
        StatusCode::OK
    );

    // A signed Stripe event the mapping can't use: dead-lettered with the reason, 200.
    let unmappable = br#"{"id": "evt_no_type", "object": "event", "data": {"object": {"id": "ch_1"}}}"#;
    let response = test::call_service(
        &app,
        post(
            "stripe",
            unmappable,
            &[("stripe-signature", stripe_signature(SECRET, now(), unmappable))],
        )
        .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["dead_lettered"], "the payload has no type");
    let unknown = test::call_service(&app, post("nobody", b"{}", &[]).to_request()).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let landed = read_until(&broker.brokers(), &kafka.topic, Duration::from_secs(15), |r| {
        r.len() >= 6
    });
    let events: Vec<Value> = landed.iter().map(value).collect();
    assert_eq!(events.len(), 6, "{events:#?}");
    let by_source = |source: &str| -> Vec<Value> {
        landed
            .iter()
            .filter(|r| header(r, "switchyard-source-id").as_deref() == Some(source))
            .map(value)
            .collect()
    };
    let charge = &by_source("stripe")[0];
    assert_eq!(charge["type"], "track");
    assert_eq!(charge["event"], "Charge Succeeded");
    assert_eq!(charge["messageId"], "evt_3MtwBwLkdIwHu7ix28a3tqPa");
    assert_eq!(charge["userId"], "cus_NffrFeUfNV2Hib");
    assert_eq!(charge["properties"]["amount"], 1099);
    assert_eq!(charge["properties"]["currency"], "usd");
    assert!(charge["receivedAt"].is_string(), "enriched like any event: {charge}");
    let issues = by_source("github");
    assert_eq!(issues.len(), 2);
    assert_eq!(
        issues[0]["messageId"], issues[1]["messageId"],
        "a retry is the same event to dedup"
    );
    assert_eq!(issues[0]["event"], "Issues Opened");
    assert_eq!(issues[0]["userId"], "octocat");
    assert_eq!(issues[0]["properties"]["repository"], "octocat/Hello-World");
    let order = &by_source("shopify")[0];
    assert_eq!(
        (order["event"].as_str(), order["userId"].as_str()),
        (Some("Orders Create"), Some("115310627314723954"))
    );
    assert_eq!(order["messageId"], "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
    let conversation = &by_source("intercom")[0];
    assert_eq!(conversation["event"], "Conversation User Created");
    assert_eq!(conversation["userId"], "25");
    let invoice = &by_source("billing")[0];
    assert_eq!(invoice["event"], "Invoice paid", "the source's VRL mapping ran");
    assert_eq!(invoice["properties"]["plan"], "pro");
    assert_eq!(invoice["userId"], "acct-9");

    let dead = read_until(&broker.brokers(), &dead_letters, Duration::from_secs(15), |r| {
        !r.is_empty()
    });
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header(&dead[0], "switchyard-dead-letter-reason").as_deref(),
        Some("the payload has no type")
    );
    assert_eq!(
        header(&dead[0], "switchyard-dead-letter-stage").as_deref(),
        Some("ingest_webhook_mapping")
    );
    assert_eq!(dead[0].payload(), Some(&unmappable[..]), "the delivery kept as it came");

    let refused: std::collections::HashMap<_, _> = state.refused.counts().into_iter().collect();
    assert_eq!(refused["bad_signature"], 7, "every bad signature counted");
}
