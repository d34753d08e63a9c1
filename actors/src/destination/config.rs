//! Destination settings, checked before anything starts.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, ToSocketAddrs};

pub use super::tls::{DestinationTls, TlsSettingsError, TlsVersion};
use serde::{Deserialize, Serialize};
pub use switchyard_warehouse::{ExportConfig, WarehouseConfig};

/// No `deny_unknown_fields` here: serde can't combine it with `flatten`. Unknown keys
/// still fail, in the flattened kind's settings (which deny them).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationConfig {
    /// Letters, digits, `-` and `_`.
    pub id: String,
    /// The sources this destination receives events from.
    pub sources: Vec<String>,
    #[serde(flatten)]
    pub kind: DestinationKind,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Events buffered in memory for this destination (waiting or retrying).
    #[serde(default = "default_max_buffered_events")]
    pub max_buffered_events: usize,
    /// Consecutive failed requests that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker waits before a trial request.
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// A request without an answer this long is abandoned and the actor's client is
    /// restarted; its events are sent again. Above any client timeout, so only a hung
    /// request trips it.
    #[serde(default = "default_stall_after_secs")]
    pub stall_after_secs: u64,
    /// Applied to each event before it is sent (after the source's own).
    #[serde(default)]
    pub transforms: Vec<crate::transform::TransformConfig>,
    /// `per_user`: while one of a user's events is in flight or waiting to be retried,
    /// that user's later events wait too, so they arrive in order. Other users go on.
    #[serde(default)]
    pub ordering: Ordering,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Fastest: retries can overtake later events.
    #[default]
    None,
    PerUser,
}

/// Debug goes through [`WebhookConfig`]'s, which hides credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationKind {
    Webhook(WebhookConfig),
    /// Takes every event and discards it: for measuring the router itself, and for
    /// trying a configuration without sending anything anywhere.
    Blackhole(BlackholeConfig),
    /// Another Kafka topic, on this cluster or another, with its own credentials.
    Kafka(KafkaDestinationConfig),
    /// A Postgres database in Segment's warehouse schema, loaded in batches.
    PostgresWarehouse(WarehouseConfig),
    /// Batches as gzip JSONL objects in the customer's bucket.
    ObjectStorageExport(ExportConfig),
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDestinationConfig {
    /// `host:port` list, as librdkafka's `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    /// librdkafka properties: credentials and TLS (`security.protocol`, `sasl.*`, `ssl.*`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// How long one batch may wait for the cluster before it counts as failed (and is retried).
    #[serde(default = "default_kafka_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_kafka_batch_max_events")]
    pub batch_max_events: usize,
    #[serde(default)]
    pub allow_private_network: bool,
}

/// Options hold passwords: only their names are shown.
impl std::fmt::Debug for KafkaDestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDestinationConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn default_kafka_timeout_ms() -> u64 {
    30_000
}
fn default_kafka_batch_max_events() -> usize {
    500
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Signs each body: `X-Switchyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
    /// of "<t>.<body>">`, so the receiver can check origin and refuse replays.
    #[serde(default)]
    pub signing_secret: Option<String>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// 1 posts each event as its own JSON body; more posts `{"batch": [...]}`.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Loopback and private addresses are refused unless this is set (e.g. tests, an
    /// in-cluster receiver).
    #[serde(default)]
    pub allow_private_network: bool,
    /// Events leave over TLS: an `http://` URL is refused unless this is set.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Trusted CAs, client certificate (mTLS) and minimum version for this destination.
    #[serde(default)]
    pub tls: DestinationTls,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "default_min_backoff_ms")]
    pub min_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// After this long an event still failing goes to the dead-letter topic.
    #[serde(default = "default_retry_window_secs")]
    pub retry_window_secs: u64,
    /// A server's `Retry-After` is honoured up to this long.
    #[serde(default = "default_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            min_backoff_ms: default_min_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            retry_window_secs: default_retry_window_secs(),
            max_retry_after_secs: default_max_retry_after_secs(),
        }
    }
}

