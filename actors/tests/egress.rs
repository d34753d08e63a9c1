//! The egress policy holds when a destination's client connects, not only when its
//! settings are saved: a webhook host that resolved to a public address at validation
//! and then to loopback (DNS rebinding) is refused at send time, against a real HTTP
//! receiver on loopback that must see nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use switchyard_actors::destination::WebhookConfig;
use switchyard_actors::destination::webhook::WebhookClient;
use switchyard_actors::{DestinationConfig, EgressPolicy};
use switchyard_egress::Resolve;

/// Answers as an attacker's DNS server would: a public address the first `public`
/// times it is asked, then the address of a service inside the operator's network.
struct Rebinding {
    asked: AtomicUsize,
    public: usize,
    internal: SocketAddr,
}

impl Resolve for Rebinding {
    fn lookup(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let n = self.asked.fetch_add(1, Ordering::SeqCst);
        let ip = if n < self.public {
            "93.184.216.34".parse().expect("ip")
        } else {
            self.internal.ip()
        };
        Ok(vec![SocketAddr::new(ip, port)])
    }
}

/// An HTTP service on loopback, standing for the metadata server or an internal API.
fn internal_service() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { HttpResponse::Ok().body("secret metadata") }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    (addr, hits)
}

fn destination(url: &str) -> DestinationConfig {
    serde_json::from_value(serde_json::json!({
        "id": "hook", "sources": ["web"], "kind": "webhook", "url": url, "bearer_token": "owner-token"
    }))
    .expect("destination")
}

#[actix_rt::test]
async fn a_webhook_host_rebound_to_loopback_after_validation_is_refused_when_it_connects() {
    let (internal, hits) = internal_service();
    let url = format!("http://rebind.example:{}/latest/meta-data", internal.port());
    let egress = Arc::new(
        EgressPolicy::default()
            .allowing_plain_http(&["rebind.example"])
            .with_resolver(Arc::new(Rebinding {
                asked: AtomicUsize::new(0),
                public: 1,
                internal,
            })),
    );
    let config = destination(&url);
    config
        .validate(0, &std::collections::HashSet::from(["web"]), &egress)
        .expect("the name looked public when saved");
    let switchyard_actors::destination::DestinationKind::Webhook(webhook) = config.kind else {
        unreachable!("a webhook")
    };
    let client = WebhookClient::new(Arc::new(webhook), egress).expect("client");
    let error = client.send(b"{}".to_vec()).await.expect_err("refused at connect");
    assert!(!error.retryable, "a blocked address stays blocked: {error:?}");
    assert!(error.reason.contains("127.0.0.1"), "{}", error.reason);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the internal service");
}

#[actix_rt::test]
async fn the_client_connects_to_the_address_it_checked() {
    // The name exists only in this resolver: the request can reach the receiver only
    // through the address the policy checked, never through a lookup of its own.
    let (internal, hits) = internal_service();
    let egress = Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["receiver.switchyard.invalid"])
            .with_resolver(Arc::new(Rebinding {
                asked: AtomicUsize::new(0),
                public: 0,
                internal,
            })),
    );
    let webhook: WebhookConfig = serde_json::from_value(serde_json::json!({
        "url": format!("http://receiver.switchyard.invalid:{}/hook", internal.port())
    }))
    .expect("webhook");
    let client = WebhookClient::new(Arc::new(webhook), egress).expect("client");
    client
        .send(b"{}".to_vec())
        .await
        .expect("delivered to the checked address");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn redirects_are_not_followed_to_an_internal_address() {
    let (internal, hits) = internal_service();
    let target = format!("http://{internal}/latest/meta-data");
    let server = HttpServer::new(move || {
        let target = target.clone();
        App::new().default_service(web::to(move || {
            let target = target.clone();
            async move { HttpResponse::Found().insert_header(("location", target)).finish() }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let redirector = server.addrs()[0];
    actix_rt::spawn(server.run());
    // The operator allows the redirector (say, an in-cluster receiver) and nothing else.
    let egress = Arc::new(
        EgressPolicy::default()
            .allowing(&[&format!("{}/32", redirector.ip())])
            .allowing_plain_http(&["127.0.0.1"]),
    );
    let webhook: WebhookConfig =
        serde_json::from_value(serde_json::json!({ "url": format!("http://{redirector}/hook") })).expect("webhook");
    let client = WebhookClient::new(Arc::new(webhook), egress).expect("client");
    let error = client.send(b"{}".to_vec()).await.expect_err("a redirect is a failure");
    assert!(error.reason.contains("redirects are not followed"), "{}", error.reason);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
