//! A local receiver that holds requests to Amplitude's HTTP V2 API as documented
//! (<https://amplitude.com/docs/apis/analytics/http-v2>, "Upload request" and "Response
//! Format") and answers as Amplitude does:
//! - `POST /2/httpapi`, `Content-Type: application/json`, a JSON body with `api_key` and
//!   a non-empty `events` array; the wrong key is `400 {"error": "Invalid API key"}`;
//! - at most 2,000 events and 1 MB per request, else 413;
//! - each event needs an `event_type` (not one of Amplitude's reserved names), a
//!   `user_id` or `device_id` of at least `options.min_id_length` (5) characters and
//!   not one of the ids Amplitude lists as invalid, and an integer `time` if any; an
//!   event that fails is named in `events_with_missing_fields`,
//!   `events_with_invalid_fields` or `events_with_invalid_id_lengths`, and a request with
//!   one is refused whole (400) with nothing ingested;
//! - a user or device told to be throttled gets `429` naming `throttled_users`,
//!   `throttled_devices` and `throttled_events`, one over the daily quota
//!   `exceeded_daily_quota_users`; nothing of that request is ingested;
//! - events are ingested once per `insert_id` (Amplitude's 7-day deduplication).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::{Scripted, serve};

const RESERVED: &[&str] = &[
    "[Amplitude] Start Session",
    "[Amplitude] End Session",
    "[Amplitude] Revenue",
    "[Amplitude] Revenue (Verified)",
    "[Amplitude] Revenue (Unverified)",
    "[Amplitude] Merged User",
];
const INVALID_IDS: &[&str] = &[
    "anonymous",
    "nil",
    "none",
    "null",
    "n/a",
    "na",
    "undefined",
    "unknown",
    "\"\"",
    "00000000-0000-0000-0000-000000000000",
    "{}",
    "lmy47d",
    "0",
    "-1",
];

#[derive(Default)]
struct State {
    api_key: String,
    ingested: Vec<Value>,
    seen: HashSet<String>,
    /// Every request that reached the checks: (body bytes, events).
    requests: Vec<(usize, usize)>,
    scripted: VecDeque<Scripted>,
    /// User or device id → how many more requests carrying it are throttled.
    throttled: HashMap<String, usize>,
    over_quota: HashSet<String>,
    /// Every 429 and 400 given, in order, with the ids of the events it named.
    refusals: Vec<(u16, Vec<String>)>,
}

/// A running receiver; the server lives as long as the test process.
pub struct AmplitudeReceiver {
    /// The base URL to set as the destination's `endpoint`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for AmplitudeReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmplitudeReceiver")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl AmplitudeReceiver {
    pub fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let addr = serve(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::PayloadConfig::new(8 * 1024 * 1024))
                .route("/2/httpapi", web::post().to(upload))
        });
        AmplitudeReceiver {
            url: format!("http://{addr}"),
            state,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The events ingested, once each, in the order they were.
    pub fn events(&self) -> Vec<Value> {
        self.state().ingested.clone()
    }

    /// Each request checked: (body bytes, events).
    pub fn requests(&self) -> Vec<(usize, usize)> {
        self.state().requests.clone()
    }

    /// Each 400 and 429 given, with the `insert_id`s of the events it named.
    pub fn refusals(&self) -> Vec<(u16, Vec<String>)> {
        self.state().refusals.clone()
    }

    /// Answers given ahead of any check, first to last.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state().scripted.extend(answers);
    }

    /// The next `requests` requests carrying this user or device id are throttled.
    pub fn throttle(&self, id: &str, requests: usize) {
        self.state().throttled.insert(id.into(), requests);
    }

    /// This user or device is over its daily quota.
    pub fn over_quota(&self, id: &str) {
        self.state().over_quota.insert(id.into());
    }
}

fn answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status")).json(body)
}

fn id_of(event: &Value, field: &str) -> Option<String> {
    event.get(field).and_then(Value::as_str).map(str::to_string)
}

