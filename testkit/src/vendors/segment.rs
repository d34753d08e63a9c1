//! A local receiver that holds requests to Segment's HTTP Tracking API as documented
//! (<https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/>):
//! `POST /v1/batch`, HTTP Basic auth with the write key as user and an empty password,
//! a JSON body `{"batch": [...]}` of at most 500 KB whose events are at most 32 KB
//! each and each carry a `type`; otherwise 400 with a reason. A wrong key gets 401 as
//! RudderStack's data plane answers it ("Invalid Authorization Header").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Scripted, serve};

#[derive(Default)]
struct State {
    authorization: String,
    batches: Vec<Vec<Value>>,
    scripted: VecDeque<Scripted>,
}

/// A running receiver; the server lives as long as the test process.
pub struct SegmentReceiver {
    /// The base URL to set as the destination's `endpoint`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SegmentReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReceiver")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SegmentReceiver {
    pub fn start(write_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            authorization: format!("Basic {}", STANDARD.encode(format!("{write_key}:"))),
            ..State::default()
        }));
        let shared = state.clone();
        let addr = serve(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(4 * 1024 * 1024))
                .route("/v1/batch", web::post().to(batch))
        });
        SegmentReceiver {
            url: format!("http://{addr}"),
            state,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Each accepted request's events.
    pub fn batches(&self) -> Vec<Vec<Value>> {
        self.state().batches.clone()
    }

    /// Answers given ahead of any check, first to last.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state().scripted.extend(answers);
    }
}

fn refuse(status: u16, reason: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .json(json!({"success": false, "message": reason}))
}

async fn batch(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(scripted) = state.scripted.pop_front() {
        return scripted.response();
    }
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(state.authorization.as_str()) {
        return refuse(401, "Invalid Authorization Header");
    }
    if request.headers().get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return refuse(400, "Content-Type must be application/json");
    }
    if body.len() > 500_000 {
        return refuse(400, "request body over 500 KB");
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return refuse(400, "invalid JSON");
    };
    let Some(events) = parsed.get("batch").and_then(Value::as_array) else {
        return refuse(400, "batch must be an array");
    };
    for event in events {
        if serde_json::to_vec(event).map_or(0, |v| v.len()) > 32_000 {
            return refuse(400, "event over 32 KB");
        }
        if event.get("type").and_then(Value::as_str).is_none() {
            return refuse(400, "every event needs a type");
        }
    }
    state.batches.push(events.clone());
    HttpResponse::Ok().json(json!({"success": true}))
}