fn default_concurrency() -> usize {
    8
}
fn default_max_buffered_events() -> usize {
    10_000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_stall_after_secs() -> u64 {
    120
}

fn default_breaker_cooldown_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_batch_max_events() -> usize {
    1
}
fn default_min_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    60_000
}
fn default_retry_window_secs() -> u64 {
    4 * 3600
}
fn default_max_retry_after_secs() -> u64 {
    300
}

/// Credentials stay out of logs and debug output.
impl std::fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            DestinationKind::Webhook(webhook) => format!("webhook {}", redact_url(&webhook.url)),
            DestinationKind::Blackhole(_) => "blackhole".into(),
            DestinationKind::Kafka(kafka) => format!("kafka {} topic {}", kafka.brokers, kafka.topic),
            DestinationKind::PostgresWarehouse(warehouse) => {
                format!(
                    "postgres warehouse {}",
                    switchyard_warehouse::config::redact_password(&warehouse.url)
                )
            }
            DestinationKind::ObjectStorageExport(export) => {
                format!("object storage export to bucket {}", export.bucket)
            }
        };
        f.debug_struct("DestinationConfig")
            .field("id", &self.id)
            .field("sources", &self.sources)
            .field("kind", &kind)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout_ms", &self.timeout_ms)
            .field("batch_max_events", &self.batch_max_events)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A URL's user info and query may hold credentials.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => "<unparseable url>".into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationConfigError {
    #[error("destinations[{index}].id {id:?} must be 1-64 letters, digits, '-' or '_'")]
    BadId { index: usize, id: String },
    #[error("destinations[{index}].url {url:?} is not an http(s) URL: {reason}")]
    BadUrl { index: usize, url: String, reason: String },
    #[error(
        "destinations[{index}].url resolves to private or loopback address {addr}; set allow_private_network = true to allow it"
    )]
    PrivateAddress { index: usize, addr: IpAddr },
    #[error(
        "destinations[{index}].url uses plain http, which sends events unencrypted; use https or set allow_plain_http = true"
    )]
    PlainHttp { index: usize },
    #[error("destinations[{index}].{error}")]
    BadTls { index: usize, error: TlsSettingsError },
    #[error("destinations[{index}].{field} must not be empty")]
    Empty { index: usize, field: &'static str },
    #[error("destinations[{index}].brokers: {reason}")]
    BadBrokers { index: usize, reason: String },
    #[error("destinations[{index}].{field} must be greater than zero")]
    Zero { index: usize, field: &'static str },
    #[error("destinations[{index}].sources names unknown source {source_id:?}")]
    UnknownSource { index: usize, source_id: String },
}

impl DestinationConfig {
    /// Checks the settings; resolves webhook hosts to refuse private addresses.
    pub fn validate(&self, index: usize, known_sources: &HashSet<&str>) -> Result<(), DestinationConfigError> {
        if !switchyard_schemas::config::is_valid_id(&self.id) {
            return Err(DestinationConfigError::BadId {
                index,
                id: self.id.clone(),
            });
        }
        if let Some(unknown) = self.sources.iter().find(|s| !known_sources.contains(s.as_str())) {
            return Err(DestinationConfigError::UnknownSource {
                index,
                source_id: unknown.clone(),
            });
        }
        for (field, value) in [
            ("concurrency", self.concurrency as u64),
            ("max_buffered_events", self.max_buffered_events as u64),
            ("breaker_failures", u64::from(self.breaker_failures)),
        ] {
            if value == 0 {
                return Err(DestinationConfigError::Zero { index, field });
            }
        }
        match &self.kind {
            DestinationKind::Webhook(webhook) => webhook.validate(index),
            DestinationKind::Blackhole(_) => Ok(()),
            DestinationKind::Kafka(kafka) => kafka.validate(index),
            DestinationKind::PostgresWarehouse(warehouse) => validate_warehouse(warehouse, index),
            DestinationKind::ObjectStorageExport(export) => validate_export(export, index),
        }
    }
}

impl WebhookConfig {
    fn validate(&self, index: usize) -> Result<(), DestinationConfigError> {
        let bad = |reason: String| DestinationConfigError::BadUrl {
            index,
            url: redact_url(&self.url),
            reason,
        };
        let url = url::Url::parse(&self.url).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("scheme {} is not http or https", url.scheme())));
        }
        if url.scheme() == "http" && !self.allow_plain_http {
            return Err(DestinationConfigError::PlainHttp { index });
        }
        let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(443);
        positive(index, self.batch_max_events, self.timeout_ms)?;
        super::tls::client_config(&self.tls).map_err(|error| DestinationConfigError::BadTls { index, error })?;
        if self.allow_private_network {
            return Ok(());
        }
        check_public(index, host, port).map_err(|error| error.unwrap_or_else(bad))
    }
}

