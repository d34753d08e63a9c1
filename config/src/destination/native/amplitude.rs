//! `kind = "amplitude"`: events sent to Amplitude's HTTP V2 API (`/2/httpapi`), US or
//! EU residency, mapped as the client's module documents.
//!
//! Limits are Amplitude's
//! (<https://amplitude.com/docs/apis/analytics/http-v2>): at most 2,000 events and under
//! 1 MB per request (a 413 otherwise); user and device ids of at least 5 characters
//! unless `min_id_length` says otherwise.

use serde::{Deserialize, Serialize};

use super::super::{DestinationConfigError, EgressPolicy};

/// Amplitude's limit on events per request.
pub const AMPLITUDE_MAX_BATCH_EVENTS: usize = 2_000;
/// Amplitude's limit on one request's body ("under 1 MB": taken as 1,000,000 bytes).
pub const AMPLITUDE_MAX_REQUEST_BYTES: usize = 1_000_000;

/// Which of Amplitude's data centers the project lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AmplitudeRegion {
    /// `https://api2.amplitude.com`
    #[default]
    Us,
    /// `https://api.eu.amplitude.com` (EU data residency)
    Eu,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmplitudeConfig {
    /// The project's API key, sent in the request body as Amplitude asks. A
    /// credential: sealed in the control plane.
    pub api_key: String,
    /// The project's data center; it chooses the endpoint unless `endpoint` is set.
    #[serde(default)]
    pub region: AmplitudeRegion,
    /// A base URL instead of the region's (a proxy, a test receiver); requests go to
    /// `<endpoint>/2/httpapi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Events per request, at most 2,000 (requests also stay under 1 MB). Amplitude
    /// asks Starter plans for at most 10.
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long a partial batch may wait for more events, at most a minute.
    #[serde(default = "super::default_linger_ms")]
    pub linger_ms: u64,
    #[serde(default = "super::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Amplitude's `options.min_id_length`: the shortest user or device id it keeps
    /// (its default is 5; shorter ids are dropped from the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_id_length: Option<u32>,
    /// The Amplitude group type a `group` call's `groupId` is set under.
    #[serde(default = "default_group_type")]
    pub group_type: String,
}

impl std::fmt::Debug for AmplitudeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmplitudeConfig")
            .field("base_url", &self.base_url())
            .field("batch_max_events", &self.batch_max_events)
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

fn default_batch_max_events() -> usize {
    500
}
fn default_group_type() -> String {
    "group".into()
}

impl AmplitudeConfig {
    /// `endpoint`, else the region's.
    pub fn base_url(&self) -> &str {
        match (&self.endpoint, self.region) {
            (Some(endpoint), _) => endpoint,
            (None, AmplitudeRegion::Us) => "https://api2.amplitude.com",
            (None, AmplitudeRegion::Eu) => "https://api.eu.amplitude.com",
        }
    }

    pub fn upload_url(&self) -> String {
        format!("{}/2/httpapi", self.base_url().trim_end_matches('/'))
    }

    pub(in super::super) fn validate(&self, index: usize, egress: &EgressPolicy) -> Result<(), DestinationConfigError> {
        if self.api_key.trim().is_empty() {
            return Err(DestinationConfigError::Empty {
                index,
                field: "api_key",
            });
        }
        if self.group_type.trim().is_empty() {
            return Err(DestinationConfigError::Empty {
                index,
                field: "group_type",
            });
        }
        super::check_batching(
            index,
            "Amplitude",
            self.batch_max_events,
            AMPLITUDE_MAX_BATCH_EVENTS,
            self.linger_ms,
            self.timeout_ms,
        )?;
        super::check_base_endpoint(index, self.base_url(), egress)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, destination, public};
    use super::*;
    use crate::destination::DestinationConfig;

    fn amplitude(settings: serde_json::Value) -> Result<DestinationConfig, serde_json::Error> {
        destination("amplitude", settings)
    }

    fn settings(config: &DestinationConfig) -> &AmplitudeConfig {
        let crate::DestinationKind::Amplitude(settings) = &config.kind else {
            panic!("an amplitude destination")
        };
        settings
    }

    #[test]
    fn the_region_chooses_the_endpoint_and_amplitudes_limits_are_kept() {
        let public = public();
        let us = amplitude(serde_json::json!({"api_key": "k"})).expect("parses");
        assert_eq!(settings(&us).upload_url(), "https://api2.amplitude.com/2/httpapi");
        check(&us, &public).expect("valid");
        let eu = amplitude(serde_json::json!({"api_key": "k", "region": "eu"})).expect("parses");
        assert_eq!(settings(&eu).upload_url(), "https://api.eu.amplitude.com/2/httpapi");
        let proxy =
            amplitude(serde_json::json!({"api_key": "k", "region": "eu", "endpoint": "https://amp.example.com/"}))
                .expect("parses");
        assert_eq!(settings(&proxy).upload_url(), "https://amp.example.com/2/httpapi");

        let region = amplitude(serde_json::json!({"api_key": "k", "region": "asia"})).expect_err("no such region");
        assert!(region.to_string().contains("asia"), "{region}");
        let big = amplitude(serde_json::json!({"api_key": "k", "batch_max_events": 2001})).expect("parses");
        assert!(
            check(&big, &public)
                .expect_err("over 2000")
                .contains("at most 2000: Amplitude's limit")
        );
        let empty = amplitude(serde_json::json!({"api_key": ""})).expect("parses");
        assert_eq!(
            check(&empty, &public).expect_err("empty"),
            "destinations[0].api_key must not be empty"
        );
        let internal = amplitude(serde_json::json!({"api_key": "k", "endpoint": "https://10.0.0.5/"})).expect("parses");
        assert!(
            check(&internal, &EgressPolicy::default())
                .expect_err("private address")
                .contains("endpoint")
        );
        assert!(!format!("{us:?}").contains("\"k\""), "Debug hides the key: {us:?}");
    }
}
