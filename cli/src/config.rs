//! The configuration file (TOML). Every section has defaults good for a local run,
//! and everything is checked before any socket is opened.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use switchyard_ingest::IngestConfig;
use switchyard_schemas::config::{KafkaConfig, SourceConfig, validate_sources};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Absent: `switchyard run` starts an in-memory local broker.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub router: RouterConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    #[serde(default = "default_group_id")]
    pub group_id: String,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            group_id: default_group_id(),
        }
    }
}

fn default_group_id() -> String {
    "switchyard-router".into()
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        config
            .validate()
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.sources.is_empty() {
            bail!("sources: at least one [[sources]] entry is needed");
        }
        let max_batch = u32::try_from(self.ingest.max_batch_events).unwrap_or(u32::MAX);
        validate_sources(&self.sources, max_batch)?;
        self.ingest.validate()?;
        if let Some(kafka) = &self.kafka {
            kafka.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/switchyard.toml");
        let config = Config::load(&path).expect("example config loads");
        assert!(
            config.kafka.is_none(),
            "the example runs on the embedded broker"
        );
        assert!(!config.sources.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let error = toml::from_str::<Config>("[ingest]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n")
            .expect_err("refused");
        assert!(error.to_string().contains("lisen"), "{error}");
    }

    #[test]
    fn plain_http_must_be_asked_for() {
        let text = "[[sources]]\nid = \"web\"\nwrite_key = \"0123456789abcdef\"\n";
        let config: Config = toml::from_str(text).expect("parses");
        let error = config.validate().expect_err("no TLS and no opt-in");
        assert!(
            format!("{error:#}").contains("allow_plain_http"),
            "{error:#}"
        );
    }
}
