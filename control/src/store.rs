//! Every read and change of the metadata. Changes are serialized (one writer at a
//! time in this process; run one admin API replica) and each is written to the audit
//! log in its own transaction.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchyard_actors::{DestinationConfig, EgressPolicy, Transform, TransformConfig};
use switchyard_schemas::config::{SourceConfig, SourceKind, WebhookSourceConfig, is_valid_id, validate_sources};

use crate::audit;
use crate::model::*;
use crate::roles::Access;
use crate::salts;
use crate::secrets::{Sealer, digest, hash_password, is_password_hash, new_secret};
use crate::{ControlError, Db, now_ms};

#[derive(Debug)]
pub struct Control {
    pub(crate) db: Db,
    pub(crate) sealer: Sealer,
    /// The operator's `[egress]`: where a tenant's destination may point.
    egress: Arc<EgressPolicy>,
    /// Source and destination ids the operator's configuration file uses: a tenant can't
    /// take them (the file would win at run time and the tenant's entry never run).
    reserved: Reserved,
    writes: tokio::sync::Mutex<()>,
}

/// Ids the configuration file holds.
#[derive(Debug, Default, Clone)]
pub struct Reserved {
    pub sources: HashSet<String>,
    pub destinations: HashSet<String>,
}

/// A password, or a hash of one carried over from another system (argon2 or bcrypt).
#[derive(Debug, Clone, Copy)]
pub enum Password<'a> {
    Plain(&'a str),
    Hash(&'a str),
}

pub(crate) fn json_text(row: &AnyRow, name: &str) -> Result<Value, ControlError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| ControlError::Corrupt(format!("{name}: {e}")))
}

pub(crate) fn strings(value: Value) -> Vec<String> {
    serde_json::from_value(value).unwrap_or_default()
}

impl Control {
    pub fn new(db: Db, sealer: Sealer) -> Self {
        Control {
            db,
            sealer,
            egress: Arc::default(),
            reserved: Reserved::default(),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Where tenants' destinations may connect (default: public addresses over TLS).
    pub fn with_egress(mut self, egress: Arc<EgressPolicy>) -> Self {
        self.egress = egress;
        self
    }

    /// The ids the operator's configuration file already uses.
    pub fn with_reserved(mut self, reserved: Reserved) -> Self {
        self.reserved = reserved;
        self
    }

    /// A chain as given (`<redacted>` salts kept from `before`), checked: opened, and as
    /// stored text with its salts sealed to `owner`.
    fn transforms_to_store(
        &self,
        owner: &str,
        given: &[Value],
        before: &[Value],
    ) -> Result<(Vec<Value>, String), ControlError> {
        let plain = salts::fill(given, before)?;
        check_transforms("transforms", &plain)?;
        let sealed = salts::seal(&self.sealer, owner, &plain)?;
        let text = serde_json::to_string(&sealed).map_err(|e| ControlError::invalid("transforms", e.to_string()))?;
        Ok((plain, text))
    }

    fn check_not_reserved(&self, what: &str, id: &str) -> Result<(), ControlError> {
        let ids = if what == "source" {
            &self.reserved.sources
        } else {
            &self.reserved.destinations
        };
        if ids.contains(id) {
            return Err(ControlError::Conflict(format!(
                "{what} id {id:?} is the operator's (in the server's configuration file): choose another id"
            )));
        }
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `change` in a transaction, one at a time.
    pub(crate) async fn change<T>(
        &self,
        change: impl for<'c> FnOnce(&'c mut AnyConnection) -> futures::future::BoxFuture<'c, Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        let _one_writer = self.writes.lock().await;
        let mut tx = self.db.pool.begin().await?;
        let out = change(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    // Users, sessions and workspaces.

    pub async fn create_user(
        &self,
        actor: &Actor,
        email: &str,
        password: Password<'_>,
    ) -> Result<String, ControlError> {
        let email = email.trim().to_ascii_lowercase();
        if !email.contains('@') || email.len() > 254 {
            return Err(ControlError::invalid("email", "not an email address"));
        }
        let hash = match password {
            Password::Plain(text) if text.chars().count() < 12 => {
                return Err(ControlError::invalid("password", "at least 12 characters"));
            }
            Password::Plain(text) => hash_password(text)?,
            Password::Hash(hash) if is_password_hash(hash) => hash.to_string(),
            Password::Hash(_) => return Err(ControlError::invalid("password_hash", "not an argon2 or bcrypt hash")),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let actor = actor.clone();
        let (user_id, stored_email) = (id.clone(), email.clone());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let exists = sqlx::query("SELECT id FROM users WHERE email = $1")
                    .bind(&stored_email)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_some() {
                    return Err(ControlError::Conflict(format!("user {stored_email}")));
                }
                sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&user_id)
                    .bind(&stored_email)
                    .bind(&hash)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                let after = json!({"user_id": user_id, "email": stored_email});
                audit::append(tx, &key, "", &actor, "user.create", &stored_email, &Value::Null, &after).await
            })
        })
        .await?;
        Ok(id)
    }

