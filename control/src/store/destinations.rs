//! Destinations: settings and credentials (sealed) stored apart, joined and checked
//! as the router would run them.

use std::collections::HashSet;

use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_config::{DestinationConfig, Transform};

use super::*;
use crate::audit::{self, AuditAction};
use crate::salts;
use crate::{ControlError, now_ms};

impl Control {
    pub async fn destinations(&self, workspace_id: &str) -> Result<Vec<DestinationView>, ControlError> {
        let rows = sqlx::query("SELECT * FROM destinations WHERE workspace_id = $1 ORDER BY id")
            .bind(workspace_id)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(|row| Ok(self.destination_parts(row)?.0)).collect()
    }

    pub async fn destination(&self, workspace_id: &str, id: &str) -> Result<DestinationView, ControlError> {
        let row = self.destination_row(workspace_id, id).await?;
        Ok(self.destination_parts(&row)?.0)
    }

    pub(super) async fn destination_row(&self, workspace_id: &str, id: &str) -> Result<AnyRow, ControlError> {
        sqlx::query("SELECT * FROM destinations WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("destination {id}")))
    }

    /// A destination's view and its credentials, opened once.
    pub(super) fn destination_parts(
        &self,
        row: &AnyRow,
    ) -> Result<(DestinationView, Map<String, Value>), ControlError> {
        let id: String = row.try_get("id")?;
        let credentials = self.credentials(row, &id)?;
        let view = DestinationView {
            kind: row.try_get("kind")?,
            sources: strings(json_text(row, "sources")?),
            settings: json_text(row, "settings")?.as_object().cloned().unwrap_or_default(),
            credentials: credentials.keys().map(|k| (k.clone(), Value::from(REDACTED))).collect(),
            transforms: salts::open(
                &self.sealer,
                &format!("destination:{id}"),
                &serde_json::from_value::<Vec<Value>>(json_text(row, "transforms")?).unwrap_or_default(),
            )?,
            created_at: row.try_get("created_at")?,
            id,
        };
        Ok((view, credentials))
    }

    pub(super) fn credentials(&self, row: &AnyRow, id: &str) -> Result<Map<String, Value>, ControlError> {
        let sealed: Option<Vec<u8>> = row.try_get("credentials")?;
        let Some(sealed) = sealed else {
            return Ok(Map::new());
        };
        let plain = self.sealer.open(&sealed, &format!("destination:{id}"))?;
        serde_json::from_slice(&plain).map_err(|e| ControlError::Corrupt(format!("destination {id} credentials: {e}")))
    }

    /// A destination's credentials, opened (for `apply` to compare; never shown).
    pub async fn destination_credentials(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Map<String, Value>, ControlError> {
        let row = self.destination_row(workspace_id, id).await?;
        self.credentials(&row, id)
    }

    /// The destination as the router runs it, credentials opened.
    pub async fn destination_config(&self, workspace_id: &str, id: &str) -> Result<DestinationConfig, ControlError> {
        let row = self.destination_row(workspace_id, id).await?;
        let (view, credentials) = self.destination_parts(&row)?;
        runnable(&view, &credentials)
    }

    pub(super) async fn source_ids(&self, workspace_id: &str) -> Result<Vec<String>, ControlError> {
        Ok(self.sources(workspace_id).await?.into_iter().map(|s| s.id).collect())
    }

    /// Checks the whole destination as the router would run it, then stores it.
    pub(super) async fn put_destination(
        &self,
        actor: &Actor,
        workspace_id: &str,
        input: &NewDestination,
        before: Option<DestinationView>,
    ) -> Result<DestinationView, ControlError> {
        if before.is_none() {
            self.check_not_reserved("destination", &input.id)?;
        }
        crate::credentials::check_placement(&input.kind, &input.settings, &input.credentials)?;
        let stored_before = before.as_ref().map_or(&[][..], |b| &b.transforms[..]);
        let (plain, transforms) =
            self.transforms_to_store(&format!("destination:{}", input.id), &input.transforms, stored_before)?;
        let config = build_destination(
            &input.id,
            &input.kind,
            &input.sources,
            &input.settings,
            &input.credentials,
            &plain,
        )?;
        let known = self.source_ids(workspace_id).await?;
        let known: HashSet<&str> = known.iter().map(String::as_str).collect();
        // Outside the transaction: a webhook's host is resolved here.
        config
            .validate(0, &known, &self.egress)
            .map_err(|e| ControlError::invalid("destination", e.to_string().replace("destinations[0].", "")))?;
        let sealed = if input.credentials.is_empty() {
            None
        } else {
            let plain = serde_json::to_vec(&input.credentials).map_err(|e| ControlError::Crypto(e.to_string()))?;
            Some(self.sealer.seal(&plain, &format!("destination:{}", input.id))?)
        };
        let (actor, ws, id, kind) = (
            actor.clone(),
            workspace_id.to_string(),
            input.id.clone(),
            input.kind.clone(),
        );
        let texts = (
            serde_json::to_string(&input.sources).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&input.settings).unwrap_or_else(|_| "{}".into()),
            transforms,
        );
        let redacted: Map<String, Value> = input
            .credentials
            .keys()
            .map(|k| (k.clone(), Value::from(REDACTED)))
            .collect();
        let after = json!({"id": id, "kind": kind, "sources": input.sources, "settings": input.settings, "credentials": redacted, "transforms": salts::redacted(&plain)});
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let existing = sqlx::query("SELECT id FROM destinations WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let action = match (&before, existing) {
                    (None, Some(_)) => return Err(ControlError::Conflict(format!("destination {id}"))),
                    (None, None) => AuditAction::DestinationCreate,
                    (Some(_), _) => AuditAction::DestinationUpdate,
                };
                sqlx::query("DELETE FROM destinations WHERE id = $1 AND workspace_id = $2")
                    .bind(&id)
                    .bind(&ws)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO destinations (id, workspace_id, kind, sources, settings, credentials, transforms, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind(&ws)
                .bind(&kind)
                .bind(&texts.0)
                .bind(&texts.1)
                .bind(sealed)
                .bind(&texts.2)
                .bind(before.as_ref().map_or_else(now_ms, |b| b.created_at))
                .execute(&mut *tx)
                .await?;
                let before = before.map_or(Value::Null, |b| json!(b));
                audit::append(tx, &key, &ws, &actor, action, &id, &before, &after).await
            })
        })
        .await?;
        self.destination(workspace_id, &input.id).await
    }

    pub async fn create_destination(
        &self,
        actor: &Actor,
        workspace_id: &str,
        input: &NewDestination,
    ) -> Result<DestinationView, ControlError> {
        self.put_destination(actor, workspace_id, input, None).await
    }

    pub async fn update_destination(
        &self,
        actor: &Actor,
        workspace_id: &str,
        id: &str,
        patch: DestinationPatch,
    ) -> Result<DestinationView, ControlError> {
        let row = self.destination_row(workspace_id, id).await?;
        let (before, stored) = self.destination_parts(&row)?;
        if let (Some(settings), None, false) = (&patch.settings, &patch.credentials, stored.is_empty()) {
            let moved = moved_endpoint(&before.kind, &before.settings, settings);
            if !moved.is_empty() {
                return Err(ControlError::invalid(
                    "credentials",
                    format!(
                        "{} changed: give the credentials again with the new endpoint (stored credentials are never sent anywhere else)",
                        moved.join(", ")
                    ),
                ));
            }
        }
        let credentials = patch.credentials.unwrap_or(stored);
        let input = NewDestination {
            id: id.to_string(),
            kind: before.kind.clone(),
            sources: patch.sources.unwrap_or_else(|| before.sources.clone()),
            settings: patch.settings.unwrap_or_else(|| before.settings.clone()),
            credentials,
            transforms: patch.transforms.unwrap_or_else(|| before.transforms.clone()),
        };
        self.put_destination(actor, workspace_id, &input, Some(before)).await
    }

    pub async fn delete_destination(&self, actor: &Actor, workspace_id: &str, id: &str) -> Result<(), ControlError> {
        let before = self.destination(workspace_id, id).await?;
        let (actor, ws, id) = (actor.clone(), workspace_id.to_string(), id.to_string());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM destinations WHERE id = $1 AND workspace_id = $2")
                    .bind(&id)
                    .bind(&ws)
                    .execute(&mut *tx)
                    .await?;
                audit::append(
                    tx,
                    &key,
                    &ws,
                    &actor,
                    AuditAction::DestinationDelete,
                    &id,
                    &json!(before),
                    &Value::Null,
                )
                .await
            })
        })
        .await
    }
}

