//! What Mixpanel's answers mean for each event of a request: `/import` with
//! `strict=1` (<https://developer.mixpanel.com/reference/import-events>, and its 400
//! page <https://docs.mixpanel.com/troubleshooting/errors/400-bad-request>), and the
//! profile endpoints with `verbose=1` (<https://developer.mixpanel.com/reference/profile-set>).

use awc::http::StatusCode;
use serde::Deserialize;

use crate::destination::delivery::DeliveryError;
use crate::destination::kinds::http::HttpAnswer;

/// A request's answer, per item of the request (not per event of the batch).
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// Nothing of the request arrived.
    All(DeliveryError),
    /// These items were refused; every other one arrived.
    Refused(Vec<(usize, DeliveryError)>),
    /// Over Mixpanel's request size: sent again in smaller requests.
    TooLarge,
}

#[derive(Debug, Default, Deserialize)]
struct ImportBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    failed_records: Vec<FailedRecord>,
}

#[derive(Debug, Deserialize)]
struct FailedRecord {
    index: usize,
    #[serde(default)]
    field: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct ProfileBody {
    status: Option<i64>,
    #[serde(default)]
    error: Option<String>,
}

/// The classification every endpoint shares; `None` for a 2xx or 400, which each
/// endpoint reads its own way.
fn common(answer: &HttpAnswer, items: usize) -> Option<Outcome> {
    match answer.status {
        status if status.is_success() || status == StatusCode::BAD_REQUEST => None,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Some(Outcome::All(DeliveryError {
            retryable: true,
            reason: format!(
                "HTTP {}: Mixpanel refused the credentials (held until they are fixed): {}",
                answer.status.as_u16(),
                answer.snippet()
            ),
            retry_after: answer.retry_after(),
        })),
        StatusCode::PAYLOAD_TOO_LARGE if items > 1 => Some(Outcome::TooLarge),
        _ => Some(Outcome::All(answer.refused())),
    }
}

/// `/import?strict=1`: a 400 lists the refused records; Mixpanel imported the rest.
pub fn import(answer: &HttpAnswer, items: usize) -> Outcome {
    if let Some(outcome) = common(answer, items) {
        return outcome;
    }
    if answer.status.is_success() {
        return Outcome::Delivered;
    }
    let body: ImportBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    if body.failed_records.is_empty() {
        return Outcome::All(answer.refused());
    }
    Outcome::Refused(
        body.failed_records
            .into_iter()
            .filter(|record| record.index < items)
            .map(|record| {
                let reason = format!(
                    "Mixpanel refused the event (HTTP 400, {:?}): {}: {}",
                    body.error, record.field, record.message
                );
                (record.index, DeliveryError::permanent(reason))
            })
            .collect(),
    )
}

/// `/engage` or `/groups` with `verbose=1`: `{"status": 1}`, or `0` with the error
/// (the whole request refused).
pub fn profiles(answer: &HttpAnswer, items: usize, endpoint: &str) -> Outcome {
    if let Some(outcome) = common(answer, items) {
        return outcome;
    }
    let body: ProfileBody = serde_json::from_slice(&answer.body).unwrap_or_default();
    if answer.status.is_success() && body.status != Some(0) {
        return Outcome::Delivered;
    }
    let error = body.error.unwrap_or_else(|| answer.snippet());
    Outcome::All(DeliveryError::permanent(format!(
        "Mixpanel refused the profile updates (/{endpoint}, HTTP {}): {error}",
        answer.status.as_u16()
    )))
}
