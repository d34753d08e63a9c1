//! Where browsers reach this ingest (the address analytics.js is told to post to), and
//! the count of what they sent that is not an event.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use actix_web::http::header;

/// Where browsers reach this ingest, and what they sent that is not an event.
#[derive(Debug, Default)]
pub struct Browser {
    /// `ingest.public_url`: the address browsers use, e.g. `https://collect.example.com`.
    /// Unset: the `Host` the browser asked for, over TLS when ingest serves TLS or a
    /// trusted proxy says the client used https.
    pub public_url: Option<url::Url>,
    /// Ingest serves HTTPS itself.
    pub tls: bool,
    telemetry_posts: AtomicU64,
}

impl Browser {
    pub fn new(public_url: Option<url::Url>, tls: bool) -> Self {
        Browser {
            public_url,
            tls,
            telemetry_posts: AtomicU64::new(0),
        }
    }

    /// `POST /v1/m` requests taken.
    pub fn telemetry_posts(&self) -> u64 {
        self.telemetry_posts.load(Ordering::Relaxed)
    }

    pub(crate) fn count_telemetry(&self) {
        self.telemetry_posts.fetch_add(1, Ordering::Relaxed);
    }

    /// (protocol, host[:port]) analytics.js should post to; the path `/v1` is added by the caller.
    pub(crate) fn endpoint(&self, request: &HttpRequest, trusted_proxies: usize) -> (String, String) {
        if let Some(url) = &self.public_url {
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_string(),
            };
            let path = url.path().trim_end_matches('/');
            return (url.scheme().to_string(), format!("{host}{path}"));
        }
        let forwarded_https = trusted_proxies > 0
            && request
                .headers()
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let protocol = if self.tls || forwarded_https { "https" } else { "http" };
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .filter(|host| is_host(host))
            .unwrap_or("localhost");
        (protocol.to_string(), host.to_string())
    }
}

/// A `Host` header is a name or address and an optional port: nothing that could make
/// the settings point a browser at a path or a script.
fn is_host(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_is_used_only_when_it_is_a_plain_host() {
        assert!(is_host("collect.example.com"));
        assert!(is_host("127.0.0.1:8080"));
        assert!(is_host("[::1]:8080"));
        assert!(!is_host("evil.example/path"));
        assert!(!is_host("a\"b"));
        assert!(!is_host(""));
    }

    #[test]
    fn the_endpoint_comes_from_public_url_else_the_request() {
        let request = |headers: &[(&str, &str)]| {
            let mut request = actix_web::test::TestRequest::default();
            for header in headers {
                request = request.insert_header(*header);
            }
            request.to_http_request()
        };
        let configured = Browser::new(Some("https://collect.example.com/".parse().expect("url")), false);
        assert_eq!(
            configured.endpoint(&request(&[("host", "other.example")]), 0),
            ("https".into(), "collect.example.com".into())
        );
        let derived = Browser::new(None, false);
        let behind_proxy = request(&[("host", "collect.example.com"), ("x-forwarded-proto", "https")]);
        assert_eq!(derived.endpoint(&behind_proxy, 1).0, "https");
        assert_eq!(derived.endpoint(&behind_proxy, 0).0, "http", "proto header untrusted");
        assert_eq!(derived.endpoint(&request(&[("host", "a/b")]), 0).1, "localhost");
        assert_eq!(Browser::new(None, true).endpoint(&behind_proxy, 0).0, "https");
    }
}
