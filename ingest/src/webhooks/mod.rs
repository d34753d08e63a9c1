//! Webhook sources: `POST /v1/webhooks/<source id>` from SaaS tools (Stripe, GitHub,
//! Shopify, Intercom, or any tool that signs with HMAC-SHA256). A delivery is checked
//! against the source's signing secret (401 with the reason when it fails, counted as
//! `bad_signature`), mapped to one Segment event (the preset's mapping, then the
//! source's VRL `mapping`), and takes the same path as every other event: enriched,
//! written to the ingest topic, answered 200 once Kafka has it.
//!
//! A payload the mapping can't turn into a valid event is written to the dead-letter
//! topic with the reason (stage `ingest_webhook_mapping`) and answered 200, so the
//! provider doesn't retry what would fail again; without a dead-letter topic it is
//! answered 422. Stripe signatures carry a time: one seen before within the tolerance
//! is refused as a replay (per ingest process; the messageId dedup in the router
//! catches a replay sent to another one).

mod map;
pub(crate) mod replays;
pub(crate) mod source;
mod verify;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde_json::Value;
use switchyard_schemas::record::{dead_letter, header};
use switchyard_schemas::trace::Traceparent;
use switchyard_schemas::{EnrichContext, Event, validate};

pub use map::{event_name, map};
pub use replays::Replays;
pub use source::Webhook;
pub use verify::{Verified, verify};

use crate::body::read_limited;
use crate::error::IngestError;
use crate::state::{IngestState, client_ip, to_records};

/// The dead-letter stage of a delivery that couldn't be mapped.
pub const MAPPING_STAGE: &str = "ingest_webhook_mapping";

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/v1/webhooks/{source_id}").route(web::post().to(receive)));
}

async fn receive(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let result = accept(&request, &path, payload, &state).await;
    if let Err(error) = &result {
        state.refused.count(error);
        // Counted in the metrics; at debug only, so forged deliveries can't flood the log.
        if matches!(error, IngestError::BadSignature(_)) {
            tracing::debug!(source_id = %path, %error, "webhook refused");
        }
    }
    result
}

async fn accept(
    request: &HttpRequest,
    source_id: &str,
    payload: web::Payload,
    state: &IngestState,
) -> Result<HttpResponse, IngestError> {
    let received_at = Utc::now();
    let body = read_limited(request, payload, state.limits.max_request_bytes).await?;
    let (source, webhook) = state
        .sources
        .webhook_source(source_id)
        .ok_or_else(|| IngestError::NotFound(format!("no webhook source {source_id:?}")))?;
    let now = received_at.timestamp();
    let verified = verify(&webhook.config, request.headers(), &body, now).map_err(IngestError::BadSignature)?;
    if let Verified::Timed { timestamp, signature } = &verified {
        let tolerance = i64::try_from(webhook.config.tolerance_secs).unwrap_or(i64::MAX);
        if !state
            .replays
            .first_time(&source.id, signature, *timestamp, now, tolerance)
        {
            return Err(IngestError::BadSignature(
                "this signature was already used: a replayed delivery".into(),
            ));
        }
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|error| IngestError::BadRequest {
        code: "invalid_json",
        message: format!("the body is not JSON: {error}"),
    })?;
    let mapped = webhook.event(&payload, request, &body).and_then(|event| {
        event
            .map(|event| {
                let size = event.to_string().len();
                if size > state.limits.max_event_bytes {
                    return Err(format!(
                        "the mapped event is {size} bytes, over the {} byte limit",
                        state.limits.max_event_bytes
                    ));
                }
                let event: Event =
                    serde_json::from_value(event).map_err(|error| format!("the mapped event: {error}"))?;
                validate(&event).map_err(|error| format!("the mapped event: {error}"))?;
                Ok(event)
            })
            .transpose()
    });
    let event = match mapped {
        Ok(Some(event)) => event,
        Ok(None) => return Ok(HttpResponse::Ok().json(serde_json::json!({"success": true, "dropped": true}))),
        Err(reason) => {
            let Some(topic) = &state.dead_letter_topic else {
                return Err(IngestError::Unprocessable(reason));
            };
            let headers = [
                (header::SOURCE_ID, source.id.to_string()),
                (dead_letter::STAGE, MAPPING_STAGE.to_string()),
                (dead_letter::REASON, reason.clone()),
            ];
            state.sink.send_dead_letter(topic, &source.id, &body, &headers).await?;
            tracing::warn!(source_id = %source.id, %reason, "webhook delivery dead-lettered");
            return Ok(HttpResponse::Ok().json(serde_json::json!({"success": true, "dead_lettered": reason})));
        }
    };
    if let crate::sources::RateDecision::Limited(retry_after) = source.admit(1) {
        return Err(IngestError::RateLimited {
            source_id: source.id.to_string(),
            retry_after,
        });
    }
    let ctx = EnrichContext {
        received_at,
        ip: client_ip(request, state.trusted_proxies),
        batch_sent_at: None,
        batch_context: None,
        batch_integrations: None,
    };
    let records = to_records(&source.id, vec![event], &ctx, &Traceparent::new_root().to_string())?;
    state.sink.send_all(&records).await?;
    source.accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(HttpResponse::Ok().json(serde_json::json!({"success": true})))
}
