//! The admin API (actix-web; TLS is the server's, see `switchyard control serve`).
//! Every route but sign-in needs `Authorization: Bearer <token>` (a session from
//! `POST /v1/login` or SSO, or an API token) or the `sy_session` cookie set at sign-in;
//! with the cookie, a change (any method but GET/HEAD/OPTIONS) also needs the session's
//! `X-CSRF-Token` header, so another site can't make a signed-in browser act. Each route
//! checks the caller's role in the workspace it names before doing anything: not a
//! member is 404 (a workspace's existence isn't told to strangers), a member without the
//! right is 403, as is a session the workspace's policy refuses (`sso_required`,
//! `mfa_required`). Sign-in routes live in `session_api.rs`. Errors are JSON
//! `{"error": kind, "message": why}`; bodies are limited to 64 KiB and refuse unknown
//! fields, naming them. The OpenAPI document, generated from this code, is at
//! `/openapi.json`.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::debugger::{Recheck, Sampler};
pub use crate::http::{ApiError, ApiState, Caller, FRESH_SIGN_IN_MS, MAX_BODY, TrustedProxies};
use crate::http::{Json, WorkspacePath, access, allow};
use crate::model::*;
use crate::{Control, ControlError};

#[derive(Debug, Deserialize)]
struct ItemPath {
    workspace: String,
    id: String,
}

/// The destination kinds: each one's settings schema, credentials and endpoint settings.
#[utoipa::path(responses((status = 200, body = Vec<crate::kinds::DestinationKindInfo>)), tag = "destinations", security(("bearer" = [])))]
#[get("/v1/destination-kinds")]
async fn destination_kinds(_caller: Caller) -> web::Json<Vec<crate::kinds::DestinationKindInfo>> {
    web::Json(crate::kinds::destination_kinds())
}

#[utoipa::path(responses((status = 200, body = Vec<Workspace>)), tag = "workspaces", security(("bearer" = [])))]
#[get("/v1/workspaces")]
async fn list_workspaces(state: web::Data<ApiState>, caller: Caller) -> Json<Vec<Workspace>> {
    let mut workspaces = state.control.workspaces_of(&caller.principal.user_id).await?;
    if let Some(scope) = &caller.principal.token.workspace_id {
        workspaces.retain(|w| &w.id == scope);
    }
    Ok(web::Json(workspaces))
}

#[utoipa::path(params(("workspace" = String, Path)), responses((status = 200, body = Vec<SourceView>)), tag = "sources", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/sources")]
async fn list_sources(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
) -> Json<Vec<SourceView>> {
    let access = access(&state, &caller, &path.workspace).await?;
    let sources = state.control.sources(&path.workspace).await?;
    Ok(web::Json(
        sources.into_iter().filter(|s| access.can_see_source(&s.id)).collect(),
    ))
}

#[utoipa::path(params(("workspace" = String, Path)), request_body = NewSource, responses((status = 201, body = CreatedSource), (status = 400), (status = 409)), tag = "sources", security(("bearer" = [])))]
#[post("/v1/workspaces/{workspace}/sources")]
async fn create_source(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
    body: web::Json<NewSource>,
) -> Result<HttpResponse, ApiError> {
    allow(access(&state, &caller, &path.workspace).await?.can_create_source())?;
    let created = state
        .control
        .create_source(&caller.actor(), &path.workspace, &body)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), responses((status = 200, body = SourceView), (status = 404)), tag = "sources", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/sources/{id}")]
async fn get_source(state: web::Data<ApiState>, caller: Caller, path: web::Path<ItemPath>) -> Json<SourceView> {
    allow(access(&state, &caller, &path.workspace).await?.can_see_source(&path.id))?;
    Ok(web::Json(state.control.source(&path.workspace, &path.id).await?))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), request_body = SourcePatch, responses((status = 200, body = SourceView)), tag = "sources", security(("bearer" = [])))]
#[patch("/v1/workspaces/{workspace}/sources/{id}")]
async fn update_source(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
    body: web::Json<SourcePatch>,
) -> Json<SourceView> {
    allow(
        access(&state, &caller, &path.workspace)
            .await?
            .can_change_source(&path.id),
    )?;
    Ok(web::Json(
        state
            .control
            .update_source(&caller.actor(), &path.workspace, &path.id, &body)
            .await?,
    ))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), responses((status = 204), (status = 409, description = "destinations still fed by it")), tag = "sources", security(("bearer" = [])))]
