//! The metadata store on SQLite and on Postgres: credentials sealed at rest, write
//! keys as digests with rotation, imported bcrypt passwords, and the audit chain.

mod support;

use serde_json::json;
use sqlx::Row;
use support::Backend;
use switchyard_control::model::{Actor, NewDestination, NewSource};
use switchyard_control::store::Password;

fn destination(id: &str, token: &str) -> NewDestination {
    serde_json::from_value(json!({
        "id": id, "kind": "webhook", "sources": ["web"],
        "settings": {"url": "https://93.184.216.34/hook", "timeout_ms": 2000},
        "credentials": {"bearer_token": token}
    }))
    .expect("destination")
}

#[actix_rt::test]
async fn credentials_are_ciphertext_at_rest_and_open_only_for_the_router() {
    for backend in Backend::both().await {
        let master = age::x25519::Identity::generate();
        let control = backend.control(&master).await;
        let admin = Actor::local("test");
        let ws = support::owned_workspace(&control, &admin).await;
        let web: NewSource = serde_json::from_value(json!({"id": "web"})).expect("source");
        control.create_source(&admin, &ws.id, &web).await.expect("source");
        let secret = "tok-SECRET-0123456789";
        let view = control
            .create_destination(&admin, &ws.id, &destination("hook", secret))
            .await
            .expect("destination");
        assert_eq!(view.credentials["bearer_token"], "<redacted>", "{}", backend.name);
        assert!(!serde_json::to_string(&view).expect("json").contains(secret));

        let row = sqlx::query("SELECT * FROM destinations WHERE id = 'hook'")
            .fetch_one(&control.db().pool)
            .await
            .expect("row");
        let raw: Vec<u8> = row.try_get("credentials").expect("credentials column");
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{}: ciphertext",
            backend.name
        );
        let settings: String = row.try_get("settings").expect("settings");
        assert!(!settings.contains(secret));
        let audit_rows = sqlx::query("SELECT before_state, after_state FROM audit_log")
            .fetch_all(&control.db().pool)
            .await
            .expect("audit");
        for row in audit_rows {
            let after: String = row.try_get("after_state").expect("after");
            assert!(
                !after.contains(secret),
                "{}: the audit log holds no secret",
                backend.name
            );
        }

        let config = control
            .destination_config(&ws.id, "hook")
            .await
            .expect("for the router");
        let debug = format!("{config:?}");
        assert!(!debug.contains(secret), "Debug output redacts it: {debug}");
        let as_json = serde_json::to_value(&config).expect("json");
        assert_eq!(
            as_json["bearer_token"], secret,
            "{}: the router gets the real value",
            backend.name
        );

        // Another master key opens nothing.
        let stranger = backend.control(&age::x25519::Identity::generate()).await;
        assert!(stranger.destination_config(&ws.id, "hook").await.is_err());
        stranger.db().pool.close().await;
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn a_hash_salt_is_sealed_never_shown_and_kept_when_a_view_is_sent_back() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let admin = Actor::local("test");
        let ws = support::owned_workspace(&control, &admin).await;
        let salt = "pepper-SECRET-0123";
        let hash = json!([{"op": "hash", "fields": ["userId"], "salt": salt}]);
        let web: NewSource = serde_json::from_value(json!({"id": "web", "transforms": hash})).expect("source");
        let created = control.create_source(&admin, &ws.id, &web).await.expect("source");
        let mut new = destination("hook", "tok-0123456789");
        new.transforms = serde_json::from_value(hash.clone()).expect("transforms");
        let view = control
            .create_destination(&admin, &ws.id, &new)
            .await
            .expect("destination");
        for shown in [json!(view), json!(created.source)] {
            assert_eq!(
                shown["transforms"][0]["salt"], "<redacted>",
                "{}: {shown}",
                backend.name
            );
        }
        // A view sent back unchanged keeps the salt; the router runs with the real one.
        let patch: switchyard_control::model::DestinationPatch =
            serde_json::from_value(json!({"transforms": json!(view)["transforms"]})).expect("patch");
        control
            .update_destination(&admin, &ws.id, "hook", patch)
            .await
            .expect("kept");
        let router =
            serde_json::to_value(control.destination_config(&ws.id, "hook").await.expect("config")).expect("json");
        assert_eq!(router["transforms"][0]["salt"], salt, "{}: {router}", backend.name);
        let live = control.live(&ws.id).await.expect("live");
        assert_eq!(json!(live.sources[0].transforms)[0]["salt"], salt, "{}", backend.name);

        // At rest and in the audit log, nowhere in the clear.
        for (table, column) in [
            ("sources", "transforms"),
            ("destinations", "transforms"),
            ("audit_log", "after_state"),
            ("audit_log", "before_state"),
        ] {
            for row in sqlx::query(&format!("SELECT {column} FROM {table}"))
                .fetch_all(&control.db().pool)
                .await
                .expect("rows")
            {
                let text: Option<String> = row.try_get(column).expect("text");
                assert!(
                    !text.unwrap_or_default().contains(salt),
                    "{}: {table}.{column}",
                    backend.name
                );
            }
        }
        // `<redacted>` where no salt was stored is refused, naming the field.
        let patch: switchyard_control::model::DestinationPatch = serde_json::from_value(
            json!({"transforms": [{"op": "drop_fields", "fields": ["x"]}, {"op": "hash", "fields": ["userId"], "salt": "<redacted>"}]}),
        )
        .expect("patch");
        let error = control
            .update_destination(&admin, &ws.id, "hook", patch)
            .await
            .expect_err("nothing to keep");
        assert!(error.to_string().contains("transforms[1].salt"), "{error}");
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn write_keys_are_kept_as_digests_and_rotate_with_an_overlap() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let admin = Actor::local("test");
        let ws = support::owned_workspace(&control, &admin).await;
        let web: NewSource = serde_json::from_value(json!({"id": "web"})).expect("source");
        let created = control.create_source(&admin, &ws.id, &web).await.expect("source");
        let first = created.write_key.expect("a write-key source gets a key");
        let stored: Vec<String> = sqlx::query("SELECT digest FROM write_keys")
            .fetch_all(&control.db().pool)
            .await
            .expect("rows")
            .iter()
            .map(|row| row.try_get("digest").expect("digest"))
            .collect();
        assert!(!stored.contains(&first), "{}: only a digest is kept", backend.name);
        assert_eq!(
            control.source_for_write_key(&first).await.expect("lookup").as_deref(),
            Some("web")
        );

        let overlapping = control
            .rotate_write_key(&admin, &ws.id, "web", 3600)
            .await
            .expect("rotated");
        assert_eq!(
            control.source_for_write_key(&first).await.expect("lookup").as_deref(),
            Some("web"),
            "overlap"
        );
        assert_eq!(
            control.source(&ws.id, "web").await.expect("source").active_write_keys,
            2
        );
        let last = control
            .rotate_write_key(&admin, &ws.id, "web", 0)
            .await
            .expect("rotated");
        for old in [&first, &overlapping.write_key] {
            assert_eq!(
                control.source_for_write_key(old).await.expect("lookup"),
                None,
                "{}: expired",
                backend.name
            );
        }
        assert_eq!(
            control
                .source_for_write_key(&last.write_key)
                .await
                .expect("lookup")
                .as_deref(),
            Some("web")
        );
        assert_eq!(control.source_for_write_key("wk_made_up").await.expect("lookup"), None);
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn an_imported_bcrypt_password_signs_in_and_becomes_argon2id() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let admin = Actor::local("import");
        let imported = bcrypt::hash("from the old system", 4).expect("bcrypt");
        control
            .create_user(&admin, "Old@Example.com", Password::Hash(&imported))
            .await
            .expect("imported");
        assert!(control.login("old@example.com", "wrong password!").await.is_err());
        let session = control
            .login("old@example.com", "from the old system")
            .await
            .expect("login");
        let principal = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        assert_eq!(principal.email, "old@example.com");
        let hash: String = sqlx::query("SELECT password_hash FROM users")
            .fetch_one(&control.db().pool)
            .await
            .expect("row")
            .try_get("password_hash")
            .expect("hash");
        assert!(
            hash.starts_with("$argon2id$"),
            "{}: rehashed at login: {hash}",
            backend.name
        );
        assert!(control.login("old@example.com", "from the old system").await.is_ok());
        let tokens: Vec<String> = sqlx::query("SELECT digest FROM tokens")
            .fetch_all(&control.db().pool)
            .await
            .expect("rows")
            .iter()
            .map(|row| row.try_get("digest").expect("digest"))
            .collect();
        assert!(!tokens.contains(&session.token), "sessions are kept as digests");
        assert!(
            control
                .create_user(&admin, "x@example.com", Password::Hash("not a hash"))
                .await
                .is_err()
        );
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn audit_verify_catches_an_edited_and_a_deleted_row() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let admin = Actor {
            email: "admin@example.com".into(),
            remote: "203.0.113.9".into(),
        };
        let ws = support::owned_workspace(&control, &admin).await;
        for id in ["web", "ios", "android"] {
            let source: NewSource = serde_json::from_value(json!({"id": id})).expect("source");
            control.create_source(&admin, &ws.id, &source).await.expect("source");
        }
        let report = control.verify_audit().await.expect("verify");
        assert_eq!(
            (report.rows, report.broken_at),
            (5, None),
            "{}: {report:?}",
            backend.name
        );
        let entries = control.audit(&ws.id, 10).await.expect("entries");
        assert_eq!(entries[0].action, "source.create");
        assert_eq!(entries[0].remote, "203.0.113.9");
        assert_eq!(entries[0].after["id"], "android");

        sqlx::query("UPDATE audit_log SET actor = 'mallory@example.com' WHERE seq = 3")
            .execute(&control.db().pool)
            .await
            .expect("tamper");
        let report = control.verify_audit().await.expect("verify");
        assert_eq!(report.broken_at, Some(3), "{}: {report:?}", backend.name);
        assert!(report.reason.as_deref().unwrap_or_default().contains("changed"));

        sqlx::query("UPDATE audit_log SET actor = 'admin@example.com' WHERE seq = 3")
            .execute(&control.db().pool)
            .await
            .expect("restore");
        assert_eq!(
            control.verify_audit().await.expect("verify").broken_at,
            None,
            "restored"
        );
        sqlx::query("DELETE FROM audit_log WHERE seq = 2")
            .execute(&control.db().pool)
            .await
            .expect("delete");
        let report = control.verify_audit().await.expect("verify");
        assert_eq!(report.broken_at, Some(2), "{}: {report:?}", backend.name);
        assert!(report.reason.as_deref().unwrap_or_default().contains("missing"));
        backend.finish(control).await;
    }
}

