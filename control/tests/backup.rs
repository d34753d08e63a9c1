//! Backup → restore on SQLite and on Postgres: everything comes back, sealed
//! credentials still open with the master key, the audit chain still holds, and the
//! backup itself is unreadable without the master key.

mod support;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use serde_json::json;
use support::Backend;
use switchyard_control::model::{Actor, NewDestination, NewSource};
use switchyard_control::{ControlError, audit, backup};

#[actix_rt::test]
async fn a_backup_restores_into_an_empty_database_whole() {
    for (from, to) in [
        (Backend::sqlite().await, Backend::sqlite().await),
        (Backend::postgres().await, Backend::postgres().await),
    ] {
        let master = age::x25519::Identity::generate();
        let control = from.control(&master).await;
        let admin = Actor::local("test");
        let ws = support::owned_workspace(&control, &admin).await;
        let web: NewSource =
            serde_json::from_value(json!({"id": "web", "settings": {"rate_limit_events_per_sec": 50}}))
                .expect("source");
        let key = control
            .create_source(&admin, &ws.id, &web)
            .await
            .expect("source")
            .write_key
            .expect("write key");
        let destination: NewDestination = serde_json::from_value(json!({
            "id": "hook", "kind": "webhook", "sources": ["web"],
            "settings": {"url": "https://93.184.216.34/hook"}, "credentials": {"bearer_token": "restored-secret-1"}
        }))
        .expect("destination");
        control
            .create_destination(&admin, &ws.id, &destination)
            .await
            .expect("destination");

        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
        let path = backup::take(control.db(), &store, "backups", &master)
            .await
            .expect("backup");
        assert_eq!(backup::list(&store, "backups").await.expect("list"), vec![path.clone()]);
        let raw = std::fs::read(dir.path().join(&path)).expect("object");
        assert!(raw.starts_with(b"age-encryption.org/v1"), "{}: encrypted", from.name);
        assert!(!raw.windows(17).any(|w| w == b"owner@example.com"));
        assert!(
            backup::read(&store, &path, &age::x25519::Identity::generate())
                .await
                .is_err(),
            "another key"
        );

        let restored = to.control(&master).await;
        let snapshot = backup::read(&store, &path, &master).await.expect("read");
        let rows = backup::load(restored.db(), &snapshot, false).await.expect("restore");
        assert!(rows >= 8, "{rows} rows");
        assert_eq!(
            restored.sources(&ws.id).await.expect("sources"),
            control.sources(&ws.id).await.expect("sources")
        );
        assert_eq!(
            restored.members(&ws.id).await.expect("members"),
            control.members(&ws.id).await.expect("members")
        );
        let config =
            serde_json::to_value(restored.destination_config(&ws.id, "hook").await.expect("config")).expect("json");
        assert_eq!(
            config["bearer_token"], "restored-secret-1",
            "{}: credentials still open",
            to.name
        );
        assert_eq!(
            restored.source_for_write_key(&key).await.expect("key").as_deref(),
            Some("web")
        );
        assert!(
            restored
                .login("owner@example.com", "a long enough password")
                .await
                .is_ok()
        );
        assert_eq!(
            restored.audit(&ws.id, 100).await.expect("audit"),
            control.audit(&ws.id, 100).await.expect("audit")
        );
        let report = audit::verify(restored.db()).await.expect("verify");
        assert_eq!(report.broken_at, None, "{report:?}");

        let again = backup::load(restored.db(), &snapshot, false).await;
        assert!(
            matches!(again, Err(ControlError::Conflict(_))),
            "refuses a database in use: {again:?}"
        );
        assert!(
            backup::load(restored.db(), &snapshot, true).await.is_ok(),
            "unless forced"
        );
        from.finish(control).await;
        to.finish(restored).await;
    }
}
