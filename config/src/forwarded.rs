//! The client behind the operator's proxies, from `X-Forwarded-For`: each proxy appends
//! the address it was reached from, so of the entries, the last `trusted_proxies` are
//! the proxies' own findings and the one just before them is the client; anything
//! further left is whatever the client sent. Ingest (rate limits) and the admin API
//! (sign-in throttling, the audit log) read the client this way.

use std::net::{IpAddr, SocketAddr};

/// The client address in the `X-Forwarded-For` header values (in order received), or
/// `None` when no proxy is trusted or the entry isn't an address: the caller then uses
/// the peer's.
pub fn forwarded_client<'a>(values: impl Iterator<Item = &'a str>, trusted_proxies: usize) -> Option<IpAddr> {
    if trusted_proxies == 0 {
        return None;
    }
    let hops: Vec<&str> = values
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let hop = hops.get(hops.len().checked_sub(trusted_proxies)?)?;
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}
