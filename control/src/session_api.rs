//! The admin API's sign-in routes: password login (throttled per address, accounts
//! locked after repeated failures), SSO, sign-out, API tokens (scoped, listed, revoked),
//! TOTP enrolment, and each workspace's sign-in policy. A session is returned in the
//! body and set as cookies: `sy_session` (`Secure; HttpOnly; SameSite=Strict`) and
//! `sy_csrf` (readable by the page, to echo in `X-CSRF-Token`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;

use crate::http::{ApiError, ApiState, Caller, Json, WorkspacePath, access, allow, client_ip};
pub use crate::http::{CSRF_HEADER, SESSION_COOKIE};
use crate::model::*;

pub const CSRF_COOKIE: &str = "sy_csrf";

/// Sign-in attempts (password or SSO callback) per client address: a burst of 10, then
/// one every 6 seconds. Account lockout stops guessing one account from many addresses.
static SIGN_IN_LIMIT: LazyLock<DefaultKeyedRateLimiter<IpAddr>> = LazyLock::new(|| {
    let per_minute = NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN);
    DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute))
});

/// The address sign-in attempts are counted by: IPv6 by its /64, which one host
/// usually holds whole (counting single addresses would let it rotate through 2^64).
pub(crate) fn throttle_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => std::net::IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

fn throttle(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(ip): Option<IpAddr> = client_ip(request).map(throttle_key) else {
        return Ok(());
    };
    if SIGN_IN_LIMIT.len() > 100_000 {
        SIGN_IN_LIMIT.retain_recent();
    }
    SIGN_IN_LIMIT.check_key(&ip).map_err(|_| ApiError::Throttled)
}

fn remote(request: &HttpRequest) -> String {
    client_ip(request).map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

/// The session as JSON, and as cookies for a browser.
fn session_response(session: Session) -> HttpResponse {
    let max_age = actix_web::cookie::time::Duration::milliseconds((session.expires_at - crate::now_ms()).max(0));
    let session_cookie = Cookie::build(SESSION_COOKIE, session.token.clone())
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(max_age)
        .finish();
    let mut response = HttpResponse::Ok();
    response.cookie(session_cookie);
    if let Some(csrf) = &session.csrf_token {
        response.cookie(
            Cookie::build(CSRF_COOKIE, csrf.clone())
                .path("/")
                .secure(true)
                .same_site(SameSite::Strict)
                .max_age(max_age)
                .finish(),
        );
    }
    response.insert_header(("cache-control", "no-store")).json(session)
}

#[utoipa::path(
    request_body = Login,
    responses(
        (status = 200, body = Session, description = "also sets the sy_session and sy_csrf cookies"),
        (status = 401, description = "wrong email or password (`bad_login`), or a second factor needed (`mfa_required`)"),
        (status = 429, description = "account locked after repeated failures (`locked`), or too many attempts from this address (`throttled`)")
    ),
    tag = "session"
)]
#[post("/v1/login")]
pub(crate) async fn login(
    state: web::Data<ApiState>,
    request: HttpRequest,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    throttle(&request)?;
    let session = state.control.sign_in(&body, &remote(&request)).await?;
    Ok(session_response(session))
}

#[utoipa::path(responses((status = 204, description = "the session (or token) used is revoked; cookies cleared")), tag = "session", security(("bearer" = [])))]
#[post("/v1/logout")]
pub(crate) async fn logout(state: web::Data<ApiState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    state
        .control
        .revoke_token(&caller.actor(), &caller.principal.user_id, &caller.principal.token.id)
        .await?;
    let mut response = HttpResponse::NoContent();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let mut cookie = Cookie::build(name, "").path("/").secure(true).finish();
        cookie.make_removal();
        response.cookie(cookie);
    }
    Ok(response.finish())
}

