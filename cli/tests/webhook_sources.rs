//! A webhook source end to end: a GitHub delivery, signed as GitHub signs, posted twice
//! (GitHub's redelivery) to a running Switchyard, reaches the destination once, mapped;
//! a forged one is refused and counted.

mod support;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::{Behaviour, Receiver, Switchyard, broker_with_topics, pipeline_config};

const SECRET: &str = "github-webhook-secret-0123";

#[actix_web::test]
async fn a_redelivered_github_webhook_reaches_the_destination_once() {
    let (broker, topic) = broker_with_topics("hooks", 2).await;
    let hook = Receiver::start(Behaviour::Healthy);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "{pipeline}\
             [[sources]]\nid = \"github\"\nkind = \"webhook\"\nwebhook = {{ preset = \"github\", secret = \"{SECRET}\" }}\n\n\
             [[destinations]]\nid = \"hook\"\nsources = [\"github\"]\nkind = \"webhook\"\nurl = \"{hook_url}\"\n\
             ",
            pipeline = pipeline_config(&broker.brokers(), &topic),
            hook_url = hook.url()
        ),
    )
    .expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let (ingest, ops) = (
        switchyard.ingest_url.clone().expect("ingest"),
        switchyard.ops_url.clone().expect("ops"),
    );
    let body = br#"{"action":"opened","issue":{"number":1347,"title":"Found a bug"},"repository":{"full_name":"octocat/Hello-World"},"sender":{"login":"octocat"}}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let client = awc::Client::default();
    let send = |signature: String| {
        client
            .post(format!("{ingest}/v1/webhooks/github"))
            .insert_header(("content-type", "application/json"))
            .insert_header(("x-github-event", "issues"))
            .insert_header(("x-github-delivery", delivery))
            .insert_header(("x-hub-signature-256", signature))
            .send_body(body.to_vec())
    };
    for attempt in 0..2 {
        let response = send(signature.clone()).await.expect("ingest answers");
        assert_eq!(response.status().as_u16(), 200, "delivery {attempt}");
    }
    let forged = send(format!("sha256={}", "0".repeat(64)))
        .await
        .expect("ingest answers");
    assert_eq!(forged.status().as_u16(), 401);

    let got = hook.wait_for(Duration::from_secs(30), |counts| counts.contains_key(delivery));
    assert_eq!(got.get(delivery), Some(&1));
    // Time for a duplicate to arrive, were it going to.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hook.counts().get(delivery),
        Some(&1),
        "the redelivery was dropped as a duplicate"
    );
    let event = support::received_event(delivery).expect("the event as delivered");
    assert_eq!(event["event"], "Issues Opened");
    assert_eq!(event["userId"], "octocat");

    let mut metrics = awc::Client::default()
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = String::from_utf8(metrics.body().limit(8 << 20).await.expect("body").to_vec()).expect("utf-8");
    let refused = text
        .lines()
        .find(|line| line.contains("error_type=\"bad_signature\"") && !line.starts_with('#'))
        .unwrap_or_default();
    assert!(refused.ends_with(" 1"), "the forged delivery is counted: {refused:?}");
}
