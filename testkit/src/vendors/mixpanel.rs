//! A local receiver that holds requests to Mixpanel's Ingestion API as documented and
//! answers as Mixpanel does:
//! - `POST /import?strict=1` (<https://developer.mixpanel.com/reference/import-events>):
//!   Basic auth with the project token as user name (or a service account with
//!   `project_id`), else 401; a JSON array body, gzip when `Content-Encoding: gzip`; at
//!   most 2,000 events and 10 MB uncompressed (413). Each event needs `event`, and
//!   `properties` with `time`, `distinct_id` (not a placeholder such as `null`) and an
//!   `$insert_id` of at most 36 letters, digits or `-`. Strict mode imports the valid
//!   ones and answers 400 with `failed_records` (index, insert_id, field, message) for
//!   the rest (<https://docs.mixpanel.com/troubleshooting/errors/400-bad-request>);
//!   repeats of an `$insert_id` are dropped.
//! - `POST /engage` and `/groups` with `verbose=1`
//!   (<https://developer.mixpanel.com/reference/profile-set>): a JSON array of updates,
//!   each with the project's `$token`; `{"status": 1, "error": null}`, or
//!   `{"status": 0, "error": ...}` refusing the request.

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Scripted, serve};

const PLACEHOLDER_IDS: &[&str] = &[
    "anon",
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "undefined",
    "unknown",
    "00000000-0000-0000-0000-000000000000",
    "<nil>",
    "[]",
    "{}",
];

#[derive(Default)]
struct State {
    token: String,
    /// A service account's (username, secret, project id).
    account: Option<(String, String, String)>,
    events: Vec<Value>,
    seen: HashSet<String>,
    profiles: Vec<Value>,
    groups: Vec<Value>,
    /// (endpoint, uncompressed bytes, items, gzip) of each request checked.
    requests: Vec<(&'static str, usize, usize, bool)>,
    scripted: VecDeque<Scripted>,
}

/// A running receiver; the server lives as long as the test process.
pub struct MixpanelReceiver {
    /// The base URL to set as the destination's `endpoint`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MixpanelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixpanelReceiver")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl MixpanelReceiver {
    pub fn start(project_token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            token: project_token.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let addr = serve(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(32 * 1024 * 1024))
                .route("/import", web::post().to(import))
                .route("/engage", web::post().to(engage))
                .route("/groups", web::post().to(groups))
        });
        MixpanelReceiver {
            url: format!("http://{addr}"),
            state,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Also takes this service account for `/import`, with `project_id` in the query.
    pub fn allow_service_account(&self, username: &str, secret: &str, project_id: &str) {
        self.state().account = Some((username.into(), secret.into(), project_id.into()));
    }

    /// Events imported, once per `$insert_id`.
    pub fn events(&self) -> Vec<Value> {
        self.state().events.clone()
    }

    /// User profile updates accepted.
    pub fn profiles(&self) -> Vec<Value> {
        self.state().profiles.clone()
    }

    /// Group profile updates accepted.
    pub fn groups(&self) -> Vec<Value> {
        self.state().groups.clone()
    }

    /// (endpoint, uncompressed bytes, items, gzip) of each request checked.
    pub fn requests(&self) -> Vec<(&'static str, usize, usize, bool)> {
        self.state().requests.clone()
    }

    /// Answers given ahead of any check (to any endpoint), first to last.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state().scripted.extend(answers);
    }
}

fn answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status")).json(body)
}

/// The body, gunzipped when it says so, parsed as a JSON array.
/// A refusal: always a 400 with this JSON body.
type Refusal = Value;

fn items(request: &HttpRequest, body: &[u8]) -> Result<(Vec<Value>, usize, bool), Refusal> {
    let gzip = request
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let mut plain = Vec::new();
    if gzip {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut plain)
            .map_err(|_| json!({"code": 400, "error": "invalid gzip body", "status": 0}))?;
    } else {
        plain = body.to_vec();
    }
    let parsed: Value = serde_json::from_slice(&plain)
        .map_err(|_| json!({"code": 400, "error": "request body is not valid JSON", "status": 0}))?;
    match parsed {
        Value::Array(items) => Ok((items, plain.len(), gzip)),
        _ => Err(json!({"code": 400, "error": "the body must be a JSON array", "status": 0})),
    }
}

