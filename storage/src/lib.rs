//! Object storage shared by the archive and the control plane's backups: opening the
//! store the operator configured (`store.rs`) and the object format, JSON lines
//! zstd-compressed and age-encrypted, with listing, fetching and deleting
//! (`object.rs`). No actors, no Kafka: the control plane uses it without the data path.

pub mod object;
mod store;

pub use store::{Sse, StorageError, StoreConfig};