#[delete("/v1/workspaces/{workspace}/sources/{id}")]
async fn delete_source(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
) -> Result<HttpResponse, ApiError> {
    allow(
        access(&state, &caller, &path.workspace)
            .await?
            .can_change_source(&path.id),
    )?;
    state
        .control
        .delete_source(&caller.actor(), &path.workspace, &path.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), request_body = RotateWriteKey, responses((status = 200, body = WriteKey)), tag = "sources", security(("bearer" = [])))]
#[post("/v1/workspaces/{workspace}/sources/{id}/write-keys")]
async fn rotate_write_key(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
    body: web::Json<RotateWriteKey>,
) -> Json<WriteKey> {
    allow(
        access(&state, &caller, &path.workspace)
            .await?
            .can_change_source(&path.id),
    )?;
    Ok(web::Json(
        state
            .control
            .rotate_write_key(&caller.actor(), &path.workspace, &path.id, body.overlap_secs)
            .await?,
    ))
}

/// Largest `per_second` a debugger viewer may ask for.
const MAX_PER_SECOND: u32 = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct DebuggerQuery {
    /// Fraction of the source's events to show: over 0, at most 1 (default 1).
    sample: Option<f64>,
    /// Most events shown a second, 1-100 (default 10).
    per_second: Option<u32>,
}

/// The event debugger: a live, sampled stream of the source's events as they arrive
/// (server-sent events; see `debugger.rs` for the event kinds). The caller must be
/// allowed to see the source; the stream ends when that stops being true.
#[utoipa::path(
    params(("workspace" = String, Path), ("id" = String, Path), DebuggerQuery),
    responses(
        (status = 200, content_type = "text/event-stream", description = "`hello`, then `event` (one sampled event, id = messageId), `missed`, `stats` (every 15 s), `end` (access revoked)"),
        (status = 404), (status = 429, description = "too many streams open on this server"),
        (status = 503, description = "this server reads no Kafka")
    ),
    tag = "sources", security(("bearer" = []))
)]
#[get("/v1/workspaces/{workspace}/sources/{id}/debugger")]
async fn debugger(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
    query: web::Query<DebuggerQuery>,
) -> Result<HttpResponse, ApiError> {
    allow(access(&state, &caller, &path.workspace).await?.can_see_source(&path.id))?;
    state.control.source(&path.workspace, &path.id).await?;
    let rate = query.sample.unwrap_or(1.0);
    if !(rate > 0.0 && rate <= 1.0) {
        return Err(ControlError::invalid("sample", "must be over 0 and at most 1").into());
    }
    let per_second = query.per_second.unwrap_or(10);
    if !(1..=MAX_PER_SECOND).contains(&per_second) {
        return Err(ControlError::invalid("per_second", format!("must be 1 to {MAX_PER_SECOND}")).into());
    }
    let debugger = state.debugger.as_ref().ok_or_else(|| {
        ApiError::Unavailable("the event debugger needs a [kafka] section in this server's configuration".into())
    })?;
    let viewer = debugger
        .watch(&path.id)
        .map_err(|busy| ApiError::Busy(busy.to_string()))?;
    let (control, token, user) = (
        state.control.clone(),
        caller.token.0.clone(),
        caller.principal.user_id.clone(),
    );
    let ItemPath { workspace, id } = path.into_inner();
    tracing::info!(user = %caller.principal.email, %workspace, source = %id, rate, per_second, "event debugger stream opened");
    let recheck: Recheck = Box::new(move || {
        let (control, token, user, workspace, id) = (
            control.clone(),
            token.clone(),
            user.clone(),
            workspace.clone(),
            id.clone(),
        );
        Box::pin(async move { still_allowed(&control, &token, &user, &workspace, &id).await })
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        // Proxies such as nginx would otherwise hold the stream back in their buffers.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(crate::debugger::stream(viewer, Sampler::new(rate, per_second), recheck)))
}

/// Whether the stream's viewer may still watch: its token valid, still a member
/// allowed to see the source, and the source still there.
async fn still_allowed(
    control: &Control,
    token: &str,
    user: &str,
    workspace: &str,
    source: &str,
) -> Result<(), String> {
    let principal = match control.authenticate(token).await {
        Ok(Some(principal)) if principal.user_id == user => principal,
        Ok(_) => return Err("your session ended".into()),
        Err(error) => {
            tracing::warn!(%error, "event debugger recheck failed; the stream goes on");
            return Ok(());
        }
    };
    match control.caller_access(&principal, workspace).await {
        Ok(Ok(access)) if access.can_see_source(source) => {}
        Ok(_) => return Err("you may no longer see this source".into()),
        Err(error) => {
            tracing::warn!(%error, "event debugger recheck failed; the stream goes on");
            return Ok(());
        }
    }
    match control.source(workspace, source).await {
        Err(ControlError::NotFound(_)) => Err("the source was deleted".into()),
        _ => Ok(()),
    }
}

#[utoipa::path(params(("workspace" = String, Path)), responses((status = 200, body = Vec<DestinationView>)), tag = "destinations", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/destinations")]
async fn list_destinations(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
) -> Json<Vec<DestinationView>> {
    let access = access(&state, &caller, &path.workspace).await?;
    let destinations = state.control.destinations(&path.workspace).await?;
    Ok(web::Json(
        destinations
            .into_iter()
            .filter(|d| access.can_see_destination(&d.sources))
            .collect(),
    ))
}

#[utoipa::path(params(("workspace" = String, Path)), request_body = NewDestination, responses((status = 201, body = DestinationView), (status = 400)), tag = "destinations", security(("bearer" = [])))]
#[post("/v1/workspaces/{workspace}/destinations")]
async fn create_destination(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
    body: web::Json<NewDestination>,
) -> Result<HttpResponse, ApiError> {
    allow(
        access(&state, &caller, &path.workspace)
            .await?
            .can_change_destination(&body.sources),
    )?;
    let created = state
        .control
        .create_destination(&caller.actor(), &path.workspace, &body)
        .await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), responses((status = 200, body = DestinationView), (status = 404)), tag = "destinations", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/destinations/{id}")]
async fn get_destination(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
) -> Json<DestinationView> {
    let access = access(&state, &caller, &path.workspace).await?;
    let destination = state.control.destination(&path.workspace, &path.id).await?;
    allow(access.can_see_destination(&destination.sources))?;
    Ok(web::Json(destination))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), request_body = DestinationPatch, responses((status = 200, body = DestinationView)), tag = "destinations", security(("bearer" = [])))]
