//! TLS to a webhook destination against a real HTTPS receiver with a test CA (rcgen):
//! mutual TLS delivers with the right client certificate, and every handshake failure is
//! a permanent error whose reason says what to fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_actors::destination::webhook::WebhookClient;
use switchyard_actors::destination::{DestinationTls, TlsVersion, WebhookConfig};
use switchyard_actors::{DestinationConfig, EgressPolicy};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca certificate");
        Ca { cert, key }
    }

    /// A leaf certificate (PEM chain, PEM key) for these names, signed by this CA.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTPS receiver on 127.0.0.1 that requires a client certificate from `client_ca`
/// (when given) and speaks only `versions`. Returns its URL and a count of requests.
fn receiver(
    server: &Ca,
    client_ca: Option<&Ca>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (String, Arc<AtomicUsize>) {
    let (chain, key) = server.issue(&["127.0.0.1"]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("ca der"))
                .expect("client ca");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).expect("server config");
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().route(
            "/hook",
            web::post().to(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { HttpResponse::Ok().finish() }
            }),
        )
    })
    .workers(1)
    .bind_rustls_0_23(("127.0.0.1", 0), config)
    .expect("bind");
    let port = server.addrs()[0].port();
    actix_rt::spawn(server.run());
    (format!("https://127.0.0.1:{port}/hook"), received)
}

fn webhook(url: &str, tls: DestinationTls) -> WebhookConfig {
    serde_json::from_value::<WebhookConfig>(serde_json::json!({ "url": url }))
        .map(|config| WebhookConfig { tls, ..config })
        .expect("webhook config")
}

async fn post(config: WebhookConfig) -> Result<(), switchyard_actors::destination::DeliveryError> {
    let loopback = EgressPolicy::default().allowing(&["127.0.0.0/8"]);
    let client = WebhookClient::new(Arc::new(config), Arc::new(loopback)).expect("client");
    client.send(br#"{"type":"track","event":"TLS"}"#.to_vec()).await
}

#[actix_rt::test]
async fn mutual_tls_delivers_with_the_right_client_certificate_and_fails_clearly_without() {
    let (server_ca, client_ca, stranger_ca) = (Ca::new("server ca"), Ca::new("client ca"), Ca::new("stranger"));
    let (url, received) = receiver(&server_ca, Some(&client_ca), rustls::DEFAULT_VERSIONS);
    let (cert, key) = client_ca.issue(&["switchyard-client"]);
    let trusted = DestinationTls {
        ca_pem: Some(server_ca.pem()),
        client_cert_pem: Some(cert),
        client_key_pem: Some(key),
        min_version: TlsVersion::Tls12,
    };
    post(webhook(&url, trusted.clone())).await.expect("delivered over mTLS");
    assert_eq!(received.load(Ordering::SeqCst), 1);

    let without_cert = DestinationTls {
        client_cert_pem: None,
        client_key_pem: None,
        ..trusted.clone()
    };
    let error = post(webhook(&url, without_cert)).await.expect_err("refused");
    assert!(!error.retryable, "a refused handshake is permanent: {error:?}");
    assert!(error.reason.contains("client certificate"), "{}", error.reason);

    let (wrong_cert, wrong_key) = stranger_ca.issue(&["switchyard-client"]);
    let wrong = DestinationTls {
        client_cert_pem: Some(wrong_cert),
        client_key_pem: Some(wrong_key),
        ..trusted.clone()
    };
    let error = post(webhook(&url, wrong)).await.expect_err("refused");
    assert!(
        !error.retryable && error.reason.contains("TLS handshake failed"),
        "{error:?}"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        1,
        "no request got through without the right certificate"
    );
}

#[actix_rt::test]
async fn an_untrusted_server_certificate_is_a_permanent_failure_naming_the_ca_setting() {
    let server_ca = Ca::new("private ca");
    let (url, received) = receiver(&server_ca, None, rustls::DEFAULT_VERSIONS);
    // The public roots don't know the private CA.
    let error = post(webhook(&url, DestinationTls::default()))
        .await
        .expect_err("untrusted");
    assert!(!error.retryable, "{error:?}");
    assert!(error.reason.contains("tls.ca_pem"), "{}", error.reason);
    // Trusting another private CA doesn't help either.
    let other = DestinationTls {
        ca_pem: Some(Ca::new("other").pem()),
        ..Default::default()
    };
    assert!(!post(webhook(&url, other)).await.expect_err("untrusted").retryable);
    let trusted = DestinationTls {
        ca_pem: Some(server_ca.pem()),
        ..Default::default()
    };
    post(webhook(&url, trusted)).await.expect("trusted");
    assert_eq!(received.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn min_version_1_3_refuses_a_server_that_speaks_only_tls_1_2() {
    let server_ca = Ca::new("ca");
    let (url, received) = receiver(&server_ca, None, &[&rustls::version::TLS12]);
    let mut tls = DestinationTls {
        ca_pem: Some(server_ca.pem()),
        ..Default::default()
    };
    post(webhook(&url, tls.clone()))
        .await
        .expect("TLS 1.2 is allowed by default");
    tls.min_version = TlsVersion::Tls13;
    let error = post(webhook(&url, tls)).await.expect_err("1.2 refused");
    assert!(!error.retryable && error.reason.contains("min_version"), "{error:?}");
    assert_eq!(received.load(Ordering::SeqCst), 1);
}

#[test]
fn plain_http_needs_the_operators_consent_and_bad_pem_names_its_field() {
    let config = |extra: serde_json::Value| {
        let mut value = serde_json::json!({
            "id": "hook", "sources": [], "kind": "webhook",
            "url": "http://127.0.0.1:9/hook",
        });
        value
            .as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        serde_json::from_value::<DestinationConfig>(value).expect("destination")
    };
    let loopback = EgressPolicy::default().allowing(&["127.0.0.0/8"]);
    let error = config(serde_json::json!({}))
        .validate(0, &Default::default(), &loopback)
        .expect_err("plain http");
    assert!(error.to_string().contains("allow_plain_http_hosts"), "{error}");
    let operator_allows = loopback.clone().allowing_plain_http(&["127.0.0.1"]);
    config(serde_json::json!({}))
        .validate(0, &Default::default(), &operator_allows)
        .expect("allowed when the operator says so");
    let error = config(serde_json::json!({"tls": {"ca_pem": "garbage"}}))
        .validate(3, &Default::default(), &operator_allows)
        .expect_err("bad pem");
    assert!(error.to_string().starts_with("destinations[3].tls.ca_pem"), "{error}");
}
