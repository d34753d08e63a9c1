//! The HTTP webhook client: JSON POST, signed, with the destination's credentials, and
//! every failure classified as worth retrying or not.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_http::error::ParseError;
use awc::error::{ConnectError, SendRequestError};
use awc::http::StatusCode;
use awc::http::header::{self, HeaderName, HeaderValue};
use futures::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchyard_schemas::Event;

use crate::destination::config::{EgressPolicy, WebhookConfig};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};

pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";

/// How long an address the policy passed is used before the host is looked up again.
const CHECKED_ADDRESS_FOR: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct WebhookClient {
    config: Arc<WebhookConfig>,
    client: awc::Client,
    egress: Arc<EgressPolicy>,
    host: Arc<str>,
    port: u16,
    /// The last address the policy passed for the host, and when: a lookup per request
    /// would put a DNS round trip on every delivery. Only a checked address is kept, so
    /// every connection still goes where the policy allowed.
    checked: Arc<Mutex<Option<(Instant, SocketAddr)>>>,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// Must be created on the actor's own thread (the HTTP client is thread-local).
    /// Requests resolve the host, check every address against `egress`, and connect to
    /// the checked one (see [`WebhookClient::address`]).
    pub fn new(config: Arc<WebhookConfig>, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let url = url::Url::parse(&config.url).map_err(|e| format!("url: {e}"))?;
        egress.check_scheme(&url).map_err(|e| e.to_string())?;
        let host: Arc<str> = Arc::from(url.host_str().ok_or("url: no host")?);
        let port = url.port_or_known_default().unwrap_or(443);
        let tls = crate::destination::config::client_config(&config.tls).map_err(|e| e.to_string())?;
        let client = awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(tls))
            .timeout(Duration::from_millis(config.timeout_ms))
            // A redirect could lead to an address the destination check never saw.
            .disable_redirects()
            .finish();
        Ok(WebhookClient {
            config,
            client,
            egress,
            host,
            port,
            checked: Arc::default(),
        })
    }

    /// The address to connect to: a recently checked one, else the host resolved and
    /// checked now (the name may point elsewhere than when the destination was saved:
    /// DNS rebinding).
    async fn address(&self) -> Result<SocketAddr, DeliveryError> {
        let cached = *self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addr)) = cached
            && at.elapsed() < CHECKED_ADDRESS_FOR
        {
            return Ok(addr);
        }
        let addrs = self
            .egress
            .resolve_async(&self.host, self.port)
            .await
            .map_err(|error| DeliveryError::egress(error.to_string(), &error))?;
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), addrs[0]));
        Ok(addrs[0])
    }

    /// The request body for these events: one event as itself, several as a batch.
    pub fn body(&self, events: &[Arc<Event>]) -> Result<Vec<u8>, serde_json::Error> {
        match events {
            [single] if self.config.batch_max_events == 1 => serde_json::to_vec(single.as_ref()),
            many => {
                #[derive(serde::Serialize)]
                struct Batch<'a> {
                    batch: Vec<&'a Event>,
                }
                serde_json::to_vec(&Batch {
                    batch: many.iter().map(Arc::as_ref).collect(),
                })
            }
        }
    }

    pub async fn send(self, body: Vec<u8>) -> Result<(), DeliveryError> {
        // The request goes to the checked address; the URL's host still names the server
        // for TLS and the Host header.
        let mut request = self
            .client
            .post(&self.config.url)
            .address(self.address().await?)
            .insert_header((header::CONTENT_TYPE, "application/json"));
        for (name, value) in &self.config.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) else {
                return Err(DeliveryError::permanent(format!(
                    "header {name:?} is not a valid HTTP header"
                )));
            };
            request = request.insert_header((name, value));
        }
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        }
        if let Some(basic) = &self.config.basic_auth {
            request = request.basic_auth(&basic.username, &basic.password);
        }
        if let Some(secret) = &self.config.signing_secret {
            request = request.insert_header((SIGNATURE_HEADER, signature(secret, unix_now(), &body)));
        }
        let mut response = request.send_body(body).await.map_err(|error| {
            // The server may have moved: look the host up again before the retry.
            *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = None;
            classify_send_error(error)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let snippet = response
            .body()
            .limit(64 * 1024)
            .await
            .map(|bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned())
            .unwrap_or_default();
        let reason = format!("HTTP {}: {}", status.as_u16(), snippet.trim());
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
        {
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(parse_retry_after);
            return Err(DeliveryError {
                retryable: true,
                reason,
                retry_after,
            });
        }
        if status.is_redirection() {
            return Err(DeliveryError::permanent(format!(
                "{reason} (redirects are not followed)"
            )));
        }
        Err(DeliveryError::permanent(reason))
    }
}

impl Kind for WebhookClient {
    type Settings = WebhookConfig;

    fn connect(settings: &WebhookConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        WebhookClient::new(Arc::new(settings.clone()), egress.clone())
    }
}

impl Delivery for WebhookClient {
    fn batching(&self) -> Batching {
        Batching::events(self.config.batch_max_events)
    }

    fn deliver(&self, _: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let body = match self.body(&events) {
            Ok(body) => body,
            Err(error) => {
                let error = DeliveryError::permanent(format!("event could not be encoded: {error}"));
                return Box::pin(futures::future::ready(Answer::Failed(error)));
            }
        };
        let client = self.clone();
        Box::pin(async move { Answer::from(client.send(body).await) })
    }
}

fn classify_send_error(error: SendRequestError) -> DeliveryError {
    match error {
        SendRequestError::Url(url) => DeliveryError::permanent(format!("invalid URL: {url}")),
        SendRequestError::Timeout => DeliveryError::retryable("timed out waiting for the response".into()),
        SendRequestError::Connect(ConnectError::Io(error)) => io_failure("connect failed", error),
        SendRequestError::Send(error) => io_failure("sending failed", error),
        SendRequestError::Response(ParseError::Io(error)) => io_failure("reading the response failed", error),
        SendRequestError::Connect(error) => DeliveryError::retryable(format!("connect failed: {error}")),
        other => DeliveryError::retryable(format!("request failed: {other}")),
    }
}

/// A failed TLS handshake is permanent: the next attempt meets the same certificate.
fn io_failure(stage: &str, error: std::io::Error) -> DeliveryError {
    match tls_failure(&error) {
        Some(reason) => DeliveryError::permanent(reason),
        None => DeliveryError::retryable(format!("{stage}: {error}")),
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date: header::HttpDate = value.parse().ok()?;
    SystemTime::from(date).duration_since(SystemTime::now()).ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail; `Mac::new` with
    // a fixed-size key would need the key's length at compile time.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The TLS failure behind a transport error, if there is one. A handshake that fails
/// (untrusted or expired certificate, a client certificate refused, no common version)
/// fails the same way on every attempt, so the caller treats it as permanent.
pub fn tls_failure(error: &std::io::Error) -> Option<String> {
    let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match tls {
        rustls::Error::InvalidCertificate(_) => " (the destination's certificate is not trusted: check tls.ca_pem)",
        rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => " (the destination refused our client certificate: check tls.client_cert_pem)",
        rustls::Error::PeerIncompatible(_)
        | rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
            " (no TLS version both sides accept: check tls.min_version)"
        }
        _ => "",
    };
    Some(format!("TLS handshake failed: {tls}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let expected = "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686";
        assert_eq!(signature("secret", 1_700_000_000, br#"{"a":1}"#), expected);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon"), None);
        let future = header::HttpDate::from(SystemTime::now() + Duration::from_secs(120)).to_string();
        let parsed = parse_retry_after(&future).expect("a date in the future");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
    }
}
