//! `apply` is idempotent and changes only what differs; `export` gives a file with no
//! secret that applies back to no change. On SQLite and on Postgres.

mod support;

use support::Backend;
use switchyard_control::apply::{WorkspaceFile, apply, export};
use switchyard_control::model::Actor;

const FILE: &str = r#"
workspace: WS
sources:
  - id: web
    name: Website
    settings: {rate_limit_events_per_sec: 100}
  - id: ios
destinations:
  - id: hook
    kind: webhook
    sources: [web, ios]
    settings: {url: "https://93.184.216.34/hook", timeout_ms: 3000}
    credentials: {bearer_token: "${HOOK_TOKEN}"}
"#;

fn env(name: &str) -> Option<String> {
    (name == "HOOK_TOKEN" || name == "HOOK_BEARER_TOKEN").then(|| "gitops-secret-77".to_string())
}

#[actix_rt::test]
async fn apply_twice_changes_once_and_an_exported_file_applies_back_to_no_change() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let actor = Actor::local("switchyard apply");
        let ws = support::owned_workspace(&control, &actor).await.id;
        let file = WorkspaceFile::from_yaml(&FILE.replace("WS", &ws)).expect("file");

        let first = apply(&control, &actor, &file, &env, false).await.expect("apply");
        assert_eq!(first.created.len(), 3, "{}: {first:?}", backend.name);
        assert_eq!(first.write_keys.len(), 2, "a key for each new source");
        let rows = control.verify_audit().await.expect("verify").rows;

        let second = apply(&control, &actor, &file, &env, false).await.expect("apply again");
        assert_eq!(second.unchanged.len(), 3, "{}: {second:?}", backend.name);
        assert!(second.created.is_empty() && second.updated.is_empty());
        assert_eq!(
            control.verify_audit().await.expect("verify").rows,
            rows,
            "nothing audited"
        );

        let mut changed = file.clone();
        changed.destinations[0]
            .settings
            .insert("timeout_ms".into(), 5000.into());
        let third = apply(&control, &actor, &changed, &env, false)
            .await
            .expect("apply a change");
        assert_eq!(third.updated, vec!["destination hook".to_string()], "{third:?}");

        let exported = export(&control, &ws).await.expect("export");
        let yaml = exported.to_yaml().expect("yaml");
        assert!(
            !yaml.contains("gitops-secret-77"),
            "{}: no secret in {yaml}",
            backend.name
        );
        assert!(yaml.contains("${HOOK_BEARER_TOKEN}"), "{yaml}");
        let back = WorkspaceFile::from_yaml(&yaml).expect("reads back");
        let fourth = apply(&control, &actor, &back, &env, false)
            .await
            .expect("apply the export");
        assert!(
            fourth.created.is_empty() && fourth.updated.is_empty(),
            "{}: {fourth:?}",
            backend.name
        );

        let mut fewer = back.clone();
        fewer.sources.retain(|s| s.id == "web");
        fewer.destinations.clear();
        let pruned = apply(&control, &actor, &fewer, &env, true).await.expect("prune");
        assert_eq!(
            pruned.deleted,
            vec!["destination hook".to_string(), "source ios".to_string()]
        );
        let missing = apply(&control, &actor, &file, &|_| None, false).await;
        assert!(
            missing.is_err_and(|e| e.to_string().contains("HOOK_TOKEN")),
            "an unset variable is named"
        );
        assert!(
            WorkspaceFile::from_yaml("workspace: x\nsourcez: []\n").is_err_and(|e| e.to_string().contains("sourcez"))
        );
        backend.finish(control).await;
    }
}
