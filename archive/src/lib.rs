//! The archive: every accepted event of a source, kept in object storage for replay,
//! export and deletion. An [`ArchiveActor`] per source takes its share of each record
//! like a destination does, buffers events per hour into objects (by size and age),
//! compresses them (zstd) and encrypts them in the age format to the source's X25519
//! recipient, then writes them under
//! `<prefix>/source_id=<id>/date=YYYY-MM-DD/hour=HH/<unique>.jsonl.zst.age`. A record's
//! share is done only once the object holding it is written, so its offset is committed
//! only then.
//!
//! Keys: each source's age identity is generated on first use and kept in the key
//! directory (`<source id>.age`, mode 0600, the same text `age-keygen` writes), so
//! `age -d -i <key dir>/<id>.age object.jsonl.zst.age | zstd -d` reads an object.
//! Encrypting the key directory under a master key, rotation and replication come next.

pub mod actor;
pub mod config;
pub mod export;
pub mod keys;
pub mod object;
pub mod verify;

pub use actor::ArchiveActor;
pub use config::ArchiveConfig;
pub use keys::KeyRing;
