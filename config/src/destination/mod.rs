//! Destination settings, checked before anything starts: the fields every kind shares,
//! each kind's own (`tls.rs` for webhooks, `warehouse.rs` for the warehouse and export),
//! and the egress checks of every address they name.

mod native;
mod tls;
mod warehouse;

use std::collections::{BTreeMap, HashSet};

pub use native::{
    AMPLITUDE_MAX_BATCH_EVENTS, AMPLITUDE_MAX_REQUEST_BYTES, AmplitudeConfig, AmplitudeRegion, MAX_LINGER_MS,
    MIXPANEL_MAX_BATCH_EVENTS, MIXPANEL_MAX_EVENT_BYTES, MIXPANEL_MAX_REQUEST_BYTES, MixpanelConfig, MixpanelRegion,
    SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_BATCH_EVENTS, SEGMENT_MAX_EVENT_BYTES, SegmentConfig,
};
use serde::{Deserialize, Serialize};
pub use switchyard_egress::{EgressError, EgressPolicy};
pub use tls::{DestinationTls, TlsSettingsError, TlsVersion, client_config};
pub use warehouse::{ExportConfig, WarehouseConfig, redact_password};

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
    /// Events this destination holds at once (on their way, waiting, retrying or in
    /// flight): the room its senders wait for.
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
    pub transforms: Vec<switchyard_transform::TransformConfig>,
    /// `per_user`: while one of a user's events is in flight or waiting to be retried,
    /// that user's later events wait too, so they arrive in order. Other users go on.
    #[serde(default)]
    pub ordering: Ordering,
    /// The name events use for this destination in their `integrations` object
    /// (`{"All": false, "Mixpanel": true}`), matched case-insensitively; default: the id.
    #[serde(default)]
    pub integration_name: Option<String>,
    /// `false`: every event of its sources is sent, whatever its `integrations` say.
    #[serde(default = "default_true")]
    pub honor_integrations: bool,
    /// Consent categories (`context.consent.categoryPreferences`) an event must grant,
    /// each `true`, to be sent here.
    #[serde(default)]
    pub consent_categories: Vec<String>,
    /// `true`: an event with no consent preferences at all is not sent here either.
    #[serde(default)]
    pub require_consent: bool,
}

fn default_true() -> bool {
    true
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
    /// Any Segment-compatible HTTP API (Segment, RudderStack, another Switchyard).
    Segment(SegmentConfig),
    /// Amplitude's HTTP V2 API.
    Amplitude(AmplitudeConfig),
    /// Mixpanel's Ingestion API (events, user and group profiles).
    Mixpanel(MixpanelConfig),
}

