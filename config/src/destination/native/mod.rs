//! Native integrations: destination kinds that speak one vendor's API. Each kind's
//! settings are in a file of their own here, its client in
//! `actors/src/destination/kinds/<kind>/`.

mod amplitude;
mod mixpanel;
mod segment;

pub use amplitude::{AMPLITUDE_MAX_BATCH_EVENTS, AMPLITUDE_MAX_REQUEST_BYTES, AmplitudeConfig, AmplitudeRegion};
pub use mixpanel::{
    MIXPANEL_MAX_BATCH_EVENTS, MIXPANEL_MAX_EVENT_BYTES, MIXPANEL_MAX_REQUEST_BYTES, MixpanelConfig, MixpanelRegion,
};
pub use segment::{SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_BATCH_EVENTS, SEGMENT_MAX_EVENT_BYTES, SegmentConfig};

use super::{DestinationConfigError, EgressPolicy, egress_error, positive};

/// The longest a partial batch may wait for more events. A tenant sets `linger_ms`:
/// unbounded, a partial batch could be held for days.
pub const MAX_LINGER_MS: u64 = 60_000;

/// The default wait for a partial batch, shared by every native kind.
pub(super) fn default_linger_ms() -> u64 {
    50
}

/// The default request timeout, shared by every native kind.
pub(super) fn default_timeout_ms() -> u64 {
    10_000
}

/// Checks the batching settings every native kind has: a positive count within the
/// vendor's per-request limit, a linger of at most [`MAX_LINGER_MS`], a positive timeout.
pub(super) fn check_batching(
    index: usize,
    vendor: &'static str,
    batch_max_events: usize,
    vendor_max: usize,
    linger_ms: u64,
    timeout_ms: u64,
) -> Result<(), DestinationConfigError> {
    positive(index, batch_max_events, timeout_ms)?;
    if batch_max_events > vendor_max {
        return Err(DestinationConfigError::OverVendorLimit {
            index,
            field: "batch_max_events",
            max: vendor_max,
            vendor,
        });
    }
    if linger_ms > MAX_LINGER_MS {
        return Err(DestinationConfigError::TooLong {
            index,
            field: "linger_ms",
            max_ms: MAX_LINGER_MS,
        });
    }
    Ok(())
}

/// [`check_endpoint`] for a base URL the kind appends its API's path to: no query.
pub(super) fn check_base_endpoint(
    index: usize,
    endpoint: &str,
    egress: &EgressPolicy,
) -> Result<url::Url, DestinationConfigError> {
    let url = check_endpoint(index, endpoint, egress)?;
    if url.query().is_some() {
        return Err(DestinationConfigError::BadUrl {
            index,
            url: url.to_string(),
            reason: "the endpoint is a base URL: no query".into(),
        });
    }
    Ok(url)
}

/// Checks a native kind's `endpoint`: an http(s) URL the egress policy lets Switchyard
/// reach (plain `http://` only to a host the operator lists). Returns the parsed URL.
pub(super) fn check_endpoint(
    index: usize,
    endpoint: &str,
    egress: &EgressPolicy,
) -> Result<url::Url, DestinationConfigError> {
    let bad = |reason: String| DestinationConfigError::BadUrl {
        index,
        url: super::redact_url(endpoint),
        reason,
    };
    let url = url::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("scheme {} is not http or https", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials go in their own setting, not in the URL".into()));
    }
    egress.check_scheme(&url).map_err(egress_error(index, "endpoint"))?;
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    egress.resolve(host, port).map_err(egress_error(index, "endpoint"))?;
    Ok(url)
}

/// What the native kinds' settings tests share.
#[cfg(test)]
mod testing {
    use std::collections::HashSet;

    use crate::destination::{DestinationConfig, EgressPolicy};

    /// A destination `{"id": "d", "sources": ["web"], "kind": kind}` with `settings`.
    pub fn destination(kind: &str, settings: serde_json::Value) -> Result<DestinationConfig, serde_json::Error> {
        let mut value = serde_json::json!({"id": "d", "sources": ["web"], "kind": kind});
        value
            .as_object_mut()
            .expect("object")
            .extend(settings.as_object().expect("object").clone());
        serde_json::from_value(value)
    }

    pub fn check(config: &DestinationConfig, egress: &EgressPolicy) -> Result<(), String> {
        config
            .validate(0, &HashSet::from(["web"]), egress)
            .map_err(|error| error.to_string())
    }

    /// Every name resolves to a public address: no DNS in a unit test.
    struct Public;
    impl switchyard_egress::Resolve for Public {
        fn lookup(&self, _: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
            Ok(vec![std::net::SocketAddr::from(([203, 0, 113, 7], port))])
        }
    }

    /// The default policy, with every name public.
    pub fn public() -> EgressPolicy {
        EgressPolicy::default().with_resolver(std::sync::Arc::new(Public))
    }
}
