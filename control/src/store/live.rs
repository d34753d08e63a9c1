//! A workspace as ingest and routers run it.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::Row;
use switchyard_config::WebhookSourceConfig;
use switchyard_config::{DestinationConfig, TransformConfig};

use super::*;
use crate::{ControlError, now_ms};

impl Control {
    /// The workspace's sources and destinations as ingest and the router run them
    /// (write keys as digests, credentials opened).
    pub async fn live(&self, workspace_id: &str) -> Result<LiveConfig, ControlError> {
        let keys = sqlx::query(
            "SELECT k.source_id, k.digest FROM write_keys k JOIN sources s ON s.id = k.source_id \
             WHERE s.workspace_id = $1 AND (k.expires_at IS NULL OR k.expires_at > $2)",
        )
        .bind(workspace_id)
        .bind(now_ms())
        .fetch_all(&self.db.pool)
        .await?;
        let mut digests: HashMap<String, Vec<[u8; 32]>> = HashMap::new();
        for row in keys {
            let text: String = row.try_get("digest")?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&text, &mut digest)
                .map_err(|e| ControlError::Corrupt(format!("write key digest: {e}")))?;
            digests.entry(row.try_get("source_id")?).or_default().push(digest);
        }
        let mut sources = Vec::new();
        for row in self.source_rows(workspace_id, None).await? {
            let (source, webhook) = (source_view(&self.sealer, &row)?, self.opened_webhook(&row)?);
            let transforms = serde_json::from_value(Value::Array(source.transforms.clone()))
                .map_err(|e| ControlError::Corrupt(format!("source {} transforms: {e}", source.id)))?;
            sources.push(LiveSource {
                key_digests: digests.remove(&source.id).unwrap_or_default(),
                webhook,
                id: source.id,
                settings: source.settings,
                transforms,
            });
        }
        let rows = sqlx::query("SELECT * FROM destinations WHERE workspace_id = $1 ORDER BY id")
            .bind(workspace_id)
            .fetch_all(&self.db.pool)
            .await?;
        let destinations = rows
            .iter()
            .map(|row| {
                let (view, credentials) = self.destination_parts(row)?;
                runnable(&view, &credentials)
            })
            .collect::<Result<_, ControlError>>()?;
        Ok(LiveConfig { sources, destinations })
    }
}

/// A source as ingest and the router run it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSource {
    pub id: String,
    /// SHA-256 of each write key that works now.
    pub key_digests: Vec<[u8; 32]>,
    pub settings: SourceSettings,
    pub transforms: Vec<TransformConfig>,
    /// A webhook source's settings, its secret opened.
    pub webhook: Option<WebhookSourceConfig>,
}

/// A workspace's sources and destinations, for ingest and the router.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub sources: Vec<LiveSource>,
    pub destinations: Vec<DestinationConfig>,
}
