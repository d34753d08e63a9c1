//! TLS to webhook destinations end to end: ingest and router against a real broker
//! (tansu), delivering to a local HTTPS receiver that requires a client certificate from
//! a test CA (rcgen). The destination with the right certificate gets every event; the
//! one without dead-letters each at once, with a reason that names the setting.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{Behaviour, Receiver, Switchyard, send_batch, track};
use switchyard_testkit::{Tansu, header, read_records, unique_topic};

const KEY: &str = "tls-destination-key-0123456789";

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("ca certificate");
        Ca { cert, key }
    }

    fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A server configuration for 127.0.0.1 that requires a client certificate from `ca`.
fn mtls_server(ca: &Ca) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = ca.issue("127.0.0.1");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("ca");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier");
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"))
        .expect("server config")
}

#[actix_web::test]
async fn mtls_destination_delivers_and_one_without_the_client_certificate_dead_letters_with_the_reason() {
    let broker = Tansu::start();
    let topic = unique_topic("dest-tls");
    let dead_letters = format!("{topic}.dead");
    broker.create_topic(&topic, 2).await;
    broker.create_topic(&dead_letters, 1).await;
    broker.create_topic(&format!("{topic}.retry"), 1).await;
    let ca = Ca::new();
    let receiver = Receiver::start_tls(Behaviour::Healthy, mtls_server(&ca));
    let (client_cert, client_key) = ca.issue("switchyard");
    let toml_string = |text: &str| toml::Value::String(text.to_string()).to_string();
    let destination = |id: &str, tls: &str| {
        format!(
            "\n[[destinations]]\nid = \"{id}\"\nsources = [\"shop\"]\nkind = \"webhook\"\nurl = \"{}\"\n\
             retry = {{ min_backoff_ms = 50, max_backoff_ms = 400 }}\n\
             tls = {{ ca_pem = {}{tls} }}\n",
            receiver.url(),
            toml_string(&ca.cert.pem()),
        )
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\ntopic = \"{topic}\"\n\n[ops]\nlisten = \"127.0.0.1:0\"\n\n[ingest]\nlisten = \"127.0.0.1:0\"\n\
         allow_plain_http = true\n\n[egress]\nallow = [\"127.0.0.0/8\"]\nallow_plain_http_hosts = [\"127.0.0.1\"]\n\n[router]\ngroup_id = \"{topic}-group\"\ndead_letter_topic = \"{dead_letters}\"\n\
         retry_topic = \"{topic}.retry\"\n\n[[sources]]\nid = \"shop\"\nwrite_key = \"{KEY}\"\n{}{}",
        broker.brokers(),
        destination(
            "mtls",
            &format!(
                ", client_cert_pem = {}, client_key_pem = {}",
                toml_string(&client_cert),
                toml_string(&client_key)
            )
        ),
        destination("no-cert", ""),
    );
    std::fs::write(&config, text).expect("write config");
    let switchyard = Switchyard::start("run", &config);
    let events: Vec<_> = (0..5).map(|n| track(&format!("tls-{n}"), "u-1")).collect();
    let started = Instant::now();
    let ingest = switchyard.ingest_url.as_deref().expect("serves ingest");
    send_batch(&awc::Client::default(), ingest, KEY, &events).await;

    let counts = receiver.wait_for(Duration::from_secs(30), |c| c.len() == events.len());
    assert_eq!(
        counts.len(),
        events.len(),
        "the mTLS destination got every event: {counts:?}"
    );
    let letters = read_records(&broker.brokers(), &dead_letters, events.len(), Duration::from_secs(30));
    assert_eq!(
        letters.len(),
        events.len(),
        "one dead letter per event of the refused destination"
    );
    // Not retried for the retry window: a handshake failure is permanent.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    for letter in &letters {
        assert_eq!(header(letter, "switchyard-destination-id").as_deref(), Some("no-cert"));
        let reason = header(letter, "switchyard-dead-letter-reason").unwrap_or_default();
        assert!(
            reason.contains("TLS handshake failed") && reason.contains("tls.client_cert_pem"),
            "{reason}"
        );
    }
}
