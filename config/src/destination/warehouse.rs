//! The two destination kinds' settings. Credentials (the warehouse password, the
//! bucket's keys) are never shown by `Debug`.

use serde::{Deserialize, Serialize};

/// `kind = "postgres_warehouse"`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]`.
    pub url: String,
    /// The password, when it isn't in `url` (a credential in the control plane).
    #[serde(default)]
    pub password: Option<String>,
    /// Each source's tables go to the schema `<schema_prefix><source id>` (snake_case).
    #[serde(default)]
    pub schema_prefix: String,
    /// A load starts when this many events wait...
    #[serde(default = "default_warehouse_batch")]
    pub batch_max_events: usize,
    /// ...or when the oldest has waited this long.
    #[serde(default = "default_warehouse_wait_ms")]
    pub batch_max_wait_ms: u64,
    /// Statement timeout, and how long a load waits for a connection.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl std::fmt::Debug for WarehouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseConfig")
            .field("url", &redact_password(&self.url))
            .field("schema_prefix", &self.schema_prefix)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_max_wait_ms", &self.batch_max_wait_ms)
            .finish_non_exhaustive()
    }
}

/// `kind = "object_storage_export"`: gzip JSONL objects in the customer's bucket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// For S3-compatible servers (MinIO, Ceph, ...). Plain `http://` only to a host the
    /// operator lists in `[egress] allow_plain_http_hosts`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The customer's own credentials; never the archive's or the pod's.
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
    /// Objects go under `<prefix>/source_id=<id>/received_date=<YYYY-MM-DD>/`.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_export_batch")]
    pub batch_max_events: usize,
    #[serde(default = "default_export_wait_ms")]
    pub batch_max_wait_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportConfig")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The URL without its password.
pub fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn default_warehouse_batch() -> usize {
    5_000
}
fn default_warehouse_wait_ms() -> u64 {
    10_000
}
fn default_export_batch() -> usize {
    10_000
}
fn default_export_wait_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> u32 {
    2
}
fn default_region() -> String {
    "us-east-1".into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_in_the_url_is_not_shown() {
        assert_eq!(
            super::redact_password("postgres://loader:s3cret@db.example.com:5432/wh"),
            "postgres://loader@db.example.com:5432/wh"
        );
        assert_eq!(super::redact_password("postgres://db/wh"), "postgres://db/wh");
    }
}
