//! The collection endpoints, as Segment's server libraries and analytics.js call them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use switchyard_schemas::trace::Traceparent;
use switchyard_schemas::{EnrichContext, EventType, ParsedRequest, parse, parse_batch, parse_single};
use switchyard_telemetry::TARGET;
use tracing::Instrument;

use crate::body::{check_content_type, read_limited};
use crate::error::IngestError;
use crate::sources::{RateDecision, Source, SourceRegistry};
use crate::state::{IngestState, client_ip, to_records};

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Single(EventType),
    Batch,
}

/// Mounts the collection API under `/v1`.
pub fn configure(state: Arc<IngestState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.app_data(web::Data::from(state));
        let single = |path: &str, kind: EventType| {
            web::resource(path).route(web::post().to(move |r, p, s| collect(r, p, s, Endpoint::Single(kind))))
        };
        for kind in EventType::ALL {
            let short = &kind.as_str()[..1];
            config.service(single(&format!("/v1/{kind}"), kind));
            config.service(single(&format!("/v1/{short}"), kind));
        }
        for path in ["/v1/batch", "/v1/import", "/v1/b"] {
            config.service(web::resource(path).route(web::post().to(|r, p, s| collect(r, p, s, Endpoint::Batch))));
        }
        crate::webhooks::configure(config);
        crate::browser::configure(config);
    }
}

async fn collect(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
    endpoint: Endpoint,
) -> Result<HttpResponse, IngestError> {
    let result = accept(request, payload, state.clone(), endpoint).await;
    if let Err(error) = &result {
        state.refused.count(error);
    }
    result
}

async fn accept(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
    endpoint: Endpoint,
) -> Result<HttpResponse, IngestError> {
    let received_at = Utc::now();
    check_content_type(&request)?;
    let body = read_limited(&request, payload, state.limits.max_request_bytes).await?;
    let source = authenticate(&request, &body, &state.sources)?;
    let ParsedRequest {
        events,
        sent_at,
        context,
        integrations,
    } = match endpoint {
        Endpoint::Single(kind) => parse_single(&body, kind, &state.limits)?,
        Endpoint::Batch => parse_batch(&body, &state.limits)?,
    };
    if let RateDecision::Limited(retry_after) = source.admit(events.len()) {
        return Err(IngestError::RateLimited {
            source_id: source.id.to_string(),
            retry_after,
        });
    }
    let incoming = request
        .headers()
        .get(Traceparent::HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(Traceparent::parse);
    // The request's span: a child of the caller's trace when it sent one. Its context
    // travels in every record's headers, so the router's spans continue this trace.
    let span = tracing::info_span!(target: TARGET, "ingest", source_id = %source.id, events = events.len());
    let parent = incoming.unwrap_or_else(Traceparent::new_root);
    if incoming.is_some() {
        switchyard_telemetry::set_parent(&span, parent);
    }
    let traceparent = switchyard_telemetry::pass_on(&span, parent).to_string();
    let ctx = EnrichContext {
        received_at,
        ip: client_ip(&request, state.trusted_proxies),
        batch_sent_at: sent_at,
        batch_context: context.as_ref(),
        batch_integrations: integrations.as_ref(),
    };
    let records = to_records(&source.id, events, &ctx, &traceparent)?;
    state.sink.send_all(&records).instrument(span).await?;
    source.accepted.fetch_add(records.len() as u64, Ordering::Relaxed);
    tracing::debug!(source_id = %source.id, events = records.len(), "accepted events");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "success": true })))
}

/// Server libraries send HTTP Basic with the write key as user name; browsers put
/// `writeKey` in the body.
fn authenticate(request: &HttpRequest, body: &[u8], sources: &SourceRegistry) -> Result<Arc<Source>, IngestError> {
    let write_key = match request.headers().get(header::AUTHORIZATION) {
        Some(value) => basic_user(value.as_bytes()).ok_or(IngestError::Unauthorized {
            code: "invalid_authorization",
            message: "Authorization must be HTTP Basic with the write key as user name",
        })?,
        None => parse::write_key_in_body(body).ok_or(IngestError::Unauthorized {
            code: "missing_write_key",
            message: "no write key: send HTTP Basic auth with the write key as user name, or writeKey in the body",
        })?,
    };
    sources.authenticate(&write_key).ok_or(IngestError::Unauthorized {
        code: "invalid_write_key",
        message: "the write key does not belong to any source",
    })
}

fn basic_user(header_value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header_value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
    Some(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_user_is_the_write_key() {
        let header = format!("Basic {}", STANDARD.encode("my-write-key:"));
        assert_eq!(basic_user(header.as_bytes()).as_deref(), Some("my-write-key"));
        let no_colon = format!("basic {}", STANDARD.encode("my-write-key"));
        assert_eq!(basic_user(no_colon.as_bytes()).as_deref(), Some("my-write-key"));
        assert_eq!(basic_user(b"Bearer abc"), None);
        assert_eq!(basic_user(b"Basic !!!not-base64"), None);
    }
}
