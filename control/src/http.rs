//! What every admin API route shares: the server's state, the error type and its JSON
//! form, the signed-in caller (a bearer token or the session cookie with its CSRF
//! header) and the check of the caller's role in a workspace. The routes are in
//! `api.rs` and `session_api.rs`.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures::future::LocalBoxFuture;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::debugger::Debugger;
use crate::model::{Actor, Principal};
use crate::roles::Access;
use crate::signin::{Refusal, csrf_token};
use crate::{Control, ControlError};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ApiState {
    pub control: Arc<Control>,
    /// The event debugger; absent when the server has no `[kafka]` to read events from.
    pub debugger: Option<Arc<Debugger>>,
    /// SSO providers (`[[control.sso]]`); absent when none is configured.
    pub sso: Option<Arc<crate::sso::Sso>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in first: Authorization: Bearer <token> is missing or not valid")]
    Unauthenticated,
    #[error("your role in this workspace does not allow this")]
    Forbidden,
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("{0}")]
    BadBody(String),
    #[error("request body over {MAX_BODY} bytes")]
    TooLarge,
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Unavailable(String),
    /// A 403 with its own kind: `csrf`, `sso_required`, `mfa_required`.
    #[error("{1}")]
    Policy(&'static str, String),
    #[error("too many sign-in attempts from this address; wait a minute")]
    Throttled,
    #[error("{0}")]
    Sso(#[from] crate::sso::SsoError),
}

impl ApiError {
    fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden => "forbidden",
            ApiError::BadBody(_) => "bad_request",
            ApiError::TooLarge => "too_large",
            ApiError::Busy(_) => "busy",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Policy(kind, _) => kind,
            ApiError::Throttled => "throttled",
            ApiError::Sso(error) => match error {
                crate::sso::SsoError::UnknownProvider(_) => "not_found",
                crate::sso::SsoError::Provider(_) => "sso_provider",
                crate::sso::SsoError::Refused(_) => "forbidden",
                crate::sso::SsoError::Control(error) => control_kind(error),
            },
            ApiError::Control(error) => control_kind(error),
        }
    }
}

fn control_kind(error: &ControlError) -> &'static str {
    match error {
        ControlError::NotFound(_) => "not_found",
        ControlError::Conflict(_) => "conflict",
        ControlError::Invalid { .. } => "invalid",
        ControlError::BadLogin => "bad_login",
        ControlError::Locked { .. } => "locked",
        ControlError::MfaRequired => "mfa_required",
        _ => "internal",
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        if let ApiError::Policy(..) = self {
            return StatusCode::FORBIDDEN;
        }
        match self.kind() {
            "unauthenticated" | "bad_login" | "mfa_required" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "locked" | "throttled" => StatusCode::TOO_MANY_REQUESTS,
            "sso_provider" => StatusCode::BAD_GATEWAY,
            "bad_request" | "invalid" => StatusCode::BAD_REQUEST,
            "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "not_found" => StatusCode::NOT_FOUND,
            "conflict" => StatusCode::CONFLICT,
            "busy" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = if self.status_code() == StatusCode::INTERNAL_SERVER_ERROR {
            // Database and crypto details stay in the log.
            tracing::error!(error = %self, "admin api internal error");
            "internal error; see the server log".to_string()
        } else {
            self.to_string()
        };
        HttpResponse::build(self.status_code()).json(serde_json::json!({"error": self.kind(), "message": message}))
    }
}

/// How many of the operator's proxies (an Ingress controller, a load balancer) stand in
/// front of the server and append to `X-Forwarded-For` (`[control] trusted_proxies`).
/// Without it, every request behind an Ingress comes from the controller's address,
/// and one attacker's failed sign-ins would throttle everyone's.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustedProxies(pub usize);

/// The caller's address: through the trusted proxies, else the peer.
pub(crate) fn client_ip(request: &HttpRequest) -> Option<std::net::IpAddr> {
    let trusted = request.app_data::<web::Data<TrustedProxies>>().map_or(0, |data| data.0);
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    switchyard_config::forwarded_client(forwarded, trusted).or_else(|| request.peer_addr().map(|addr| addr.ip()))
}