#[utoipa::path(request_body = NewApiToken, responses((status = 200, body = Session), (status = 400, description = "role above the creator's, or not made from a session")), tag = "session", security(("bearer" = [])))]
#[post("/v1/tokens")]
pub(crate) async fn create_token(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Json<NewApiToken>,
) -> Json<Session> {
    caller.fresh_session()?;
    Ok(web::Json(
        state
            .control
            .create_api_token(&caller.actor(), &caller.principal, &body)
            .await?,
    ))
}

#[utoipa::path(responses((status = 200, body = Vec<TokenView>)), tag = "session", security(("bearer" = [])))]
#[get("/v1/tokens")]
pub(crate) async fn list_tokens(state: web::Data<ApiState>, caller: Caller) -> Json<Vec<TokenView>> {
    caller.fresh_session()?;
    Ok(web::Json(state.control.tokens_of(&caller.principal.user_id).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenPath {
    id: String,
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 204), (status = 404)), tag = "session", security(("bearer" = [])))]
#[delete("/v1/tokens/{id}")]
pub(crate) async fn revoke_token(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<TokenPath>,
) -> Result<HttpResponse, ApiError> {
    caller.fresh_session()?;
    state
        .control
        .revoke_token(&caller.actor(), &caller.principal.user_id, &path.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(responses((status = 200, body = MfaEnrolment), (status = 409, description = "already enrolled")), tag = "session", security(("bearer" = [])))]
#[post("/v1/me/mfa")]
pub(crate) async fn start_mfa(state: web::Data<ApiState>, caller: Caller) -> Json<MfaEnrolment> {
    caller.fresh_session()?;
    Ok(web::Json(state.control.start_mfa(&caller.principal).await?))
}

#[utoipa::path(request_body = MfaCode, responses((status = 200, body = RecoveryCodes), (status = 400, description = "wrong code")), tag = "session", security(("bearer" = [])))]
#[post("/v1/me/mfa/confirm")]
pub(crate) async fn confirm_mfa(
    state: web::Data<ApiState>,
    caller: Caller,
    body: web::Json<MfaCode>,
) -> Json<RecoveryCodes> {
    caller.fresh_session()?;
    Ok(web::Json(
        state
            .control
            .confirm_mfa(&caller.actor(), &caller.principal, &body.code)
            .await?,
    ))
}

#[utoipa::path(params(("workspace" = String, Path)), responses((status = 200, body = WorkspacePolicy)), tag = "workspaces", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/policy")]
pub(crate) async fn get_policy(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
) -> Json<WorkspacePolicy> {
    access(&state, &caller, &path.workspace).await?;
    Ok(web::Json(state.control.workspace_policy(&path.workspace).await?))
}

#[utoipa::path(params(("workspace" = String, Path)), request_body = WorkspacePolicyPatch, responses((status = 200, body = WorkspacePolicy), (status = 403, description = "owners only")), tag = "workspaces", security(("bearer" = [])))]
#[patch("/v1/workspaces/{workspace}/policy")]
pub(crate) async fn set_policy(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
    body: web::Json<WorkspacePolicyPatch>,
) -> Json<WorkspacePolicy> {
    allow(access(&state, &caller, &path.workspace).await?.can_manage_members())?;
    let sso_available = state.sso.as_ref().is_some_and(|sso| sso.serves(&path.workspace));
    Ok(web::Json(
        state
            .control
            .set_workspace_policy(&caller.actor(), &path.workspace, &body, sso_available)
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProviderPath {
    provider: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct SsoLoginQuery {
    /// Passed on to the provider to pre-fill the account.
    login_hint: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct SsoCallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn sso(state: &ApiState, name: &str) -> Result<std::sync::Arc<crate::sso::Sso>, ApiError> {
    state
        .sso
        .clone()
        .ok_or_else(|| crate::sso::SsoError::UnknownProvider(name.to_string()).into())
}

/// The cookie that binds an SSO login's `state` to the browser that started it. Lax,
/// not Strict: the provider sends the browser back with a cross-site navigation.
pub const SSO_COOKIE: &str = "sy_sso";

/// To the provider, with a fresh browser-binding cookie.
async fn redirect_to_provider(
    state: &ApiState,
    provider: &str,
    login_hint: Option<&str>,
    link_user_id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let browser = crate::secrets::new_secret("sso_");
    let url = sso(state, provider)?
        .begin(&state.control, provider, login_hint, &browser, link_user_id)
        .await?;
    let cookie = Cookie::build(SSO_COOKIE, browser)
        .path("/v1/sso")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::minutes(10))
        .finish();
    Ok(HttpResponse::Found()
        .insert_header(("location", url))
        .insert_header(("cache-control", "no-store"))
        .cookie(cookie)
        .finish())
}

#[utoipa::path(params(("provider" = String, Path), SsoLoginQuery), responses((status = 302, description = "to the provider's sign-in page"), (status = 429, description = "too many sign-ins from this address")), tag = "session")]
#[get("/v1/sso/{provider}/login")]
pub(crate) async fn sso_login(
    state: web::Data<ApiState>,
    request: HttpRequest,
    path: web::Path<ProviderPath>,
    query: web::Query<SsoLoginQuery>,
) -> Result<HttpResponse, ApiError> {
    throttle(&request)?;
    redirect_to_provider(&state, &path.provider, query.login_hint.as_deref(), None).await
}

#[utoipa::path(params(("provider" = String, Path)), responses((status = 302, description = "to the provider, to link its account to the signed-in user"), (status = 403, description = "not a fresh session")), tag = "session", security(("bearer" = [])))]
#[get("/v1/sso/{provider}/link")]
pub(crate) async fn sso_link(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ProviderPath>,
) -> Result<HttpResponse, ApiError> {
    caller.fresh_session()?;
    redirect_to_provider(
        &state,
        &path.provider,
        Some(&caller.principal.email),
        Some(&caller.principal.user_id),
    )
    .await
}

#[utoipa::path(
    params(("provider" = String, Path), SsoCallbackQuery),
    responses(
        (status = 200, body = Session, description = "also sets the sy_session and sy_csrf cookies"),
        (status = 403, description = "the provider's account has no role here, an unverified email, or a bad ID token")
    ),
    tag = "session"
)]
#[get("/v1/sso/{provider}/callback")]
pub(crate) async fn sso_callback(
    state: web::Data<ApiState>,
    request: HttpRequest,
    path: web::Path<ProviderPath>,
    query: web::Query<SsoCallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    throttle(&request)?;
    if let Some(error) = &query.error {
        let why = query.error_description.as_deref().unwrap_or("");
        return Err(crate::sso::SsoError::Refused(format!("the provider answered {error}: {why}")).into());
    }
    let (Some(code), Some(login_state)) = (&query.code, &query.state) else {
        return Err(ApiError::BadBody("the callback needs code and state".into()));
    };
    let browser = request.cookie(SSO_COOKIE).map(|cookie| cookie.value().to_string());
    let session = sso(&state, &path.provider)?
        .finish(
            &state.control,
            &path.provider,
            code,
            login_state,
            browser.as_deref(),
            &remote(&request),
        )
        .await?;
    Ok(session_response(session))
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .service(login)
        .service(logout)
        .service(create_token)
        .service(list_tokens)
        .service(revoke_token)
        .service(start_mfa)
        .service(confirm_mfa)
        .service(get_policy)
        .service(set_policy)
        .service(sso_login)
        .service(sso_link)
        .service(sso_callback);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_throttles_count_an_ipv6_host_by_its_64() {
        let key = |text: &str| throttle_key(text.parse().expect("address"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7".parse::<IpAddr>().expect("v4"));
        assert_eq!(
            key("::ffff:203.0.113.7"),
            key("203.0.113.7"),
            "a mapped IPv4 is that IPv4"
        );
    }
}
