//! What analytics.js needs from its collection server besides the event endpoints:
//! the settings it would otherwise fetch from Segment's CDN, and somewhere to send its
//! own telemetry.
//!
//! `GET /v1/projects/{writeKey}/settings` answers what `cdn.segment.com` answers, with the
//! `Segment.io` integration (and the telemetry host) pointed at this ingest, so
//! `AnalyticsBrowser.load({writeKey, cdnURL: "https://<ingest>"})` works with no Segment
//! CDN. An unknown key gets the same 404 whether or not a source ever had it.
//!
//! `POST /v1/m` takes analytics.js' counters: answered 200 and counted, never stored as
//! events (they carry no write key and describe the library, not the user).

pub(crate) mod endpoint;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

pub use endpoint::Browser;

use crate::body::read_limited;
use crate::error::IngestError;
use crate::state::IngestState;

/// analytics.js batches at most 20 counters of a few hundred bytes each.
const MAX_TELEMETRY_BYTES: usize = 64 * 1024;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/v1/projects/{write_key}/settings").route(web::get().to(settings)));
    config.service(web::resource("/v1/m").route(web::post().to(telemetry)));
}

async fn settings(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let write_key = path.into_inner();
    let Some(source) = state.sources.authenticate(&write_key) else {
        return Err(IngestError::NotFound("no settings for this write key".into()));
    };
    let (protocol, host) = state.browser.endpoint(&request, state.trusted_proxies);
    let api_host = format!("{host}/v1");
    tracing::debug!(source_id = %source.id, "served analytics.js settings");
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        // Its telemetry comes here too, not to Segment.
        "metrics": {"sampleRate": 0.1, "host": api_host},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    let mut response = HttpResponse::Ok();
    // Derived from the request's Host unless the operator set public_url: a shared
    // cache must not hand one host's answer to another.
    if state.browser.public_url.is_some() {
        response.insert_header((header::CACHE_CONTROL, "public, max-age=300"));
    } else {
        response.insert_header((header::CACHE_CONTROL, "private, max-age=300"));
        response.insert_header((header::VARY, "Host"));
    }
    Ok(response.json(body))
}

async fn telemetry(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let result = read_limited(&request, payload, MAX_TELEMETRY_BYTES).await;
    if let Err(error) = &result {
        state.refused.count(error);
    }
    result?;
    state.browser.count_telemetry();
    Ok(HttpResponse::Ok().json(json!({ "success": true })))
}