#[patch("/v1/workspaces/{workspace}/destinations/{id}")]
async fn update_destination(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
    body: web::Json<DestinationPatch>,
) -> Json<DestinationView> {
    let access = access(&state, &caller, &path.workspace).await?;
    let before = state.control.destination(&path.workspace, &path.id).await?;
    let after_sources = body.sources.clone().unwrap_or_else(|| before.sources.clone());
    allow(access.can_change_destination(&before.sources) && access.can_change_destination(&after_sources))?;
    Ok(web::Json(
        state
            .control
            .update_destination(&caller.actor(), &path.workspace, &path.id, body.into_inner())
            .await?,
    ))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path)), responses((status = 204)), tag = "destinations", security(("bearer" = [])))]
#[delete("/v1/workspaces/{workspace}/destinations/{id}")]
async fn delete_destination(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
) -> Result<HttpResponse, ApiError> {
    let access = access(&state, &caller, &path.workspace).await?;
    let before = state.control.destination(&path.workspace, &path.id).await?;
    allow(access.can_change_destination(&before.sources))?;
    state
        .control
        .delete_destination(&caller.actor(), &path.workspace, &path.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(params(("workspace" = String, Path)), responses((status = 200, body = Vec<Member>)), tag = "members", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/members")]
async fn list_members(state: web::Data<ApiState>, caller: Caller, path: web::Path<WorkspacePath>) -> Json<Vec<Member>> {
    allow(access(&state, &caller, &path.workspace).await?.can_see_workspace())?;
    Ok(web::Json(state.control.members(&path.workspace).await?))
}

#[utoipa::path(params(("workspace" = String, Path)), request_body = NewMember, responses((status = 200, body = Member)), tag = "members", security(("bearer" = [])))]
#[post("/v1/workspaces/{workspace}/members")]
async fn add_member(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
    body: web::Json<NewMember>,
) -> Json<Member> {
    allow(access(&state, &caller, &path.workspace).await?.can_manage_members())?;
    Ok(web::Json(
        state
            .control
            .add_member(&caller.actor(), &path.workspace, &body)
            .await?,
    ))
}

#[utoipa::path(params(("workspace" = String, Path), ("id" = String, Path, description = "the user's id")), responses((status = 204)), tag = "members", security(("bearer" = [])))]
#[delete("/v1/workspaces/{workspace}/members/{id}")]
async fn remove_member(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<ItemPath>,
) -> Result<HttpResponse, ApiError> {
    allow(access(&state, &caller, &path.workspace).await?.can_manage_members())?;
    state
        .control
        .remove_member(&caller.actor(), &path.workspace, &path.id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct AuditQuery {
    /// Newest rows to return (1-1000, default 100).
    limit: Option<i64>,
}

#[utoipa::path(params(("workspace" = String, Path), AuditQuery), responses((status = 200, body = Vec<AuditEntry>)), tag = "audit", security(("bearer" = [])))]
#[get("/v1/workspaces/{workspace}/audit")]
async fn list_audit(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<WorkspacePath>,
    query: web::Query<AuditQuery>,
) -> Json<Vec<AuditEntry>> {
    allow(access(&state, &caller, &path.workspace).await?.can_see_workspace())?;
    Ok(web::Json(
        state.control.audit(&path.workspace, query.limit.unwrap_or(100)).await?,
    ))
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Switchyard admin API", description = "Workspaces, sources, destinations, members and the audit log."),
    paths(
        crate::session_api::login, crate::session_api::logout, crate::session_api::create_token,
        crate::session_api::list_tokens, crate::session_api::revoke_token, crate::session_api::start_mfa,
        crate::session_api::confirm_mfa, crate::session_api::get_policy, crate::session_api::set_policy,
        crate::session_api::sso_login, crate::session_api::sso_link, crate::session_api::sso_callback, list_workspaces, list_sources, create_source, get_source, update_source, delete_source,
        rotate_write_key, debugger, destination_kinds, list_destinations, create_destination, get_destination, update_destination,
        delete_destination, list_members, add_member, remove_member, list_audit
    ),
    modifiers(&BearerAuth)
)]
pub struct AdminApi;

#[get("/openapi.json")]
async fn openapi_document() -> HttpResponse {
    HttpResponse::Ok().json(AdminApi::openapi())
}

/// Bad JSON bodies: 400 naming the problem (serde names unknown fields and wrong
/// types), 413 over [`MAX_BODY`], 415 without a JSON content type.
fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(MAX_BODY).error_handler(|error, _| {
        use actix_web::error::JsonPayloadError;
        let api = match &error {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => ApiError::TooLarge,
            JsonPayloadError::ContentType => {
                return actix_web::error::InternalError::from_response(
                    error,
                    HttpResponse::UnsupportedMediaType().json(serde_json::json!({
                        "error": "unsupported_media_type",
                        "message": "send Content-Type: application/json"
                    })),
                )
                .into();
            }
            other => ApiError::BadBody(format!("request body: {other}")),
        };
        api.into()
    })
}

/// Every route, for `App::configure`; the app must hold a `web::Data<ApiState>`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .app_data(json_config())
        .app_data(web::PathConfig::default().error_handler(|error, _| ApiError::BadBody(error.to_string()).into()))
        .app_data(web::QueryConfig::default().error_handler(|error, _| ApiError::BadBody(error.to_string()).into()))
        .service(openapi_document)
        .configure(crate::health::routes)
        .configure(crate::session_api::routes)
        .service(list_workspaces)
        .service(list_sources)
        .service(create_source)
        .service(get_source)
        .service(update_source)
        .service(delete_source)
        .service(rotate_write_key)
        .service(debugger)
        .service(destination_kinds)
        .service(list_destinations)
        .service(create_destination)
        .service(get_destination)
        .service(update_destination)
        .service(delete_destination)
        .service(list_members)
        .service(add_member)
        .service(remove_member)
        .service(list_audit);
}
