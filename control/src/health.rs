//! Probes for an orchestrator, on the admin API's own port (the control plane has no
//! ops port): `/healthz` answers while the process serves, `/readyz` only while the
//! metadata database answers too, so a pod that lost its database leaves the Service
//! rather than failing every request. Neither needs a caller nor tells anything more.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::api::ApiState;

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    match sqlx::query("SELECT 1").execute(&state.control.db().pool).await {
        Ok(_) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(%error, "readiness: the metadata database does not answer");
            HttpResponse::ServiceUnavailable()
                .json(json!({"error": "unavailable", "message": "the metadata database does not answer"}))
        }
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(healthz).service(readyz);
}