impl DestinationKind {
    /// The `kind` as the configuration names it.
    pub fn name(&self) -> &'static str {
        match self {
            DestinationKind::Webhook(_) => "webhook",
            DestinationKind::Blackhole(_) => "blackhole",
            DestinationKind::Kafka(_) => "kafka",
            DestinationKind::PostgresWarehouse(_) => "postgres_warehouse",
            DestinationKind::ObjectStorageExport(_) => "object_storage_export",
            DestinationKind::Segment(_) => "segment",
            DestinationKind::Amplitude(_) => "amplitude",
            DestinationKind::Mixpanel(_) => "mixpanel",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// Trusted CAs, client certificate (mTLS) and minimum version for this destination.
    #[serde(default)]
    pub tls: DestinationTls,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
/// The most events one (source, destination) may hold: ten times the default.
pub const MAX_BUFFERED_EVENTS: usize = 100_000;

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
                format!("postgres warehouse {}", redact_password(&warehouse.url))
            }
            DestinationKind::ObjectStorageExport(export) => {
                format!("object storage export to bucket {}", export.bucket)
            }
            DestinationKind::Segment(segment) => format!("segment {}", redact_url(&segment.endpoint)),
            DestinationKind::Amplitude(amplitude) => format!("amplitude {}", redact_url(amplitude.base_url())),
            DestinationKind::Mixpanel(mixpanel) => format!("mixpanel {}", redact_url(mixpanel.base_url())),
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
    /// The address or scheme is outside the operator's `[egress]` policy.
    #[error("destinations[{index}].{field}: {error}")]
    Egress {
        index: usize,
        field: &'static str,
        error: EgressError,
    },
    #[error("destinations[{index}].options.{option}: {reason}")]
    KafkaOption {
        index: usize,
        option: String,
        reason: &'static str,
    },
    #[error("destinations[{index}].{error}")]
    BadTls { index: usize, error: TlsSettingsError },
    #[error("destinations[{index}].{field} must not be empty")]
    Empty { index: usize, field: &'static str },
    #[error("destinations[{index}].brokers: {reason}")]
    BadBrokers { index: usize, reason: String },
    #[error("destinations[{index}].{field} must be greater than zero")]
    Zero { index: usize, field: &'static str },
    #[error("destinations[{index}].{field} must be at most {max}: the router holds that many events in memory")]
    TooLarge {
        index: usize,
        field: &'static str,
        max: usize,
    },
    #[error("destinations[{index}].{field} must be at most {max_ms} ms")]
    TooLong {
        index: usize,
        field: &'static str,
        max_ms: u64,
    },
    #[error("destinations[{index}].{field} must be at most {max}: {vendor}'s limit")]
    OverVendorLimit {
        index: usize,
        field: &'static str,
        max: usize,
        vendor: &'static str,
    },
    #[error("destinations[{index}].{field}: {reason}")]
    Invalid {
        index: usize,
        field: &'static str,
        reason: String,
    },
    #[error("destinations[{index}].sources names unknown source {source_id:?}")]
    UnknownSource { index: usize, source_id: String },
}

impl DestinationConfig {
    /// The name this destination answers to in an event's `integrations` object.
    pub fn integration_name(&self) -> &str {
        self.integration_name.as_deref().unwrap_or(&self.id)
    }

    /// Checks the settings, and that every address the destination names is one the
    /// operator's `egress` policy lets Switchyard reach (resolving host names now; the
    /// clients check again each time they connect).
    pub fn validate(
        &self,
        index: usize,
        known_sources: &HashSet<&str>,
        egress: &EgressPolicy,
    ) -> Result<(), DestinationConfigError> {
        if !crate::sources::is_valid_id(&self.id) {
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
        // A tenant sets it through the admin API, and it is the destination's budget: the
        // events a router holds for it. Unbounded, one destination could fill the router's memory.
        if self.max_buffered_events > MAX_BUFFERED_EVENTS {
            return Err(DestinationConfigError::TooLarge {
                index,
                field: "max_buffered_events",
                max: MAX_BUFFERED_EVENTS,
            });
        }
        if self
            .integration_name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(DestinationConfigError::Empty {
                index,
                field: "integration_name",
            });
        }
        if self
            .consent_categories
            .iter()
            .any(|category| category.trim().is_empty())
        {
            return Err(DestinationConfigError::Empty {
                index,
                field: "consent_categories",
            });
        }
        match &self.kind {
            DestinationKind::Webhook(webhook) => webhook.validate(index, egress),
            DestinationKind::Blackhole(_) => Ok(()),
            DestinationKind::Kafka(kafka) => kafka.validate(index, egress),
            DestinationKind::PostgresWarehouse(warehouse) => validate_warehouse(warehouse, index, egress),
            DestinationKind::ObjectStorageExport(export) => validate_export(export, index, egress),
            DestinationKind::Segment(segment) => segment.validate(index, egress),
            DestinationKind::Amplitude(amplitude) => amplitude.validate(index, egress),
            DestinationKind::Mixpanel(mixpanel) => mixpanel.validate(index, egress),
        }
    }
}

fn egress_error(index: usize, field: &'static str) -> impl Fn(EgressError) -> DestinationConfigError {
    move |error| DestinationConfigError::Egress { index, field, error }
}

impl WebhookConfig {
    fn validate(&self, index: usize, egress: &EgressPolicy) -> Result<(), DestinationConfigError> {
        let bad = |reason: String| DestinationConfigError::BadUrl {
            index,
            url: redact_url(&self.url),
            reason,
        };
        let url = url::Url::parse(&self.url).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("scheme {} is not http or https", url.scheme())));
        }
        egress.check_scheme(&url).map_err(egress_error(index, "url"))?;
        let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(443);
        positive(index, self.batch_max_events, self.timeout_ms)?;
        client_config(&self.tls).map_err(|error| DestinationConfigError::BadTls { index, error })?;
        egress.resolve(host, port).map_err(egress_error(index, "url"))?;
        Ok(())
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

/// The librdkafka properties a tenant may set on a Kafka destination: credentials, TLS
/// material given inline, and batching. An allow-list, because librdkafka has options
/// that change where it connects (`bootstrap.servers`, `sasl.oauthbearer.token.endpoint.url`),
/// read files from the pod (`*.location`), load code (`plugin.library.paths`) or run
/// commands (`sasl.kerberos.kinit.cmd`); a new librdkafka release may add more.
const KAFKA_OPTIONS: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "client.id",
    "compression.type",
    "compression.codec",
    "linger.ms",
    "batch.size",
    "batch.num.messages",
    "message.max.bytes",
    "request.timeout.ms",
    "retry.backoff.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
];

