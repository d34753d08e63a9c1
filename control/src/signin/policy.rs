//! Each workspace's sign-in policy (owners need a second factor; SSO only), and the
//! access a token may use under it.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditAction};
use crate::model::*;
use crate::roles::Access;
use crate::store::{json_text, strings};
use crate::{Control, ControlError};

use super::*;

impl Control {
    /// workspace's policy may refuse the way the session was obtained.
    pub async fn caller_access(
        &self,
        principal: &Principal,
        workspace_id: &str,
    ) -> Result<Result<Access, Refusal>, ControlError> {
        // Tokens made before scopes existed carry none and reach every workspace of their
        // user until they expire (90 days by default); every new API token is scoped.
        if principal
            .token
            .workspace_id
            .as_deref()
            .is_some_and(|scope| scope != workspace_id)
        {
            return Ok(Err(Refusal::NotFound));
        }
        let row = sqlx::query(
            "SELECT m.role AS role, m.sources AS sources, w.require_mfa AS require_mfa, w.password_login AS password_login \
             FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE m.workspace_id = $1 AND m.user_id = $2",
        )
        .bind(workspace_id)
        .bind(&principal.user_id)
        .fetch_optional(&self.db.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Err(Refusal::NotFound));
        };
        let role: String = row.try_get("role")?;
        let member = Role::parse(&role).ok_or_else(|| ControlError::Corrupt(format!("role {role}")))?;
        let role = match principal.token.role {
            Some(cap) if cap.rank() < member.rank() && member != Role::SourceCollaborator => cap,
            _ => member,
        };
        let policy = policy(&row)?;
        if !policy.password_login && principal.token.method == "password" {
            return Ok(Err(Refusal::SsoRequired));
        }
        if policy.require_mfa && role == Role::Owner && !principal.token.mfa {
            return Ok(Err(Refusal::MfaRequired));
        }
        Ok(Ok(Access {
            role,
            sources: strings(json_text(&row, "sources")?),
        }))
    }

    pub async fn workspace_policy(&self, workspace_id: &str) -> Result<WorkspacePolicy, ControlError> {
        let row = sqlx::query("SELECT require_mfa, password_login FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("workspace {workspace_id}")))?;
        policy(&row)
    }

    /// Changes the policy (owners only; checked by the caller). `sso_available`: some
    /// SSO provider signs users into this workspace, without which password sign-in
    /// can't be switched off (nobody could get in). Audited.
    pub async fn set_workspace_policy(
        &self,
        actor: &Actor,
        workspace_id: &str,
        patch: &WorkspacePolicyPatch,
        sso_available: bool,
    ) -> Result<WorkspacePolicy, ControlError> {
        let before = self.workspace_policy(workspace_id).await?;
        let after = WorkspacePolicy {
            require_mfa: patch.require_mfa.unwrap_or(before.require_mfa),
            password_login: patch.password_login.unwrap_or(before.password_login),
        };
        if !after.password_login && !sso_available {
            return Err(ControlError::invalid(
                "password_login",
                "no SSO provider signs users into this workspace; configure [[control.sso]] first",
            ));
        }
        let (actor, workspace) = (actor.clone(), workspace_id.to_string());
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE workspaces SET require_mfa = $1, password_login = $2 WHERE id = $3")
                    .bind(i64::from(after.require_mfa))
                    .bind(i64::from(after.password_login))
                    .bind(&workspace)
                    .execute(&mut *tx)
                    .await?;
                let (before, after_json) = (json!(before), json!(after));
                audit::append(
                    tx,
                    &key,
                    &workspace,
                    &actor,
                    AuditAction::WorkspacePolicy,
                    &workspace,
                    &before,
                    &after_json,
                )
                .await
            })
        })
        .await?;
        Ok(after)
    }
}

fn policy(row: &AnyRow) -> Result<WorkspacePolicy, ControlError> {
    Ok(WorkspacePolicy {
        require_mfa: row.try_get::<i64, _>("require_mfa")? != 0,
        password_login: row.try_get::<i64, _>("password_login")? != 0,
    })
}
