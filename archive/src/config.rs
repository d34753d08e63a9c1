//! `[archive]` in the configuration file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// A local directory holding the archive (the embedded default; S3 comes next).
    pub path: PathBuf,
    /// Where each source's age identity is kept (created when missing).
    pub key_dir: PathBuf,
    /// Objects start with this path segment.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// An object is written once its uncompressed events reach this size...
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: usize,
    /// ...or its first event is this old.
    #[serde(default = "default_max_object_age_secs")]
    pub max_object_age_secs: u64,
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

    /// The object store, creating the directory when missing.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
        let path = self.path.display().to_string();
        std::fs::create_dir_all(&self.path).map_err(|e| ArchiveError::Store {
            path: path.clone(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        })?;
        let store =
            LocalFileSystem::new_with_prefix(&self.path).map_err(|source| ArchiveError::Store { path, source })?;
        Ok(Arc::new(store))
    }
}
