//! Settings of the HTTP edge itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchyard_schemas::Limits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key_path`, ingest serves HTTPS (TLS 1.2+).
    #[serde(default)]
    pub tls_cert_path: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_path: Option<PathBuf>,
    /// Plain HTTP must be asked for: collection endpoints carry write keys.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// How many proxies of the operator's own stand in front of ingest (a load balancer,
    /// an Ingress controller): the client address is read from `X-Forwarded-For` that
    /// many entries from the right, the part those proxies wrote. Entries further left
    /// are the client's own and never trusted. 0: the peer address.
    #[serde(default)]
    pub trusted_proxies: usize,
    /// The address browsers reach ingest at (`https://collect.example.com`), which the
    /// analytics.js settings (`/v1/projects/{writeKey}/settings`) point them to. Unset:
    /// the host each browser asked for.
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// Older name for `trusted_proxies = 1`.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// HTTP worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Events per batch request. Keep it above what analytics.js can put in one: its
    /// batching mode fills a batch up to ~450 KB (merging a retried batch with what came
    /// since), and it drops a batch answered 413 instead of retrying it.
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_event_bytes() -> usize {
    Limits::default().max_event_bytes
}
fn default_max_request_bytes() -> usize {
    Limits::default().max_request_bytes
}
fn default_max_batch_events() -> usize {
    Limits::default().max_batch_events
}

impl IngestConfig {
    /// The number of trusted proxies, counting the older `trust_forwarded_for` as one.
    pub fn proxy_hops(&self) -> usize {
        self.trusted_proxies.max(usize::from(self.trust_forwarded_for))
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            listen: default_listen(),
            tls_cert_path: None,
            tls_key_path: None,
            allow_plain_http: false,
            trusted_proxies: 0,
            public_url: None,
            trust_forwarded_for: false,
            workers: 0,
            max_event_bytes: default_max_event_bytes(),
            max_request_bytes: default_max_request_bytes(),
            max_batch_events: default_max_batch_events(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestConfigError {
    #[error("ingest.tls_cert_path and ingest.tls_key_path must be set together")]
    HalfTls,
    #[error(
        "ingest has no TLS certificate: set ingest.tls_cert_path and ingest.tls_key_path, or ingest.allow_plain_http = true for a local run"
    )]
    NoTls,
    #[error("ingest.public_url must be an http or https address with no query, credentials or fragment: {0}")]
    PublicUrl(String),
    #[error("ingest.{field} must be greater than zero")]
    ZeroLimit { field: &'static str },
}

impl IngestConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_event_bytes: self.max_event_bytes,
            max_request_bytes: self.max_request_bytes,
            max_batch_events: self.max_batch_events,
        }
    }

    pub fn tls_paths(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.tls_cert_path.as_ref().zip(self.tls_key_path.as_ref())
    }

    /// What a process serving ingest needs beyond [`IngestConfig::validate`]: TLS, or
    /// plain HTTP asked for. A router on its own serves no ingest and needs neither.
    pub fn check_listener(&self) -> Result<(), IngestConfigError> {
        if self.tls_paths().is_none() && !self.allow_plain_http {
            return Err(IngestConfigError::NoTls);
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), IngestConfigError> {
        if self.tls_cert_path.is_some() != self.tls_key_path.is_some() {
            return Err(IngestConfigError::HalfTls);
        }
        if let Some(url) = &self.public_url
            && (!matches!(url.scheme(), "http" | "https")
                || url.host_str().is_none()
                || url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
                || url.password().is_some())
        {
            return Err(IngestConfigError::PublicUrl(url.to_string()));
        }
        for (field, value) in [
            ("max_event_bytes", self.max_event_bytes),
            ("max_request_bytes", self.max_request_bytes),
            ("max_batch_events", self.max_batch_events),
        ] {
            if value == 0 {
                return Err(IngestConfigError::ZeroLimit { field });
            }
        }
        Ok(())
    }
}
