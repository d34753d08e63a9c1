//! SSO against a real OpenID Connect provider (npm `oidc-provider`, started here on
//! 127.0.0.1 by node): the whole authorization code flow with PKCE, users provisioned
//! by verified email with the role their groups map to, refused when no group maps or
//! the email is unverified, a login state that works once, and a workspace that takes
//! SSO sign-ins only.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test, web};
use openidconnect::reqwest;
use serde_json::{Value, json};
use support::{Backend, OWNER_PASSWORD};
use switchyard_control::api::{ApiState, routes};
use switchyard_control::model::{Actor, WorkspacePolicyPatch};
use switchyard_control::sso::{Sso, SsoConfig};

const REDIRECT: &str = "http://127.0.0.1:9/v1/sso/corp/callback";

/// The provider process, stopped when dropped.
struct OidcProvider {
    child: Child,
    issuer: String,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `scripts/ensure-test-tools.sh` installs oidc-provider.
fn provider_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_OIDC_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/switchyard/oidc-provider"),
        PathBuf::from,
    )
}

fn start_provider() -> OidcProvider {
    let dir = provider_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed in {}: run scripts/ensure-test-tools.sh",
        dir.display()
    );
    // ESM resolves packages from the script's own directory, so the script runs there.
    let script = dir.join("switchyard-test-provider.mjs");
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs"),
        &script,
    )
    .expect("copy provider script");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new("node")
        .arg(&script)
        .args([
            &port.to_string(),
            "switchyard",
            "test-client-secret-0123456789",
            REDIRECT,
        ])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start node (install nodejs)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("listening"));
    assert!(started, "the OIDC provider did not start");
    // It keeps writing notices: keep reading, or its next write fails and it exits.
    std::thread::spawn(move || lines.for_each(drop));
    OidcProvider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    }
}

fn sso_config(issuer: &str, workspace: &str) -> SsoConfig {
    serde_json::from_value(json!({
        "name": "corp", "issuer_url": issuer, "client_id": "switchyard",
        "client_secret": "test-client-secret-0123456789", "redirect_url": REDIRECT, "workspace": workspace,
        "roles": {"switchyard-admins": "owner", "analysts": "read_only"},
    }))
    .expect("sso config")
}

/// A browser: follows the provider's redirects with its cookies until it is sent back
/// to our callback, and returns that URL's path and query.
async fn browse_to_callback(start: &str) -> String {
    let http = reqwest::ClientBuilder::new()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut cookies: Vec<(String, String)> = Vec::new();
    let mut url = reqwest::Url::parse(start).expect("url");
    for _ in 0..20 {
        let jar = cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let response = http
            .get(url.clone())
            .header("cookie", jar)
            .send()
            .await
            .expect("provider answers");
        for header in response.headers().get_all("set-cookie") {
            let cookie = actix_web::cookie::Cookie::parse(header.to_str().expect("ascii").to_string()).expect("cookie");
            cookies.retain(|(name, _)| name != cookie.name());
            cookies.push((cookie.name().to_string(), cookie.value().to_string()));
        }
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let Some(location) = location else {
            panic!(
                "provider stopped at {url} with {status}: {}",
                response.text().await.unwrap_or_default()
            );
        };
        let next = url.join(&location).expect("location");
        if next.as_str().starts_with(REDIRECT) {
            return format!("{}?{}", next.path(), next.query().unwrap_or(""));
        }
        url = next;
    }
    panic!("too many redirects");
}

/// Starts a login as `email` and completes it in the same browser (with the cookie the
/// login set); returns the callback's response.
async fn sign_in<S>(app: &S, email: &str) -> (u16, Value, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    sign_in_as(app, email, true).await
}

async fn sign_in_as<S>(app: &S, email: &str, same_browser: bool) -> (u16, Value, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let start = test::TestRequest::get()
        .uri(&format!("/v1/sso/corp/login?login_hint={email}"))
        .peer_addr("198.51.100.40:5000".parse().expect("addr"))
        .to_request();
    let response = test::call_service(app, start).await;
    assert_eq!(response.status(), 302);
    let binding = response
        .response()
        .cookies()
        .find(|cookie| cookie.name() == "sy_sso")
        .map(|cookie| cookie.into_owned())
        .expect("the login binds its state to this browser");
    assert!(binding.http_only().unwrap_or(false) && binding.secure().unwrap_or(false));
    let location = response
        .headers()
        .get("location")
        .expect("location")
        .to_str()
        .expect("ascii");
    assert!(location.contains("code_challenge_method=S256"), "PKCE: {location}");
    let callback = browse_to_callback(location).await;
    let mut request = test::TestRequest::get()
        .uri(&callback)
        .peer_addr("198.51.100.40:5000".parse().expect("addr"));
    if same_browser {
        request = request.cookie(binding);
    }
    let request = request.to_request();
    let response = test::call_service(app, request).await;
    let status = response.status().as_u16();
    let body: Value = test::read_body_json(response).await;
    (status, body, callback)
}

/// The admin API with this control plane and these SSO providers.
macro_rules! sso_app {
    ($control:expr, $sso:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new(ApiState {
                    control: $control.clone(),
                    debugger: None,
                    sso: Some(Arc::new($sso)),
                }))
                .configure(routes),
        )
        .await
    };
}

async fn get(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    token: &str,
    path: &str,
) -> u16 {
    let request = test::TestRequest::get()
        .uri(path)
        .insert_header(("authorization", format!("Bearer {token}")))
        .to_request();
    test::call_service(app, request).await.status().as_u16()
}

