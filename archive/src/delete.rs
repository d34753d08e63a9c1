//! Deletion, as the customer asks for it: a whole source's archive, or one user's
//! events; and the suppression list that keeps a deleted user's new events out.
//!
//! - A source: its keys first (both stores), so an object a deletion misses can no
//!   longer be read, then its objects in both stores and its suppression list.
//! - A user (by an id matched against `userId` and `anonymousId`): the user goes on the
//!   source's suppression list first (`<prefix>/_suppressed/source_id=<id>/<sha256>`;
//!   the list holds digests, not ids), so running routers drop the user's new events
//!   and purge their buffers; then every object of the source holding the user's
//!   events is rewritten without them (sealed to the newest key, the same bytes to
//!   both stores so `archive verify` sees them equal), or deleted when nothing is left.
//! - Each deletion leaves a record, `<prefix>/_deletions/source_id=<id>/<time>-<kind>-<uuid>.json`,
//!   in both stores, with its counts. `archive verify` reads the source deletions and
//!   removes what a deletion left behind instead of copying it back.
//!
//! A deletion that fails part way (a store out of reach) returns the error and writes
//! no record; running it again finishes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use switchyard_actors::suppress::{Suppression, digest};

use crate::config::ArchiveError;
use crate::keys::KeyRing;
use crate::object::{delete_under, fetch, list, open, seal, store_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionKind {
    Source,
    User,
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionRecord {
    pub kind: DeletionKind,
    pub source_id: String,
    pub at: DateTime<Utc>,
    /// For a user: the SHA-256 of the id, as on the suppression list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_sha256: Option<String>,
    /// Distinct objects looked at and changed; counted once whichever stores hold them.
    pub objects_scanned: usize,
    pub objects_rewritten: usize,
    pub objects_deleted: usize,
    pub events_removed: usize,
    pub keys_deleted: usize,
    /// Whether a replica was part of it.
    pub replica: bool,
}

async fn put_everywhere(keys: &KeyRing, path: &ObjectPath, bytes: Vec<u8>) -> Result<(), ArchiveError> {
    for store in keys.stores() {
        store
            .put(path, PutPayload::from(bytes.clone()))
            .await
            .map_err(store_error(path))?;
    }
    Ok(())
}

fn suppressed_base(prefix: &str) -> ObjectPath {
    ObjectPath::from(format!("{prefix}/_suppressed"))
}

fn deletions_base(prefix: &str) -> ObjectPath {
    ObjectPath::from(format!("{prefix}/_deletions"))
}

/// The source id in a path segment `source_id=<id>`.
pub(crate) fn source_of(location: &str) -> Option<&str> {
    location
        .split('/')
        .find_map(|segment| segment.strip_prefix("source_id="))
}

/// Puts `user` on the source's suppression list, in both stores.
pub async fn suppress(keys: &KeyRing, source_id: &str, user: &str) -> Result<(), ArchiveError> {
    let path = ObjectPath::from(format!(
        "{}/source_id={source_id}/{}",
        suppressed_base(keys.prefix()),
        hex::encode(digest(user))
    ));
    let body = serde_json::json!({ "at": Utc::now() }).to_string();
    put_everywhere(keys, &path, body.into_bytes()).await
}

/// Every source's suppression list in `store`, by source id.
pub async fn suppression_lists(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<HashMap<String, Suppression>, ArchiveError> {
    let mut lists: HashMap<String, Suppression> = HashMap::new();
    for meta in list(store, &suppressed_base(prefix)).await? {
        let location = meta.location.as_ref();
        let (Some(source_id), Some(name)) = (source_of(location), meta.location.filename()) else {
            continue;
        };
        let mut entry = lists.remove(source_id).unwrap_or_default();
        if !entry.insert_hex(name) {
            tracing::warn!(path = location, "not a suppression entry; skipped");
        }
        lists.insert(source_id.to_string(), entry);
    }
    Ok(lists)
}

/// Every deletion record in `store`, oldest first.
pub async fn records(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<DeletionRecord>, ArchiveError> {
    let mut found = Vec::new();
    for meta in list(store, &deletions_base(prefix)).await? {
        let path = &meta.location;
        let bytes = fetch(store, path).await.map_err(store_error(path))?;
        let record: DeletionRecord = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Object {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        found.push(record);
    }
    found.sort_by_key(|record| record.at);
    Ok(found)
}

async fn write_record(keys: &KeyRing, record: &DeletionRecord) -> Result<(), ArchiveError> {
    let kind = match record.kind {
        DeletionKind::Source => "source",
        DeletionKind::User => "user",
    };
    let path = ObjectPath::from(format!(
        "{}/source_id={}/{}-{kind}-{}.json",
        deletions_base(keys.prefix()),
        record.source_id,
        record.at.format("%Y%m%dT%H%M%S%.3fZ"),
        uuid::Uuid::new_v4().simple()
    ));
    let body = serde_json::to_vec_pretty(record).map_err(|e| ArchiveError::Object {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    put_everywhere(keys, &path, body).await
}

/// Deletes the source's whole archive: keys, objects and suppression list, in both stores.
pub async fn delete_source(keys: &KeyRing, source_id: &str) -> Result<DeletionRecord, ArchiveError> {
    let keys_deleted = keys.delete(source_id).await?;
    let objects = ObjectPath::from(format!("{}/source_id={source_id}", keys.prefix()));
    let suppressed = ObjectPath::from(format!("{}/source_id={source_id}", suppressed_base(keys.prefix())));
    let mut deleted: BTreeMap<String, ()> = BTreeMap::new();
    for store in keys.stores() {
        for meta in list(store.as_ref(), &objects).await? {
            store
                .delete(&meta.location)
                .await
                .map_err(store_error(&meta.location))?;
            deleted.insert(meta.location.to_string(), ());
        }
        delete_under(store.as_ref(), &suppressed).await?;
    }
    let record = DeletionRecord {
        kind: DeletionKind::Source,
        source_id: source_id.to_string(),
        at: Utc::now(),
        user_sha256: None,
        objects_scanned: deleted.len(),
        objects_rewritten: 0,
        objects_deleted: deleted.len(),
        events_removed: 0,
        keys_deleted,
        replica: keys.stores().len() > 1,
    };
    write_record(keys, &record).await?;
    tracing::info!(
        source_id,
        objects = deleted.len(),
        keys = keys_deleted,
        "source archive deleted"
    );
    Ok(record)
}

#[derive(Deserialize)]
struct Ids {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    #[serde(rename = "anonymousId")]
    anonymous_id: Option<String>,
}

/// Whether the event on this JSON line has a `userId` or `anonymousId` that `is_user` picks.
pub(crate) fn belongs(line: &[u8], is_user: impl Fn(&str) -> bool) -> bool {
    serde_json::from_slice::<Ids>(line).is_ok_and(|ids| {
        ids.user_id.as_deref().is_some_and(&is_user) || ids.anonymous_id.as_deref().is_some_and(&is_user)
    })
}

/// The lines of `lines` not belonging to `user`, and how many did.
fn without_user(lines: &[u8], user: &str) -> (Vec<u8>, usize) {
    let mut kept = Vec::with_capacity(lines.len());
    let mut removed = 0;
    for line in lines.split(|b| *b == b'\n').filter(|line| !line.is_empty()) {
        if belongs(line, |id| id == user) {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    (kept, removed)
}

/// Deletes one user's events from the source's archive. The caller has put the user
/// on the suppression list ([`suppress`]) and given running routers time to load it.
pub async fn delete_user(keys: &KeyRing, source_id: &str, user: &str) -> Result<DeletionRecord, ArchiveError> {
    let mut record = DeletionRecord {
        kind: DeletionKind::User,
        source_id: source_id.to_string(),
        at: Utc::now(),
        user_sha256: Some(hex::encode(digest(user))),
        objects_scanned: 0,
        objects_rewritten: 0,
        objects_deleted: 0,
        events_removed: 0,
        keys_deleted: 0,
        replica: keys.stores().len() > 1,
    };
    let identities = match keys.identities(source_id).await {
        Ok(identities) => identities,
        // Nothing was ever archived: nothing to rewrite, and the record says so.
        Err(ArchiveError::Key { .. }) => Vec::new(),
        Err(error) => return Err(error),
    };
    let base = ObjectPath::from(format!("{}/source_id={source_id}", keys.prefix()));
    let stores = keys.stores();
    // Which stores hold each object.
    let mut holders: BTreeMap<ObjectPath, Vec<Arc<dyn ObjectStore>>> = BTreeMap::new();
    for store in &stores {
        for meta in list(store.as_ref(), &base).await? {
            holders.entry(meta.location).or_default().push(store.clone());
        }
    }
    let Some(newest) = identities.last() else {
        write_record(keys, &record).await?;
        return Ok(record);
    };
    for (path, holding) in holders {
        record.objects_scanned += 1;
        // Each copy is checked: a replica left behind by an earlier failed run counts.
        let mut cleaned: Option<(Vec<u8>, usize)> = None;
        let mut changed = false;
        for store in &holding {
            let bytes = fetch(store.as_ref(), &path).await.map_err(store_error(&path))?;
            let lines = identities
                .iter()
                .find_map(|identity| open(&bytes, identity).ok())
                .ok_or_else(|| ArchiveError::Object {
                    path: path.to_string(),
                    reason: "none of the source's keys opens it".into(),
                })?;
            let (kept, removed) = without_user(&lines, user);
            changed |= removed > 0;
            cleaned.get_or_insert((kept, removed));
        }
        let Some((kept, removed)) = cleaned.filter(|_| changed) else {
            continue;
        };
        record.events_removed += removed;
        if kept.is_empty() {
            for store in &stores {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => return Err(store_error(&path)(source)),
                }
            }
            record.objects_deleted += 1;
        } else {
            let sealed = seal(&kept, &newest.to_public()).map_err(|reason| ArchiveError::Object {
                path: path.to_string(),
                reason,
            })?;
            put_everywhere(keys, &path, sealed).await?;
            record.objects_rewritten += 1;
        }
    }
    write_record(keys, &record).await?;
    tracing::info!(
        source_id,
        rewritten = record.objects_rewritten,
        deleted = record.objects_deleted,
        events = record.events_removed,
        "user deleted from the archive"
    );
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{Range, export};
    use age::x25519::Identity;
    use object_store::memory::InMemory;

    #[test]
    fn a_user_leaves_every_copy_of_every_object_and_a_source_leaves_nothing_readable() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (primary, replica): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) =
                (Arc::new(InMemory::new()), Arc::new(InMemory::new()));
            let master = Some(Identity::generate());
            let keys = KeyRing::new(primary.clone(), Some(replica.clone()), "archive", master);
            let (identity, created) = keys.current("web").await.expect("key");
            let created = created.expect("created");
            replica
                .put(&created.path, PutPayload::from(created.bytes))
                .await
                .expect("key replicated");
            let object = |lines: &str| seal(lines.as_bytes(), &identity.to_public()).expect("sealed");
            let mixed = ObjectPath::from("archive/source_id=web/date=2026-11-30/hour=10/1-a.jsonl.zst.age");
            let only_user = ObjectPath::from("archive/source_id=web/date=2026-11-30/hour=11/2-b.jsonl.zst.age");
            let other = ObjectPath::from("archive/source_id=web/date=2026-11-30/hour=12/3-c.jsonl.zst.age");
            let bytes =
                object("{\"userId\":\"gone\",\"messageId\":\"1\"}\n{\"userId\":\"stays\",\"messageId\":\"2\"}\n");
            primary.put(&mixed, PutPayload::from(bytes.clone())).await.expect("put");
            replica.put(&mixed, PutPayload::from(bytes)).await.expect("put");
            // Only the replica holds this one, as after a failed earlier run.
            let bytes = object("{\"anonymousId\":\"gone\",\"messageId\":\"3\"}\n");
            replica.put(&only_user, PutPayload::from(bytes)).await.expect("put");
            let bytes = object("{\"userId\":\"stays\",\"messageId\":\"4\"}\n");
            primary.put(&other, PutPayload::from(bytes)).await.expect("put");

            suppress(&keys, "web", "gone").await.expect("suppressed");
            let lists = suppression_lists(replica.as_ref(), "archive").await.expect("lists");
            assert!(lists["web"].holds_id("gone") && !lists["web"].holds_id("stays"));

            let record = delete_user(&keys, "web", "gone").await.expect("deleted");
            assert_eq!(
                (
                    record.objects_scanned,
                    record.objects_rewritten,
                    record.objects_deleted,
                    record.events_removed
                ),
                (3, 1, 1, 2)
            );
            for store in [&primary, &replica] {
                let mut out = Vec::new();
                export(store.as_ref(), &keys, "archive", "web", Range::default(), &mut out)
                    .await
                    .expect("export");
                let text = String::from_utf8(out).expect("text");
                assert!(!text.contains("gone"), "{text}");
                assert!(text.contains("\"messageId\":\"2\""), "{text}");
            }
            let rewritten = |store: &Arc<dyn ObjectStore>| {
                let store = store.clone();
                let path = mixed.clone();
                async move { store.get(&path).await.expect("kept").bytes().await.expect("bytes") }
            };
            assert_eq!(
                rewritten(&primary).await,
                rewritten(&replica).await,
                "the same bytes in both"
            );
            assert_eq!(records(&primary, "archive").await.expect("records"), vec![record]);

            let record = delete_source(&keys, "web").await.expect("source deleted");
            assert_eq!((record.objects_deleted, record.keys_deleted), (2, 2));
            for store in [&primary, &replica] {
                let left = list(store.as_ref(), &ObjectPath::from("archive")).await.expect("list");
                assert!(
                    left.iter()
                        .all(|meta| meta.location.as_ref().starts_with("archive/_deletions/")),
                    "only the records remain: {left:?}"
                );
                assert_eq!(records(store.as_ref(), "archive").await.expect("records").len(), 2);
            }
        });
    }
}