/// The settings that say where a destination of `kind` connects.
pub(crate) fn endpoint_settings(kind: &str) -> &'static [&'static str] {
    match kind {
        "webhook" | "postgres_warehouse" => &["url"],
        "kafka" => &["brokers"],
        "object_storage_export" => &["bucket", "endpoint", "region"],
        "segment" => &["endpoint"],
        "amplitude" | "mixpanel" => &["endpoint", "region"],
        _ => &[],
    }
}

/// The endpoint settings that differ between `before` and `after`, as `settings.<name>`.
pub(super) fn moved_endpoint(kind: &str, before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    endpoint_settings(kind)
        .iter()
        .filter(|name| before.get(**name) != after.get(**name))
        .map(|name| format!("settings.{name}"))
        .collect()
}

/// A stored destination as the router runs it.
pub(super) fn runnable(
    view: &DestinationView,
    credentials: &Map<String, Value>,
) -> Result<DestinationConfig, ControlError> {
    build_destination(
        &view.id,
        &view.kind,
        &view.sources,
        &view.settings,
        credentials,
        &view.transforms,
    )
}

/// Credentials join the settings table by table, so a secret can sit beside the
/// non-secret keys of the same table (`tls.client_key_pem` in credentials, `tls.ca_pem`
/// in settings); a key given in both is refused.
pub(super) fn merge_credentials(
    into: &mut Map<String, Value>,
    credentials: &Map<String, Value>,
    path: &str,
) -> Result<(), ControlError> {
    for (key, value) in credentials {
        let here = format!("{path}.{key}");
        match (into.get_mut(key), value) {
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
            (Some(Value::Object(table)), Value::Object(secrets)) => merge_credentials(table, secrets, &here)?,
            (Some(_), _) => return Err(ControlError::invalid(&here, "also given in settings")),
        }
    }
    Ok(())
}

