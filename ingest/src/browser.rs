//! What analytics.js needs from its collection server besides the event endpoints:
//! the settings it would otherwise fetch from Segment's CDN, and somewhere to send its
//! own telemetry.
//!
//! `GET /v1/projects/{writeKey}/settings` answers what `cdn.segment.com` answers, with the
//! `Segment.io` integration (and the telemetry host) pointed at this ingest, so
//! `AnalyticsBrowser.load({writeKey, cdnURL: "https://<ingest>"})` works with no Segment
//! CDN. An unknown key gets the same 404 whether or not a source ever had it.
//!
//! `POST /v1/m` takes analytics.js' counters: answered 200 and counted, never stored as
//! events (they carry no write key and describe the library, not the user).

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::body::read_limited;
use crate::error::IngestError;
use crate::routes::IngestState;

/// analytics.js batches at most 20 counters of a few hundred bytes each.
const MAX_TELEMETRY_BYTES: usize = 64 * 1024;

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

    /// (protocol, host[:port]) analytics.js should post to; the path `/v1` is added by the caller.
    fn endpoint(&self, request: &HttpRequest, trusted_proxies: usize) -> (String, String) {
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

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/v1/projects/{write_key}/settings").route(web::get().to(settings)));
    config.service(web::resource("/v1/m").route(web::post().to(telemetry)));
}

async fn settings(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let write_key = path.into_inner();
    let Some(source) = state.sources.authenticate(&write_key) else {
        return Err(IngestError::NotFound("no settings for this write key".into()));
    };
    let (protocol, host) = state.browser.endpoint(&request, state.trusted_proxies);
    let api_host = format!("{host}/v1");
    tracing::debug!(source_id = %source.id, "served analytics.js settings");
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        // Its telemetry comes here too, not to Segment.
        "metrics": {"sampleRate": 0.1, "host": api_host},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    let mut response = HttpResponse::Ok();
    // Derived from the request's Host unless the operator set public_url: a shared
    // cache must not hand one host's answer to another.
    if state.browser.public_url.is_some() {
        response.insert_header((header::CACHE_CONTROL, "public, max-age=300"));
    } else {
        response.insert_header((header::CACHE_CONTROL, "private, max-age=300"));
        response.insert_header((header::VARY, "Host"));
    }
    Ok(response.json(body))
}

async fn telemetry(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let result = read_limited(&request, payload, MAX_TELEMETRY_BYTES).await;
    if let Err(error) = &result {
        state.refused.count(error);
    }
    result?;
    state.browser.telemetry_posts.fetch_add(1, Ordering::Relaxed);
    Ok(HttpResponse::Ok().json(json!({ "success": true })))
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
