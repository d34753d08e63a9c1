//! What Amplitude's answers mean for each event of a request
//! (<https://amplitude.com/docs/apis/analytics/http-v2#response-format>).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use serde::Deserialize;
use switchyard_schemas::Event;

use crate::destination::delivery::DeliveryError;
use crate::destination::kinds::http::HttpAnswer;

/// Amplitude asks a throttled user or device to pause this long.
pub const THROTTLE_PAUSE: Duration = Duration::from_secs(30);

/// An answer, per event of the batch (not per Amplitude event).
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// The request failed as a whole.
    All(DeliveryError),
    /// These events of the batch did not arrive; every other one did.
    Each(Vec<(usize, DeliveryError)>),
    /// Over Amplitude's request size: sent again in requests of at most this many events.
    TooLarge(usize),
}

/// The fields of a 400 or 429 body this kind acts on.
#[derive(Debug, Default, Deserialize)]
struct Body {
    #[serde(default)]
    error: String,
    #[serde(default)]
    events_with_invalid_fields: BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    events_with_missing_fields: BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    events_with_invalid_id_lengths: BTreeMap<String, Vec<usize>>,
    #[serde(default)]
    silenced_events: Vec<usize>,
    #[serde(default)]
    eps_threshold: Option<u64>,
    #[serde(default)]
    throttled_events: Vec<usize>,
    #[serde(default)]
    exceeded_daily_quota_users: BTreeMap<String, u64>,
    #[serde(default)]
    exceeded_daily_quota_devices: BTreeMap<String, u64>,
}

/// `origin[i]` is the batch index of the request's `i`-th Amplitude event.
pub fn classify(answer: &HttpAnswer, origin: &[usize], events: &[Arc<Event>]) -> Outcome {
    let status = answer.status;
    if status.is_success() {
        return Outcome::Delivered;
    }
    let body: Body = serde_json::from_slice(&answer.body).unwrap_or_default();
    match status {
        StatusCode::BAD_REQUEST if body.error.eq_ignore_ascii_case("invalid api key") => {
            Outcome::All(credential(answer))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::All(credential(answer)),
        StatusCode::BAD_REQUEST => invalid(answer, &body, origin),
        StatusCode::PAYLOAD_TOO_LARGE => {
            let sent = distinct_indexes(origin).count();
            if sent > 1 {
                Outcome::TooLarge(sent / 2)
            } else {
                Outcome::All(DeliveryError::permanent(format!(
                    "HTTP 413: the event alone is over Amplitude's request limit: {}",
                    answer.snippet()
                )))
            }
        }
        StatusCode::TOO_MANY_REQUESTS => throttled(answer, &body, origin, events),
        _ => Outcome::All(answer.refused()),
    }
}

fn credential(answer: &HttpAnswer) -> DeliveryError {
    DeliveryError {
        retryable: true,
        reason: format!(
            "HTTP {}: Amplitude refused the API key (held until it is fixed): {}",
            answer.status.as_u16(),
            answer.snippet()
        ),
        retry_after: answer.retry_after(),
    }
}

/// A 400 that names its events: those are dead-lettered with Amplitude's reason, and
/// the rest (Amplitude ingested none of the request) go again without them.
fn invalid(answer: &HttpAnswer, body: &Body, origin: &[usize]) -> Outcome {
    let mut refused: BTreeMap<usize, String> = BTreeMap::new();
    let lists = [
        ("invalid", &body.events_with_invalid_fields),
        ("missing", &body.events_with_missing_fields),
        ("too short an id in", &body.events_with_invalid_id_lengths),
    ];
    for (what, fields) in lists {
        for (field, indexes) in fields {
            for index in indexes {
                refused.entry(*index).or_insert_with(|| format!("{what} {field}"));
            }
        }
    }
    for index in &body.silenced_events {
        refused
            .entry(*index)
            .or_insert_with(|| "its device is silenced by Amplitude".into());
    }
    let refused: BTreeMap<usize, String> = refused
        .into_iter()
        .filter_map(|(index, why)| origin.get(index).map(|at| (*at, why)))
        .collect();
    if refused.is_empty() {
        return Outcome::All(answer.refused());
    }
    let error = if body.error.is_empty() {
        "Bad Request"
    } else {
        &body.error
    };
    let mut each: Vec<(usize, DeliveryError)> = refused
        .iter()
        .map(|(at, why)| {
            let reason = format!("Amplitude refused the event (HTTP 400, {error:?}): {why}");
            (*at, DeliveryError::permanent(reason))
        })
        .collect();
    let again = DeliveryError::retryable(
        "sent again: Amplitude refused other events of its request (HTTP 400) and ingested none".into(),
    );
    each.extend(others(origin, |at| !refused.contains_key(&at)).map(|at| (at, again.clone())));
    Outcome::Each(each)
}

/// A 429: the throttled users' and devices' events pause (Amplitude asks for 30 s),
/// those over the daily quota are dead-lettered, and the others go again at once.
fn throttled(answer: &HttpAnswer, body: &Body, origin: &[usize], events: &[Arc<Event>]) -> Outcome {
    let pause = answer.retry_after().unwrap_or(THROTTLE_PAUSE);
    let over_quota = |at: usize| {
        let common = events.get(at)?.common();
        if let Some(user) = common.user_id.as_deref()
            && let Some(count) = body.exceeded_daily_quota_users.get(user)
        {
            return Some(format!(
                "user {user:?} is over Amplitude's daily quota ({count} events)"
            ));
        }
        let device = common.anonymous_id.as_deref()?;
        let count = body.exceeded_daily_quota_devices.get(device)?;
        Some(format!(
            "device {device:?} is over Amplitude's daily quota ({count} events)"
        ))
    };
    let throttled: Vec<usize> = body
        .throttled_events
        .iter()
        .filter_map(|index| origin.get(*index).copied())
        .collect();
    let quota: BTreeMap<usize, String> = distinct_indexes(origin)
        .filter_map(|at| over_quota(at).map(|why| (at, why)))
        .collect();
    if throttled.is_empty() && quota.is_empty() {
        let mut error = answer.refused();
        error.retry_after = Some(pause);
        return Outcome::All(error);
    }
    let threshold = body
        .eps_threshold
        .map_or(String::new(), |eps| format!(" over {eps} events/s"));
    let paused = DeliveryError {
        retryable: true,
        reason: format!("HTTP 429: Amplitude throttled the event's user or device{threshold}; paused {pause:?}"),
        retry_after: Some(pause),
    };
    let again = DeliveryError::retryable(
        "sent again: Amplitude throttled other users of its request (HTTP 429) and ingested none".into(),
    );
    let mut each: Vec<(usize, DeliveryError)> = Vec::new();
    for at in distinct_indexes(origin) {
        let error = match quota.get(&at) {
            Some(why) => DeliveryError::permanent(format!("HTTP 429: {why}")),
            None if throttled.contains(&at) => paused.clone(),
            None => again.clone(),
        };
        each.push((at, error));
    }
    Outcome::Each(each)
}

fn distinct_indexes(origin: &[usize]) -> impl Iterator<Item = usize> + '_ {
    others(origin, |_| true)
}

/// The batch indexes of the request's events, once each, that pass `keep`.
fn others(origin: &[usize], keep: impl Fn(usize) -> bool) -> impl Iterator<Item = usize> {
    let mut indexes = origin.to_vec();
    indexes.dedup();
    indexes.into_iter().filter(move |at| keep(*at))
}
