//! Sources: their write keys (stored as digests) and webhook settings (the signing
//! secret sealed).

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_config::{SourceConfig, SourceKind, WebhookSourceConfig, is_valid_id, validate_sources};
use switchyard_config::{Transform, TransformConfig};

use super::*;
use crate::audit::{self, AuditAction};
use crate::salts;
use crate::secrets::{Sealer, digest, new_secret};
use crate::{ControlError, now_ms};

impl Control {
    /// A webhook source's settings checked as ingest runs them, as stored: the JSON
    /// without the secret, and the secret sealed (bound to the source).
    pub(super) fn webhook_columns(
        &self,
        id: &str,
        config: &WebhookSourceConfig,
    ) -> Result<(String, Option<Vec<u8>>), ControlError> {
        let as_file = SourceConfig {
            id: id.to_string(),
            name: String::new(),
            kind: SourceKind::Webhook,
            write_key: String::new(),
            webhook: Some(config.clone()),
            rate_limit_events_per_sec: None,
            rate_limit_burst_events: None,
        };
        validate_sources(&[as_file], u32::MAX)
            .map_err(|e| ControlError::invalid("webhook", e.to_string().replace("sources[0]: ", "")))?;
        config.check().map_err(|e| ControlError::invalid("webhook", e))?;
        let sealed = config
            .secret
            .as_deref()
            .map(|secret| self.sealer.seal(secret.as_bytes(), &format!("source-webhook:{id}")))
            .transpose()?;
        let mut stored = config.clone();
        stored.secret = None;
        let text = serde_json::to_string(&stored).map_err(|e| ControlError::Corrupt(e.to_string()))?;
        Ok((text, sealed))
    }

    /// A stored webhook source's settings with its secret opened.
    pub(super) fn webhook_config(&self, row: &AnyRow, id: &str) -> Result<WebhookSourceConfig, ControlError> {
        let text: Option<String> = row.try_get("webhook")?;
        let mut config: WebhookSourceConfig = serde_json::from_str(text.as_deref().unwrap_or_default())
            .map_err(|e| ControlError::Corrupt(format!("source {id} webhook: {e}")))?;
        let sealed: Option<Vec<u8>> = row.try_get("webhook_secret")?;
        config.secret = sealed
            .map(|sealed| {
                let plain = self.sealer.open(&sealed, &format!("source-webhook:{id}"))?;
                String::from_utf8(plain).map_err(|e| ControlError::Corrupt(format!("source {id} webhook secret: {e}")))
            })
            .transpose()?;
        Ok(config)
    }

    /// A webhook source's secret, opened (for `apply` to compare, and to keep on a patch).
    pub async fn webhook_secret(&self, workspace_id: &str, source_id: &str) -> Result<Option<String>, ControlError> {
        let row = self
            .source_rows(workspace_id, Some(source_id))
            .await?
            .pop()
            .ok_or_else(|| ControlError::NotFound(format!("source {source_id}")))?;
        Ok(self.opened_webhook(&row)?.and_then(|config| config.secret))
    }

    /// A row's webhook settings with the secret opened; None for a write-key source.
    pub(super) fn opened_webhook(&self, row: &AnyRow) -> Result<Option<WebhookSourceConfig>, ControlError> {
        let text: Option<String> = row.try_get("webhook")?;
        if text.is_none() {
            return Ok(None);
        }
        let id: String = row.try_get("id")?;
        self.webhook_config(row, &id).map(Some)
    }

    /// The workspace's sources, or the one named `only`.
    pub(super) async fn source_views(
        &self,
        workspace_id: &str,
        only: Option<&str>,
    ) -> Result<Vec<SourceView>, ControlError> {
        self.source_rows(workspace_id, only)
            .await?
            .iter()
            .map(|row| source_view(&self.sealer, row))
            .collect()
    }

