//! Sign-in safety on SQLite and Postgres: lockout after repeated failures (audited),
//! TOTP enrolment and sign-in with replay refused, recovery codes that work once,
//! owners held to a workspace's MFA requirement, API tokens scoped, capped, expiring
//! and revocable; over HTTP, session cookies with their flags and CSRF on changes.

mod support;

use std::sync::Arc;

use actix_web::{App, test, web};
use serde_json::{Value, json};
use support::{Backend, OWNER_PASSWORD};
use switchyard_control::ControlError;
use switchyard_control::api::{ApiState, routes};
use switchyard_control::model::*;
use switchyard_control::signin::{MAX_FAILED_LOGINS, Refusal};
use totp_rs::{Algorithm, Secret, TOTP};

const OWNER: &str = "owner@example.com";

fn login(password: &str, otp: Option<String>, recovery_code: Option<&str>) -> Login {
    Login {
        email: OWNER.into(),
        password: password.into(),
        otp,
        recovery_code: recovery_code.map(str::to_string),
    }
}

/// The code an authenticator app shows for `secret` (base32) `steps_ahead` steps from now.
fn code(secret: &str, steps_ahead: u64) -> String {
    let bytes = Secret::Encoded(secret.to_string()).to_bytes().expect("base32");
    let totp = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes).expect("totp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    totp.generate(now + steps_ahead * 30)
}

