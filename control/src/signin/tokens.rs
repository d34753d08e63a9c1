//! Sessions and scoped API tokens: issued, authenticated, listed and revoked by id.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditAction};
use crate::model::*;
use crate::secrets::{digest, new_secret};
use crate::{Control, ControlError, now_ms};

use super::*;

const API_TOKEN_DEFAULT_MS: i64 = 90 * 24 * 3600 * 1000;

/// `digest` prefix shown as a token's id.
fn token_id(digest: &str) -> String {
    digest.chars().take(16).collect()
}

impl Control {
    /// to its workspace's log (`api_token.create`).
    pub(crate) async fn issue_token(
        &self,
        actor: &Actor,
        user_id: &str,
        kind: &str,
        name: &str,
        lifetime_ms: i64,
        scope: &TokenScope,
    ) -> Result<Session, ControlError> {
        let token = new_secret("sy_");
        let token_digest = digest(&token);
        let expires_at = now_ms() + lifetime_ms;
        let session = Session {
            id: token_id(&token_digest),
            csrf_token: (kind == "session").then(|| csrf_token(&token)),
            token,
            expires_at,
        };
        let (actor, user_id, kind, name, scope) = (
            actor.clone(),
            user_id.to_string(),
            kind.to_string(),
            name.to_string(),
            scope.clone(),
        );
        let id = session.id.clone();
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tokens (digest, user_id, kind, name, created_at, expires_at, method, mfa, workspace_id, role) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&token_digest)
                .bind(&user_id)
                .bind(&kind)
                .bind(&name)
                .bind(now_ms())
                .bind(expires_at)
                .bind(&scope.method)
                .bind(i64::from(scope.mfa))
                .bind(scope.workspace_id.as_deref())
                .bind(scope.role.map(Role::as_str))
                .execute(&mut *tx)
                .await?;
                match (kind.as_str(), &scope.workspace_id) {
                    ("api", Some(workspace)) => {
                        let role = scope.role.map(Role::as_str);
                        let after = json!({"id": id, "name": name, "role": role, "expires_at": expires_at});
                        audit::append(tx, &key, workspace, &actor, AuditAction::ApiTokenCreate, &name, &Value::Null, &after)
                            .await
                    }
                    _ => {
                        let after = json!({"session": id, "method": scope.method, "mfa": scope.mfa,
                                           "workspace": scope.workspace_id});
                        audit_for_user(tx, &key, &user_id, &actor, AuditAction::UserLogin, &actor.email, &after).await
                    }
                }
            })
        })
        .await?;
        Ok(session)
    }

    /// A token for scripts, scoped to one workspace and at most the creator's role
    /// there; made from a sign-in session only (a token can't mint tokens). Audited in
    /// that workspace.
    pub async fn create_api_token(
        &self,
        actor: &Actor,
        principal: &Principal,
        input: &NewApiToken,
    ) -> Result<Session, ControlError> {
        if input.name.trim().is_empty() {
            return Err(ControlError::invalid("name", "must not be empty"));
        }
        if principal.token.kind != "session" {
            return Err(ControlError::invalid(
                "token",
                "API tokens are made from a sign-in session, not from another token",
            ));
        }
        let access = self
            .caller_access(principal, &input.workspace)
            .await?
            .map_err(|_| ControlError::NotFound(format!("workspace {}", input.workspace)))?;
        let role = input.role.unwrap_or(access.role);
        // A collaborator's reach is its list of sources: its tokens keep exactly that role,
        // and only a collaborator has such a list to give a collaborator token.
        let mismatched = (access.role == Role::SourceCollaborator) != (role == Role::SourceCollaborator);
        if role.rank() > access.role.rank() || mismatched {
            return Err(ControlError::invalid(
                "role",
                format!("above your role in the workspace ({})", access.role.as_str()),
            ));
        }
        let lifetime = input
            .expires_in_secs
            .map_or(API_TOKEN_DEFAULT_MS, |secs| (secs.min(10 * 365 * 86_400) * 1000) as i64);
        let scope = TokenScope {
            method: principal.token.method.clone(),
            mfa: principal.token.mfa,
            workspace_id: Some(input.workspace.clone()),
            role: Some(role),
        };
        self.issue_token(actor, &principal.user_id, "api", input.name.trim(), lifetime, &scope)
            .await
    }

    /// The user a token belongs to and what the token says, if it is valid now.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, ControlError> {
        let row = sqlx::query(
            "SELECT users.id AS id, users.email AS email, tokens.digest AS digest, tokens.kind AS kind, \
             tokens.method AS method, tokens.mfa AS mfa, tokens.workspace_id AS workspace_id, tokens.role AS role, \
             tokens.created_at AS created_at \
             FROM tokens JOIN users ON users.id = tokens.user_id \
             WHERE tokens.digest = $1 AND (tokens.expires_at IS NULL OR tokens.expires_at > $2)",
        )
        .bind(digest(token))
        .bind(now_ms())
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|row| {
            let role: Option<String> = row.try_get("role")?;
            Ok(Principal {
                user_id: row.try_get("id")?,
                email: row.try_get("email")?,
                token: TokenInfo {
                    id: token_id(&row.try_get::<String, _>("digest")?),
                    kind: row.try_get("kind")?,
                    method: row.try_get("method")?,
                    mfa: row.try_get::<i64, _>("mfa")? != 0,
                    workspace_id: row.try_get("workspace_id")?,
                    role: role.as_deref().and_then(Role::parse),
                    created_at: row.try_get("created_at")?,
                },
            })
        })
        .transpose()
    }

    /// The caller's own tokens that still work.
    pub async fn tokens_of(&self, user_id: &str) -> Result<Vec<TokenView>, ControlError> {
        let rows = sqlx::query(
            "SELECT digest, kind, name, method, workspace_id, role, created_at, expires_at FROM tokens \
             WHERE user_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(token_view).collect()
    }

    /// Revokes one of the caller's tokens (audited for API tokens, in their workspace).
    pub async fn revoke_token(&self, actor: &Actor, user_id: &str, id: &str) -> Result<(), ControlError> {
        let (actor, user, id) = (actor.clone(), user_id.to_string(), id.to_string());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT digest, kind, name, method, workspace_id, role, created_at, expires_at FROM tokens \
                     WHERE user_id = $1 AND substr(digest, 1, 16) = $2",
                )
                .bind(&user)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| ControlError::NotFound(format!("token {id}")))?;
                let view = token_view(&row)?;
                sqlx::query("DELETE FROM tokens WHERE digest = $1")
                    .bind(row.try_get::<String, _>("digest")?)
                    .execute(&mut *tx)
                    .await?;
                if view.kind == "api" {
                    let workspace = view.workspace_id.clone().unwrap_or_default();
                    let before = json!({"id": view.id, "name": view.name});
                    audit::append(
                        tx,
                        &key,
                        &workspace,
                        &actor,
                        AuditAction::ApiTokenRevoke,
                        &view.name,
                        &before,
                        &Value::Null,
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }
}

/// What a new token carries besides its owner.
#[derive(Debug, Clone)]
pub struct TokenScope {
    pub method: String,
    pub mfa: bool,
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
}

fn token_view(row: &AnyRow) -> Result<TokenView, ControlError> {
    let role: Option<String> = row.try_get("role")?;
    Ok(TokenView {
        id: token_id(&row.try_get::<String, _>("digest")?),
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        method: row.try_get("method")?,
        workspace_id: row.try_get("workspace_id")?,
        role: role.as_deref().and_then(Role::parse),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}
