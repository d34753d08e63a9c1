//! The configuration file (TOML). Every section has defaults good for a local run,
//! and everything is checked before any socket is opened.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use switchyard_actors::{DedupSettings, DestinationConfig, EgressPolicy, Transform, TransformConfig};
use switchyard_archive::ArchiveConfig;
use switchyard_config::{KafkaConfig, SourceConfig, validate_sources};
use switchyard_ingest::IngestConfig;
use switchyard_ops::OpsConfig;

/// The metadata database's URL, over `[control] database_url`.
pub const DATABASE_URL_ENV: &str = "SWITCHYARD_DATABASE_URL";

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
    pub sources: Vec<SourceEntry>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(default)]
    pub ops: OpsConfig,
    /// Absent: no archive.
    #[serde(default)]
    pub archive: Option<ArchiveConfig>,
    /// The control plane (`switchyard control ...`); absent: its defaults.
    #[serde(default)]
    pub control: Option<switchyard_control::ControlConfig>,
    /// Where destinations may connect: only the operator decides (absent: public
    /// addresses over TLS only). Applies to the file's destinations and the workspace's.
    #[serde(default)]
    pub egress: EgressPolicy,
}

/// `--config FILE`, for the commands that read the file.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[arg(long, short, env = "SWITCHYARD_CONFIG", default_value = "examples/switchyard.toml")]
    pub config: std::path::PathBuf,
}

/// A source and its own transforms. Read as a table whose `transforms` are taken out
/// and the rest read as a [`SourceConfig`], which refuses unknown keys: serde ignores
/// `deny_unknown_fields` under `flatten`, so a flattened entry took `bogus_key = 5`
/// (or a misspelt rate limit) silently.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct SourceEntry {
    pub source: SourceConfig,
    pub transforms: Vec<TransformConfig>,
}

impl TryFrom<toml::Table> for SourceEntry {
    type Error = toml::de::Error;

    fn try_from(mut table: toml::Table) -> Result<Self, Self::Error> {
        let transforms = match table.remove("transforms") {
            Some(transforms) => transforms.try_into()?,
            None => Vec::new(),
        };
        let source = toml::Value::Table(table).try_into()?;
        Ok(SourceEntry { source, transforms })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where undeliverable events go, with the reason in the record headers.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Where a destination whose buffer (`max_buffered_events`) is full parks further
    /// events, read back when they are due, so it never holds back its source. Empty
    /// turns parking off: a full destination then makes its source wait.
    #[serde(default = "default_retry_topic")]
    pub retry_topic: String,
    /// Repeated messageIds of a source are dropped within this window...
    #[serde(default = "default_dedup_window_secs")]
    pub dedup_window_secs: u64,
    /// ...remembering at most this many per source (the oldest are forgotten first).
    #[serde(default = "default_dedup_capacity")]
    pub dedup_capacity: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            group_id: default_group_id(),
            dead_letter_topic: default_dead_letter_topic(),
            retry_topic: default_retry_topic(),
            dedup_window_secs: default_dedup_window_secs(),
            dedup_capacity: default_dedup_capacity(),
        }
    }
}

impl RouterConfig {
    pub fn retry_topic(&self) -> Option<&str> {
        Some(self.retry_topic.as_str()).filter(|topic| !topic.is_empty())
    }

    pub fn dedup(&self) -> DedupSettings {
        DedupSettings {
            window: std::time::Duration::from_secs(self.dedup_window_secs),
            capacity: self.dedup_capacity,
        }
    }
}

fn default_group_id() -> String {
    "switchyard-router".into()
}
fn default_retry_topic() -> String {
    "switchyard.retry".into()
}
fn default_dead_letter_topic() -> String {
    "switchyard.deadletter".into()
}
fn default_dedup_window_secs() -> u64 {
    3600
}
fn default_dedup_capacity() -> usize {
    100_000
}

impl Config {
    pub fn source_configs(&self) -> Vec<SourceConfig> {
        self.sources.iter().map(|entry| entry.source.clone()).collect()
    }

