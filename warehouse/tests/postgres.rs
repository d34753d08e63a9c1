//! The Postgres warehouse loader against the real server (a fresh database per test):
//! tables per event type, columns as events evolve, type conflicts kept, a replayed
//! batch adding nothing, and a user without write rights told so and able to retry.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard_egress::EgressPolicy;
use switchyard_schemas::Event;
use switchyard_testkit::TestDatabase;
use switchyard_testkit::postgres::{drop_role, unique};
use switchyard_warehouse::{Warehouse, WarehouseConfig};

fn config(url: &str) -> WarehouseConfig {
    serde_json::from_value(json!({"url": url})).expect("config")
}

/// The test server is on loopback, which the operator allows here.
fn local() -> EgressPolicy {
    EgressPolicy::default().allowing(&["127.0.0.0/8", "::1/128"])
}

fn batch(events: Value) -> Vec<Arc<Event>> {
    let Value::Array(events) = events else { panic!("a list") };
    events
        .into_iter()
        .map(|event| Arc::new(serde_json::from_value(event).expect("event")))
        .collect()
}

async fn count(db: &TestDatabase, table: &str) -> usize {
    db.json_rows(&format!("SELECT id FROM {table}")).await.len()
}

#[tokio::test]
async fn every_event_type_lands_in_its_table_and_a_replayed_batch_adds_nothing() {
    let db = TestDatabase::create("switchyard_wh").await;
    let context = json!({"library": {"name": "analytics-python", "version": "2.3"}, "ip": "203.0.113.7"});
    let events = batch(json!([
        {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"email": "ann@example.com", "plan": "pro"},
         "context": context, "receivedAt": "2024-05-01T12:00:00.000Z", "timestamp": "2024-05-01T12:00:00.000Z"},
        {"type": "track", "messageId": "t1", "userId": "u1", "event": "Order Completed",
         "properties": {"orderId": "o-1", "revenue": 12.5, "products": [{"sku": "a"}]}, "context": context,
         "receivedAt": "2024-05-01T12:00:01.000Z"},
        {"type": "track", "messageId": "t2", "anonymousId": "a9", "event": "Signed Up", "properties": {"plan": "free"}},
        {"type": "page", "messageId": "p1", "userId": "u1", "name": "Home", "category": "Docs", "properties": {"path": "/"}},
        {"type": "screen", "messageId": "s1", "userId": "u1", "name": "Settings"},
        {"type": "group", "messageId": "g1", "userId": "u1", "groupId": "acme", "traits": {"employees": 42}},
        {"type": "alias", "messageId": "al1", "userId": "u1", "previousId": "a9"}
    ]));
    let warehouse = Warehouse::new(&config(&db.url), &local()).expect("warehouse");
    let loaded = warehouse.load("web-app", &events).await.expect("load");
    assert_eq!(
        (loaded.rows, loaded.existing),
        (10, 0),
        "7 events, 2 event tables, 1 user"
    );
    for (table, rows) in [
        ("identifies", 1),
        ("users", 1),
        ("tracks", 2),
        ("order_completed", 1),
        ("signed_up", 1),
        ("pages", 1),
        ("screens", 1),
        ("groups", 1),
        ("aliases", 1),
    ] {
        assert_eq!(count(&db, &format!("web_app.{table}")).await, rows, "{table}");
    }
    let order = &db
        .json_rows("SELECT id, user_id, revenue, order_id, products, context_library_name, received_at FROM web_app.order_completed")
        .await[0];
    assert_eq!(order["id"], "t1");
    assert_eq!(order["user_id"], "u1");
    assert_eq!(order["revenue"], 12.5);
    assert_eq!(order["order_id"], "o-1");
    assert_eq!(order["products"], r#"[{"sku":"a"}]"#, "arrays as JSON text");
    assert_eq!(order["context_library_name"], "analytics-python");
    assert!(
        order["received_at"]
            .as_str()
            .expect("time")
            .starts_with("2024-05-01T12:00:01")
    );
    let tracks = db
        .json_rows("SELECT event, event_text FROM web_app.tracks WHERE id = 't2'")
        .await;
    assert_eq!(tracks[0], json!({"event": "signed_up", "event_text": "Signed Up"}));
    let user = &db.json_rows("SELECT id, email, plan FROM web_app.users").await[0];
    assert_eq!(*user, json!({"id": "u1", "email": "ann@example.com", "plan": "pro"}));
    let group = &db.json_rows("SELECT group_id, employees FROM web_app.groups").await[0];
    assert_eq!(*group, json!({"group_id": "acme", "employees": 42}));
    let alias = &db.json_rows("SELECT previous_id FROM web_app.aliases").await[0];
    assert_eq!(alias["previous_id"], "a9");

    // The same batch again, from this loader and from a new one that knows nothing.
    let again = warehouse.load("web-app", &events).await.expect("replay");
    assert_eq!(again.existing, 9, "every event row already there");
    let fresh = Warehouse::new(&config(&db.url), &local()).expect("warehouse");
    fresh.load("web-app", &events).await.expect("replay from a new loader");
    for table in ["identifies", "users", "tracks", "order_completed", "pages", "aliases"] {
        let expected = if table == "tracks" { 2 } else { 1 };
        assert_eq!(
            count(&db, &format!("web_app.{table}")).await,
            expected,
            "{table} after replays"
        );
    }
    drop((warehouse, fresh));
    db.drop_now().await;
}

