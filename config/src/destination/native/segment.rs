//! `kind = "segment"`: events forwarded unchanged (messageId, timestamps, context) to
//! any Segment-compatible HTTP API (Segment, RudderStack, another Switchyard) through
//! its `/v1/batch`: dual-writing during a migration, or relaying between regions.
//!
//! Limits are Segment's HTTP Tracking API's
//! (<https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#max-request-size>):
//! 32 KB per event, 500 KB per batch request (taken as 32,000 and 500,000 bytes, under
//! either reading of "KB"). Segment sets no count per batch; 2,500 is
//! the most this kind sends in one, so a batch of small events stays well under the bytes.

use serde::{Deserialize, Serialize};

use super::super::{DestinationConfigError, EgressPolicy};

/// Segment's limit on one event's JSON.
pub const SEGMENT_MAX_EVENT_BYTES: usize = 32_000;
/// Segment's limit on one `/v1/batch` request body.
pub const SEGMENT_MAX_BATCH_BYTES: usize = 500_000;
/// The most events this kind puts in one request.
pub const SEGMENT_MAX_BATCH_EVENTS: usize = 2_500;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// The write key of the receiving source, sent as HTTP Basic auth's user name with
    /// an empty password, as Segment's libraries do. A credential: sealed in the
    /// control plane.
    pub write_key: String,
    /// The API's base URL; requests go to `<endpoint>/v1/batch`. Default: Segment's US
    /// endpoint. Segment EU: `https://events.eu1.segmentapis.com`; RudderStack: your
    /// data plane URL; another Switchyard: its ingest URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Events per request, at most 2,500 (requests also stay under 500 KB).
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long a partial batch may wait for more events, at most a minute.
    #[serde(default = "super::default_linger_ms")]
    pub linger_ms: u64,
    #[serde(default = "super::default_timeout_ms")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for SegmentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentConfig")
            .field("endpoint", &self.endpoint)
            .field("batch_max_events", &self.batch_max_events)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

pub fn default_endpoint() -> String {
    "https://api.segment.io".into()
}
fn default_batch_max_events() -> usize {
    500
}

impl SegmentConfig {
    /// The batch URL: the endpoint with `/v1/batch` after its path.
    pub fn batch_url(&self) -> String {
        format!("{}/v1/batch", self.endpoint.trim_end_matches('/'))
    }

    pub(in super::super) fn validate(&self, index: usize, egress: &EgressPolicy) -> Result<(), DestinationConfigError> {
        if self.write_key.trim().is_empty() {
            return Err(DestinationConfigError::Empty {
                index,
                field: "write_key",
            });
        }
        super::check_batching(
            index,
            "Segment",
            self.batch_max_events,
            SEGMENT_MAX_BATCH_EVENTS,
            self.linger_ms,
            self.timeout_ms,
        )?;
        super::check_base_endpoint(index, &self.endpoint, egress)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, destination, public};
    use super::*;

    fn segment(settings: serde_json::Value) -> Result<crate::destination::DestinationConfig, serde_json::Error> {
        destination("segment", settings)
    }

    #[test]
    fn settings_default_to_segments_api_and_refuse_what_segment_would() {
        let public = public();
        let config = segment(serde_json::json!({"write_key": "wk"})).expect("parses");
        let crate::DestinationKind::Segment(settings) = &config.kind else {
            panic!("a segment destination")
        };
        assert_eq!(settings.batch_url(), "https://api.segment.io/v1/batch");
        check(&config, &public).expect("valid");

        let unknown = segment(serde_json::json!({"write_key": "wk", "writekey": "typo"})).expect_err("unknown key");
        assert!(unknown.to_string().contains("writekey"), "{unknown}");

        let empty = segment(serde_json::json!({"write_key": " "})).expect("parses");
        assert_eq!(
            check(&empty, &public).expect_err("empty key"),
            "destinations[0].write_key must not be empty"
        );
        let slow = segment(serde_json::json!({"write_key": "wk", "linger_ms": 86_400_000})).expect("parses");
        assert!(
            check(&slow, &public)
                .expect_err("a day")
                .contains("linger_ms must be at most 60000 ms")
        );
        let big = segment(serde_json::json!({"write_key": "wk", "batch_max_events": 2501})).expect("parses");
        assert!(
            check(&big, &public)
                .expect_err("over 2500")
                .contains("at most 2500: Segment's limit")
        );
        let keyed =
            segment(serde_json::json!({"write_key": "wk", "endpoint": "https://u:p@api.segment.io"})).expect("parses");
        assert!(
            check(&keyed, &public)
                .expect_err("key in url")
                .contains("not in the URL")
        );
        // A tenant's endpoint is held to the operator's egress policy like a webhook's.
        let plain =
            segment(serde_json::json!({"write_key": "wk", "endpoint": "http://relay.example.com"})).expect("parses");
        assert!(check(&plain, &public).expect_err("plain http").contains("endpoint"));
        let internal =
            segment(serde_json::json!({"write_key": "wk", "endpoint": "https://127.0.0.1:8080"})).expect("parses");
        assert!(
            check(&internal, &EgressPolicy::default())
                .expect_err("loopback")
                .contains("endpoint")
        );
        assert!(
            !format!("{config:?}").contains("wk\""),
            "Debug hides the write key: {config:?}"
        );
    }
}