    /// The rows of the workspace's sources (or the one named `only`), with their count
    /// of working write keys as `active`.
    pub(super) async fn source_rows(
        &self,
        workspace_id: &str,
        only: Option<&str>,
    ) -> Result<Vec<AnyRow>, ControlError> {
        let select = "SELECT s.*, (SELECT COUNT(*) FROM write_keys k WHERE k.source_id = s.id \
                      AND (k.expires_at IS NULL OR k.expires_at > $2)) AS active FROM sources s WHERE s.workspace_id = $1";
        let sql = match only {
            Some(_) => format!("{select} AND s.id = $3"),
            None => format!("{select} ORDER BY s.id"),
        };
        let mut query = sqlx::query(&sql).bind(workspace_id).bind(now_ms());
        if let Some(id) = only {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.db.pool).await?)
    }

    pub async fn sources(&self, workspace_id: &str) -> Result<Vec<SourceView>, ControlError> {
        self.source_views(workspace_id, None).await
    }

    pub async fn source(&self, workspace_id: &str, source_id: &str) -> Result<SourceView, ControlError> {
        self.source_views(workspace_id, Some(source_id))
            .await?
            .pop()
            .ok_or_else(|| ControlError::NotFound(format!("source {source_id}")))
    }

    /// Creates a source and its first write key, returned this once.
    pub async fn create_source(
        &self,
        actor: &Actor,
        workspace_id: &str,
        input: &NewSource,
    ) -> Result<CreatedSource, ControlError> {
        if !is_valid_id(&input.id) {
            return Err(ControlError::invalid("id", "1-64 letters, digits, '-' or '_'"));
        }
        self.check_not_reserved("source", &input.id)?;
        check_source_settings(&input.settings)?;
        let (plain, transforms) = self.transforms_to_store(&format!("source:{}", input.id), &input.transforms, &[])?;
        // A webhook source is authenticated by its provider's signature, not a write key.
        let write_key = input.webhook.is_none().then(|| new_secret("wk_"));
        let (webhook, webhook_secret) = match &input.webhook {
            Some(config) => {
                let (settings, sealed) = self.webhook_columns(&input.id, config)?;
                (Some(settings), sealed)
            }
            None => (None, None),
        };
        let webhook_view = webhook_view(webhook.as_deref(), webhook_secret.is_some());
        let (actor, ws, id, name, settings, key_digest) = (
            actor.clone(),
            workspace_id.to_string(),
            input.id.clone(),
            input.name.clone(),
            serde_json::to_string(&input.settings).unwrap_or_else(|_| "{}".into()),
            write_key.as_deref().map(digest),
        );
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let taken = sqlx::query("SELECT id FROM sources WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(ControlError::Conflict(format!("source {id}")));
                }
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO sources (id, workspace_id, name, settings, transforms, created_at, webhook, webhook_secret) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind(&ws)
                .bind(&name)
                .bind(&settings)
                .bind(&transforms)
                .bind(now)
                .bind(&webhook)
                .bind(&webhook_secret)
                .execute(&mut *tx)
                .await?;
                if let Some(key_digest) = &key_digest {
                    sqlx::query(
                        "INSERT INTO write_keys (digest, source_id, created_at, expires_at) VALUES ($1, $2, $3, NULL)",
                    )
                    .bind(key_digest)
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                let after = json!({"id": id, "name": name, "settings": serde_json::from_str::<Value>(&settings).unwrap_or_default(), "transforms": salts::redacted(&plain), "webhook": webhook_view});
                audit::append(tx, &key, &ws, &actor, AuditAction::SourceCreate, &id, &Value::Null, &after).await
            })
        })
        .await?;
        Ok(CreatedSource {
            source: self.source(workspace_id, &input.id).await?,
            webhook_path: input.webhook.as_ref().map(|_| format!("/v1/webhooks/{}", input.id)),
            write_key,
        })
    }

    pub async fn update_source(
        &self,
        actor: &Actor,
        workspace_id: &str,
        source_id: &str,
        patch: &SourcePatch,
    ) -> Result<SourceView, ControlError> {
        let before = self.source(workspace_id, source_id).await?;
        let settings = patch.settings.clone().unwrap_or_else(|| before.settings.clone());
        check_source_settings(&settings)?;
        let (plain, transforms) = self.transforms_to_store(
            &format!("source:{source_id}"),
            patch.transforms.as_ref().unwrap_or(&before.transforms),
            &before.transforms,
        )?;
        let name = patch.name.clone().unwrap_or_else(|| before.name.clone());
        let webhook = match (&patch.webhook, before.webhook.is_some()) {
            (None, _) => None,
            (Some(_), false) => {
                return Err(ControlError::invalid(
                    "webhook",
                    "this source takes write keys; a webhook source is made as one",
                ));
            }
            (Some(config), true) => {
                let mut config = config.clone();
                if config.secret.is_none() {
                    config.secret = self.webhook_secret(workspace_id, source_id).await?;
                }
                Some(self.webhook_columns(source_id, &config)?)
            }
        };
        let (actor, ws, id) = (actor.clone(), workspace_id.to_string(), source_id.to_string());
        let settings_text = serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into());
        let before_json = json!(before);
        let webhook_after = match &webhook {
            Some((text, sealed)) => webhook_view(Some(text), sealed.is_some()),
            None => before.webhook.clone(),
        };
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE sources SET name = $1, settings = $2, transforms = $3 WHERE id = $4 AND workspace_id = $5")
                    .bind(&name)
                    .bind(&settings_text)
                    .bind(&transforms)
                    .bind(&id)
                    .bind(&ws)
                    .execute(&mut *tx)
                    .await?;
                if let Some((text, sealed)) = &webhook {
                    sqlx::query("UPDATE sources SET webhook = $1, webhook_secret = $2 WHERE id = $3 AND workspace_id = $4")
                        .bind(text)
                        .bind(sealed)
                        .bind(&id)
                        .bind(&ws)
                        .execute(&mut *tx)
                        .await?;
                }
                let after = json!({"id": id, "name": name, "settings": settings, "transforms": salts::redacted(&plain), "webhook": webhook_after});
                audit::append(tx, &key, &ws, &actor, AuditAction::SourceUpdate, &id, &before_json, &after).await
            })
        })
        .await?;
        self.source(workspace_id, source_id).await
    }

    /// Deletes a source no destination is fed by.
    pub async fn delete_source(&self, actor: &Actor, workspace_id: &str, source_id: &str) -> Result<(), ControlError> {
        let before = self.source(workspace_id, source_id).await?;
        let feeding: Vec<String> = self
            .destinations(workspace_id)
            .await?
            .into_iter()
            .filter(|d| d.sources.iter().any(|s| s == source_id))
            .map(|d| d.id)
            .collect();
        if !feeding.is_empty() {
            return Err(ControlError::Conflict(format!(
                "source {source_id} feeding destinations {feeding:?}: take it out of them first"
            )));
        }
        let (actor, ws, id) = (actor.clone(), workspace_id.to_string(), source_id.to_string());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM write_keys WHERE source_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM sources WHERE id = $1 AND workspace_id = $2")
                    .bind(&id)
                    .bind(&ws)
                    .execute(&mut *tx)
                    .await?;
                audit::append(
                    tx,
                    &key,
                    &ws,
                    &actor,
                    AuditAction::SourceDelete,
                    &id,
                    &json!(before),
                    &Value::Null,
                )
                .await
            })
        })
        .await
    }

    /// A new write key; the current ones keep working for `overlap_secs`.
    pub async fn rotate_write_key(
        &self,
        actor: &Actor,
        workspace_id: &str,
        source_id: &str,
        overlap_secs: u64,
    ) -> Result<WriteKey, ControlError> {
        if self.source(workspace_id, source_id).await?.webhook.is_some() {
            return Err(ControlError::invalid(
                "source",
                "a webhook source has no write key; its provider signs with the webhook secret",
            ));
        }
        let write_key = new_secret("wk_");
        let now = now_ms();
        let expires = now + (overlap_secs.min(30 * 86_400) * 1000) as i64;
        let (actor, ws, id, key_digest) = (
            actor.clone(),
            workspace_id.to_string(),
            source_id.to_string(),
            digest(&write_key),
        );
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE write_keys SET expires_at = $1 WHERE source_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
                )
                .bind(expires)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO write_keys (digest, source_id, created_at, expires_at) VALUES ($1, $2, $3, NULL)")
                    .bind(&key_digest)
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let after = json!({"previous_keys_expire_at": expires});
                audit::append(tx, &key, &ws, &actor, AuditAction::SourceRotateWriteKey, &id, &Value::Null, &after).await
            })
        })
        .await?;
        Ok(WriteKey {
            source_id: source_id.to_string(),
            write_key,
            previous_keys_expire_at: Some(expires),
        })
    }

    /// The source a write key opens, if it works now.
    pub async fn source_for_write_key(&self, write_key: &str) -> Result<Option<String>, ControlError> {
        let row = sqlx::query(
            "SELECT source_id FROM write_keys WHERE digest = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(digest(write_key))
        .bind(now_ms())
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.map(|row| row.try_get("source_id")).transpose()?)
    }
}

