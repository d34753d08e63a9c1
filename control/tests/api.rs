//! The admin API: every route against every role, on SQLite and on Postgres; bad
//! bodies refused with the reason; credentials never in output or logs.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, test, web};
use serde_json::{Value, json};
use support::Backend;
use switchyard_control::Control;
use switchyard_control::api::{ApiState, routes};
use switchyard_control::debugger::Debugger;
use switchyard_control::model::{Actor, NewDestination, NewMember, NewSource, Role};
use switchyard_control::store::Password;

const PASSWORD: &str = "a long enough password";
const SECRET: &str = "tok-NEVER-SHOWN-0123456789";

/// Captured log output, shared with the global subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("one subscriber per test binary");
    captured
}

/// A workspace with sources web and ios, destinations hook-web (web) and hook-both
/// (web, ios), and one user per role; returns it and each role's session token.
async fn workspace(control: &Control) -> (String, Vec<(&'static str, Option<String>)>) {
    let admin = Actor::local("setup");
    let owner = control
        .create_user(&admin, "owner@example.com", Password::Plain(PASSWORD))
        .await
        .expect("owner");
    let ws = control
        .create_workspace(&admin, "Acme", &owner)
        .await
        .expect("workspace")
        .id;
    for id in ["web", "ios"] {
        let source: NewSource = serde_json::from_value(json!({"id": id})).expect("source");
        control.create_source(&admin, &ws, &source).await.expect("source");
    }
    for (id, sources) in [("hook-web", json!(["web"])), ("hook-both", json!(["web", "ios"]))] {
        let destination: NewDestination = serde_json::from_value(json!({
            "id": id, "kind": "webhook", "sources": sources,
            "settings": {"url": "https://93.184.216.34/hook"}, "credentials": {"bearer_token": SECRET}
        }))
        .expect("destination");
        control
            .create_destination(&admin, &ws, &destination)
            .await
            .expect("destination");
    }
    for (email, role, sources) in [
        ("member@example.com", Role::Member, vec![]),
        ("reader@example.com", Role::ReadOnly, vec![]),
        (
            "collaborator@example.com",
            Role::SourceCollaborator,
            vec!["web".to_string()],
        ),
    ] {
        let member = NewMember {
            email: email.into(),
            role,
            sources,
            password: Some(PASSWORD.into()),
        };
        control.add_member(&admin, &ws, &member).await.expect("member");
    }
    control
        .create_user(&admin, "outsider@example.com", Password::Plain(PASSWORD))
        .await
        .expect("outsider");
    let mut tokens = Vec::new();
    for (role, email) in [
        ("owner", "owner@example.com"),
        ("member", "member@example.com"),
        ("read_only", "reader@example.com"),
        ("collaborator", "collaborator@example.com"),
        ("outsider", "outsider@example.com"),
    ] {
        let session = control.login(email, PASSWORD).await.expect("login");
        tokens.push((role, Some(session.token)));
    }
    tokens.push(("anonymous", None));
    (ws, tokens)
}

/// The admin API's routes over `control`, without the event debugger or SSO.
fn app(
    control: Arc<Control>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(ApiState {
            control,
            debugger: None,
            sso: None,
        }))
        .configure(routes)
}

/// One route, its body, and the status each role gets, in the order of `workspace`'s
/// tokens: owner, member, read_only, collaborator, outsider, anonymous. `{n}` in a
/// path or body becomes a number unique to the case; `setup` makes what it needs first.
struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    setup: Setup,
    expect: [u16; 6],
}

#[derive(Clone, Copy)]
enum Setup {
    Plain,
    /// A source `tmp-{n}` fed to nothing.
    Source,
    /// A destination `tmp-{n}` fed by web.
    Destination,
    /// A read-only member `tmp-{n}@example.com`; `{user}` is its id.
    Member,
}

