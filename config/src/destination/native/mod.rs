//! Native integrations: destination kinds that speak one vendor's API. Each kind's
//! settings are in a file of their own here, its client in
//! `actors/src/destination/kinds/<kind>/`.

mod segment;

pub use segment::{SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_BATCH_EVENTS, SEGMENT_MAX_EVENT_BYTES, SegmentConfig};

use super::{DestinationConfigError, EgressPolicy, egress_error};

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
