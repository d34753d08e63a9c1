//! What ingest and the router run: the file's sources and destinations and, with
//! `[control] workspace`, that workspace's from the control plane, read again every
//! `refresh_secs` by the reload loop (`serve.rs`). The hot path never asks the
//! database: ingest authenticates against its in-memory registry and the router's
//! actors hold their settings; a change is applied to both like a file reload.

use std::collections::HashMap;

use anyhow::bail;
use switchyard_actors::{DestinationConfig, TransformConfig};
use switchyard_config::SourceConfig;
use switchyard_control::Control;
use switchyard_control::store::LiveConfig;
use switchyard_ingest::SourceSpec;

use crate::config::Config;

/// Sources and destinations, merged, in the shapes ingest and the router take.
#[derive(Debug, Default)]
pub struct Effective {
    pub specs: Vec<SourceSpec>,
    /// For the router (control-plane sources carry no write key: the router needs none).
    pub sources: Vec<SourceConfig>,
    pub transforms: HashMap<String, Vec<TransformConfig>>,
    pub destinations: Vec<DestinationConfig>,
    /// Control-plane entries left out because the file uses their ids.
    pub shadowed: Vec<String>,
}

/// Merges the file with the control plane's workspace. The file is the operator's and
/// wins: a control-plane source or destination with an id the file already uses is left
/// out (and logged), so a workspace member can neither take over a file source's id nor,
/// by making one, stop every later reload or restart.
pub fn effective(file: &Config, live: Option<&LiveConfig>) -> anyhow::Result<Effective> {
    let mut merged = Effective {
        specs: file.source_configs().iter().map(SourceSpec::from).collect(),
        sources: file.source_configs(),
        transforms: file.source_transforms(),
        destinations: file.destinations.clone(),
        shadowed: Vec::new(),
    };
    let Some(live) = live else {
        return Ok(merged);
    };
    for source in &live.sources {
        if merged.transforms.contains_key(&source.id) {
            tracing::warn!(
                source_id = %source.id,
                "control-plane source left out: the configuration file has a source with this id"
            );
            merged.shadowed.push(format!("source {}", source.id));
            continue;
        }
        let (rate, burst) = (
            source.settings.rate_limit_events_per_sec,
            source.settings.rate_limit_burst_events,
        );
        merged.specs.push(SourceSpec {
            id: source.id.clone(),
            key_digests: source.key_digests.clone(),
            rate_limit_events_per_sec: rate,
            rate_limit_burst_events: burst,
            webhook: source.webhook.clone(),
        });
        merged.sources.push(SourceConfig {
            id: source.id.clone(),
            name: String::new(),
            write_key: String::new(),
            rate_limit_events_per_sec: rate,
            rate_limit_burst_events: burst,
            kind: Default::default(),
            webhook: None,
        });
        merged.transforms.insert(source.id.clone(), source.transforms.clone());
    }
    for destination in &live.destinations {
        if file.destinations.iter().any(|d| d.id == destination.id) {
            tracing::warn!(
                destination_id = %destination.id,
                "control-plane destination left out: the configuration file has a destination with this id"
            );
            merged.shadowed.push(format!("destination {}", destination.id));
            continue;
        }
        merged.destinations.push(destination.clone());
    }
    Ok(merged)
}

/// The control plane's workspace, when the file names one.
#[derive(Debug)]
pub struct Live {
    control: Control,
    workspace: String,
    pub every: std::time::Duration,
}

impl Live {
    pub async fn open(config: &Config) -> anyhow::Result<Option<Live>> {
        let Some(section) = &config.control else {
            return Ok(None);
        };
        let Some(workspace) = &section.workspace else {
            return Ok(None);
        };
        let control = crate::control::open(section, &config.egress).await?;
        if control.workspace(workspace).await?.is_none() {
            bail!(
                "[control] workspace {workspace:?} does not exist in {}",
                switchyard_control::db::redact_url(&section.database_url)
            );
        }
        Ok(Some(Live {
            control,
            workspace: workspace.clone(),
            every: std::time::Duration::from_secs(section.refresh_secs.max(1)),
        }))
    }

    pub async fn fetch(&self) -> anyhow::Result<LiveConfig> {
        Ok(self.control.live(&self.workspace).await?)
    }
}