fn cases() -> Vec<Case> {
    use Setup::*;
    let case = |method, path, body, setup, expect| Case {
        method,
        path,
        body,
        setup,
        expect,
    };
    let hook = |n: &str, sources: Value| json!({"id": n, "kind": "webhook", "sources": sources, "settings": {"url": "https://93.184.216.34/x"}});
    vec![
        case("GET", "/v1/workspaces", None, Plain, [200, 200, 200, 200, 200, 401]),
        // A token is scoped to a workspace the caller belongs to, at most its role there.
        case(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "ci", "workspace": "{ws}"})),
            Plain,
            [200, 200, 200, 200, 404, 401],
        ),
        case(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "ci", "workspace": "{ws}", "role": "owner"})),
            Plain,
            [200, 400, 400, 400, 404, 401],
        ),
        case(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "ci", "workspace": "{ws}", "role": "source_collaborator"})),
            Plain,
            [400, 400, 400, 200, 404, 401],
        ),
        case("GET", "/v1/tokens", None, Plain, [200, 200, 200, 200, 200, 401]),
        case(
            "GET",
            "/v1/workspaces/{ws}/policy",
            None,
            Plain,
            [200, 200, 200, 200, 404, 401],
        ),
        case(
            "PATCH",
            "/v1/workspaces/{ws}/policy",
            Some(json!({"require_mfa": false})),
            Plain,
            [200, 403, 403, 403, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/sources",
            None,
            Plain,
            [200, 200, 200, 200, 404, 401],
        ),
        case(
            "POST",
            "/v1/workspaces/{ws}/sources",
            Some(json!({"id": "new-{n}"})),
            Plain,
            [201, 201, 403, 403, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/sources/web",
            None,
            Plain,
            [200, 200, 200, 200, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/sources/ios",
            None,
            Plain,
            [200, 200, 200, 403, 404, 401],
        ),
        case(
            "PATCH",
            "/v1/workspaces/{ws}/sources/web",
            Some(json!({"name": "Web {n}"})),
            Plain,
            [200, 200, 403, 200, 404, 401],
        ),
        case(
            "PATCH",
            "/v1/workspaces/{ws}/sources/ios",
            Some(json!({"name": "iOS {n}"})),
            Plain,
            [200, 200, 403, 403, 404, 401],
        ),
        case(
            "DELETE",
            "/v1/workspaces/{ws}/sources/tmp-{n}",
            None,
            Source,
            [204, 204, 403, 403, 404, 401],
        ),
        case(
            "POST",
            "/v1/workspaces/{ws}/sources/web/write-keys",
            Some(json!({"overlap_secs": 60})),
            Plain,
            [200, 200, 403, 200, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/sources/web/debugger",
            None,
            Plain,
            [429, 429, 429, 429, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/sources/ios/debugger?sample=0.5",
            None,
            Plain,
            [429, 429, 429, 403, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/destinations",
            None,
            Plain,
            [200, 200, 200, 200, 404, 401],
        ),
        case(
            "POST",
            "/v1/workspaces/{ws}/destinations",
            Some(hook("d-{n}", json!(["web"]))),
            Plain,
            [201, 201, 403, 201, 404, 401],
        ),
        case(
            "POST",
            "/v1/workspaces/{ws}/destinations",
            Some(hook("e-{n}", json!(["web", "ios"]))),
            Plain,
            [201, 201, 403, 403, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/destinations/hook-both",
            None,
            Plain,
            [200, 200, 200, 200, 404, 401],
        ),
        // A credential follows its endpoint: a new URL comes with the credentials again.
        case(
            "PATCH",
            "/v1/workspaces/{ws}/destinations/hook-web",
            Some(json!({"settings": {"url": "https://93.184.216.34/{n}"}, "credentials": {"bearer_token": SECRET}})),
            Plain,
            [200, 200, 403, 200, 404, 401],
        ),
        case(
            "PATCH",
            "/v1/workspaces/{ws}/destinations/hook-web",
            Some(json!({"settings": {"url": "https://93.184.216.35/{n}"}})),
            Plain,
            [400, 400, 403, 400, 404, 401],
        ),
        case(
            "PATCH",
            "/v1/workspaces/{ws}/destinations/hook-both",
            Some(json!({"settings": {"url": "https://93.184.216.34/{n}"}, "credentials": {"bearer_token": SECRET}})),
            Plain,
            [200, 200, 403, 403, 404, 401],
        ),
        case(
            "DELETE",
            "/v1/workspaces/{ws}/destinations/tmp-{n}",
            None,
            Destination,
            [204, 204, 403, 204, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/members",
            None,
            Plain,
            [200, 200, 200, 403, 404, 401],
        ),
        case(
            "POST",
            "/v1/workspaces/{ws}/members",
            Some(json!({"email": "new-{n}@example.com", "role": "read_only", "password": PASSWORD})),
            Plain,
            [200, 403, 403, 403, 404, 401],
        ),
        case(
            "DELETE",
            "/v1/workspaces/{ws}/members/{user}",
            None,
            Member,
            [204, 403, 403, 403, 404, 401],
        ),
        case(
            "GET",
            "/v1/workspaces/{ws}/audit",
            None,
            Plain,
            [200, 200, 200, 403, 404, 401],
        ),
    ]
}

#[actix_rt::test]
async fn every_route_answers_every_role_as_its_permissions_say_and_never_shows_a_credential() {
    let logs = capture_logs();
    for backend in Backend::both().await {
        let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
        let (ws, tokens) = workspace(&control).await;
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(ApiState {
                    control: control.clone(),
                    // No room for a stream: a caller the role check lets through gets 429
                    // rather than an endless body (streams are tested in debugger.rs).
                    debugger: Some(Debugger::new(0, Duration::from_secs(15), |_| {})),
                    sso: None,
                }))
                .configure(routes),
        )
        .await;
        let admin = Actor::local("setup");
        let mut n = 0;
        let mut failures = Vec::new();
        for case in cases() {
            for ((role, token), expected) in tokens.iter().zip(case.expect) {
                n += 1;
                let fill = |text: &str| text.replace("{ws}", &ws).replace("{n}", &n.to_string());
                let mut path = fill(case.path);
                match case.setup {
                    Setup::Plain => {}
                    Setup::Source => {
                        let source: NewSource = serde_json::from_value(json!({"id": fill("tmp-{n}")})).expect("source");
                        control.create_source(&admin, &ws, &source).await.expect("setup source");
                    }
                    Setup::Destination => {
                        let destination: NewDestination = serde_json::from_value(json!({
                            "id": fill("tmp-{n}"), "kind": "blackhole", "sources": ["web"]
                        }))
                        .expect("destination");
                        control
                            .create_destination(&admin, &ws, &destination)
                            .await
                            .expect("setup destination");
                    }
                    Setup::Member => {
                        let member = NewMember {
                            email: fill("tmp-{n}@example.com"),
                            role: Role::ReadOnly,
                            sources: vec![],
                            password: Some(PASSWORD.into()),
                        };
                        let added = control.add_member(&admin, &ws, &member).await.expect("setup member");
                        path = path.replace("{user}", &added.user_id);
                    }
                }
                let mut request = match case.method {
                    "GET" => test::TestRequest::get(),
                    "POST" => test::TestRequest::post(),
                    "PATCH" => test::TestRequest::patch(),
                    _ => test::TestRequest::delete(),
                }
                .uri(&path)
                .peer_addr("198.51.100.7:40000".parse().expect("addr"));
                if let Some(token) = token {
                    request = request.insert_header(("authorization", format!("Bearer {token}")));
                }
                if let Some(body) = &case.body {
                    let body: Value = serde_json::from_str(&fill(&body.to_string())).expect("body");
                    request = request.set_json(body);
                }
                let response = test::call_service(&app, request.to_request()).await;
                let status = response.status().as_u16();
                let body = test::read_body(response).await;
                let text = String::from_utf8_lossy(&body);
                assert!(
                    !text.contains(SECRET),
                    "{} {path} as {role} showed a credential: {text}",
                    case.method
                );
                if status != expected {
                    failures.push(format!(
                        "{} {} {path} as {role}: {status}, want {expected}: {text}",
                        backend.name, case.method
                    ));
                }
                if status >= 400 {
                    let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    assert!(error["message"].is_string(), "errors are JSON with a message: {text}");
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} route x role mismatches:\n{}",
            failures.len(),
            failures.join("\n")
        );

        // Every change above is audited, with the caller and address, and chained.
        let entries = control.audit(&ws, 1000).await.expect("audit");
        assert!(
            entries
                .iter()
                .any(|e| e.action == "destination.update" && e.actor == "collaborator@example.com")
        );
        assert!(entries.iter().any(|e| e.remote == "198.51.100.7"));
        let report = control.verify_audit().await.expect("verify");
        assert_eq!(report.broken_at, None, "{report:?}");
        drop(app);
        let control = Arc::try_unwrap(control).expect("sole owner");
        backend.finish(control).await;
    }
    let logged = String::from_utf8_lossy(&logs.0.lock().expect("logs")).into_owned();
    assert!(logged.contains("audited"), "the capture works");
    assert!(!logged.contains(SECRET), "a credential reached the log");
}

#[actix_rt::test]
async fn bad_bodies_get_a_4xx_naming_the_problem() {
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    let (ws, tokens) = workspace(&control).await;
    let owner = tokens[0].1.clone().expect("owner token");
    let app = test::init_service(app(control.clone())).await;
    let sources = format!("/v1/workspaces/{ws}/sources");
    let destinations = format!("/v1/workspaces/{ws}/destinations");
    let big = "x".repeat(70 * 1024);
    let bad: Vec<(&str, String, String, u16, &str)> = vec![
        ("unknown field", sources.clone(), json!({"id": "a", "colour": "red"}).to_string(), 400, "colour"),
        ("wrong type", sources.clone(), json!({"id": 7}).to_string(), 400, "invalid type"),
        ("bad id", sources.clone(), json!({"id": "has space"}).to_string(), 400, "id"),
        ("not JSON", sources.clone(), "{\"id\": ".to_string(), 400, "request body"),
        ("oversized", sources.clone(), json!({"id": "a", "name": big}).to_string(), 413, "bytes"),
        (
            "unknown destination setting",
            destinations.clone(),
            json!({"id": "d", "kind": "webhook", "sources": ["web"], "settings": {"url": "https://93.184.216.34/", "urll": 1}}).to_string(),
            400,
            "urll",
        ),
        (
            "unknown source in a destination",
            destinations.clone(),
            json!({"id": "d", "kind": "webhook", "sources": ["nope"], "settings": {"url": "https://93.184.216.34/"}}).to_string(),
            400,
            "nope",
        ),
        (
            "a bad transform",
            sources.clone(),
            json!({"id": "t", "transforms": [{"op": "no_such_op"}]}).to_string(),
            400,
            "no_such_op",
        ),
    ];
    for (what, path, body, want, mentions) in bad {
        let request = test::TestRequest::post()
            .uri(&path)
            .insert_header(("authorization", format!("Bearer {owner}")))
            .insert_header(("content-type", "application/json"))
            .set_payload(body)
            .to_request();
        let response = test::call_service(&app, request).await;
        let status = response.status();
        let body: Value = test::read_body_json(response).await;
        assert_eq!(status.as_u16(), want, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(mentions),
            "{what}: {message:?} should mention {mentions:?}"
        );
    }
    let request = test::TestRequest::post()
        .uri(&sources)
        .insert_header(("authorization", format!("Bearer {owner}")))
        .insert_header(("content-type", "text/plain"))
        .set_payload("{\"id\": \"plain\"}")
        .to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let request = test::TestRequest::get()
        .uri("/v1/workspaces")
        .insert_header(("authorization", "Bearer sy_forged"))
        .to_request();
    assert_eq!(
        test::call_service(&app, request).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let request = test::TestRequest::get().uri("/openapi.json").to_request();
    let document: Value = test::call_and_read_body_json(&app, request).await;
    assert!(
        document["paths"]["/v1/workspaces/{workspace}/destinations/{id}"]["patch"].is_object(),
        "{document}"
    );
    assert!(document["components"]["schemas"]["NewDestination"].is_object());
    drop(app);
    backend.finish(Arc::try_unwrap(control).expect("sole owner")).await;
}

/// A native integration's key is a credential like a webhook's token: sealed, never
/// shown, refused in plain settings, and not carried to an endpoint a member moves it
/// to (a member who points the destination at their own server gets nothing).
#[actix_rt::test]
async fn native_keys_are_sealed_never_shown_and_stay_with_their_endpoint() {
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    let (ws, tokens) = workspace(&control).await;
    let member = tokens[1].1.clone().expect("member token");
    let app = test::init_service(app(control.clone())).await;
    let destinations = format!("/v1/workspaces/{ws}/destinations");
    let call = |method: actix_web::http::Method, path: String, body: Option<Value>| {
        let mut request = test::TestRequest::default()
            .method(method)
            .uri(&path)
            .insert_header(("authorization", format!("Bearer {member}")));
        if let Some(body) = body {
            request = request.set_json(body);
        }
        request.to_request()
    };
    let create = json!({"id": "relay", "kind": "segment", "sources": ["web"],
                        "settings": {"endpoint": "https://93.184.216.34"}, "credentials": {"write_key": SECRET}});
    let response = test::call_service(
        &app,
        call(actix_web::http::Method::POST, destinations.clone(), Some(create)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = String::from_utf8(test::read_body(response).await.to_vec()).expect("utf-8");
    assert!(!created.contains(SECRET), "{created}");
    let response = test::call_service(
        &app,
        call(actix_web::http::Method::GET, format!("{destinations}/relay"), None),
    )
    .await;
    let shown: Value = test::read_body_json(response).await;
    assert_eq!(shown["credentials"]["write_key"], "<redacted>", "{shown}");
    assert!(!shown.to_string().contains(SECRET));

    let refusals = [
        (
            actix_web::http::Method::POST,
            destinations.clone(),
            json!({"id": "plain", "kind": "segment", "sources": ["web"], "settings": {"write_key": "wk"}}),
            "settings.write_key",
        ),
        (
            actix_web::http::Method::POST,
            destinations.clone(),
            json!({"id": "typo", "kind": "segment", "sources": ["web"], "settings": {"writeKey": "wk"},
                   "credentials": {"write_key": "wk"}}),
            "writeKey",
        ),
        (
            actix_web::http::Method::PATCH,
            format!("{destinations}/relay"),
            json!({"settings": {"endpoint": "https://198.51.100.66"}}),
            "settings.endpoint",
        ),
        // Held back for a day by a member's setting: refused, the limit named.
        (
            actix_web::http::Method::PATCH,
            format!("{destinations}/relay"),
            json!({"settings": {"endpoint": "https://93.184.216.34", "linger_ms": 86_400_000}}),
            "linger_ms",
        ),
    ];
    for (method, path, body, mentions) in refusals {
        let response = test::call_service(&app, call(method, path, Some(body.clone()))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = test::read_body_json(response).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{body}: {message}");
    }
    let relay = control.destination_config(&ws, "relay").await.expect("runnable");
    let switchyard_config::DestinationKind::Segment(settings) = &relay.kind else {
        panic!("a segment destination: {relay:?}")
    };
    assert_eq!(
        (settings.endpoint.as_str(), settings.write_key.as_str()),
        ("https://93.184.216.34", SECRET)
    );

    // Amplitude's key goes where the region says: moving either asks for the key again,
    // so a member cannot send the sealed key to a server of their own.
    let create = json!({"id": "amp", "kind": "amplitude", "sources": ["web"],
                        "settings": {"endpoint": "https://93.184.216.34"}, "credentials": {"api_key": SECRET}});
    let response = test::call_service(
        &app,
        call(actix_web::http::Method::POST, destinations.clone(), Some(create)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for (moved, field) in [
        (json!({"region": "eu"}), "settings.region"),
        (json!({"endpoint": "https://198.51.100.66"}), "settings.endpoint"),
    ] {
        let body = json!({ "settings": moved });
        let response = test::call_service(
            &app,
            call(
                actix_web::http::Method::PATCH,
                format!("{destinations}/amp"),
                Some(body.clone()),
            ),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = test::read_body_json(response).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    let shown: Value = test::read_body_json(
        test::call_service(
            &app,
            call(actix_web::http::Method::GET, format!("{destinations}/amp"), None),
        )
        .await,
    )
    .await;
    assert_eq!(shown["credentials"]["api_key"], "<redacted>", "{shown}");
    let amp = control.destination_config(&ws, "amp").await.expect("runnable");
    let switchyard_config::DestinationKind::Amplitude(settings) = &amp.kind else {
        panic!("an amplitude destination: {amp:?}")
    };
    assert_eq!(
        (settings.base_url(), settings.api_key.as_str()),
        ("https://93.184.216.34", SECRET)
    );

    // Mixpanel's token and service account likewise; a secret in plain settings is refused.
    let create = json!({"id": "mp", "kind": "mixpanel", "sources": ["web"],
                        "settings": {"endpoint": "https://93.184.216.34"}, "credentials": {"project_token": SECRET}});
    let response = test::call_service(
        &app,
        call(actix_web::http::Method::POST, destinations.clone(), Some(create)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for (body, field) in [
        (
            json!({"settings": {"endpoint": "https://93.184.216.34", "region": "eu"}}),
            "settings.region",
        ),
        (
            json!({"settings": {"endpoint": "https://93.184.216.34", "service_account_username": "sa",
                                "service_account_secret": "s", "project_id": "1"}}),
            "settings.service_account",
        ),
    ] {
        let response = test::call_service(
            &app,
            call(
                actix_web::http::Method::PATCH,
                format!("{destinations}/mp"),
                Some(body.clone()),
            ),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = test::read_body_json(response).await;
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: {message}");
    }
    let shown: Value = test::read_body_json(
        test::call_service(
            &app,
            call(actix_web::http::Method::GET, format!("{destinations}/mp"), None),
        )
        .await,
    )
    .await;
    assert!(!shown.to_string().contains(SECRET), "{shown}");
}

/// The catalog a console builds its forms from: every kind with its schema, for anyone
/// signed in, for no one else.
#[actix_rt::test]
async fn the_destination_kinds_are_listed_with_their_schemas_for_a_signed_in_caller() {
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    let (_ws, tokens) = workspace(&control).await;
    let reader = tokens[2].1.clone().expect("read-only token");
    let app = test::init_service(app(control.clone())).await;
    let anonymous = test::TestRequest::get().uri("/v1/destination-kinds").to_request();
    assert_eq!(
        test::call_service(&app, anonymous).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let request = test::TestRequest::get()
        .uri("/v1/destination-kinds")
        .insert_header(("authorization", format!("Bearer {reader}")))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let kinds: Value = test::read_body_json(response).await;
    let names: Vec<&str> = kinds
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "webhook",
            "segment",
            "amplitude",
            "mixpanel",
            "kafka",
            "postgres_warehouse",
            "object_storage_export",
            "blackhole"
        ]
    );
    let segment = &kinds[1];
    assert_eq!(segment["credentials"], json!(["write_key"]));
    assert_eq!(segment["settings_schema"]["additionalProperties"], false);
    assert!(
        segment["settings_schema"]["required"]
            .as_array()
            .expect("required")
            .contains(&json!("write_key"))
    );
    let document: Value = test::read_body_json(
        test::call_service(&app, test::TestRequest::get().uri("/openapi.json").to_request()).await,
    )
    .await;
    assert!(
        document["paths"]["/v1/destination-kinds"]["get"].is_object(),
        "in the OpenAPI document"
    );
}
