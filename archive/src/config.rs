//! `[archive]` in the configuration file: the store (and its replica), keys, object size.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde::Deserialize;
pub use switchyard_storage::{Sse, StorageError as ArchiveError, StoreConfig};

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