/// The per-request settings every client kind has.
fn positive(index: usize, batch_max_events: usize, timeout_ms: u64) -> Result<(), DestinationConfigError> {
    if batch_max_events == 0 {
        return Err(DestinationConfigError::Zero {
            index,
            field: "batch_max_events",
        });
    }
    if timeout_ms == 0 {
        return Err(DestinationConfigError::Zero {
            index,
            field: "timeout_ms",
        });
    }
    Ok(())
}

/// Resolves `host` and refuses it if any address is loopback, private or link-local.
/// `Err(Err(reason))` when it can't be resolved.
fn check_public(index: usize, host: &str, port: u16) -> Result<(), Result<DestinationConfigError, String>> {
    let addrs = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| Err(format!("cannot resolve {host}: {e}")))?;
    for addr in addrs {
        if is_private(addr.ip()) {
            return Err(Ok(DestinationConfigError::PrivateAddress { index, addr: addr.ip() }));
        }
    }
    Ok(())
}

impl KafkaDestinationConfig {
    fn validate(&self, index: usize) -> Result<(), DestinationConfigError> {
        let bad = |reason: String| DestinationConfigError::BadBrokers { index, reason };
        if self.topic.trim().is_empty() {
            return Err(DestinationConfigError::Empty { index, field: "topic" });
        }
        positive(index, self.batch_max_events, self.timeout_ms)?;
        let brokers: Vec<&str> = self
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            return Err(bad("no broker listed".into()));
        }
        for broker in brokers {
            let (host, port) = broker
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("{broker:?} is not host:port")))?;
            let port: u16 = port.parse().map_err(|_| bad(format!("{broker:?} has no valid port")))?;
            if !self.allow_private_network {
                check_public(index, host, port).map_err(|error| error.unwrap_or_else(&bad))?;
            }
        }
        Ok(())
    }
}

/// The URL parses, its host may be reached, and the batch settings are positive.
fn validate_warehouse(config: &WarehouseConfig, index: usize) -> Result<(), DestinationConfigError> {
    let shown = switchyard_warehouse::config::redact_password(&config.url);
    let bad = |reason: String| DestinationConfigError::BadUrl {
        index,
        url: shown.clone(),
        reason,
    };
    let url = url::Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad(format!("scheme {} is not postgres", url.scheme())));
    }
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    positive(index, config.batch_max_events, config.timeout_ms)?;
    if config.max_connections == 0 {
        return Err(DestinationConfigError::Zero {
            index,
            field: "max_connections",
        });
    }
    if config.allow_private_network {
        return Ok(());
    }
    check_public(index, host, url.port().unwrap_or(5432)).map_err(|error| error.unwrap_or_else(bad))
}