/// The librdkafka options of a Kafka destination that hold secrets.
pub const KAFKA_SECRET_OPTIONS: &[&str] = &["sasl.username", "sasl.password", "ssl.key.pem", "ssl.key.password"];

fn check_kafka_option(key: &str, value: &str) -> Result<(), &'static str> {
    if !KAFKA_OPTIONS.contains(&key) {
        return Err("not an option a destination may set (credentials, inline TLS material and batching only)");
    }
    let value = value.to_ascii_lowercase();
    match key {
        "security.protocol" if !matches!(value.as_str(), "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl") => {
            Err("must be plaintext, ssl, sasl_plaintext or sasl_ssl")
        }
        // GSSAPI runs kinit; OAUTHBEARER fetches tokens from a URL of its own.
        "sasl.mechanism" | "sasl.mechanisms"
            if !matches!(value.as_str(), "plain" | "scram-sha-256" | "scram-sha-512") =>
        {
            Err("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        }
        _ => Ok(()),
    }
}

/// `host:port` pairs of a `bootstrap.servers` list.
pub fn broker_addresses(brokers: &str) -> Result<Vec<(&str, u16)>, String> {
    let mut addresses = Vec::new();
    for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let (host, port) = broker
            .rsplit_once(':')
            .ok_or_else(|| format!("{broker:?} is not host:port"))?;
        let port: u16 = port.parse().map_err(|_| format!("{broker:?} has no valid port"))?;
        addresses.push((host, port));
    }
    if addresses.is_empty() {
        return Err("no broker listed".into());
    }
    Ok(addresses)
}

impl KafkaDestinationConfig {
    fn validate(&self, index: usize, egress: &EgressPolicy) -> Result<(), DestinationConfigError> {
        if self.topic.trim().is_empty() {
            return Err(DestinationConfigError::Empty { index, field: "topic" });
        }
        positive(index, self.batch_max_events, self.timeout_ms)?;
        for (key, value) in &self.options {
            check_kafka_option(key, value).map_err(|reason| DestinationConfigError::KafkaOption {
                index,
                option: key.clone(),
                reason,
            })?;
        }
        let brokers =
            broker_addresses(&self.brokers).map_err(|reason| DestinationConfigError::BadBrokers { index, reason })?;
        for (host, port) in brokers {
            egress.resolve(host, port).map_err(egress_error(index, "brokers"))?;
        }
        Ok(())
    }
}

/// The parameters a warehouse URL may carry. Anything else could change where it
/// connects (`host`, `hostaddr`, `port`) or read files from the pod (`sslrootcert`,
/// `sslcert`, `sslkey`, `passfile`).
const WAREHOUSE_URL_PARAMETERS: &[&str] = &["sslmode", "application_name"];

