//! The admin API's request parsing: the input picks a route and method and gives the
//! JSON body, sent with a valid owner session to a control plane on a SQLite file. Every
//! request must get an answer whose error, if any, is JSON with a reason: no panic, no
//! 500 for bad input.
#![no_main]

use std::sync::{Arc, LazyLock};

use actix_web::{App, test, web};
use libfuzzer_sys::fuzz_target;
use switchyard_control::api::{ApiState, routes};
use switchyard_control::model::Actor;
use switchyard_control::secrets::Sealer;
use switchyard_control::store::Password;
use switchyard_control::{Control, Db};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    control: Arc<Control>,
    token: String,
    workspace: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("switchyard-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (control, token, workspace) = runtime.block_on(async {
        let db = Db::open(&Db::sqlite_url(&dir.join("control.db"))).await.expect("db");
        let control = Control::new(db, Sealer::from_master(&age::x25519::Identity::generate()));
        let actor = Actor::local("fuzz");
        let owner = control
            .create_user(&actor, "owner@example.com", Password::Plain("a long enough password"))
            .await
            .expect("owner");
        let workspace = control
            .create_workspace(&actor, "Fuzz", &owner)
            .await
            .expect("workspace");
        let session = control
            .login("owner@example.com", "a long enough password")
            .await
            .expect("login");
        (Arc::new(control), session.token, workspace.id)
    });
    Fixture {
        runtime,
        control,
        token,
        workspace,
    }
});

const ROUTES: [(&str, &str); 12] = [
    ("POST", "/v1/login"),
    ("POST", "/v1/tokens"),
    ("POST", "/v1/workspaces/{ws}/sources"),
    ("PATCH", "/v1/workspaces/{ws}/sources/web"),
    ("POST", "/v1/workspaces/{ws}/sources/web/write-keys"),
    ("POST", "/v1/workspaces/{ws}/destinations"),
    ("PATCH", "/v1/workspaces/{ws}/destinations/hook"),
    ("POST", "/v1/workspaces/{ws}/members"),
    ("PATCH", "/v1/workspaces/{ws}/policy"),
    ("POST", "/v1/me/mfa/confirm"),
    ("GET", "/v1/workspaces/{ws}/audit?limit=1"),
    ("GET", "/v1/sso/corp/callback"),
];

fuzz_target!(|data: &[u8]| {
    let [route, rest @ ..] = data else { return };
    let fixture = &*FIXTURE;
    let (method, path) = ROUTES[*route as usize % ROUTES.len()];
    let path = path.replace("{ws}", &fixture.workspace);
    fixture.runtime.block_on(async {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let state = ApiState {
                    control: fixture.control.clone(),
                    debugger: None,
                    sso: None,
                };
                let app = test::init_service(App::new().app_data(web::Data::new(state)).configure(routes)).await;
                let request = match method {
                    "GET" => test::TestRequest::get(),
                    "PATCH" => test::TestRequest::patch(),
                    _ => test::TestRequest::post(),
                }
                .uri(&path)
                .insert_header(("authorization", format!("Bearer {}", fixture.token)))
                .insert_header(("content-type", "application/json"))
                .peer_addr("192.0.2.1:1000".parse().expect("addr"))
                .set_payload(rest.to_vec())
                .to_request();
                let response = test::call_service(&app, request).await;
                let status = response.status();
                let body = test::read_body(response).await;
                assert!(
                    status.as_u16() != 500,
                    "500 for {method} {path}: {}",
                    String::from_utf8_lossy(&body)
                );
                if !status.is_success() && status.as_u16() != 302 {
                    let value: serde_json::Value = serde_json::from_slice(&body).expect("errors are JSON");
                    assert!(value["message"].is_string(), "{status}: {value}");
                }
            })
            .await
    });
});