async fn upload(request: HttpRequest, body: web::Bytes, state: web::Data<Arc<Mutex<State>>>) -> HttpResponse {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(scripted) = state.scripted.pop_front() {
        return scripted.response();
    }
    let json_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return answer(
            400,
            json!({"code": 400, "error": "Invalid request: Content-Type must be application/json"}),
        );
    }
    if body.len() > 1_000_000 {
        return answer(413, json!({"code": 413, "error": "Payload too large"}));
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return answer(400, json!({"code": 400, "error": "Invalid JSON request body"}));
    };
    let Some(key) = parsed.get("api_key").and_then(Value::as_str) else {
        return answer(
            400,
            json!({"code": 400, "error": "Request missing required field", "missing_field": "api_key"}),
        );
    };
    if key != state.api_key {
        return answer(400, json!({"code": 400, "error": "Invalid API key"}));
    }
    let events = match parsed.get("events").and_then(Value::as_array) {
        Some(events) if !events.is_empty() => events.clone(),
        _ => {
            return answer(
                400,
                json!({"code": 400, "error": "Request missing required field", "missing_field": "events"}),
            );
        }
    };
    if events.len() > 2_000 {
        return answer(413, json!({"code": 413, "error": "Payload too large"}));
    }
    state.requests.push((body.len(), events.len()));
    let min_length = parsed
        .pointer("/options/min_id_length")
        .and_then(Value::as_u64)
        .unwrap_or(5) as usize;

    let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut invalid: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut short: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, event) in events.iter().enumerate() {
        match event.get("event_type").and_then(Value::as_str) {
            None => missing.entry("event_type").or_default().push(index),
            Some(name) if RESERVED.contains(&name) => invalid.entry("event_type").or_default().push(index),
            Some(_) => {}
        }
        if event.get("time").is_some_and(|t| !t.is_i64()) {
            invalid.entry("time").or_default().push(index);
        }
        let mut usable = false;
        for field in ["user_id", "device_id"] {
            let Some(id) = event.get(field) else { continue };
            match id.as_str() {
                Some(id) if INVALID_IDS.contains(&id.to_ascii_lowercase().as_str()) => {
                    invalid.entry(field).or_default().push(index)
                }
                Some(id) if id.chars().count() < min_length => short.entry(field).or_default().push(index),
                Some(_) => usable = true,
                None => invalid.entry(field).or_default().push(index),
            }
        }
        let named = missing.values().chain(invalid.values()).chain(short.values());
        if !usable && !named.flatten().any(|i| *i == index) {
            missing.entry("user_id").or_default().push(index);
        }
    }
    if !(missing.is_empty() && invalid.is_empty() && short.is_empty()) {
        let named: HashSet<usize> = missing
            .values()
            .chain(invalid.values())
            .chain(short.values())
            .flatten()
            .copied()
            .collect();
        let ids = insert_ids(&events, named.iter().copied());
        state.refusals.push((400, ids));
        let error = if missing.is_empty() {
            "Invalid field values on some events"
        } else {
            "Request missing required field"
        };
        return answer(
            400,
            json!({"code": 400, "error": error, "events_with_missing_fields": missing,
                   "events_with_invalid_fields": invalid, "events_with_invalid_id_lengths": short}),
        );
    }

    let mut throttled_users: BTreeMap<String, u64> = BTreeMap::new();
    let mut throttled_devices: BTreeMap<String, u64> = BTreeMap::new();
    let mut quota_users: BTreeMap<String, u64> = BTreeMap::new();
    let mut throttled_events = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let user = id_of(event, "user_id");
        let device = id_of(event, "device_id");
        let mut hit = false;
        for (id, into) in [(&user, &mut throttled_users), (&device, &mut throttled_devices)] {
            if let Some(id) = id
                && state.throttled.get(id).is_some_and(|left| *left > 0)
            {
                into.insert(id.clone(), 31);
                hit = true;
            }
        }
        if hit {
            throttled_events.push(index);
        }
        if let Some(user) = &user
            && state.over_quota.contains(user)
        {
            quota_users.insert(user.clone(), 500_001);
        }
    }
    if !throttled_events.is_empty() || !quota_users.is_empty() {
        for id in throttled_users.keys().chain(throttled_devices.keys()) {
            if let Some(left) = state.throttled.get_mut(id) {
                *left -= 1;
            }
        }
        let mut named: Vec<usize> = throttled_events.clone();
        named.extend(events.iter().enumerate().filter_map(|(index, event)| {
            id_of(event, "user_id")
                .filter(|user| quota_users.contains_key(user))
                .map(|_| index)
        }));
        let ids = insert_ids(&events, named.into_iter());
        state.refusals.push((429, ids));
        return answer(
            429,
            json!({"code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30,
                   "throttled_devices": throttled_devices, "throttled_users": throttled_users,
                   "throttled_events": throttled_events, "exceeded_daily_quota_users": quota_users,
                   "exceeded_daily_quota_devices": {}}),
        );
    }
    let mut ingested = 0;
    for event in events {
        let fresh = match id_of(&event, "insert_id") {
            Some(id) => state.seen.insert(id),
            None => true,
        };
        if fresh {
            state.ingested.push(event);
            ingested += 1;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    answer(
        200,
        json!({"code": 200, "events_ingested": ingested, "payload_size_bytes": body.len(), "server_upload_time": now}),
    )
}

fn insert_ids(events: &[Value], indexes: impl Iterator<Item = usize>) -> Vec<String> {
    let mut ids: Vec<String> = indexes
        .filter_map(|index| events.get(index).and_then(|e| id_of(e, "insert_id")))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}