async fn import(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(scripted) = state.scripted.pop_front() {
        return scripted.response();
    }
    let token_auth = format!("Basic {}", STANDARD.encode(format!("{}:", state.token)));
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok());
    let account = state.account.as_ref().is_some_and(|(user, secret, project)| {
        let basic = format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")));
        let query = format!("project_id={project}");
        auth == Some(basic.as_str()) && request.query_string().split('&').any(|pair| pair == query)
    });
    if auth != Some(token_auth.as_str()) && !account {
        return answer(
            401,
            json!({"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}),
        );
    }
    if request.query_string().split('&').all(|pair| pair != "strict=1") {
        return answer(
            400,
            json!({"code": 400, "error": "this receiver expects strict=1", "status": "Bad Request"}),
        );
    }
    let (events, bytes, gzip) = match items(&request, &body) {
        Ok(parsed) => parsed,
        Err(refused) => return answer(400, refused),
    };
    if events.len() > 2_000 || bytes > 10_000_000 {
        return answer(
            413,
            json!({"code": 413, "error": "request exceeds max limit of 10485760 bytes", "status": "Request Entity Too Large"}),
        );
    }
    state.requests.push(("import", bytes, events.len(), gzip));
    let mut failed = Vec::new();
    let mut imported = 0;
    for (index, event) in events.iter().enumerate() {
        let properties = event.get("properties").and_then(Value::as_object);
        let insert_id = properties
            .and_then(|p| p.get("$insert_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let problem = if event.get("event").and_then(Value::as_str).is_none_or(str::is_empty) {
            Some(("event", "'event' must be a non-empty string".to_string()))
        } else if properties.is_none() {
            Some(("properties", "'properties' must be an object".to_string()))
        } else if properties.and_then(|p| p.get("time")).is_none_or(|t| !t.is_i64()) {
            Some((
                "properties.time",
                "'properties.time' is invalid: must be specified as seconds since epoch".to_string(),
            ))
        } else if insert_id.is_empty()
            || insert_id.len() > 36
            || !insert_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            Some((
                "properties.$insert_id",
                "'properties.$insert_id' is invalid: must be at most 36 alphanumeric characters or -".to_string(),
            ))
        } else {
            match properties.and_then(|p| p.get("distinct_id")).and_then(Value::as_str) {
                None => Some((
                    "properties.distinct_id",
                    "'properties.distinct_id' must be a string".to_string(),
                )),
                Some(id) if PLACEHOLDER_IDS.contains(&id.to_ascii_lowercase().as_str()) => Some((
                    "properties.distinct_id",
                    format!("'properties.distinct_id' is invalid: {id:?} is a placeholder value"),
                )),
                Some(_) => None,
            }
        };
        match problem {
            Some((field, message)) => {
                failed.push(json!({"index": index, "insert_id": insert_id, "field": field, "message": message}))
            }
            None => {
                if state.seen.insert(insert_id) {
                    state.events.push(event.clone());
                }
                imported += 1;
            }
        }
    }
    if failed.is_empty() {
        return answer(
            200,
            json!({"code": 200, "num_records_imported": imported, "status": "OK"}),
        );
    }
    answer(
        400,
        json!({"code": 400, "error": "some data points in the request failed validation", "status": "Bad Request",
               "num_records_imported": imported, "failed_records": failed}),
    )
}

fn profiles(request: &HttpRequest, body: &[u8], state: &mut State, endpoint: &'static str) -> HttpResponse {
    if let Some(scripted) = state.scripted.pop_front() {
        return scripted.response();
    }
    let (updates, bytes, gzip) = match items(request, body) {
        Ok(parsed) => parsed,
        Err(refused) => return answer(400, refused),
    };
    if updates.len() > 2_000 {
        return answer(
            200,
            json!({"status": 0, "error": "more than 2000 updates in one request"}),
        );
    }
    state.requests.push((endpoint, bytes, updates.len(), gzip));
    for update in &updates {
        if update.get("$token").and_then(Value::as_str) != Some(state.token.as_str()) {
            return answer(
                200,
                json!({"status": 0, "error": "$token is missing or not this project's"}),
            );
        }
    }
    if updates.iter().any(|u| {
        u.get(if endpoint == "engage" {
            "$distinct_id"
        } else {
            "$group_id"
        })
        .is_none()
    }) {
        return answer(200, json!({"status": 0, "error": "an update names no profile"}));
    }
    let into = if endpoint == "engage" {
        &mut state.profiles
    } else {
        &mut state.groups
    };
    into.extend(updates);
    answer(200, json!({"status": 1, "error": null}))
}

async fn engage(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    profiles(&request, &body, &mut state, "engage")
}

async fn groups(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    profiles(&request, &body, &mut state, "groups")
}
