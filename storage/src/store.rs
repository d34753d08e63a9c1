//! Where objects live: a local directory (the embedded default) or an S3 bucket, as the
//! operator's configuration names it, and the errors of reaching it.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use serde::Deserialize;

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

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("archive store at {path}: {source}")]
    Store { path: String, source: object_store::Error },
    #[error("archive key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("archive object {path}: {reason}")]
    Object { path: String, reason: String },
}

impl StoreConfig {
    /// Opens the store (creating a local directory when missing).
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, StorageError> {
        match self {
            StoreConfig::Local { path } => {
                let shown = path.display().to_string();
                let failed = |source| StorageError::Store {
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
                    AmazonS3ConfigKey::from_str(name).map_err(|source| StorageError::Store {
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
                let store = builder.build().map_err(|source| StorageError::Store {
                    path: format!("s3://{bucket}"),
                    source,
                })?;
                Ok(Arc::new(store))
            }
        }
    }
}