    /// A workspace with `owner_user_id` as its owner.
    pub async fn create_workspace(
        &self,
        actor: &Actor,
        name: &str,
        owner_user_id: &str,
    ) -> Result<Workspace, ControlError> {
        if name.trim().is_empty() {
            return Err(ControlError::invalid("name", "must not be empty"));
        }
        let workspace = Workspace {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: name.trim().to_string(),
            created_at: now_ms(),
        };
        let (actor, created, owner) = (actor.clone(), workspace.clone(), owner_user_id.to_string());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(&created.id)
                    .bind(&created.name)
                    .bind(created.created_at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO memberships (workspace_id, user_id, role, sources) VALUES ($1, $2, $3, '[]')")
                    .bind(&created.id)
                    .bind(&owner)
                    .bind(Role::Owner.as_str())
                    .execute(&mut *tx)
                    .await?;
                let after = json!({"id": created.id, "name": created.name, "owner": owner});
                audit::append(
                    tx,
                    &key,
                    &created.id,
                    &actor,
                    "workspace.create",
                    &created.id,
                    &Value::Null,
                    &after,
                )
                .await
            })
        })
        .await?;
        Ok(workspace)
    }

    /// The user's role in the workspace, if a member.
    pub async fn access(&self, workspace_id: &str, user_id: &str) -> Result<Option<Access>, ControlError> {
        let row = sqlx::query("SELECT role, sources FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|row| {
            let role: String = row.try_get("role")?;
            Ok(Access {
                role: Role::parse(&role).ok_or_else(|| ControlError::Corrupt(format!("role {role}")))?,
                sources: strings(json_text(&row, "sources")?),
            })
        })
        .transpose()
    }

    pub async fn workspaces_of(&self, user_id: &str) -> Result<Vec<Workspace>, ControlError> {
        let rows = sqlx::query(
            "SELECT w.id, w.name, w.created_at FROM workspaces w JOIN memberships m ON m.workspace_id = w.id \
             WHERE m.user_id = $1 ORDER BY w.name",
        )
        .bind(user_id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(workspace).collect()
    }

    /// A workspace by id, if it exists.
    pub async fn workspace(&self, workspace_id: &str) -> Result<Option<Workspace>, ControlError> {
        let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(workspace).transpose()
    }

    // Members.

    pub async fn members(&self, workspace_id: &str) -> Result<Vec<Member>, ControlError> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.email, m.role, m.sources FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 ORDER BY u.email",
        )
        .bind(workspace_id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(member).collect()
    }

    /// Adds (or changes) a member; a new user needs a password.
    pub async fn add_member(
        &self,
        actor: &Actor,
        workspace_id: &str,
        input: &NewMember,
    ) -> Result<Member, ControlError> {
        if input.role == Role::SourceCollaborator && input.sources.is_empty() {
            return Err(ControlError::invalid(
                "sources",
                "a source collaborator needs at least one source",
            ));
        }
        let email = input.email.trim().to_ascii_lowercase();
        let known = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.db.pool)
            .await?;
        let user_id = match (known, &input.password) {
            (Some(row), _) => row.try_get::<String, _>("id")?,
            (None, Some(password)) => self.create_user(actor, &email, Password::Plain(password)).await?,
            (None, None) => return Err(ControlError::invalid("password", "a new user needs one")),
        };
        for source in &input.sources {
            self.source(workspace_id, source).await?;
        }
        let (actor, ws, role, sources) = (
            actor.clone(),
            workspace_id.to_string(),
            input.role,
            serde_json::to_string(&input.sources).unwrap_or_else(|_| "[]".into()),
        );
        let id = user_id.clone();
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let before = sqlx::query(
                    "SELECT m.user_id, u.email, m.role, m.sources FROM memberships m JOIN users u ON u.id = m.user_id \
                     WHERE m.workspace_id = $1 AND m.user_id = $2",
                )
                .bind(&ws)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| member(&row))
                .transpose()?;
                if before.as_ref().is_some_and(|m| m.role == Role::Owner) && role != Role::Owner {
                    ensure_another_owner(tx, &ws, &id).await?;
                }
                sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                    .bind(&ws)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO memberships (workspace_id, user_id, role, sources) VALUES ($1, $2, $3, $4)")
                    .bind(&ws)
                    .bind(&id)
                    .bind(role.as_str())
                    .bind(&sources)
                    .execute(&mut *tx)
                    .await?;
                let after = json!({"user_id": id, "role": role, "sources": serde_json::from_str::<Value>(&sources).unwrap_or_default()});
                let before = before.map_or(Value::Null, |m| json!(m));
                audit::append(tx, &key, &ws, &actor, "member.set", &email, &before, &after).await
            })
        })
        .await?;
        self.members(workspace_id)
            .await?
            .into_iter()
            .find(|m| m.user_id == user_id)
            .ok_or_else(|| ControlError::NotFound(format!("member {user_id}")))
    }

    pub async fn remove_member(&self, actor: &Actor, workspace_id: &str, user_id: &str) -> Result<(), ControlError> {
        let before = self
            .members(workspace_id)
            .await?
            .into_iter()
            .find(|m| m.user_id == user_id)
            .ok_or_else(|| ControlError::NotFound(format!("member {user_id}")))?;
        let (actor, ws, id) = (actor.clone(), workspace_id.to_string(), user_id.to_string());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                if before.role == Role::Owner {
                    ensure_another_owner(tx, &ws, &id).await?;
                }
                sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                    .bind(&ws)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                audit::append(
                    tx,
                    &key,
                    &ws,
                    &actor,
                    "member.remove",
                    &before.email,
                    &json!(before),
                    &Value::Null,
                )
                .await
            })
        })
        .await
    }

    // Sources.

    /// A webhook source's settings checked as ingest runs them, as stored: the JSON
    /// without the secret, and the secret sealed (bound to the source).
    fn webhook_columns(
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
        switchyard_ingest::webhooks::check(config).map_err(|e| ControlError::invalid("webhook", e))?;
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
    fn webhook_config(&self, row: &AnyRow, id: &str) -> Result<WebhookSourceConfig, ControlError> {
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
    fn opened_webhook(&self, row: &AnyRow) -> Result<Option<WebhookSourceConfig>, ControlError> {
        let text: Option<String> = row.try_get("webhook")?;
        if text.is_none() {
            return Ok(None);
        }
        let id: String = row.try_get("id")?;
        self.webhook_config(row, &id).map(Some)
    }

    /// The workspace's sources, or the one named `only`.
    async fn source_views(&self, workspace_id: &str, only: Option<&str>) -> Result<Vec<SourceView>, ControlError> {
        self.source_rows(workspace_id, only)
            .await?
            .iter()
            .map(|row| source_view(&self.sealer, row))
            .collect()
    }

    /// The rows of the workspace's sources (or the one named `only`), with their count
    /// of working write keys as `active`.
    async fn source_rows(&self, workspace_id: &str, only: Option<&str>) -> Result<Vec<AnyRow>, ControlError> {
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
                audit::append(tx, &key, &ws, &actor, "source.create", &id, &Value::Null, &after).await
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
                audit::append(tx, &key, &ws, &actor, "source.update", &id, &before_json, &after).await
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
                    "source.delete",
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
                audit::append(tx, &key, &ws, &actor, "source.rotate_write_key", &id, &Value::Null, &after).await
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

    // Destinations.

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

    async fn destination_row(&self, workspace_id: &str, id: &str) -> Result<AnyRow, ControlError> {
        sqlx::query("SELECT * FROM destinations WHERE workspace_id = $1 AND id = $2")
            .bind(workspace_id)
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("destination {id}")))
    }

    /// A destination's view and its credentials, opened once.
    fn destination_parts(&self, row: &AnyRow) -> Result<(DestinationView, Map<String, Value>), ControlError> {
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

    fn credentials(&self, row: &AnyRow, id: &str) -> Result<Map<String, Value>, ControlError> {
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

    async fn source_ids(&self, workspace_id: &str) -> Result<Vec<String>, ControlError> {
        Ok(self.sources(workspace_id).await?.into_iter().map(|s| s.id).collect())
    }

    /// Checks the whole destination as the router would run it, then stores it.
    async fn put_destination(
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
                    (None, None) => "destination.create",
                    (Some(_), _) => "destination.update",
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
                    "destination.delete",
                    &id,
                    &json!(before),
                    &Value::Null,
                )
                .await
            })
        })
        .await
    }

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

    /// Walks the whole audit chain under this master key's audit key.
    pub async fn verify_audit(&self) -> Result<audit::AuditReport, ControlError> {
        audit::verify(&self.db, &self.sealer.audit_key()).await
    }

    pub async fn audit(&self, workspace_id: &str, limit: i64) -> Result<Vec<AuditEntry>, ControlError> {
        audit::entries(&self.db, workspace_id, limit.clamp(1, 1000)).await
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

/// Refuses to leave a workspace without an owner.
async fn ensure_another_owner(tx: &mut AnyConnection, workspace_id: &str, leaving: &str) -> Result<(), ControlError> {
    let others =
        sqlx::query("SELECT user_id FROM memberships WHERE workspace_id = $1 AND role = 'owner' AND user_id <> $2")
            .bind(workspace_id)
            .bind(leaving)
            .fetch_all(&mut *tx)
            .await?;
    if others.is_empty() {
        return Err(ControlError::invalid("role", "a workspace keeps at least one owner"));
    }
    Ok(())
}

fn workspace(row: &AnyRow) -> Result<Workspace, ControlError> {
    Ok(Workspace {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn member(row: &AnyRow) -> Result<Member, ControlError> {
    let role: String = row.try_get("role")?;
    Ok(Member {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| ControlError::Corrupt(format!("role {role}")))?,
        sources: strings(json_text(row, "sources")?),
    })
}

fn source_view(sealer: &Sealer, row: &AnyRow) -> Result<SourceView, ControlError> {
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
fn webhook_view(stored: Option<&str>, has_secret: bool) -> Option<Value> {
    let mut view: Value = serde_json::from_str(stored?).ok()?;
    if has_secret && let Some(object) = view.as_object_mut() {
        object.insert("secret".into(), Value::from(REDACTED));
    }
    Some(view)
}

fn check_source_settings(settings: &SourceSettings) -> Result<(), ControlError> {
    if settings.rate_limit_events_per_sec == Some(0) {
        return Err(ControlError::invalid(
            "settings.rate_limit_events_per_sec",
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// Compiles a transform chain, so a bad one is refused now, not at the router.
fn check_transforms(field: &str, transforms: &[Value]) -> Result<(), ControlError> {
    let configs: Vec<TransformConfig> = serde_json::from_value(Value::Array(transforms.to_vec()))
        .map_err(|e| ControlError::invalid(field, e.to_string()))?;
    Transform::compile(&configs).map_err(|e| ControlError::invalid(field, e.to_string()))?;
    Ok(())
}

/// The settings that say where a destination of `kind` connects.
fn endpoint_settings(kind: &str) -> &'static [&'static str] {
    match kind {
        "webhook" | "postgres_warehouse" => &["url"],
        "kafka" => &["brokers"],
        "object_storage_export" => &["bucket", "endpoint", "region"],
        _ => &[],
    }
}

/// The endpoint settings that differ between `before` and `after`, as `settings.<name>`.
fn moved_endpoint(kind: &str, before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    endpoint_settings(kind)
        .iter()
        .filter(|name| before.get(**name) != after.get(**name))
        .map(|name| format!("settings.{name}"))
        .collect()
}

/// A stored destination as the router runs it.
fn runnable(view: &DestinationView, credentials: &Map<String, Value>) -> Result<DestinationConfig, ControlError> {
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
fn merge_credentials(
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
fn build_destination(
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