#[actix_rt::test]
async fn repeated_failures_lock_the_account_even_for_the_right_password_and_are_audited() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let ws = support::owned_workspace(&control, &Actor::local("test")).await;
        for attempt in 1..MAX_FAILED_LOGINS {
            let error = control
                .sign_in(&login("wrong password!", None, None), "203.0.113.9")
                .await;
            assert!(
                matches!(error, Err(ControlError::BadLogin)),
                "attempt {attempt}: {error:?}"
            );
        }
        let error = control
            .sign_in(&login("wrong password!", None, None), "203.0.113.9")
            .await;
        assert!(
            matches!(error, Err(ControlError::Locked { .. })),
            "{}: {error:?}",
            backend.name
        );
        let error = control.sign_in(&login(OWNER_PASSWORD, None, None), "203.0.113.9").await;
        assert!(
            matches!(error, Err(ControlError::Locked { .. })),
            "{}: locked even with the right password: {error:?}",
            backend.name
        );
        let audit = control.audit(&ws.id, 50).await.expect("audit");
        let lockout = audit
            .iter()
            .find(|entry| entry.action == "user.lockout")
            .expect("lockout audited in the user's workspace");
        assert_eq!(lockout.target, OWNER);
        assert_eq!(lockout.remote, "203.0.113.9");
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn totp_enrolment_then_sign_in_needs_a_fresh_code_or_a_one_time_recovery_code() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let actor = Actor::local("test");
        support::owned_workspace(&control, &actor).await;
        let session = control.login(OWNER, OWNER_PASSWORD).await.expect("login");
        let principal = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        assert!(!principal.token.mfa);

        let enrolment = control.start_mfa(&principal).await.expect("enrol");
        assert!(
            enrolment
                .otpauth_url
                .starts_with("otpauth://totp/Switchyard:owner%40example.com?secret=")
        );
        let wrong = control.confirm_mfa(&actor, &principal, "000000").await;
        assert!(matches!(wrong, Err(ControlError::Invalid { .. })), "{wrong:?}");
        let codes = control
            .confirm_mfa(&actor, &principal, &code(&enrolment.secret, 0))
            .await
            .expect("confirmed")
            .recovery_codes;
        assert_eq!(codes.len(), 10);
        let upgraded = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        assert!(upgraded.token.mfa, "the confirming session counts as verified");
        let stored: Vec<String> = sqlx::query_scalar("SELECT digest FROM recovery_codes")
            .fetch_all(&control.db().pool)
            .await
            .expect("codes");
        assert!(
            codes
                .iter()
                .all(|code| !stored.iter().any(|s| s.contains(code.as_str()))),
            "only digests are stored"
        );

        let needs = control.sign_in(&login(OWNER_PASSWORD, None, None), "local").await;
        assert!(matches!(needs, Err(ControlError::MfaRequired)), "{needs:?}");
        let bad = control
            .sign_in(&login(OWNER_PASSWORD, Some("123456".into()), None), "local")
            .await;
        assert!(matches!(bad, Err(ControlError::BadLogin)), "{bad:?}");
        // The confirmation used the current step: the next one is accepted once.
        let next = code(&enrolment.secret, 1);
        let session = control
            .sign_in(&login(OWNER_PASSWORD, Some(next.clone()), None), "local")
            .await
            .expect("signed in with a code");
        let principal = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        assert!(principal.token.mfa);
        let replay = control.sign_in(&login(OWNER_PASSWORD, Some(next), None), "local").await;
        assert!(
            matches!(replay, Err(ControlError::BadLogin)),
            "a code works once: {replay:?}"
        );

        let recovery = codes[3].to_uppercase();
        control
            .sign_in(&login(OWNER_PASSWORD, None, Some(&recovery)), "local")
            .await
            .expect("recovery code");
        let again = control
            .sign_in(&login(OWNER_PASSWORD, None, Some(&recovery)), "local")
            .await;
        assert!(matches!(again, Err(ControlError::BadLogin)), "{again:?}");
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn owners_need_a_second_factor_where_the_workspace_requires_it() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let actor = Actor::local("test");
        let ws = support::owned_workspace(&control, &actor).await;
        let reader = NewMember {
            email: "reader@example.com".into(),
            role: Role::ReadOnly,
            sources: vec![],
            password: Some(OWNER_PASSWORD.into()),
        };
        control.add_member(&actor, &ws.id, &reader).await.expect("reader");
        let patch = WorkspacePolicyPatch {
            require_mfa: Some(true),
            password_login: None,
        };
        control
            .set_workspace_policy(&actor, &ws.id, &patch, false)
            .await
            .expect("policy");
        let off = WorkspacePolicyPatch {
            require_mfa: None,
            password_login: Some(false),
        };
        let error = control.set_workspace_policy(&actor, &ws.id, &off, false).await;
        assert!(
            matches!(error, Err(ControlError::Invalid { .. })),
            "no SSO, no switching passwords off"
        );

        let session = control.login(OWNER, OWNER_PASSWORD).await.expect("login");
        let owner = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        assert_eq!(
            control.caller_access(&owner, &ws.id).await.expect("access"),
            Err(Refusal::MfaRequired)
        );
        let reader = control
            .login("reader@example.com", OWNER_PASSWORD)
            .await
            .expect("login");
        let reader = control.authenticate(&reader.token).await.expect("auth").expect("valid");
        let access = control.caller_access(&reader, &ws.id).await.expect("access");
        assert_eq!(access.map(|a| a.role), Ok(Role::ReadOnly), "only owners are held to it");

        let enrolment = control.start_mfa(&owner).await.expect("enrol");
        control
            .confirm_mfa(&actor, &owner, &code(&enrolment.secret, 0))
            .await
            .expect("confirm");
        let owner = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        let access = control.caller_access(&owner, &ws.id).await.expect("access");
        assert_eq!(access.map(|a| a.role), Ok(Role::Owner));
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn api_tokens_are_scoped_capped_expiring_and_revocable() {
    for backend in Backend::both().await {
        let control = backend.control(&age::x25519::Identity::generate()).await;
        let actor = Actor::local("test");
        let ws = support::owned_workspace(&control, &actor).await;
        let owner_id = control
            .authenticate(&control.login(OWNER, OWNER_PASSWORD).await.expect("login").token)
            .await
            .expect("auth")
            .expect("valid")
            .user_id;
        let other = control
            .create_workspace(&actor, "Other", &owner_id)
            .await
            .expect("other");
        let session = control.login(OWNER, OWNER_PASSWORD).await.expect("login");
        let owner = control
            .authenticate(&session.token)
            .await
            .expect("auth")
            .expect("valid");
        let new_token = |role: Option<Role>, expires_in_secs: Option<u64>| NewApiToken {
            name: "ci".into(),
            workspace: ws.id.clone(),
            role,
            expires_in_secs,
        };
        let api = control
            .create_api_token(&actor, &owner, &new_token(Some(Role::ReadOnly), None))
            .await
            .expect("token");
        assert!(api.csrf_token.is_none(), "API tokens don't use cookies");
        let scoped = control.authenticate(&api.token).await.expect("auth").expect("valid");
        let access = control.caller_access(&scoped, &ws.id).await.expect("access");
        assert_eq!(access.map(|a| a.role), Ok(Role::ReadOnly), "capped at the token's role");
        assert_eq!(
            control.caller_access(&scoped, &other.id).await.expect("access"),
            Err(Refusal::NotFound),
            "scoped to one workspace"
        );
        let minted = control.create_api_token(&actor, &scoped, &new_token(None, None)).await;
        assert!(
            matches!(minted, Err(ControlError::Invalid { .. })),
            "a token can't mint tokens"
        );

        let expired = control
            .create_api_token(&actor, &owner, &new_token(None, Some(0)))
            .await
            .expect("token");
        assert!(control.authenticate(&expired.token).await.expect("auth").is_none());

        let listed = control.tokens_of(&owner.user_id).await.expect("tokens");
        assert!(listed.iter().any(|t| t.id == api.id && t.role == Some(Role::ReadOnly)));
        control
            .revoke_token(&actor, &owner.user_id, &api.id)
            .await
            .expect("revoke");
        assert!(
            control.authenticate(&api.token).await.expect("auth").is_none(),
            "revoked"
        );
        let audit = control.audit(&ws.id, 50).await.expect("audit");
        assert!(audit.iter().any(|e| e.action == "api_token.create"));
        assert!(audit.iter().any(|e| e.action == "api_token.revoke"));
        backend.finish(control).await;
    }
}