fn validate_export(config: &ExportConfig, index: usize) -> Result<(), DestinationConfigError> {
    for (field, value) in [
        ("bucket", &config.bucket),
        ("access_key_id", &config.access_key_id),
        ("secret_access_key", &config.secret_access_key),
    ] {
        if value.trim().is_empty() {
            return Err(DestinationConfigError::Empty { index, field });
        }
    }
    positive(index, config.batch_max_events, config.timeout_ms)?;
    let Some(endpoint) = &config.endpoint else {
        return Ok(());
    };
    let bad = |reason: String| DestinationConfigError::BadUrl {
        index,
        url: endpoint.clone(),
        reason,
    };
    let url = url::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    if url.scheme() == "http" && !config.allow_http {
        return Err(bad("plain http needs allow_http = true".into()));
    }
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    if config.allow_private_network {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    check_public(index, host, port).map_err(|error| error.unwrap_or_else(bad))
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT, reaches inside many clusters.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str, allow: bool) -> DestinationConfig {
        DestinationConfig {
            id: "hook".into(),
            sources: vec!["web".into()],
            kind: DestinationKind::Webhook(WebhookConfig {
                url: url.into(),
                signing_secret: Some("very-secret".into()),
                bearer_token: Some("token-123".into()),
                basic_auth: None,
                headers: BTreeMap::new(),
                timeout_ms: 1000,
                batch_max_events: 1,
                allow_private_network: allow,
                allow_plain_http: true,
                tls: Default::default(),
            }),
            retry: RetryConfig::default(),
            concurrency: 1,
            max_buffered_events: 10,
            breaker_failures: 3,
            breaker_cooldown_ms: 100,
            stall_after_secs: 120,
            ordering: Ordering::None,
            transforms: Vec::new(),
        }
    }

    #[test]
    fn private_and_loopback_urls_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://10.1.2.3/x",
            "http://[::1]:80/",
            "http://169.254.169.254/latest",
        ] {
            let error = webhook(url, false)
                .validate(0, &HashSet::from(["web"]))
                .expect_err("refused");
            assert!(
                matches!(error, DestinationConfigError::PrivateAddress { .. }),
                "{url}: {error}"
            );
            assert!(
                webhook(url, true).validate(0, &HashSet::from(["web"])).is_ok(),
                "{url} allowed explicitly"
            );
        }
        assert!(
            webhook("http://203.0.113.10/hook", false)
                .validate(0, &HashSet::from(["web"]))
                .is_ok()
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let error = webhook("ftp://example.com/x", true)
            .validate(2, &HashSet::from(["web"]))
            .expect_err("refused");
        assert!(error.to_string().starts_with("destinations[2].url"), "{error}");
        let error = webhook("http://203.0.113.10/", true)
            .validate(0, &HashSet::from(["app"]))
            .expect_err("refused");
        assert_eq!(
            error,
            DestinationConfigError::UnknownSource {
                index: 0,
                source_id: "web".into()
            }
        );
    }

    #[test]
    fn debug_output_hides_credentials() {
        let printed = format!("{:?}", webhook("https://user:pass@hooks.example.com/x?key=abc", true));
        for secret in ["very-secret", "token-123", "pass", "key=abc"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
    }

    #[test]
    fn kafka_destinations_check_their_brokers_and_hide_their_options() {
        let kafka = |brokers: &str, allow: bool| DestinationConfig {
            kind: DestinationKind::Kafka(KafkaDestinationConfig {
                brokers: brokers.into(),
                topic: "events".into(),
                options: BTreeMap::from([("sasl.password".to_string(), "hunter2".to_string())]),
                timeout_ms: 1000,
                batch_max_events: 10,
                allow_private_network: allow,
            }),
            ..webhook("http://203.0.113.10/", false)
        };
        let error = kafka("127.0.0.1:9092", false)
            .validate(0, &HashSet::from(["web"]))
            .expect_err("loopback refused");
        assert!(
            matches!(error, DestinationConfigError::PrivateAddress { .. }),
            "{error}"
        );
        assert!(
            kafka("127.0.0.1:9092", true)
                .validate(0, &HashSet::from(["web"]))
                .is_ok()
        );
        let error = kafka("no-port", true)
            .validate(1, &HashSet::from(["web"]))
            .expect_err("refused");
        assert!(error.to_string().starts_with("destinations[1].brokers"), "{error}");
        let config = kafka("127.0.0.1:9092", true);
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        let DestinationKind::Kafka(inner) = &config.kind else {
            unreachable!("built as kafka")
        };
        let printed = format!("{inner:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("sasl.password"),
            "{printed}"
        );
    }
}
