//! The sources: apps and sites that send events with a write key, and webhook sources. Loading and validating a file is the binary's job; these are the shapes.

use serde::{Deserialize, Serialize};

/// One source: an app or site that sends events with its write key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Letters, digits, `-` and `_`: it appears in record keys and object paths.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// `segment` (the default): apps send Segment calls with the write key.
    /// `webhook`: a SaaS tool posts to `/v1/webhooks/<id>`, signed (see `webhook`).
    #[serde(default)]
    pub kind: SourceKind,
    /// Required for `segment` sources; a webhook source has none.
    #[serde(default)]
    pub write_key: String,
    #[serde(default)]
    pub webhook: Option<WebhookSourceConfig>,
    /// Sustained events per second this source may send; absent means unlimited.
    #[serde(default)]
    pub rate_limit_events_per_sec: Option<u32>,
    /// Events allowed in a burst above the sustained rate; at least one full batch.
    #[serde(default)]
    pub rate_limit_burst_events: Option<u32>,
}

/// Write keys are credentials: never print them.
impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("write_key", &"<redacted>")
            .field("webhook", &self.webhook)
            .field("rate_limit_events_per_sec", &self.rate_limit_events_per_sec)
            .field("rate_limit_burst_events", &self.rate_limit_burst_events)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Segment,
    Webhook,
}

/// Which SaaS tool signs and shapes a webhook source's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookPreset {
    /// `Stripe-Signature: t=...,v1=<hex HMAC-SHA256 of "t.body">`, within `tolerance_secs`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.
    Shopify,
    /// `X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>`.
    Intercom,
    /// `<signature_header>: [sha256=]<hex HMAC-SHA256 of the body>`.
    Generic,
}

/// A webhook source's settings. The secret is a credential: never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSourceConfig {
    pub preset: WebhookPreset,
    /// The signing secret the provider shows (Stripe's `whsec_...`, GitHub's webhook
    /// secret, Shopify's app secret, Intercom's client secret).
    #[serde(default)]
    pub secret: Option<String>,
    /// Generic preset: the header holding the signature.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Stripe: how old a signed timestamp may be; a signature seen within it is a replay.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
    /// Refuse unsigned requests (the default). Only for the generic preset may it be
    /// turned off, for a tool that can't sign; the others always sign.
    #[serde(default = "default_true")]
    pub require_signature: bool,
    /// A VRL program run after the preset's mapping: `.event` holds the mapped event
    /// (change it, replace it, or set it to null to accept the delivery and drop it),
    /// `.payload` the provider's JSON, `.headers` the request's headers (lowercase).
    #[serde(default)]
    pub mapping: Option<String>,
}

impl std::fmt::Debug for WebhookSourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSourceConfig")
            .field("preset", &self.preset)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("signature_header", &self.signature_header)
            .field("tolerance_secs", &self.tolerance_secs)
            .field("require_signature", &self.require_signature)
            .field("mapping", &self.mapping)
            .finish()
    }
}

impl WebhookSourceConfig {
    /// Checks the settings as loading the configuration does: the mapping compiles.
    pub fn check(&self) -> Result<(), String> {
        self.mapping
            .as_deref()
            .map(switchyard_transform::Remap::compile)
            .transpose()
            .map(drop)
    }
}

fn default_signature_header() -> String {
    "x-signature".into()
}

fn default_tolerance_secs() -> u64 {
    300
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("sources[{index}].id {id:?} must be 1-64 letters, digits, '-' or '_'")]
    BadSourceId { index: usize, id: String },
    #[error("sources[{index}].id {id:?} appears twice")]
    DuplicateSourceId { index: usize, id: String },
    #[error("sources[{index}].write_key must be at least 16 characters")]
    WeakWriteKey { index: usize },
    #[error("sources[{index}]: {reason}")]
    Webhook { index: usize, reason: String },
    #[error("sources[{index}].write_key is the same as another source's")]
    DuplicateWriteKey { index: usize },
    #[error("sources[{index}].{field} must be greater than zero")]
    ZeroRate { index: usize, field: &'static str },
    #[error("sources[{index}].rate_limit_burst_events must be at least {min} so a full batch can pass")]
    BurstTooSmall { index: usize, min: u32 },
}

