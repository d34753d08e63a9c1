//! What every request handler shares: the state, the count of refusals, the client's
//! address and events turned into Kafka records.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use switchyard_schemas::{EnrichContext, Limits, RecordHeaders, enrich, record_key};

use crate::browser::endpoint::Browser;
use crate::error::IngestError;
use crate::producer::{KafkaSink, OutRecord};
use crate::sources::SourceRegistry;
use crate::webhooks::replays::Replays;

/// What every request handler shares.
#[derive(Debug)]
pub struct IngestState {
    pub sources: SourceRegistry,
    pub sink: KafkaSink,
    pub limits: Limits,
    /// Proxies in front of ingest whose `X-Forwarded-For` entries are trusted.
    pub trusted_proxies: usize,
    pub refused: Refused,
    /// Where webhook deliveries that can't be mapped go; absent: they are answered 422.
    pub dead_letter_topic: Option<String>,
    pub replays: Replays,
    /// analytics.js settings and telemetry.
    pub browser: Browser,
}

/// Requests refused, by [`IngestError::kind`].
#[derive(Debug, Default)]
pub struct Refused([AtomicU64; IngestError::KINDS.len()]);

impl Refused {
    pub(crate) fn count(&self, error: &IngestError) {
        if let Some(index) = IngestError::KINDS.iter().position(|kind| *kind == error.kind()) {
            self.0[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (kind, requests refused) for every kind, zeros included.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        IngestError::KINDS
            .iter()
            .zip(&self.0)
            .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Most events fit, so the encoder rarely reallocates.
const VALUE_CAPACITY: usize = 2048;

pub(crate) fn to_records(
    source_id: &str,
    events: Vec<switchyard_schemas::Event>,
    ctx: &EnrichContext<'_>,
    traceparent: &str,
) -> Result<Vec<OutRecord>, IngestError> {
    events
        .into_iter()
        .map(|mut event| {
            enrich(&mut event, ctx);
            let mut value = Vec::with_capacity(VALUE_CAPACITY);
            serde_json::to_writer(&mut value, &event).map_err(|error| IngestError::BadRequest {
                code: "unserialisable_event",
                message: format!("event could not be re-encoded as JSON: {error}"),
            })?;
            Ok(OutRecord {
                key: record_key(source_id, &event),
                value,
                headers: RecordHeaders::new(source_id, &event, Some(traceparent.to_string())),
            })
        })
        .collect()
}

/// The client's address: through `trusted_proxies` of the operator's proxies
/// ([`switchyard_config::forwarded_client`]), else the peer.
pub(crate) fn client_ip(request: &HttpRequest, trusted_proxies: usize) -> Option<IpAddr> {
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    switchyard_config::forwarded_client(forwarded, trusted_proxies)
        .or_else(|| request.peer_addr().map(|addr| addr.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_is_read_from_the_right_through_the_trusted_proxies() {
        let request = |xff: &[&str]| {
            let mut request = actix_web::test::TestRequest::default().peer_addr("10.0.0.9:443".parse().expect("addr"));
            for value in xff {
                request = request.append_header(("x-forwarded-for", *value));
            }
            request.to_http_request()
        };
        let ip = |text: &str| Some(text.parse::<IpAddr>().expect("ip"));
        // The client claims 1.2.3.4; the one proxy in front appended what it saw.
        let spoofed = request(&["1.2.3.4, 203.0.113.7"]);
        assert_eq!(client_ip(&spoofed, 1), ip("203.0.113.7"));
        assert_eq!(client_ip(&spoofed, 0), ip("10.0.0.9"), "no proxy trusted: the peer");
        let two = request(&["1.2.3.4", "203.0.113.7, 10.0.0.2"]);
        assert_eq!(client_ip(&two, 2), ip("203.0.113.7"));
        assert_eq!(client_ip(&request(&[]), 1), ip("10.0.0.9"));
        assert_eq!(client_ip(&request(&["not an address"]), 1), ip("10.0.0.9"));
    }
}
