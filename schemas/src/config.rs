//! Configuration shared by every role: where the ingest topic lives and which sources
//! exist. Loading and validating a file is the binary's job; these are the shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The Kafka cluster and ingest topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` list, as librdkafka's `bootstrap.servers`.
    pub brokers: String,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// How long a produce may wait for the broker before the request is answered 503.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Extra librdkafka properties (e.g. `security.protocol`), applied last.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_topic() -> String {
    "switchyard.ingest".into()
}

fn default_delivery_timeout_ms() -> u64 {
    10_000
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic: default_topic(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            options: BTreeMap::new(),
        }
    }
}

/// One source: an app or site that sends events with its write key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Letters, digits, `-` and `_`: it appears in record keys and object paths.
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub write_key: String,
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
            .field("write_key", &"<redacted>")
            .field("rate_limit_events_per_sec", &self.rate_limit_events_per_sec)
            .field("rate_limit_burst_events", &self.rate_limit_burst_events)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("sources[{index}].id {id:?} must be 1-64 letters, digits, '-' or '_'")]
    BadSourceId { index: usize, id: String },
    #[error("sources[{index}].id {id:?} appears twice")]
    DuplicateSourceId { index: usize, id: String },
    #[error("sources[{index}].write_key must be at least 16 characters")]
    WeakWriteKey { index: usize },
    #[error("sources[{index}].write_key is the same as another source's")]
    DuplicateWriteKey { index: usize },
    #[error("sources[{index}].{field} must be greater than zero")]
    ZeroRate { index: usize, field: &'static str },
    #[error("sources[{index}].rate_limit_burst_events must be at least {min} so a full batch can pass")]
    BurstTooSmall { index: usize, min: u32 },
    #[error("kafka.{field} must not be empty")]
    EmptyKafkaField { field: &'static str },
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
        if source.write_key.len() < 16 {
            return Err(ConfigError::WeakWriteKey { index });
        }
        if !keys.insert(source.write_key.as_str()) {
            return Err(ConfigError::DuplicateWriteKey { index });
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

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::EmptyKafkaField { field: "brokers" });
        }
        if self.topic.trim().is_empty() {
            return Err(ConfigError::EmptyKafkaField { field: "topic" });
        }
        Ok(())
    }
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
        }
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