/// Ids of sources and destinations: 1-64 letters, digits, `-` or `_`, because they
/// appear in record keys, header values and object paths.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a source list before any IO: ids, keys and rate limits.
pub fn validate_sources(sources: &[SourceConfig], max_batch_events: u32) -> Result<(), ConfigError> {
    let mut ids = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for (index, source) in sources.iter().enumerate() {
        if !is_valid_id(&source.id) {
            return Err(ConfigError::BadSourceId {
                index,
                id: source.id.clone(),
            });
        }
        if !ids.insert(source.id.as_str()) {
            return Err(ConfigError::DuplicateSourceId {
                index,
                id: source.id.clone(),
            });
        }
        let webhook = |reason: &str| ConfigError::Webhook {
            index,
            reason: reason.to_string(),
        };
        match (source.kind, &source.webhook) {
            (SourceKind::Segment, None) => {
                if source.write_key.len() < 16 {
                    return Err(ConfigError::WeakWriteKey { index });
                }
                if !keys.insert(source.write_key.as_str()) {
                    return Err(ConfigError::DuplicateWriteKey { index });
                }
            }
            (SourceKind::Segment, Some(_)) => return Err(webhook("webhook settings need kind = \"webhook\"")),
            (SourceKind::Webhook, None) => return Err(webhook("kind = \"webhook\" needs a [sources.webhook] table")),
            (SourceKind::Webhook, Some(settings)) => {
                if !source.write_key.is_empty() {
                    return Err(webhook(
                        "a webhook source is authenticated by its signature: remove write_key",
                    ));
                }
                let secret = settings.secret.as_deref().unwrap_or_default();
                if settings.require_signature && secret.len() < 8 {
                    return Err(webhook(
                        "webhook.secret (8 characters or more) is needed to check signatures",
                    ));
                }
                if !settings.require_signature && settings.preset != WebhookPreset::Generic {
                    return Err(webhook(
                        "webhook.require_signature = false is only for the generic preset",
                    ));
                }
            }
        }
        if source.rate_limit_events_per_sec == Some(0) {
            return Err(ConfigError::ZeroRate {
                index,
                field: "rate_limit_events_per_sec",
            });
        }
        if source
            .rate_limit_burst_events
            .is_some_and(|burst| burst < max_batch_events)
        {
            return Err(ConfigError::BurstTooSmall {
                index,
                min: max_batch_events,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(id: &str, key: &str) -> SourceConfig {
        SourceConfig {
            id: id.into(),
            name: String::new(),
            write_key: key.into(),
            rate_limit_events_per_sec: None,
            rate_limit_burst_events: None,
            kind: Default::default(),
            webhook: None,
        }
    }

    #[test]
    fn webhook_sources_need_their_settings_a_secret_and_no_write_key() {
        let hook = |json: &str| -> SourceConfig { toml::from_str(json).expect("parses") };
        let good =
            hook("id = \"stripe\"\nkind = \"webhook\"\nwebhook = { preset = \"stripe\", secret = \"whsec_12345678\" }");
        assert!(validate_sources(std::slice::from_ref(&good), 2500).is_ok());
        let reason = |source: SourceConfig| validate_sources(&[source], 2500).expect_err("refused").to_string();
        let mut keyed = good.clone();
        keyed.write_key = "0123456789abcdef".into();
        assert!(reason(keyed).contains("remove write_key"));
        let mut bare = good.clone();
        bare.webhook = None;
        assert!(reason(bare).contains("needs a [sources.webhook] table"));
        let mut no_secret = good.clone();
        if let Some(settings) = no_secret.webhook.as_mut() {
            settings.secret = None;
        }
        assert!(reason(no_secret).contains("webhook.secret"));
        let mut unsigned = good;
        if let Some(settings) = unsigned.webhook.as_mut() {
            settings.require_signature = false;
        }
        assert!(reason(unsigned).contains("only for the generic preset"));
        let debug = format!(
            "{:?}",
            hook("id = \"s\"\nkind = \"webhook\"\nwebhook = { preset = \"github\", secret = \"hidden-secret-1\" }")
        );
        assert!(!debug.contains("hidden-secret-1"), "{debug}");
    }

    #[test]
    fn source_rules_name_the_offending_field() {
        let key = "0123456789abcdef";
        assert!(validate_sources(&[source("web", key)], 2500).is_ok());
        let bad_id = validate_sources(&[source("web/app", key)], 2500).expect_err("refused");
        assert!(bad_id.to_string().starts_with("sources[0].id"));
        let dup = validate_sources(&[source("a", key), source("a", "fedcba9876543210")], 2500);
        assert_eq!(
            dup,
            Err(ConfigError::DuplicateSourceId {
                index: 1,
                id: "a".into()
            })
        );
        assert_eq!(
            validate_sources(&[source("a", "short")], 2500),
            Err(ConfigError::WeakWriteKey { index: 0 })
        );
        let mut small_burst = source("a", key);
        small_burst.rate_limit_burst_events = Some(10);
        assert_eq!(
            validate_sources(&[small_burst], 2500),
            Err(ConfigError::BurstTooSmall { index: 0, min: 2500 })
        );
    }

    #[test]
    fn debug_output_never_shows_the_write_key() {
        let printed = format!("{:?}", source("web", "super-secret-write-key"));
        assert!(!printed.contains("super-secret"), "{printed}");
    }
}