/// Someone with write access to the database but not the master key rewrites a row
/// and recomputes the chain from there, as an unkeyed chain would let them.
#[actix_rt::test]
async fn audit_verify_catches_a_chain_rewritten_without_the_master_key() {
    use sha2::Digest;
    use sqlx::Row;
    for backend in Backend::both().await {
        let master = age::x25519::Identity::generate();
        let control = backend.control(&master).await;
        let admin = Actor::local("admin");
        let ws = support::owned_workspace(&control, &admin).await;
        for id in ["web", "ios"] {
            let source: NewSource = serde_json::from_value(json!({"id": id})).expect("source");
            control.create_source(&admin, &ws.id, &source).await.expect("source");
        }
        // An intact chain verifies under its own master key only.
        assert_eq!(control.verify_audit().await.expect("verify").broken_at, None);
        let other = backend.control(&age::x25519::Identity::generate()).await;
        assert_eq!(other.verify_audit().await.expect("verify").broken_at, Some(1));
        let rows = sqlx::query(
            "SELECT seq, workspace_id, at, actor, action, target, remote, before_state, after_state, prev_hash \
             FROM audit_log ORDER BY seq",
        )
        .fetch_all(&control.db().pool)
        .await
        .expect("rows");
        let mut prev: Option<String> = None;
        for row in rows {
            let seq: i64 = row.try_get("seq").expect("seq");
            let prev_hash = prev.clone().unwrap_or_else(|| row.try_get("prev_hash").expect("prev"));
            let actor: String = if seq >= 2 {
                "mallory@example.com".into()
            } else {
                row.try_get("actor").expect("actor")
            };
            let content = json!([
                prev_hash,
                seq,
                row.try_get::<String, _>("workspace_id").expect("ws"),
                row.try_get::<i64, _>("at").expect("at"),
                actor,
                row.try_get::<String, _>("action").expect("action"),
                row.try_get::<String, _>("target").expect("target"),
                row.try_get::<String, _>("remote").expect("remote"),
                row.try_get::<String, _>("before_state").expect("before"),
                row.try_get::<String, _>("after_state").expect("after"),
            ]);
            let hash = hex::encode(sha2::Sha256::digest(content.to_string().as_bytes()));
            sqlx::query("UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
                .bind(&actor)
                .bind(&prev_hash)
                .bind(&hash)
                .bind(seq)
                .execute(&control.db().pool)
                .await
                .expect("rewrite");
            prev = Some(hash);
        }
        let report = control.verify_audit().await.expect("verify");
        assert_eq!(report.broken_at, Some(1), "{}: {report:?}", backend.name);
        assert!(
            report.reason.as_deref().unwrap_or_default().contains("unkeyed"),
            "{report:?}"
        );
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn webhook_sources_keep_their_secret_sealed_and_hand_it_to_ingest_only() {
    const HOOK_SECRET: &str = "whsec_NEVER_SHOWN_0123";
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let admin = Actor::local("test");
        let ws = support::owned_workspace(&control, &admin).await;
        let stripe: NewSource = serde_json::from_value(json!({
            "id": "stripe", "webhook": {"preset": "stripe", "secret": HOOK_SECRET, "tolerance_secs": 120}
        }))
        .expect("source");
        let created = control
            .create_source(&admin, &ws.id, &stripe)
            .await
            .expect("webhook source");
        assert_eq!(
            created.write_key, None,
            "{}: no write key for a webhook source",
            backend.name
        );
        assert_eq!(created.webhook_path.as_deref(), Some("/v1/webhooks/stripe"));
        let shown = serde_json::to_string(&created).expect("JSON");
        assert!(!shown.contains(HOOK_SECRET) && shown.contains("<redacted>"), "{shown}");
        assert_eq!(created.source.kind, "webhook");

        let row = sqlx::query("SELECT webhook, webhook_secret FROM sources WHERE id = 'stripe'")
            .fetch_one(&control.db().pool)
            .await
            .expect("row");
        let settings: String = row.try_get("webhook").expect("settings");
        let sealed: Vec<u8> = row.try_get("webhook_secret").expect("sealed");
        assert!(!settings.contains(HOOK_SECRET), "{settings}");
        assert!(
            !sealed.windows(HOOK_SECRET.len()).any(|w| w == HOOK_SECRET.as_bytes()),
            "ciphertext at rest"
        );

        // A patch without a secret keeps it; ingest gets it opened.
        let patch: switchyard_control::model::SourcePatch =
            serde_json::from_value(json!({"webhook": {"preset": "stripe", "tolerance_secs": 60}})).expect("patch");
        control
            .update_source(&admin, &ws.id, "stripe", &patch)
            .await
            .expect("patch");
        let live = control.live(&ws.id).await.expect("live");
        let hook = live.sources[0].webhook.clone().expect("webhook settings");
        assert_eq!((hook.secret.as_deref(), hook.tolerance_secs), (Some(HOOK_SECRET), 60));
        assert!(live.sources[0].key_digests.is_empty());

        // Refusals name the field; no write key for a webhook source.
        let bad: NewSource =
            serde_json::from_value(json!({"id": "hook2", "webhook": {"preset": "github"}})).expect("source");
        let error = control
            .create_source(&admin, &ws.id, &bad)
            .await
            .expect_err("no secret");
        assert!(error.to_string().contains("webhook.secret"), "{error}");
        let bad_mapping: NewSource = serde_json::from_value(
            json!({"id": "hook3", "webhook": {"preset": "generic", "secret": "0123456789", "mapping": ".event = ("}}),
        )
        .expect("source");
        let error = control
            .create_source(&admin, &ws.id, &bad_mapping)
            .await
            .expect_err("bad VRL");
        assert!(error.to_string().contains("webhook.mapping"), "{error}");
        assert!(control.rotate_write_key(&admin, &ws.id, "stripe", 0).await.is_err());
        let entries = control.audit(&ws.id, 100).await.expect("audit");
        assert!(
            entries
                .iter()
                .all(|e| !serde_json::to_string(e).expect("JSON").contains(HOOK_SECRET)),
            "no secret in the audit log"
        );
        backend.finish(control).await;
    }
}