    pub fn source_transforms(&self) -> std::collections::HashMap<String, Vec<TransformConfig>> {
        self.sources
            .iter()
            .map(|entry| (entry.source.id.clone(), entry.transforms.clone()))
            .collect()
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::from_bytes(&bytes, path)
    }

    /// The file for a command that never talks to Kafka (`apply`, `backup`, `control
    /// migrate`...): `[kafka]` is left out, so its TLS files and SASL variables need not
    /// be there. A Kubernetes Job running such a command mounts the configuration only.
    pub fn load_without_kafka(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::read(&bytes, path, false)
    }

    /// The configuration in `bytes`, read from `path` (named in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> anyhow::Result<Self> {
        Config::read(bytes, path, true)
    }

    fn read(bytes: &[u8], path: &Path, kafka: bool) -> anyhow::Result<Self> {
        let text =
            std::str::from_utf8(bytes).with_context(|| format!("config file {} is not UTF-8", path.display()))?;
        let mut config = parse(text).with_context(|| format!("config file {} is not valid", path.display()))?;
        config
            .validate()
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        if !kafka {
            config.kafka = None;
        }
        if let Some(kafka) = config.kafka.as_mut() {
            kafka
                .resolve()
                .with_context(|| format!("config file {}: the kafka settings can't be used", path.display()))?;
        }
        // A database URL holds a password: a Secret hands it over in the environment,
        // and it wins over the file's.
        if let Some(url) = std::env::var(DATABASE_URL_ENV).ok().filter(|url| !url.is_empty()) {
            config.control.get_or_insert_default().database_url = url;
        }
        Ok(config)
    }

    /// The `[archive]` section, for the commands that need one; `path` names the file.
    pub fn archive_section(&self, path: &Path) -> anyhow::Result<ArchiveConfig> {
        match &self.archive {
            Some(archive) => Ok(archive.clone()),
            None => bail!("{}: no [archive] section, so nothing is archived", path.display()),
        }
    }

    /// Whether the file itself configures `source_id`.
    pub fn has_source(&self, source_id: &str) -> bool {
        self.sources.iter().any(|entry| entry.source.id == source_id)
    }

    /// What the process's roles need beyond [`Config::validate`]: a process serving
    /// ingest (for the file's sources) needs TLS or plain HTTP asked for; a router on its
    /// own, fed by Kafka producers, needs no ingest settings.
    pub fn check_serving(&self, ingest: bool) -> anyhow::Result<()> {
        if ingest && !self.sources.is_empty() {
            self.ingest.check_listener()?;
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        // A file for the control commands alone needs no source.
        if self.sources.is_empty() && self.control.is_none() {
            bail!("sources: at least one [[sources]] entry is needed");
        }
        let max_batch = u32::try_from(self.ingest.max_batch_events).unwrap_or(u32::MAX);
        validate_sources(&self.source_configs(), max_batch)?;
        for (index, entry) in self.sources.iter().enumerate() {
            Transform::compile(&entry.transforms).map_err(|error| anyhow::anyhow!("sources[{index}].{error}"))?;
            if let Some(webhook) = &entry.source.webhook {
                webhook
                    .check()
                    .map_err(|error| anyhow::anyhow!("sources[{index}].{error}"))?;
            }
        }
        // Ingest serves only with sources to take events for.
        if !self.sources.is_empty() {
            self.ingest.validate()?;
        }
        let source_ids: HashSet<&str> = self.sources.iter().map(|s| s.source.id.as_str()).collect();
        let mut destination_ids = HashSet::new();
        for (index, destination) in self.destinations.iter().enumerate() {
            destination.validate(index, &source_ids, &self.egress)?;
            Transform::compile(&destination.transforms)
                .map_err(|error| anyhow::anyhow!("destinations[{index}].{error}"))?;
            if !destination_ids.insert(destination.id.as_str()) {
                bail!("destinations[{index}].id {:?} appears twice", destination.id);
            }
        }
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
        assert!(config.kafka.is_none(), "the example runs on the embedded broker");
        assert!(!config.sources.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let error = toml::from_str::<Config>("[ingest]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").expect_err("refused");
        assert!(error.to_string().contains("lisen"), "{error}");
    }

    #[test]
    fn a_misspelt_source_setting_is_refused() {
        let text = "[[sources]]\nid = \"web\"\nwrite_key = \"0123456789abcdef\"\nrate_limit_event_per_sec = 5\n";
        let error = toml::from_str::<Config>(text).expect_err("refused");
        assert!(error.to_string().contains("rate_limit_event_per_sec"), "{error}");
        let text = "[[sources]]\nid = \"web\"\nwrite_key = \"0123456789abcdef\"\nbogus_key = 5\n\
                    transforms = [{ op = \"redact\", fields = [\"context.ip\"] }]\n";
        let error = toml::from_str::<Config>(text).expect_err("refused");
        assert!(error.to_string().contains("bogus_key"), "{error}");
        let text = "[[sources]]\nid = \"web\"\nwrite_key = \"0123456789abcdef\"\n\
                    transforms = [{ op = \"redact\", fields = [\"context.ip\"] }]\n";
        let config = toml::from_str::<Config>(text).expect("parses");
        assert_eq!(config.sources[0].transforms.len(), 1);
        assert_eq!(config.sources[0].source.id, "web");
    }

    #[test]
    fn a_misspelt_destination_setting_is_refused() {
        let text = "[[destinations]]\nid = \"d\"\nsources = [\"web\"]\nkind = \"webhook\"\nurl = \"https://example.com\"\nconcurency = 3\n";
        let error = toml::from_str::<Config>(text).expect_err("refused");
        assert!(error.to_string().contains("concurency"), "{error}");
    }

    #[test]
    fn plain_http_must_be_asked_for() {
        let text = "[[sources]]\nid = \"web\"\nwrite_key = \"0123456789abcdef\"\n";
        let config: Config = toml::from_str(text).expect("parses");
        config.validate().expect("the file itself is valid");
        let error = config.check_serving(true).expect_err("no TLS and no opt-in");
        assert!(format!("{error:#}").contains("allow_plain_http"), "{error:#}");
        config
            .check_serving(false)
            .expect("a router on its own needs no ingest listener");
    }
}

/// Parses the file. Helm hands every number to its templates as a float, so a file
/// rendered by the chart says `concurrency = 8.0`: when the file as written doesn't fit,
/// whole floats are read as integers and it is tried again. Errors are those of the
/// file as written, with their line and column.
fn parse(text: &str) -> Result<Config, toml::de::Error> {
    let first = match toml::from_str::<Config>(text) {
        Ok(config) => return Ok(config),
        Err(error) => error,
    };
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Err(first);
    };
    let mut changed = false;
    for (_, value) in table.iter_mut() {
        changed |= whole_floats_to_integers(value);
    }
    if !changed {
        return Err(first);
    }
    toml::Value::Table(table).try_into().map_err(|_: toml::de::Error| first)
}