/// The URL parses, its host may be reached, and the batch settings are positive.
fn validate_warehouse(
    config: &WarehouseConfig,
    index: usize,
    egress: &EgressPolicy,
) -> Result<(), DestinationConfigError> {
    let shown = redact_password(&config.url);
    let bad = |reason: String| DestinationConfigError::BadUrl {
        index,
        url: shown.clone(),
        reason,
    };
    let url = url::Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad(format!("scheme {} is not postgres", url.scheme())));
    }
    if let Some((key, _)) = url
        .query_pairs()
        .find(|(key, _)| !WAREHOUSE_URL_PARAMETERS.contains(&key.as_ref()))
    {
        return Err(bad(format!(
            "parameter {key:?} is not allowed (only {})",
            WAREHOUSE_URL_PARAMETERS.join(", ")
        )));
    }
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    positive(index, config.batch_max_events, config.timeout_ms)?;
    if config.max_connections == 0 {
        return Err(DestinationConfigError::Zero {
            index,
            field: "max_connections",
        });
    }
    egress
        .resolve(host, url.port().unwrap_or(5432))
        .map_err(egress_error(index, "url"))?;
    Ok(())
}

fn validate_export(config: &ExportConfig, index: usize, egress: &EgressPolicy) -> Result<(), DestinationConfigError> {
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
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("scheme {} is not http or https", url.scheme())));
    }
    egress.check_scheme(&url).map_err(egress_error(index, "endpoint"))?;
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    egress.resolve(host, port).map_err(egress_error(index, "endpoint"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> DestinationConfig {
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
                tls: Default::default(),
            }),
            retry: RetryConfig::default(),
            concurrency: 1,
            max_buffered_events: 10,
            breaker_failures: 3,
            breaker_cooldown_ms: 100,
            stall_after_secs: 120,
            ordering: Ordering::None,
            integration_name: None,
            honor_integrations: true,
            consent_categories: Vec::new(),
            require_consent: false,
            transforms: Vec::new(),
        }
    }

    fn sources() -> HashSet<&'static str> {
        HashSet::from(["web"])
    }

    #[test]
    fn private_and_loopback_urls_are_refused_unless_the_operator_allows_them() {
        let strict = EgressPolicy::default();
        let local = EgressPolicy::default()
            .allowing(&["0.0.0.0/0", "::/0"])
            .allowing_plain_http(&["127.0.0.1", "10.1.2.3", "::1", "169.254.169.254"]);
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://10.1.2.3/x",
            "http://[::1]:80/",
            "http://169.254.169.254/latest",
        ] {
            let error = webhook(url).validate(0, &sources(), &strict).expect_err("refused");
            assert!(
                matches!(error, DestinationConfigError::Egress { field: "url", .. }),
                "{url}: {error}"
            );
            assert!(
                webhook(url).validate(0, &sources(), &local).is_ok(),
                "{url} allowed by the operator"
            );
        }
        let https = webhook("https://203.0.113.10/hook");
        assert!(https.validate(0, &sources(), &strict).is_ok());
        let error = webhook("http://203.0.113.10/hook")
            .validate(0, &sources(), &strict)
            .expect_err("plain http refused");
        assert!(error.to_string().contains("allow_plain_http_hosts"), "{error}");
    }

    #[test]
    fn tenants_cannot_widen_egress_from_the_destination_itself() {
        for flag in ["allow_private_network", "allow_plain_http"] {
            let mut value = serde_json::json!({"id": "hook", "sources": ["web"], "kind": "webhook",
                "url": "http://127.0.0.1:9/hook"});
            value[flag] = serde_json::Value::Bool(true);
            let error = serde_json::from_value::<DestinationConfig>(value).expect_err("unknown setting");
            assert!(error.to_string().contains(flag), "{error}");
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        let any = EgressPolicy::default().allowing_plain_http(&["203.0.113.10"]);
        let error = webhook("ftp://example.com/x")
            .validate(2, &sources(), &any)
            .expect_err("refused");
        assert!(error.to_string().starts_with("destinations[2].url"), "{error}");
        let error = webhook("http://203.0.113.10/")
            .validate(0, &HashSet::from(["app"]), &any)
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
        let printed = format!("{:?}", webhook("https://user:pass@hooks.example.com/x?key=abc"));
        for secret in ["very-secret", "token-123", "pass", "key=abc"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
    }

    fn kafka(brokers: &str, options: &[(&str, &str)]) -> DestinationConfig {
        DestinationConfig {
            kind: DestinationKind::Kafka(KafkaDestinationConfig {
                brokers: brokers.into(),
                topic: "events".into(),
                options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                timeout_ms: 1000,
                batch_max_events: 10,
            }),
            ..webhook("https://203.0.113.10/")
        }
    }

    #[test]
    fn kafka_destinations_check_their_brokers_and_hide_their_options() {
        let strict = EgressPolicy::default();
        let local = EgressPolicy::default().allowing(&["127.0.0.0/8"]);
        let error = kafka("127.0.0.1:9092", &[])
            .validate(0, &sources(), &strict)
            .expect_err("loopback refused");
        assert!(
            matches!(error, DestinationConfigError::Egress { field: "brokers", .. }),
            "{error}"
        );
        assert!(kafka("127.0.0.1:9092", &[]).validate(0, &sources(), &local).is_ok());
        let error = kafka("no-port", &[])
            .validate(1, &sources(), &local)
            .expect_err("refused");
        assert!(error.to_string().starts_with("destinations[1].brokers"), "{error}");
        let config = kafka("127.0.0.1:9092", &[("sasl.password", "hunter2")]);
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

    #[test]
    fn kafka_options_are_an_allow_list() {
        let local = EgressPolicy::default().allowing(&["127.0.0.0/8"]);
        let fine = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("compression.type", "zstd"),
        ];
        assert!(kafka("127.0.0.1:9092", &fine).validate(0, &sources(), &local).is_ok());
        for (key, value) in [
            ("bootstrap.servers", "169.254.169.254:80"),
            ("metadata.broker.list", "10.0.0.1:9092"),
            (
                "ssl.ca.location",
                "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            ),
            ("plugin.library.paths", "/tmp/evil.so"),
            ("sasl.kerberos.kinit.cmd", "curl http://169.254.169.254"),
            ("sasl.oauthbearer.token.endpoint.url", "http://169.254.169.254/"),
            ("sasl.mechanism", "GSSAPI"),
            ("security.protocol", "evil"),
        ] {
            let error = kafka("127.0.0.1:9092", &[(key, value)])
                .validate(0, &sources(), &local)
                .expect_err("refused");
            assert!(error.to_string().contains(&format!("options.{key}")), "{key}: {error}");
        }
    }

    #[test]
    fn warehouse_urls_carry_no_parameter_that_moves_the_connection() {
        let local = EgressPolicy::default().allowing(&["127.0.0.0/8"]);
        let warehouse = |url: &str| DestinationConfig {
            kind: DestinationKind::PostgresWarehouse(
                serde_json::from_value(serde_json::json!({ "url": url })).expect("warehouse"),
            ),
            ..webhook("https://203.0.113.10/")
        };
        let fine = warehouse("postgres://u@127.0.0.1:5432/db?sslmode=prefer&application_name=sy");
        assert!(fine.validate(0, &sources(), &local).is_ok());
        for param in [
            "host=10.0.0.5",
            "hostaddr=10.0.0.5",
            "port=6379",
            "sslrootcert=/etc/shadow",
        ] {
            let error = warehouse(&format!("postgres://u@127.0.0.1/db?{param}"))
                .validate(0, &sources(), &local)
                .expect_err("refused");
            assert!(error.to_string().contains("is not allowed"), "{param}: {error}");
        }
        let error = warehouse("postgres://u@10.0.0.5/db")
            .validate(0, &sources(), &local)
            .expect_err("private refused");
        assert!(matches!(error, DestinationConfigError::Egress { .. }), "{error}");
    }
}