#[tokio::test]
async fn columns_follow_the_events_and_a_conflicting_value_is_kept_in_overflow() {
    let db = TestDatabase::create("switchyard_wh").await;
    let warehouse = Warehouse::new(&config(&db.url), &local()).expect("warehouse");
    let signed_up = |id: &str, properties: Value| json!({"type": "track", "messageId": id, "userId": "u1", "event": "Signed Up", "properties": properties});
    warehouse
        .load(
            "web",
            &batch(json!([signed_up("e1", json!({"plan": "pro", "seats": 3}))])),
        )
        .await
        .expect("first load");
    warehouse
        .load(
            "web",
            &batch(json!([signed_up(
                "e2",
                json!({"plan": "team", "seats": "many", "referrer": {"utmSource": "ad"}})
            )])),
        )
        .await
        .expect("a load with a new property and a conflicting type");
    let rows = db
        .json_rows("SELECT id, plan, seats, referrer_utm_source, _overflow FROM web.signed_up ORDER BY id")
        .await;
    assert_eq!(
        rows,
        [
            json!({"id": "e1", "plan": "pro", "seats": 3, "referrer_utm_source": null, "_overflow": null}),
            json!({"id": "e2", "plan": "team", "seats": null, "referrer_utm_source": "ad", "_overflow": {"seats": "many"}}),
        ]
    );
    let kinds = db
        .json_rows(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'web' AND table_name = 'signed_up' AND column_name IN ('seats', 'plan')",
        )
        .await;
    assert!(
        kinds.contains(&json!({"column_name": "seats", "data_type": "bigint"})),
        "{kinds:?}"
    );

    // users: a newer identify's traits win; an older one arriving late only fills gaps.
    let identify = |id: &str, at: &str, traits: Value| json!({"type": "identify", "messageId": id, "userId": "u1", "receivedAt": at, "traits": traits});
    warehouse
        .load(
            "web",
            &batch(json!([
                identify("i1", "2024-05-01T10:00:00Z", json!({"plan": "free", "name": "Ann"})),
                identify("i2", "2024-05-01T11:00:00Z", json!({"plan": "pro"})),
            ])),
        )
        .await
        .expect("identifies");
    warehouse
        .load(
            "web",
            &batch(json!([identify(
                "i0",
                "2024-05-01T09:00:00Z",
                json!({"plan": "trial", "company": "Acme"})
            )])),
        )
        .await
        .expect("a late, older identify");
    let user = &db
        .json_rows("SELECT plan, name, company FROM web.users WHERE id = 'u1'")
        .await[0];
    assert_eq!(*user, json!({"plan": "pro", "name": "Ann", "company": "Acme"}));
    drop(warehouse);
    db.drop_now().await;
}

#[tokio::test]
async fn a_user_who_may_not_write_gets_a_clear_retryable_error_and_loads_once_granted() {
    let db = TestDatabase::create("switchyard_wh").await;
    let role = format!("switchyard_reader_{}", unique());
    db.execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'; REVOKE CREATE ON DATABASE {} FROM PUBLIC; \
         REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        db.name
    ))
    .await;
    let warehouse = Warehouse::new(&config(&db.url_as(&role, "reader-pw")), &local()).expect("warehouse");
    let events = batch(json!([{"type": "track", "messageId": "r1", "userId": "u1", "event": "Viewed"}]));
    let error = warehouse.load("web", &events).await.expect_err("no right to create");
    assert!(error.retryable, "events wait for the grant: {error}");
    assert!(error.reason.contains("may not write"), "{error}");
    assert!(!error.reason.contains("reader-pw"), "no password in the reason");

    db.execute(&format!("GRANT CREATE ON DATABASE {} TO {role}", db.name))
        .await;
    let loaded = warehouse.load("web", &events).await.expect("loads once granted");
    assert_eq!(loaded.rows, 2);
    drop(warehouse);
    db.drop_now().await;
    drop_role(&role).await;
}