#[actix_rt::test]
async fn sso_signs_users_in_with_the_role_their_groups_map_to_and_refuses_the_rest() {
    let provider = start_provider();
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    let actor = Actor::local("test");
    let ws = support::owned_workspace(&control, &actor).await;
    let sso = Sso::new(&[sso_config(&provider.issuer, &ws.id)]).expect("sso");
    let app = sso_app!(control, sso);

    let (status, admin, callback) = sign_in(&app, "admin@example.com").await;
    assert_eq!(status, 200, "{admin}");
    let admin_token = admin["token"].as_str().expect("token").to_string();
    let members = control.members(&ws.id).await.expect("members");
    let provisioned = members
        .iter()
        .find(|m| m.email == "admin@example.com")
        .expect("provisioned");
    assert_eq!(provisioned.role.as_str(), "owner");
    assert_eq!(
        get(&app, &admin_token, &format!("/v1/workspaces/{}/members", ws.id)).await,
        200
    );

    // The login state works once.
    let replay = test::TestRequest::get().uri(&callback).to_request();
    assert_eq!(test::call_service(&app, replay).await.status(), 403);

    let (status, analyst) = {
        let (status, body, _) = sign_in(&app, "analyst@example.com").await;
        (status, body)
    };
    assert_eq!(status, 200, "{analyst}");
    let analyst_token = analyst["token"].as_str().expect("token");
    let create = test::TestRequest::post()
        .uri(&format!("/v1/workspaces/{}/sources", ws.id))
        .insert_header(("authorization", format!("Bearer {analyst_token}")))
        .set_json(json!({"id": "nope"}))
        .to_request();
    assert_eq!(
        test::call_service(&app, create).await.status(),
        403,
        "read-only by its group"
    );

    let (status, refused, _) = sign_in(&app, "sales@example.com").await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["message"].as_str().unwrap_or_default().contains("no role"),
        "{refused}"
    );
    assert!(
        !control
            .members(&ws.id)
            .await
            .expect("members")
            .iter()
            .any(|m| m.email == "sales@example.com")
    );
    let (status, unverified, _) = sign_in(&app, "unverified@example.com").await;
    assert_eq!(status, 403, "{unverified}");

    // SSO only: the owner's password session no longer reaches the workspace.
    let policy = WorkspacePolicyPatch {
        require_mfa: Some(true),
        password_login: Some(false),
    };
    control
        .set_workspace_policy(&actor, &ws.id, &policy, true)
        .await
        .expect("policy");
    let password = control.login("owner@example.com", OWNER_PASSWORD).await.expect("login");
    let path = format!("/v1/workspaces/{}/sources", ws.id);
    let request = test::TestRequest::get()
        .uri(&path)
        .insert_header(("authorization", format!("Bearer {}", password.token)))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), 403);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"], "sso_required");
    assert_eq!(
        get(&app, &admin_token, &path).await,
        200,
        "an SSO owner counts as MFA-verified"
    );
    let audit = control.audit(&ws.id, 50).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "member.sso_role" && e.target == "admin@example.com")
    );
    drop(provider);
}

#[actix_rt::test]
async fn another_workspaces_provider_cannot_sign_in_as_an_owner_by_email_and_sso_sessions_stay_in_their_workspace() {
    let provider = start_provider();
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    let actor = Actor::local("test");
    // Workspace B, owned by owner@example.com (a password account).
    let victim = support::owned_workspace(&control, &actor).await;
    // Workspace A, whose owner configured this identity provider.
    let a_owner = control
        .create_user(
            &actor,
            "a-owner@example.com",
            switchyard_control::store::Password::Plain(OWNER_PASSWORD),
        )
        .await
        .expect("user");
    let attacker = control
        .create_workspace(&actor, "A", &a_owner)
        .await
        .expect("workspace A");
    let sso = Sso::new(&[sso_config(&provider.issuer, &attacker.id)]).expect("sso");
    let app = sso_app!(control, sso);

    // A's provider asserts a verified owner@example.com: no session as B's owner.
    let (status, body, _) = sign_in(&app, "owner@example.com").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("link"), "{body}");
    assert!(
        !control
            .members(&attacker.id)
            .await
            .expect("members")
            .iter()
            .any(|m| m.email == "owner@example.com"),
        "the owner was not made a member of A either"
    );

    // A state used from another browser (no binding cookie) is refused.
    let (status, body, _) = sign_in_as(&app, "admin@example.com", false).await;
    assert_eq!(status, 403, "{body}");

    // A new user's SSO session reaches A and nothing else, even with a membership in B.
    let (status, admin, _) = sign_in(&app, "admin@example.com").await;
    assert_eq!(status, 200, "{admin}");
    let token = admin["token"].as_str().expect("token").to_string();
    let member = switchyard_control::model::NewMember {
        email: "admin@example.com".into(),
        role: switchyard_control::model::Role::Owner,
        sources: vec![],
        password: None,
    };
    control
        .add_member(&actor, &victim.id, &member)
        .await
        .expect("member of B");
    assert_eq!(
        get(&app, &token, &format!("/v1/workspaces/{}/members", attacker.id)).await,
        200
    );
    assert_eq!(
        get(&app, &token, &format!("/v1/workspaces/{}/members", victim.id)).await,
        404,
        "an SSO session is scoped to its provider's workspace"
    );
    // The link is by (issuer, subject), and it is audited.
    let audit = control.audit(&attacker.id, 50).await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|e| e.action == "user.sso_link" && e.target == "admin@example.com"),
        "{audit:?}"
    );
    drop(provider);
}
