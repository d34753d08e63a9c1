//! What every HTTP kind shares (the webhook and each vendor's API): a client bound to
//! one host, whose every connection goes to an address the egress policy passed, and
//! the answer read once and classified the same way for all of them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_http::error::ParseError;
use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{self, HeaderMap};
use awc::http::{Method, StatusCode};

use crate::destination::config::{DestinationTls, EgressPolicy};
use crate::destination::delivery::DeliveryError;

/// How long an address the policy passed is used before the host is looked up again.
const CHECKED_ADDRESS_FOR: Duration = Duration::from_secs(30);
/// The most of an answer's body read: enough for any vendor's error list.
const ANSWER_LIMIT: usize = 1024 * 1024;

/// A client for one URL's host.
#[derive(Clone)]
pub struct HttpTarget {
    client: awc::Client,
    egress: Arc<EgressPolicy>,
    host: Arc<str>,
    port: u16,
    /// The last address the policy passed for the host, and when: a lookup per request
    /// would put a DNS round trip on every delivery. Only a checked address is kept, so
    /// every connection still goes where the policy allowed.
    checked: Arc<Mutex<Option<(Instant, SocketAddr)>>>,
}

/// A server's answer, its body read (up to a limit).
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl HttpAnswer {
    /// The first 200 characters of the body, for a reason.
    pub fn snippet(&self) -> String {
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
        text.trim().to_string()
    }

    /// The server's wait (`Retry-After`, seconds or an HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after)
    }

    /// The answer of a request that failed as a whole, classified: a throttle, a timeout
    /// and a server error are retried (after `Retry-After`), a redirect (never followed:
    /// it could lead past the egress check) and any other client error are not.
    pub fn refused(&self) -> DeliveryError {
        let reason = format!("HTTP {}: {}", self.status.as_u16(), self.snippet());
        let status = self.status;
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
        {
            return DeliveryError {
                retryable: true,
                reason,
                retry_after: self.retry_after(),
            };
        }
        if status.is_redirection() {
            return DeliveryError::permanent(format!("{reason} (redirects are not followed)"));
        }
        DeliveryError::permanent(reason)
    }
}

impl HttpTarget {
    /// Must be created on the actor's own thread (the HTTP client is thread-local).
    pub fn new(url: &str, timeout: Duration, tls: &DestinationTls, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let url = url::Url::parse(url).map_err(|e| format!("url: {e}"))?;
        egress.check_scheme(&url).map_err(|e| e.to_string())?;
        let host: Arc<str> = Arc::from(url.host_str().ok_or("url: no host")?);
        let port = url.port_or_known_default().unwrap_or(443);
        let tls = crate::destination::config::client_config(tls).map_err(|e| e.to_string())?;
        let client = awc::Client::builder()
            .connector(awc::Connector::new().rustls_0_23(tls))
            .timeout(timeout)
            // A redirect could lead to an address the destination check never saw.
            .disable_redirects()
            .finish();
        Ok(HttpTarget {
            client,
            egress,
            host,
            port,
            checked: Arc::default(),
        })
    }

    /// The address to connect to: a recently checked one, else the host resolved and
    /// checked now (the name may point elsewhere than when the destination was saved:
    /// DNS rebinding).
    async fn address(&self) -> Result<SocketAddr, DeliveryError> {
        let cached = *self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addr)) = cached
            && at.elapsed() < CHECKED_ADDRESS_FOR
        {
            return Ok(addr);
        }
        let addrs = self
            .egress
            .resolve_async(&self.host, self.port)
            .await
            .map_err(|error| DeliveryError::egress(error.to_string(), &error))?;
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), addrs[0]));
        Ok(addrs[0])
    }

    /// A request to `url` (on this target's host), to the checked address; the URL's
    /// host still names the server for TLS and the Host header.
    pub async fn request(&self, method: Method, url: &str) -> Result<awc::ClientRequest, DeliveryError> {
        Ok(self.client.request(method, url).address(self.address().await?))
    }

    /// Sends and reads the answer. A transport failure is an error (a failed TLS
    /// handshake permanent, the rest retried); any status is an answer.
    pub async fn send(&self, request: awc::ClientRequest, body: Vec<u8>) -> Result<HttpAnswer, DeliveryError> {
        let mut response = request.send_body(body).await.map_err(|error| {
            // The server may have moved: look the host up again before the retry.
            *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = None;
            classify_send_error(error)
        })?;
        let body = response
            .body()
            .limit(ANSWER_LIMIT)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Ok(HttpAnswer {
            status: response.status(),
            headers: response.headers().clone(),
            body,
        })
    }
}

fn classify_send_error(error: SendRequestError) -> DeliveryError {
    match error {
        SendRequestError::Url(url) => DeliveryError::permanent(format!("invalid URL: {url}")),
        SendRequestError::Timeout => DeliveryError::retryable("timed out waiting for the response".into()),
        SendRequestError::Connect(ConnectError::Io(error)) => io_failure("connect failed", error),
        SendRequestError::Send(error) => io_failure("sending failed", error),
        SendRequestError::Response(ParseError::Io(error)) => io_failure("reading the response failed", error),
        SendRequestError::Connect(error) => DeliveryError::retryable(format!("connect failed: {error}")),
        other => DeliveryError::retryable(format!("request failed: {other}")),
    }
}

/// A failed TLS handshake is permanent: the next attempt meets the same certificate.
fn io_failure(stage: &str, error: std::io::Error) -> DeliveryError {
    match tls_failure(&error) {
        Some(reason) => DeliveryError::permanent(reason),
        None => DeliveryError::retryable(format!("{stage}: {error}")),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date: header::HttpDate = value.parse().ok()?;
    SystemTime::from(date).duration_since(SystemTime::now()).ok()
}

/// The TLS failure behind a transport error, if there is one. A handshake that fails
/// (untrusted or expired certificate, a client certificate refused, no common version)
/// fails the same way on every attempt, so the caller treats it as permanent.
pub fn tls_failure(error: &std::io::Error) -> Option<String> {
    let tls = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let hint = match tls {
        rustls::Error::InvalidCertificate(_) => " (the destination's certificate is not trusted: check tls.ca_pem)",
        rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        ) => " (the destination refused our client certificate: check tls.client_cert_pem)",
        rustls::Error::PeerIncompatible(_)
        | rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
            " (no TLS version both sides accept: check tls.min_version)"
        }
        _ => "",
    };
    Some(format!("TLS handshake failed: {tls}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("soon"), None);
        let future = header::HttpDate::from(SystemTime::now() + Duration::from_secs(120)).to_string();
        let parsed = parse_retry_after(&future).expect("a date in the future");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
    }
}