fn whole_floats_to_integers(value: &mut toml::Value) -> bool {
    match value {
        toml::Value::Float(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
            *value = toml::Value::Integer(*float as i64);
            true
        }
        toml::Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| whole_floats_to_integers(item) | changed),
        toml::Value::Table(table) => table
            .iter_mut()
            .fold(false, |changed, (_, item)| whole_floats_to_integers(item) | changed),
        _ => false,
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn whole_floats_from_helm_read_as_integers_and_real_errors_keep_their_position() {
        let rendered = "[[sources]]\nid = \"web\"\nwrite_key = \"key-0123456789abcdef\"\n\n\
                        [[destinations]]\nid = \"d\"\nsources = [\"web\"]\nkind = \"blackhole\"\nconcurrency = 8.0\n\
                        [[destinations.transforms]]\nop = \"sample\"\nrate = 1.0\n";
        let config = parse(rendered).expect("accepted");
        assert_eq!(config.destinations[0].concurrency, 8);
        let wrong = "[[sources]]\nid = \"web\"\nwrite_key = \"key-0123456789abcdef\"\n\n\
                     [[destinations]]\nid = \"d\"\nsources = [\"web\"]\nkind = \"blackhole\"\nconcurrency = 8.5\n";
        let error = parse(wrong).expect_err("8.5 is no count").to_string();
        assert!(error.contains("line 9"), "{error}");
    }
}
