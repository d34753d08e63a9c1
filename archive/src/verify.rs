//! `archive verify`: the primary and the replica hold the same objects. An object one
//! of them lacks (a replica write still pending at a crash, a lost file) is copied
//! from the other; an object both hold with different sizes is reported, not touched.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::config::ArchiveError;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub primary_objects: usize,
    pub replica_objects: usize,
    /// Copied from the primary to the replica, and the other way.
    pub copied_to_replica: Vec<String>,
    pub copied_to_primary: Vec<String>,
    /// Present in both with different sizes.
    pub mismatched: Vec<String>,
}

async fn sizes(store: &dyn ObjectStore, prefix: &ObjectPath) -> Result<BTreeMap<String, u64>, ArchiveError> {
    store
        .list(Some(prefix))
        .map_ok(|meta| (meta.location.to_string(), meta.size))
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
    let bytes = from.get(&path).await.map_err(failed)?.bytes().await.map_err(failed)?;
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
    let prefix = ObjectPath::from(prefix);
    let (first, second) = (sizes(primary, &prefix).await?, sizes(replica, &prefix).await?);
    let mut report = VerifyReport {
        primary_objects: first.len(),
        replica_objects: second.len(),
        ..VerifyReport::default()
    };
    for (location, size) in &first {
        match second.get(location) {
            None => {
                if !dry_run {
                    copy(primary, replica, location).await?;
                }
                report.copied_to_replica.push(location.clone());
            }
            Some(other) if other != size => report.mismatched.push(location.clone()),
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
}
