//! `kind = "mixpanel"`: events sent to Mixpanel's Ingestion API: `/import` (strict
//! validation) for events, `/engage` for user profiles and `/groups` for group profiles,
//! mapped as the client's module documents.
//!
//! Limits are Mixpanel's (<https://developer.mixpanel.com/reference/import-events>): at
//! most 2,000 events and 10 MB of uncompressed JSON per request, 1 MB per event; and
//! 2,000 profile updates per `/engage` or `/groups` request
//! (<https://developer.mixpanel.com/reference/profile-set>).

use serde::{Deserialize, Serialize};

use super::super::{DestinationConfigError, EgressPolicy};

/// Mixpanel's limit on events (and profile updates) per request.
pub const MIXPANEL_MAX_BATCH_EVENTS: usize = 2_000;
/// Mixpanel's limit on one request's uncompressed body.
pub const MIXPANEL_MAX_REQUEST_BYTES: usize = 10_000_000;
/// Mixpanel's limit on one event's uncompressed JSON.
pub const MIXPANEL_MAX_EVENT_BYTES: usize = 1_000_000;

/// Which of Mixpanel's data centers the project lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MixpanelRegion {
    /// `https://api.mixpanel.com`
    #[default]
    Us,
    /// `https://api-eu.mixpanel.com` (EU data residency)
    Eu,
    /// `https://api-in.mixpanel.com` (India data residency)
    In,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixpanelConfig {
    /// The project token: it names the project in profile updates, and authenticates
    /// `/import` when no service account is given. A credential: sealed in the control
    /// plane.
    pub project_token: String,
    /// The project's id; required with a service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// A service account (Owner or Admin) for `/import`, as Mixpanel recommends for
    /// servers. Credentials: sealed in the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_secret: Option<String>,
    /// The project's data center; it chooses the endpoint unless `endpoint` is set.
    #[serde(default)]
    pub region: MixpanelRegion,
    /// A base URL instead of the region's (a proxy, a test receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Events per request, at most 2,000 (requests also stay under 10 MB).
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// How long a partial batch may wait for more events, at most a minute.
    #[serde(default = "super::default_linger_ms")]
    pub linger_ms: u64,
    #[serde(default = "super::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Compress request bodies (gzip), as Mixpanel supports; the limits still count the
    /// uncompressed bytes.
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// The group key (set up in the project's Group Analytics) a `group` call's
    /// `groupId` is a value of.
    #[serde(default = "default_group_key")]
    pub group_key: String,
}

impl std::fmt::Debug for MixpanelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixpanelConfig")
            .field("base_url", &self.base_url())
            .field("project_id", &self.project_id)
            .field("batch_max_events", &self.batch_max_events)
            .finish_non_exhaustive()
    }
}

fn default_batch_max_events() -> usize {
    1_000
}
fn default_gzip() -> bool {
    true
}
fn default_group_key() -> String {
    "company_id".into()
}

impl MixpanelConfig {
    /// `endpoint`, else the region's.
    pub fn base_url(&self) -> &str {
        match (&self.endpoint, self.region) {
            (Some(endpoint), _) => endpoint,
            (None, MixpanelRegion::Us) => "https://api.mixpanel.com",
            (None, MixpanelRegion::Eu) => "https://api-eu.mixpanel.com",
            (None, MixpanelRegion::In) => "https://api-in.mixpanel.com",
        }
    }

    /// `<base>/<path>` with its query.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}/{path_and_query}", self.base_url().trim_end_matches('/'))
    }

    pub(in super::super) fn validate(&self, index: usize, egress: &EgressPolicy) -> Result<(), DestinationConfigError> {
        let empty = |field| DestinationConfigError::Empty { index, field };
        if self.project_token.trim().is_empty() {
            return Err(empty("project_token"));
        }
        if self.group_key.trim().is_empty() {
            return Err(empty("group_key"));
        }
        match (&self.service_account_username, &self.service_account_secret) {
            (None, None) => {}
            (Some(user), Some(secret)) if !user.trim().is_empty() && !secret.trim().is_empty() => {
                let id = self.project_id.as_deref().unwrap_or_default();
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
                    return Err(DestinationConfigError::Invalid {
                        index,
                        field: "project_id",
                        reason: "a service account needs the project's numeric id".into(),
                    });
                }
            }
            _ => {
                return Err(DestinationConfigError::Invalid {
                    index,
                    field: "service_account_secret",
                    reason: "a service account is a username and a secret, both set".into(),
                });
            }
        }
        super::check_batching(
            index,
            "Mixpanel",
            self.batch_max_events,
            MIXPANEL_MAX_BATCH_EVENTS,
            self.linger_ms,
            self.timeout_ms,
        )?;
        super::check_base_endpoint(index, self.base_url(), egress)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{destination, public};
    use crate::destination::DestinationConfig;

    fn mixpanel(settings: serde_json::Value) -> Result<DestinationConfig, serde_json::Error> {
        destination("mixpanel", settings)
    }

    fn check(config: &DestinationConfig) -> Result<(), String> {
        super::super::testing::check(config, &public())
    }

    #[test]
    fn the_region_chooses_the_host_and_a_service_account_needs_its_project() {
        let us = mixpanel(serde_json::json!({"project_token": "t"})).expect("parses");
        let crate::DestinationKind::Mixpanel(settings) = &us.kind else {
            panic!("a mixpanel destination")
        };
        assert_eq!(
            settings.url("import?strict=1"),
            "https://api.mixpanel.com/import?strict=1"
        );
        check(&us).expect("valid");
        let eu = mixpanel(serde_json::json!({"project_token": "t", "region": "eu"})).expect("parses");
        let crate::DestinationKind::Mixpanel(settings) = &eu.kind else {
            panic!("a mixpanel destination")
        };
        assert_eq!(settings.base_url(), "https://api-eu.mixpanel.com");
        let account = mixpanel(
            serde_json::json!({"project_token": "t", "service_account_username": "sa",
                                                  "service_account_secret": "s", "project_id": "12345"}),
        )
        .expect("parses");
        check(&account).expect("valid");
        let no_project = mixpanel(
            serde_json::json!({"project_token": "t", "service_account_username": "sa",
                                                     "service_account_secret": "s"}),
        )
        .expect("parses");
        assert!(check(&no_project).expect_err("no project").contains("project_id"));
        let half =
            mixpanel(serde_json::json!({"project_token": "t", "service_account_username": "sa"})).expect("parses");
        assert!(
            check(&half)
                .expect_err("half an account")
                .contains("service_account_secret")
        );
        let big = mixpanel(serde_json::json!({"project_token": "t", "batch_max_events": 2001})).expect("parses");
        assert!(
            check(&big)
                .expect_err("over")
                .contains("at most 2000: Mixpanel's limit")
        );
        assert!(
            !format!("{account:?}").contains("\"s\""),
            "Debug hides the secret: {account:?}"
        );
    }
}