#[actix_rt::test]
async fn session_cookies_are_secure_and_changes_made_with_them_need_the_csrf_token() {
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    let ws = support::owned_workspace(&control, &Actor::local("test")).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(ApiState {
                control: control.clone(),
                debugger: None,
                sso: None,
            }))
            .configure(routes),
    )
    .await;
    let peer = "198.51.100.20:5000".parse().expect("addr");
    let request = test::TestRequest::post()
        .uri("/v1/login")
        .peer_addr(peer)
        .set_json(json!({"email": OWNER, "password": OWNER_PASSWORD}))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), 200);
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("sy_session="))
        .expect("session cookie");
    for flag in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session_cookie.contains(flag), "{session_cookie}");
    }
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("sy_csrf=")).expect("csrf cookie");
    assert!(!csrf_cookie.contains("HttpOnly"), "the page reads it: {csrf_cookie}");
    let body: Value = test::read_body_json(response).await;
    let (token, csrf) = (
        body["token"].as_str().expect("token").to_string(),
        body["csrf_token"].as_str().expect("csrf").to_string(),
    );
    let cookie = actix_web::cookie::Cookie::new("sy_session", token);
    let source = json!({"id": "from-cookie"});
    let path = format!("/v1/workspaces/{}/sources", ws.id);

    let read = test::TestRequest::get()
        .uri(&path)
        .cookie(cookie.clone())
        .peer_addr(peer)
        .to_request();
    assert_eq!(
        test::call_service(&app, read).await.status(),
        200,
        "reads need no CSRF token"
    );
    let forged = test::TestRequest::post()
        .uri(&path)
        .cookie(cookie.clone())
        .peer_addr(peer)
        .set_json(&source)
        .to_request();
    let response = test::call_service(&app, forged).await;
    assert_eq!(response.status(), 403);
    let error: Value = test::read_body_json(response).await;
    assert_eq!(error["error"], "csrf");
    let wrong = test::TestRequest::post()
        .uri(&path)
        .cookie(cookie.clone())
        .insert_header(("x-csrf-token", "not-the-token"))
        .peer_addr(peer)
        .set_json(&source)
        .to_request();
    assert_eq!(test::call_service(&app, wrong).await.status(), 403);
    let good = test::TestRequest::post()
        .uri(&path)
        .cookie(cookie)
        .insert_header(("x-csrf-token", csrf))
        .peer_addr(peer)
        .set_json(&source)
        .to_request();
    assert_eq!(test::call_service(&app, good).await.status(), 201);
    assert!(control.source(&ws.id, "from-cookie").await.is_ok());
}

#[actix_rt::test]
async fn sign_in_attempts_are_throttled_per_address_and_a_locked_account_says_so() {
    let backend = Backend::sqlite().await;
    let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
    support::owned_workspace(&control, &Actor::local("test")).await;
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(ApiState {
                control: control.clone(),
                debugger: None,
                sso: None,
            }))
            .configure(routes),
    )
    .await;
    let attempt = |peer: &str| {
        test::TestRequest::post()
            .uri("/v1/login")
            .peer_addr(peer.parse().expect("addr"))
            .set_json(json!({"email": OWNER, "password": "wrong password!"}))
            .to_request()
    };
    let mut kinds = Vec::new();
    for _ in 0..12 {
        let response = test::call_service(&app, attempt("198.51.100.30:5000")).await;
        let body: Value = test::read_body_json(response).await;
        kinds.push(body["error"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(kinds[..4], ["bad_login"; 4], "{kinds:?}");
    assert_eq!(kinds[4], "locked", "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("throttled"), "{kinds:?}");
    // Another address isn't throttled, but the account stays locked.
    let response = test::call_service(&app, attempt("198.51.100.31:5000")).await;
    assert_eq!(response.status(), 429);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["error"], "locked");
}
