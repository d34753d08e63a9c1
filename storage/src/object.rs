//! One archive object: JSON lines, zstd-compressed, then age-encrypted.

use std::io::{Read, Write};

use age::x25519::{Identity, Recipient};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::store::StorageError;

/// An object-store error, with the path it concerns.
pub fn store_error(path: &ObjectPath) -> impl Fn(object_store::Error) -> StorageError + '_ {
    move |source| StorageError::Store {
        path: path.to_string(),
        source,
    }
}

/// Every object under `base`.
pub async fn list(store: &dyn ObjectStore, base: &ObjectPath) -> Result<Vec<ObjectMeta>, StorageError> {
    store.list(Some(base)).try_collect().await.map_err(store_error(base))
}

/// Deletes every object under `base`; returns how many.
pub async fn delete_under(store: &dyn ObjectStore, base: &ObjectPath) -> Result<usize, StorageError> {
    let objects = list(store, base).await?;
    for meta in &objects {
        store
            .delete(&meta.location)
            .await
            .map_err(store_error(&meta.location))?;
    }
    Ok(objects.len())
}

/// The whole body of an object.
pub async fn fetch(store: &dyn ObjectStore, path: &ObjectPath) -> Result<bytes::Bytes, object_store::Error> {
    store.get(path).await?.bytes().await
}

/// `plain` age-encrypted to `recipient` (the standard format `age -d` reads).
pub fn encrypt(plain: &[u8], recipient: &Recipient) -> Result<Vec<u8>, String> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| format!("encrypt: {e}"))?;
    let mut sealed = Vec::with_capacity(plain.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut sealed)
        .map_err(|e| format!("encrypt: {e}"))?;
    writer.write_all(plain).map_err(|e| format!("encrypt: {e}"))?;
    writer.finish().map_err(|e| format!("encrypt: {e}"))?;
    Ok(sealed)
}

/// What [`encrypt`] sealed for `identity`.
pub fn decrypt(sealed: &[u8], identity: &Identity) -> Result<Vec<u8>, String> {
    let decryptor = age::Decryptor::new(sealed).map_err(|e| format!("not an age file: {e}"))?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| format!("decrypt: {e}"))?;
    let mut plain = Vec::new();
    reader.read_to_end(&mut plain).map_err(|e| format!("decrypt: {e}"))?;
    Ok(plain)
}

/// Seals JSON lines for `recipient`.
pub fn seal(lines: &[u8], recipient: &Recipient) -> Result<Vec<u8>, String> {
    // Level 1: JSON compresses well at the fastest level, and the archive's budget is
    // CPU per megabyte.
    let compressed = zstd::encode_all(lines, 1).map_err(|e| format!("compress: {e}"))?;
    encrypt(&compressed, recipient)
}

/// Opens an object sealed for `identity`, giving its JSON lines back.
pub fn open(sealed: &[u8], identity: &Identity) -> Result<Vec<u8>, String> {
    let compressed = decrypt(sealed, identity)?;
    zstd::decode_all(compressed.as_slice()).map_err(|e| format!("decompress: {e}"))
}

/// The path of a new object of `source_id` for events received in `hour`.
pub fn object_path(prefix: &str, source_id: &str, hour: DateTime<Utc>) -> String {
    format!(
        "{prefix}/source_id={source_id}/date={}/hour={}/{}-{}.jsonl.zst.age",
        hour.format("%Y-%m-%d"),
        hour.format("%H"),
        Utc::now().timestamp_millis(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_lines_open_with_their_identity_only() {
        let identity = Identity::generate();
        let lines = b"{\"messageId\":\"a\"}\n{\"messageId\":\"b\"}\n";
        let sealed = seal(lines, &identity.to_public()).expect("sealed");
        assert!(sealed.starts_with(b"age-encryption.org/v1"), "the age format");
        assert!(!sealed.windows(9).any(|w| w == b"messageId"), "no plaintext");
        assert_eq!(open(&sealed, &identity).expect("opened"), lines);
        let stranger = Identity::generate();
        assert!(open(&sealed, &stranger).is_err(), "another identity can't read it");
    }

    #[test]
    fn paths_partition_by_source_date_and_hour() {
        let hour = DateTime::parse_from_rfc3339("2026-11-29T08:15:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let path = object_path("archive", "web", hour);
        assert!(
            path.starts_with("archive/source_id=web/date=2026-11-29/hour=08/"),
            "{path}"
        );
        assert!(path.ends_with(".jsonl.zst.age"), "{path}");
    }
}