/// The configuration-file shape of a destination, from its stored parts.
pub(super) fn build_destination(
    id: &str,
    kind: &str,
    sources: &[String],
    settings: &Map<String, Value>,
    credentials: &Map<String, Value>,
    transforms: &[Value],
) -> Result<DestinationConfig, ControlError> {
    let mut whole = Map::new();
    for (key, value) in settings {
        // Where Switchyard may connect is the operator's decision, not a tenant's.
        if matches!(
            key.as_str(),
            "allow_private_network" | "allow_plain_http" | "allow_http"
        ) {
            return Err(ControlError::invalid(
                &format!("settings.{key}"),
                "egress is set by the operator in the server's [egress] configuration, not per destination",
            ));
        }
        if matches!(key.as_str(), "id" | "kind" | "sources" | "transforms") {
            return Err(ControlError::invalid(
                &format!("settings.{key}"),
                "set it at the top level",
            ));
        }
        whole.insert(key.clone(), value.clone());
    }
    merge_credentials(&mut whole, credentials, "credentials")?;
    whole.insert("id".into(), Value::from(id));
    whole.insert("kind".into(), Value::from(kind));
    whole.insert("sources".into(), json!(sources));
    whole.insert("transforms".into(), Value::Array(transforms.to_vec()));
    let config: DestinationConfig = serde_json::from_value(Value::Object(whole))
        .map_err(|e| ControlError::invalid("destination", e.to_string()))?;
    Transform::compile(&config.transforms).map_err(|e| ControlError::invalid("transforms", e.to_string()))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_join_settings_table_by_table_and_refuse_a_key_given_twice() {
        let settings = json!({"url": "https://93.184.216.34/", "tls": {"ca_pem": "CA", "min_version": "1.3"}});
        let credentials = json!({"bearer_token": "t", "tls": {"client_key_pem": "KEY"}});
        let mut whole = settings.as_object().cloned().unwrap_or_default();
        merge_credentials(&mut whole, credentials.as_object().expect("object"), "credentials").expect("merged");
        assert_eq!(
            Value::Object(whole.clone()),
            json!({"url": "https://93.184.216.34/", "bearer_token": "t",
                   "tls": {"ca_pem": "CA", "min_version": "1.3", "client_key_pem": "KEY"}})
        );
        let twice = json!({"tls": {"ca_pem": "other"}});
        let error =
            merge_credentials(&mut whole, twice.as_object().expect("object"), "credentials").expect_err("twice");
        assert!(error.to_string().contains("credentials.tls.ca_pem"), "{error}");
    }
}
