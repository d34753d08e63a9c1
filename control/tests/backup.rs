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
use switchyard_control::{ControlError, backup};

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
        assert_eq!(
            restored.audit(&ws.id, 100).await.expect("audit"),
            control.audit(&ws.id, 100).await.expect("audit")
        );
        assert!(
            restored
                .login("owner@example.com", "a long enough password")
                .await
                .is_ok()
        );
        let report = restored.verify_audit().await.expect("verify");
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

/// The tables and columns of the live schema, without sqlx's own bookkeeping.
async fn live_schema(backend: &Backend, control: &switchyard_control::Control) -> Vec<(String, Vec<String>)> {
    use sqlx::Row;
    let pool = &control.db().pool;
    let query = if backend.name == "sqlite" {
        "SELECT m.name AS t, p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'"
    } else {
        "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%'"
    };
    let mut schema: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for row in sqlx::query(query).fetch_all(pool).await.expect("schema") {
        let table: String = row.try_get("t").expect("table");
        let column: String = row.try_get("c").expect("column");
        schema.entry(table).or_default().push(column);
    }
    schema
        .into_iter()
        .map(|(table, mut columns)| {
            columns.sort();
            (table, columns)
        })
        .collect()
}

#[actix_rt::test]
async fn backups_cover_every_column_of_every_table_in_both_databases() {
    let mut covered: Vec<(String, Vec<String>)> = backup::covered()
        .into_iter()
        .map(|(table, columns)| {
            let mut columns: Vec<String> = columns.into_iter().map(str::to_string).collect();
            columns.sort();
            (table.to_string(), columns)
        })
        .collect();
    covered.sort();
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let live = live_schema(&backend, &control).await;
        assert_eq!(
            live, covered,
            "{}: a table or column the backup leaves out (add it to backup::TABLES)",
            backend.name
        );
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn after_a_restore_token_scopes_second_factors_recovery_codes_and_policy_hold() {
    use switchyard_control::model::{Login, NewApiToken, Role, WorkspacePolicyPatch};
    for backend in Backend::both().await {
        let master = age::x25519::Identity::generate();
        let control = backend.control(&master).await;
        let admin = Actor::local("test");
        let ws = support::owned_workspace(&control, &admin).await;
        let stranger = control
            .create_user(
                &admin,
                "other@example.com",
                switchyard_control::store::Password::Plain(support::OWNER_PASSWORD),
            )
            .await
            .expect("user");
        let other = control
            .create_workspace(&admin, "Other", &stranger)
            .await
            .expect("other");
        let session = control
            .login("owner@example.com", support::OWNER_PASSWORD)
            .await
            .expect("login");
        let principal = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        let scoped = control
            .create_api_token(
                &admin,
                &principal,
                &NewApiToken {
                    name: "reader".into(),
                    workspace: ws.id.clone(),
                    role: Some(Role::ReadOnly),
                    expires_in_secs: None,
                },
            )
            .await
            .expect("token");
        let enrolment = control.start_mfa(&principal).await.expect("enrol");
        let secret = totp_rs::Secret::Encoded(enrolment.secret.clone())
            .to_bytes()
            .expect("base32");
        let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).expect("totp");
        let codes = control
            .confirm_mfa(&admin, &principal, &totp.generate_current().expect("code"))
            .await
            .expect("confirm")
            .recovery_codes;
        control
            .set_workspace_policy(
                &admin,
                &ws.id,
                &WorkspacePolicyPatch {
                    require_mfa: Some(true),
                    password_login: None,
                },
                false,
            )
            .await
            .expect("policy");

        let dir = tempfile::tempdir().expect("dir");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
        let path = backup::take(control.db(), &store, "backups", &master)
            .await
            .expect("backup");
        let restored = Backend::sqlite().await;
        let into = restored.control(&master).await;
        let snapshot = backup::read(&store, &path, &master).await.expect("read");
        backup::load(into.db(), &snapshot, false).await.expect("restore");

        // The token still reaches one workspace, read-only.
        let token = into.authenticate(&scoped.token).await.expect("auth").expect("valid");
        assert_eq!(
            (token.token.workspace_id.as_deref(), token.token.role),
            (Some(ws.id.as_str()), Some(Role::ReadOnly))
        );
        let access = into.caller_access(&token, &other.id).await.expect("access");
        assert!(access.is_err(), "{}: the scope holds", backend.name);
        // The second factor is still required, and a recovery code still works once.
        let password_only = Login {
            email: "owner@example.com".into(),
            password: support::OWNER_PASSWORD.into(),
            otp: None,
            recovery_code: None,
        };
        assert!(
            into.sign_in(&password_only, "local").await.is_err(),
            "{}: MFA kept",
            backend.name
        );
        let with_code = Login {
            recovery_code: Some(codes[0].clone()),
            ..password_only
        };
        assert!(
            into.sign_in(&with_code, "local").await.is_ok(),
            "{}: recovery codes kept",
            backend.name
        );
        assert!(
            into.sign_in(&with_code, "local").await.is_err(),
            "{}: used up",
            backend.name
        );
        assert_eq!(
            into.workspace_policy(&ws.id).await.expect("policy"),
            control.workspace_policy(&ws.id).await.expect("policy")
        );
        assert!(into.workspace_policy(&ws.id).await.expect("policy").require_mfa);
        restored.finish(into).await;
        backend.finish(control).await;
    }
}