pub(super) fn source_view(sealer: &Sealer, row: &AnyRow) -> Result<SourceView, ControlError> {
    let webhook: Option<String> = row.try_get("webhook")?;
    let sealed: Option<Vec<u8>> = row.try_get("webhook_secret")?;
    let id: String = row.try_get("id")?;
    let stored: Vec<Value> = serde_json::from_value(json_text(row, "transforms")?).unwrap_or_default();
    Ok(SourceView {
        transforms: salts::open(sealer, &format!("source:{id}"), &stored)?,
        id,
        name: row.try_get("name")?,
        kind: if webhook.is_some() { "webhook" } else { "segment" }.into(),
        webhook: webhook_view(webhook.as_deref(), sealed.is_some()),
        settings: serde_json::from_value(json_text(row, "settings")?).unwrap_or_default(),
        active_write_keys: row.try_get::<i64, _>("active")? as usize,
        created_at: row.try_get("created_at")?,
    })
}

/// A webhook source's stored settings as shown: the secret `<redacted>` when there is one.
pub(super) fn webhook_view(stored: Option<&str>, has_secret: bool) -> Option<Value> {
    let mut view: Value = serde_json::from_str(stored?).ok()?;
    if has_secret && let Some(object) = view.as_object_mut() {
        object.insert("secret".into(), Value::from(REDACTED));
    }
    Some(view)
}

pub(super) fn check_source_settings(settings: &SourceSettings) -> Result<(), ControlError> {
    if settings.rate_limit_events_per_sec == Some(0) {
        return Err(ControlError::invalid(
            "settings.rate_limit_events_per_sec",
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// Compiles a transform chain, so a bad one is refused now, not at the router.
pub(super) fn check_transforms(field: &str, transforms: &[Value]) -> Result<(), ControlError> {
    let configs: Vec<TransformConfig> = serde_json::from_value(Value::Array(transforms.to_vec()))
        .map_err(|e| ControlError::invalid(field, e.to_string()))?;
    Transform::compile(&configs).map_err(|e| ControlError::invalid(field, e.to_string()))?;
    Ok(())
}