/// The signed-in caller and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub remote: String,
    pub(crate) token: BearerToken,
}

/// The caller's token, kept to check it again during a long stream; never printed.
#[derive(Clone)]
pub(crate) struct BearerToken(pub(crate) String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How recent a sign-in must be for account-level powers (second factor, API tokens,
/// sessions): a stolen session cookie or token that outlives it can't take the account.
pub const FRESH_SIGN_IN_MS: i64 = 10 * 60 * 1000;

impl Caller {
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            email: self.principal.email.clone(),
            remote: self.remote.clone(),
        }
    }

    /// Refuses API tokens (narrower than their user, and never a way to widen it) and
    /// sessions signed in more than [`FRESH_SIGN_IN_MS`] ago.
    pub(crate) fn fresh_session(&self) -> Result<(), ApiError> {
        if self.principal.token.kind != "session" {
            return Err(ApiError::Policy(
                "session_required",
                "account settings and API tokens need a signed-in session, not an API token".into(),
            ));
        }
        if crate::now_ms() - self.principal.token.created_at > FRESH_SIGN_IN_MS {
            return Err(ApiError::Policy(
                "reauthentication_required",
                "sign in again: this needs a sign-in within the last 10 minutes".into(),
            ));
        }
        Ok(())
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<ApiState>>().cloned();
        let token = request_token(request);
        let remote = client_ip(request).map_or_else(|| "unknown".into(), |ip| ip.to_string());
        Box::pin(async move {
            let (Some(state), Some(token)) = (state, token) else {
                return Err(ApiError::Unauthenticated);
            };
            let token = token?;
            let principal = state
                .control
                .authenticate(&token)
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            Ok(Caller {
                principal,
                remote,
                token: BearerToken(token),
            })
        })
    }
}

/// The caller's access to the workspace as its token and the workspace's policy allow;
/// 404 for a non-member (or a token scoped elsewhere).
pub(crate) async fn access(state: &ApiState, caller: &Caller, workspace_id: &str) -> Result<Access, ApiError> {
    match state.control.caller_access(&caller.principal, workspace_id).await? {
        Ok(access) => Ok(access),
        Err(refusal) => Err(refused(refusal, workspace_id)),
    }
}

fn refused(refusal: Refusal, workspace_id: &str) -> ApiError {
    match refusal {
        Refusal::NotFound => ApiError::Control(ControlError::NotFound(format!("workspace {workspace_id}"))),
        Refusal::SsoRequired => ApiError::Policy(
            "sso_required",
            "this workspace takes SSO sign-ins only: GET /v1/sso/<provider>/login".into(),
        ),
        Refusal::MfaRequired => ApiError::Policy(
            "mfa_required",
            "owners of this workspace sign in with a second factor: enrol with POST /v1/me/mfa, then sign in again with the code".into(),
        ),
    }
}

pub(crate) fn allow(allowed: bool) -> Result<(), ApiError> {
    if allowed { Ok(()) } else { Err(ApiError::Forbidden) }
}

pub(crate) type Json<T> = Result<web::Json<T>, ApiError>;

#[derive(Debug, Deserialize)]
pub(crate) struct WorkspacePath {
    pub(crate) workspace: String,
}

pub const SESSION_COOKIE: &str = "sy_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The token a request carries: the bearer header, or else the session cookie, which
/// for a change must come with its CSRF token. `None` when there is neither.
pub(crate) fn request_token(request: &HttpRequest) -> Option<Result<String, ApiError>> {
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return Some(Ok(token.to_string()));
    }
    let token = request.cookie(SESSION_COOKIE)?.value().to_string();
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Some(Ok(token));
    }
    let sent = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if bool::from(sent.as_bytes().ct_eq(csrf_token(&token).as_bytes())) {
        Some(Ok(token))
    } else {
        Some(Err(ApiError::Policy(
            "csrf",
            "a change made with the session cookie needs the X-CSRF-Token header given at sign-in".into(),
        )))
    }
}
