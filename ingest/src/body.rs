//! Reading a request body within its limit, inflating gzip without letting a small
//! compressed body expand past that limit.

use std::io::Read;

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use flate2::read::GzDecoder;
use futures::StreamExt;

use crate::error::IngestError;

/// The whole body must arrive within this long: a client trickling bytes would
/// otherwise hold a connection and its buffer indefinitely (the request head has its
/// own deadline, `client_request_timeout` in `server.rs`).
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, IngestError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > limit) {
        return Err(IngestError::TooLarge(format!(
            "request body is {size} bytes, over the limit of {limit} bytes"
        )));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|error| IngestError::BadRequest {
                code: "body_read_failed",
                message: format!("could not read the request body: {error}"),
            })?;
            if body.len() + chunk.len() > limit {
                return Err(IngestError::TooLarge(format!(
                    "request body is over the limit of {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    actix_web::rt::time::timeout(BODY_DEADLINE, read).await.map_err(|_| {
        IngestError::SlowBody(format!(
            "the request body did not arrive within {} s",
            BODY_DEADLINE.as_secs()
        ))
    })??;
    let body = body.freeze();
    match content_encoding(request)?.as_deref() {
        None | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => gunzip(&body, limit),
        Some(other) => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Encoding {other:?} is not supported: send gzip or no encoding"
        ))),
    }
}

fn content_encoding(request: &HttpRequest) -> Result<Option<String>, IngestError> {
    let Some(value) = request.headers().get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| IngestError::UnsupportedMediaType("Content-Encoding is not readable text".into()))?;
    Ok(Some(text.trim().to_ascii_lowercase()))
}

fn gunzip(body: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let mut inflated = Vec::with_capacity((body.len() * 4).min(limit));
    // One byte past the limit tells "exactly at the limit" from "over it".
    let read = GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|error| IngestError::BadRequest {
            code: "invalid_gzip",
            message: format!("body is marked gzip but does not inflate: {error}"),
        })?;
    if read > limit {
        return Err(IngestError::TooLarge(format!(
            "gzip body inflates to more than the limit of {limit} bytes"
        )));
    }
    Ok(Bytes::from(inflated))
}

/// Browsers send JSON as `text/plain` to skip the CORS preflight; both are accepted.
pub(crate) fn check_content_type(request: &HttpRequest) -> Result<(), IngestError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "" | "application/json" | "text/plain" => Ok(()),
        other => Err(IngestError::UnsupportedMediaType(format!(
            "Content-Type {other:?} is not supported: send application/json or text/plain"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("in memory");
        encoder.finish().expect("in memory")
    }

    #[test]
    fn gzip_within_the_limit_inflates() {
        let inflated = gunzip(&gzip(b"{\"batch\":[]}"), 100).expect("inflates");
        assert_eq!(&inflated[..], b"{\"batch\":[]}");
    }

    #[test]
    fn gzip_bomb_is_refused_at_the_limit() {
        let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "the compressed body is small");
        match gunzip(&bomb, 500 * 1024) {
            Err(IngestError::TooLarge(message)) => assert!(message.contains("512000")),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_gzip_is_a_bad_request() {
        match gunzip(b"not gzip at all", 100) {
            Err(IngestError::BadRequest { code, .. }) => assert_eq!(code, "invalid_gzip"),
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }
}
