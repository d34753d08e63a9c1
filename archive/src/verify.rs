//! `archive verify`: the primary and the replica hold the same objects. An object one
//! of them lacks (a replica write still pending at a crash, a lost file) is copied
//! from the other; an object both hold with different sizes is reported, not touched.
//! What a source's deletion left behind (a store out of reach at the time) is removed
//! rather than copied back: anything of that source older than its deletion record.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::config::ArchiveError;
use crate::delete::{DeletionKind, records, source_of};

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub primary_objects: usize,
    pub replica_objects: usize,
    /// Copied from the primary to the replica, and the other way.
    pub copied_to_replica: Vec<String>,
    pub copied_to_primary: Vec<String>,
    /// Present in both with different sizes.
    pub mismatched: Vec<String>,
    /// Left in either store by a source's deletion, and removed.
    pub removed_after_deletion: Vec<String>,
}

async fn metas(store: &dyn ObjectStore, prefix: &ObjectPath) -> Result<BTreeMap<String, ObjectMeta>, ArchiveError> {
    store
        .list(Some(prefix))
        .map_ok(|meta| (meta.location.to_string(), meta))
        .try_collect()
        .await
        .map_err(|source| ArchiveError::Store {
            path: prefix.to_string(),
            source,
        })
}

async fn copy(from: &dyn ObjectStore, to: &dyn ObjectStore, location: &str) -> Result<(), ArchiveError> {
    let path = ObjectPath::from(location);
    let failed = |source| ArchiveError::Store {
        path: location.to_string(),
        source,
    };
    let bytes = crate::object::fetch(from, &path).await.map_err(failed)?;
    to.put(&path, PutPayload::from(bytes)).await.map_err(failed)?;
    Ok(())
}

/// Compares the two stores under `prefix` and, unless `dry_run`, copies what one lacks.
pub async fn verify(
    primary: &dyn ObjectStore,
    replica: &dyn ObjectStore,
    prefix: &str,
    dry_run: bool,
) -> Result<VerifyReport, ArchiveError> {
    let deleted = deleted_sources(primary, replica, prefix).await?;
    let prefix = ObjectPath::from(prefix);
    let (mut first, mut second) = (metas(primary, &prefix).await?, metas(replica, &prefix).await?);
    let mut report = VerifyReport {
        primary_objects: first.len(),
        replica_objects: second.len(),
        ..VerifyReport::default()
    };
    for (store, listed) in [(primary, &mut first), (replica, &mut second)] {
        let leftovers: Vec<String> = listed
            .values()
            .filter(|meta| left_by_deletion(meta, &deleted))
            .map(|meta| meta.location.to_string())
            .collect();
        for location in leftovers {
            if !dry_run {
                let path = ObjectPath::from(location.as_str());
                store.delete(&path).await.map_err(|source| ArchiveError::Store {
                    path: location.clone(),
                    source,
                })?;
            }
            listed.remove(&location);
            report.removed_after_deletion.push(location);
        }
    }
    for (location, meta) in &first {
        match second.get(location).map(|other| other.size) {
            None => {
                if !dry_run {
                    copy(primary, replica, location).await?;
                }
                report.copied_to_replica.push(location.clone());
            }
            Some(other) if other != meta.size => report.mismatched.push(location.clone()),
            Some(_) => {}
        }
    }
    for location in second.keys().filter(|location| !first.contains_key(*location)) {
        if !dry_run {
            copy(replica, primary, location).await?;
        }
        report.copied_to_primary.push(location.clone());
    }
    Ok(report)
}

/// The time of each source's latest deletion, from the records in either store.
async fn deleted_sources(
    primary: &dyn ObjectStore,
    replica: &dyn ObjectStore,
    prefix: &str,
) -> Result<HashMap<String, DateTime<Utc>>, ArchiveError> {
    let mut deleted: HashMap<String, DateTime<Utc>> = HashMap::new();
    for store in [primary, replica] {
        for record in records(store, prefix).await? {
            if record.kind == DeletionKind::Source {
                let at = deleted.entry(record.source_id).or_insert(record.at);
                *at = (*at).max(record.at);
            }
        }
    }
    Ok(deleted)
}

/// An object, key or suppression entry of a deleted source written before its deletion.
fn left_by_deletion(meta: &ObjectMeta, deleted: &HashMap<String, DateTime<Utc>>) -> bool {
    let location = meta.location.as_ref();
    if location.contains("/_deletions/") {
        return false;
    }
    source_of(location)
        .and_then(|source_id| deleted.get(source_id))
        .is_some_and(|at| meta.last_modified <= *at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    #[test]
    fn gaps_on_either_side_are_filled_and_a_size_mismatch_is_reported() {
        let (a, b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let primary = LocalFileSystem::new_with_prefix(a.path()).expect("store");
        let replica = LocalFileSystem::new_with_prefix(b.path()).expect("store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let put = |store: &LocalFileSystem, path: &str, bytes: &'static [u8]| {
                let path = ObjectPath::from(path);
                let store = store.clone();
                async move { store.put(&path, PutPayload::from_static(bytes)).await.expect("put") }
            };
            put(&primary, "archive/source_id=web/one", b"1").await;
            put(&replica, "archive/source_id=web/one", b"1").await;
            put(&primary, "archive/source_id=web/only-primary", b"22").await;
            put(&replica, "archive/source_id=web/only-replica", b"333").await;
            put(&primary, "archive/source_id=web/differs", b"4").await;
            put(&replica, "archive/source_id=web/differs", b"44").await;

            let seen = verify(&primary, &replica, "archive", true).await.expect("dry run");
            assert_eq!(seen.copied_to_replica, vec!["archive/source_id=web/only-primary"]);
            assert_eq!(seen.copied_to_primary, vec!["archive/source_id=web/only-replica"]);
            assert_eq!(seen.mismatched, vec!["archive/source_id=web/differs"]);
            let after_dry_run = verify(&primary, &replica, "archive", true).await.expect("again");
            assert_eq!(after_dry_run, seen, "a dry run changes nothing");

            verify(&primary, &replica, "archive", false).await.expect("repair");
            let after = verify(&primary, &replica, "archive", true).await.expect("after");
            assert!(
                after.copied_to_replica.is_empty() && after.copied_to_primary.is_empty(),
                "{after:?}"
            );
            assert_eq!(after.primary_objects, 4);
            assert_eq!(after.replica_objects, 4);
        });
    }

    #[test]
    fn what_a_source_deletion_left_in_an_unreachable_replica_is_removed_not_copied_back() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            use std::sync::Arc;
            let primary: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
            let replica: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
            let left = ObjectPath::from("archive/source_id=old/date=2026-11-30/hour=01/1-a.jsonl.zst.age");
            replica.put(&left, PutPayload::from_static(b"x")).await.expect("put");
            let kept = ObjectPath::from("archive/source_id=live/date=2026-11-30/hour=01/2-b.jsonl.zst.age");
            replica.put(&kept, PutPayload::from_static(b"y")).await.expect("put");
            // The deletion reached only the primary: the replica was out of reach.
            let keys = crate::KeyRing::new(primary.clone(), None, "archive", None);
            crate::delete::delete_source(&keys, "old").await.expect("deleted");

            let report = verify(primary.as_ref(), replica.as_ref(), "archive", false)
                .await
                .expect("verify");
            assert_eq!(report.removed_after_deletion, vec![left.to_string()]);
            assert_eq!(report.copied_to_primary, vec![kept.to_string()], "{report:?}");
            assert!(replica.head(&left).await.is_err(), "the leftover is gone");
            assert!(primary.head(&left).await.is_err(), "and was not copied back");
        });
    }
}
