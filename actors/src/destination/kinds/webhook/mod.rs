//! The HTTP webhook client: JSON POST, signed, with the destination's credentials, and
//! every failure classified as worth retrying or not.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awc::http::Method;
use awc::http::header::{self, HeaderName, HeaderValue};
use futures::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchyard_schemas::Event;

use crate::destination::config::{EgressPolicy, WebhookConfig};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};
use crate::destination::kinds::http::HttpTarget;
pub use crate::destination::kinds::http::tls_failure;

pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";

#[derive(Clone)]
pub struct WebhookClient {
    config: Arc<WebhookConfig>,
    target: HttpTarget,
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
    /// the checked one (see [`HttpTarget`]).
    pub fn new(config: Arc<WebhookConfig>, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let target = HttpTarget::new(&config.url, timeout, &config.tls, egress)?;
        Ok(WebhookClient { config, target })
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
        let mut request = self
            .target
            .request(Method::POST, &self.config.url)
            .await?
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
        let answer = self.target.send(request, body).await?;
        if answer.status.is_success() {
            return Ok(());
        }
        Err(answer.refused())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let expected = "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686";
        assert_eq!(signature("secret", 1_700_000_000, br#"{"a":1}"#), expected);
    }
}
