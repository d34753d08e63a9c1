//! Object-storage export: a batch becomes one gzip JSONL object per received date, at
//! `<prefix>/source_id=<id>/received_date=<YYYY-MM-DD>/<digest>.jsonl.gz` in the
//! customer's bucket, with the customer's credentials (Hive-style partitions, so
//! Athena, BigQuery or Spark read them as columns).
//!
//! The object's name is a digest of the message ids it holds: a batch retried as it
//! was overwrites its own object rather than adding a copy. A retried batch made of
//! other events may repeat some (at-least-once): deduplicate on `messageId` downstream.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};
use switchyard_schemas::Event;

use switchyard_egress::EgressPolicy;

use crate::LoadError;
use crate::config::ExportConfig;
use crate::egress_http::CheckedConnector;

pub struct Exporter {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Connections are checked against `egress` as they are made (see `egress_http.rs`).
    pub fn new(config: &ExportConfig, egress: &Arc<EgressPolicy>) -> Result<Exporter, LoadError> {
        let permanent = |error: String| LoadError::permanent(format!("export bucket {}: {error}", config.bucket));
        let mut allow_http = false;
        if let Some(endpoint) = &config.endpoint {
            let url = url::Url::parse(endpoint).map_err(|e| permanent(format!("endpoint: {e}")))?;
            egress.check_scheme(&url).map_err(|e| permanent(e.to_string()))?;
            allow_http = url.scheme() == "http";
            let host = url.host_str().unwrap_or_default();
            if host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok()
            {
                egress
                    .resolve(host, url.port_or_known_default().unwrap_or(443))
                    .map_err(|e| permanent(e.to_string()))?;
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_http_connector(CheckedConnector {
                egress: egress.clone(),
                timeout: Duration::from_millis(config.timeout_ms),
                allow_http,
            })
            .with_client_options(ClientOptions::new().with_allow_http(allow_http))
            // The destination actor retries with its own backoff; the store only rides
            // out a brief blip, within the request timeout.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_millis(config.timeout_ms),
                ..RetryConfig::default()
            });
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|error| LoadError::permanent(format!("export bucket {}: {error}", config.bucket)))?;
        Ok(Exporter::with_store(Arc::new(store), &config.prefix))
    }

    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Exporter {
        Exporter {
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// Writes the batch; returns the objects written.
    pub async fn export(&self, source_id: &str, events: &[Arc<Event>]) -> Result<Vec<Path>, LoadError> {
        let mut by_date: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
        for event in events {
            let received = event.common().received_at.unwrap_or_else(Utc::now);
            by_date
                .entry(received.format("%Y-%m-%d").to_string())
                .or_default()
                .push(event);
        }
        let mut written = Vec::new();
        for (date, events) in by_date {
            let (body, name) = encode(&events)?;
            // Source ids are letters, digits, '-' and '_': safe in a path as they are.
            let mut path = format!("source_id={source_id}/received_date={date}/{name}.jsonl.gz");
            if !self.prefix.is_empty() {
                path = format!("{}/{path}", self.prefix);
            }
            let path = Path::from(path);
            self.store
                .put(&path, PutPayload::from(body))
                .await
                .map_err(|error| LoadError::retryable(format!("export to {path}: {}", with_causes(&error))))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// The error and what caused it (object_store's own message leaves out why the
/// connection failed, e.g. the egress policy).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let more = inner.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = inner.source();
    }
    text
}

/// The gzip JSONL body, and a name from its message ids.
fn encode(events: &[&Event]) -> Result<(Vec<u8>, String), LoadError> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    let mut digest = Sha256::new();
    for event in events {
        serde_json::to_writer(&mut gzip, event)
            .map_err(|error| LoadError::permanent(format!("event could not be encoded: {error}")))?;
        gzip.write_all(b"\n")
            .map_err(|error| LoadError::permanent(format!("gzip: {error}")))?;
        digest.update(event.message_id().unwrap_or_default().as_bytes());
        digest.update(b"\n");
    }
    let body = gzip
        .finish()
        .map_err(|error| LoadError::permanent(format!("gzip: {error}")))?;
    Ok((body, hex::encode(&digest.finalize()[..16])))
}
