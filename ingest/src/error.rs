//! Every refusal maps to one HTTP status and a JSON body naming what was wrong, so a
//! client (or the person reading its logs) can fix the request.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use switchyard_schemas::ParseError;

use crate::producer::ProduceError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{message}")]
    Unauthorized { code: &'static str, message: &'static str },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("source {source_id} is over its rate limit; retry after {} s", retry_secs(*retry_after))]
    RateLimited { source_id: String, retry_after: Duration },
    #[error("{0}")]
    Unavailable(#[from] ProduceError),
    /// A webhook delivery whose signature doesn't hold.
    #[error("{0}")]
    BadSignature(String),
    #[error("{0}")]
    NotFound(String),
    /// A webhook delivery the mapping can't turn into an event, with no dead-letter topic.
    #[error("{0}")]
    Unprocessable(String),
    /// The body did not arrive within the deadline (a slow or stalled client).
    #[error("{0}")]
    SlowBody(String),
}

/// Whole seconds, at least one: `Retry-After: 0` invites a tight loop.
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    success: bool,
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
}

impl IngestError {
    /// A fixed, small set of names for metrics (the `code` is finer grained).
    pub const KINDS: [&'static str; 9] = [
        "bad_request",
        "invalid_event",
        "unauthorized",
        "too_large",
        "unsupported_media_type",
        "rate_limited",
        "unavailable",
        "bad_signature",
        "not_found",
    ];

    /// This error's entry in [`IngestError::KINDS`].
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::BadRequest { .. } => "bad_request",
            IngestError::Parse(_) => "invalid_event",
            IngestError::Unauthorized { .. } => "unauthorized",
            IngestError::TooLarge(_) => "too_large",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::Unavailable(_) => "unavailable",
            IngestError::BadSignature(_) => "bad_signature",
            IngestError::NotFound(_) => "not_found",
            IngestError::Unprocessable(_) => "invalid_event",
            IngestError::SlowBody(_) => "bad_request",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            IngestError::BadRequest { code, .. } | IngestError::Unauthorized { code, .. } => code,
            IngestError::Parse(error) => error.code(),
            IngestError::TooLarge(_) => "request_too_large",
            IngestError::UnsupportedMediaType(_) => "unsupported_media_type",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::Unavailable(error) => error.code(),
            IngestError::BadSignature(_) => "bad_signature",
            IngestError::NotFound(_) => "unknown_source",
            IngestError::Unprocessable(_) => "unmappable_payload",
            IngestError::SlowBody(_) => "body_timeout",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            IngestError::RateLimited { retry_after, .. } => Some(retry_secs(*retry_after)),
            IngestError::Unavailable(_) => Some(1),
            _ => None,
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            IngestError::Parse(error) if error.is_size_limit() => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Parse(_) => StatusCode::BAD_REQUEST,
            IngestError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            IngestError::NotFound(_) => StatusCode::NOT_FOUND,
            IngestError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let index = match self {
            IngestError::Parse(error) => error.index(),
            _ => None,
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if matches!(self, IngestError::Unauthorized { .. }) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"switchyard\""),
            ));
        }
        response.json(ErrorBody {
            success: false,
            code: self.code(),
            message: self.to_string(),
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_secs(Duration::from_millis(2001)), 3);
    }
}
