//! The archive: every accepted event of a source, kept in object storage for replay,
//! export and deletion. An [`ArchiveActor`] per source takes its share of each record
//! like a destination does, buffers events per hour into objects (by size and age),
//! compresses them (zstd) and encrypts them in the age format to the source's X25519
//! recipient, then writes them under
//! `<prefix>/source_id=<id>/date=YYYY-MM-DD/hour=HH/<unique>.jsonl.zst.age`. A record's
//! share is done only once the object holding it is written, so its offset is committed
//! only then.
//!
//! Keys (`keys.rs`): each source's age identities live beside its objects, under a
//! master key; `switchyard archive export-key` writes them out so that
//! `age -d -i key.txt object.jsonl.zst.age | zstd -d` reads an object. Deletion of a
//! source or of one user, and the suppression list, are in `delete.rs`; replica repair
//! in `verify.rs`.

pub mod actor;
pub mod config;
pub mod delete;
pub mod export;
pub mod keys;
pub use switchyard_storage::object;
pub mod verify;

pub use actor::ArchiveActor;
pub use config::ArchiveConfig;
pub use keys::KeyRing;
