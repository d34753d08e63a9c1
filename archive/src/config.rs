//! `[archive]` in the configuration file: the store (and its replica), keys, object size.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Where objects are written.
    pub store: StoreConfig,
    /// A second store every object is also written to (another bucket or region). A
    /// record is finished once the primary has its object; replica writes are retried
    /// until they succeed and counted meanwhile.
    #[serde(default)]
    pub replica: Option<StoreConfig>,
    /// Objects start with this path segment.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// An object is written once its uncompressed events reach this size...
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: usize,
    /// ...or its first event is this old.
    #[serde(default = "default_max_object_age_secs")]
    pub max_object_age_secs: u64,
    /// How often routers read the suppression list (users deleted from the archive,
    /// whose new events are dropped); `archive delete-user` waits this long and a
    /// little more before it rewrites objects.
    #[serde(default = "default_suppression_refresh_secs")]
    pub suppression_refresh_secs: u64,
}

/// An object store: a local directory (the embedded default) or an S3 bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    Local {
        path: PathBuf,
    },
    /// Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or the instance's role).
    S3 {
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        /// For S3-compatible servers (MinIO, Ceph, ...).
        #[serde(default)]
        endpoint: Option<String>,
        #[serde(default)]
        allow_http: bool,
        /// Server-side encryption asked of S3 on every write, on top of age.
        #[serde(default)]
        sse: Sse,
        /// With `sse = "kms"`: the key; absent, the bucket's default KMS key.
        #[serde(default)]
        kms_key_id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sse {
    /// SSE-S3 (AES256).
    #[default]
    S3,
    /// SSE-KMS.
    Kms,
    /// The bucket's own default only.
    None,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_prefix() -> String {
    "archive".into()
}

fn default_max_object_bytes() -> usize {
    64 * 1024 * 1024
}

fn default_max_object_age_secs() -> u64 {
    300
}

fn default_suppression_refresh_secs() -> u64 {
    10
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive store at {path}: {source}")]
    Store { path: String, source: object_store::Error },
    #[error("archive key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("archive object {path}: {reason}")]
    Object { path: String, reason: String },
}

impl ArchiveConfig {
    pub fn max_object_age(&self) -> Duration {
        Duration::from_secs(self.max_object_age_secs)
    }

    pub fn suppression_refresh(&self) -> Duration {
        Duration::from_secs(self.suppression_refresh_secs.max(1))
    }

    /// The primary object store.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
        self.store.open()
    }

    pub fn replica(&self) -> Result<Option<Arc<dyn ObjectStore>>, ArchiveError> {
        self.replica.as_ref().map(StoreConfig::open).transpose()
    }
}

impl StoreConfig {
    /// Opens the store (creating a local directory when missing).
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
        match self {
            StoreConfig::Local { path } => {
                let shown = path.display().to_string();
                let failed = |source| ArchiveError::Store {
                    path: shown.clone(),
                    source,
                };
                // Owner only: without a master key the source keys in it are plain text.
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(path)
                    .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)))
                    .map_err(|e| {
                        failed(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })
                    })?;
                Ok(Arc::new(LocalFileSystem::new_with_prefix(path).map_err(failed)?))
            }
            StoreConfig::S3 {
                bucket,
                region,
                endpoint,
                allow_http,
                sse,
                kms_key_id,
            } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_allow_http(*allow_http);
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let encryption = match sse {
                    Sse::S3 => Some("AES256"),
                    Sse::Kms => Some("aws:kms"),
                    Sse::None => None,
                };
                let key = |name: &str| {
                    AmazonS3ConfigKey::from_str(name).map_err(|source| ArchiveError::Store {
                        path: format!("s3://{bucket}"),
                        source,
                    })
                };
                if let Some(encryption) = encryption {
                    builder = builder.with_config(key("aws_server_side_encryption")?, encryption);
                }
                if let (Sse::Kms, Some(kms_key_id)) = (sse, kms_key_id) {
                    builder = builder.with_config(key("aws_sse_kms_key_id")?, kms_key_id);
                }
                let store = builder.build().map_err(|source| ArchiveError::Store {
                    path: format!("s3://{bucket}"),
                    source,
                })?;
                Ok(Arc::new(store))
            }
        }
    }
}
