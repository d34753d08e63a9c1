//! Users, workspaces and their members.

use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::*;
use crate::audit::{self, AuditAction};
use crate::roles::Access;
use crate::secrets::{hash_password, is_password_hash};
use crate::{ControlError, now_ms};

impl Control {
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
                audit::append(
                    tx,
                    &key,
                    "",
                    &actor,
                    AuditAction::UserCreate,
                    &stored_email,
                    &Value::Null,
                    &after,
                )
                .await
            })
        })
        .await?;
        Ok(id)
    }

    /// A workspace with `owner_user_id` as its owner, under a new random id.
    pub async fn create_workspace(
        &self,
        actor: &Actor,
        name: &str,
        owner_user_id: &str,
    ) -> Result<Workspace, ControlError> {
        self.create_workspace_with_id(actor, &uuid::Uuid::new_v4().simple().to_string(), name, owner_user_id)
            .await
    }

    /// A workspace under an id the operator chose (a deployment names it in `[control]
    /// workspace` and in its `apply` file before the database exists): lowercase letters,
    /// digits and dashes, so it is safe in every URL and label.
    pub async fn create_workspace_with_id(
        &self,
        actor: &Actor,
        id: &str,
        name: &str,
        owner_user_id: &str,
    ) -> Result<Workspace, ControlError> {
        if name.trim().is_empty() {
            return Err(ControlError::invalid("name", "must not be empty"));
        }
        let well_formed = (1..=64).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !well_formed {
            return Err(ControlError::invalid(
                "workspace_id",
                "1 to 64 lowercase letters, digits or dashes, starting with a letter or digit",
            ));
        }
        if self.workspace(id).await?.is_some() {
            return Err(ControlError::Conflict(format!("workspace {id}")));
        }
        let workspace = Workspace {
            id: id.to_string(),
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
                    AuditAction::WorkspaceCreate,
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

    /// The id of the user signing in as `email`, if there is one.
    pub async fn user_id(&self, email: &str) -> Result<Option<String>, ControlError> {
        let row = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(email.trim().to_ascii_lowercase())
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.map(|row| row.try_get("id")).transpose()?)
    }

    /// A workspace by id, if it exists.
    pub async fn workspace(&self, workspace_id: &str) -> Result<Option<Workspace>, ControlError> {
        let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(workspace).transpose()
    }

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
                audit::append(tx, &key, &ws, &actor, AuditAction::MemberSet, &email, &before, &after).await
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
                    AuditAction::MemberRemove,
                    &before.email,
                    &json!(before),
                    &Value::Null,
                )
                .await
            })
        })
        .await
    }
}

/// Refuses to leave a workspace without an owner.
pub(super) async fn ensure_another_owner(
    tx: &mut AnyConnection,
    workspace_id: &str,
    leaving: &str,
) -> Result<(), ControlError> {
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

pub(super) fn workspace(row: &AnyRow) -> Result<Workspace, ControlError> {
    Ok(Workspace {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn member(row: &AnyRow) -> Result<Member, ControlError> {
    let role: String = row.try_get("role")?;
    Ok(Member {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or_else(|| ControlError::Corrupt(format!("role {role}")))?,
        sources: strings(json_text(row, "sources")?),
    })
}
