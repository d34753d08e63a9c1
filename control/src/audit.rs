//! The audit log: one row per change (who, what, when, from where, the state before
//! and after, never a secret), appended in the same transaction as the change. Rows
//! are numbered from 1 without gaps and each holds an HMAC-SHA256 of its content and of
//! the row before, under a key derived from the master key, so [`verify`] finds an
//! edited, deleted, reordered or forged row even when whoever changed it could write to
//! the database (without the master key they can't compute a row's HMAC). Rows written
//! before the chain was keyed (plain SHA-256) fail verification and are named as such.
//! (Deleting the newest rows leaves a shorter valid chain: keep backups, or ship the
//! log out.)

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use subtle::ConstantTimeEq;

use crate::model::{Actor, AuditEntry};
use crate::{ControlError, Db, now_ms};

/// The audit chain's key; see [`crate::secrets::Sealer::audit_key`].
#[derive(Clone, Copy)]
pub struct AuditKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<key>)")
    }
}

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The row's HMAC under `key`, or with `None` the unkeyed SHA-256 rows had before.
#[allow(clippy::too_many_arguments)]
fn chain_hash(
    key: Option<&AuditKey>,
    prev_hash: &str,
    seq: i64,
    workspace_id: &str,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    remote: &str,
    before: &str,
    after: &str,
) -> String {
    let content = serde_json::json!([
        prev_hash,
        seq,
        workspace_id,
        at,
        actor,
        action,
        target,
        remote,
        before,
        after
    ]);
    let text = content.to_string();
    match key {
        Some(key) => {
            // HMAC takes keys of any length: this can't fail.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else {
                return String::new();
            };
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        None => hex::encode(Sha256::digest(text.as_bytes())),
    }
}

/// What an audit row records. Stored as its name (`as_str`), which the hash chain
/// covers: a name never changes once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    UserCreate,
    UserLogin,
    UserLoginFailed,
    UserLockout,
    UserRecoveryCodeUsed,
    UserMfaEnable,
    UserSsoLink,
    ApiTokenCreate,
    ApiTokenRevoke,
    WorkspaceCreate,
    WorkspacePolicy,
    MemberSet,
    MemberRemove,
    MemberSsoRole,
    SourceCreate,
    SourceUpdate,
    SourceDelete,
    SourceRotateWriteKey,
    DestinationCreate,
    DestinationUpdate,
    DestinationDelete,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::UserCreate => "user.create",
            AuditAction::UserLogin => "user.login",
            AuditAction::UserLoginFailed => "user.login_failed",
            AuditAction::UserLockout => "user.lockout",
            AuditAction::UserRecoveryCodeUsed => "user.recovery_code_used",
            AuditAction::UserMfaEnable => "user.mfa_enable",
            AuditAction::UserSsoLink => "user.sso_link",
            AuditAction::ApiTokenCreate => "api_token.create",
            AuditAction::ApiTokenRevoke => "api_token.revoke",
            AuditAction::WorkspaceCreate => "workspace.create",
            AuditAction::WorkspacePolicy => "workspace.policy",
            AuditAction::MemberSet => "member.set",
            AuditAction::MemberRemove => "member.remove",
            AuditAction::MemberSsoRole => "member.sso_role",
            AuditAction::SourceCreate => "source.create",
            AuditAction::SourceUpdate => "source.update",
            AuditAction::SourceDelete => "source.delete",
            AuditAction::SourceRotateWriteKey => "source.rotate_write_key",
            AuditAction::DestinationCreate => "destination.create",
            AuditAction::DestinationUpdate => "destination.update",
            AuditAction::DestinationDelete => "destination.delete",
        }
    }
}

/// Appends a row; call inside the change's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn append(
    conn: &mut AnyConnection,
    key: &AuditKey,
    workspace_id: &str,
    actor: &Actor,
    action: AuditAction,
    target: &str,
    before: &Value,
    after: &Value,
) -> Result<(), ControlError> {
    let action = action.as_str();
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>("seq")? + 1, row.try_get::<String, _>("hash")?),
        None => (1, GENESIS.to_string()),
    };
    let at = now_ms();
    let (before, after) = (before.to_string(), after.to_string());
    let hash = chain_hash(
        Some(key),
        &prev_hash,
        seq,
        workspace_id,
        at,
        &actor.email,
        action,
        target,
        &actor.remote,
        &before,
        &after,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, workspace_id, at, actor, action, target, remote, before_state, after_state, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(seq)
    .bind(workspace_id)
    .bind(at)
    .bind(&actor.email)
    .bind(action)
    .bind(target)
    .bind(&actor.remote)
    .bind(&before)
    .bind(&after)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    tracing::info!(seq, workspace_id, actor = %actor.email, action, target, "audited");
    Ok(())
}

fn entry(row: &sqlx::any::AnyRow) -> Result<(String, AuditEntry), ControlError> {
    let json = |name: &str| -> Result<Value, ControlError> {
        let text: String = row.try_get(name)?;
        serde_json::from_str(&text).map_err(|e| ControlError::Corrupt(format!("audit {name}: {e}")))
    };
    Ok((
        row.try_get("workspace_id")?,
        AuditEntry {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            target: row.try_get("target")?,
            remote: row.try_get("remote")?,
            before: json("before_state")?,
            after: json("after_state")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        },
    ))
}

/// A workspace's newest rows, newest first.
pub async fn entries(db: &Db, workspace_id: &str, limit: i64) -> Result<Vec<AuditEntry>, ControlError> {
    let rows = sqlx::query("SELECT * FROM audit_log WHERE workspace_id = $1 ORDER BY seq DESC LIMIT $2")
        .bind(workspace_id)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|row| entry(row).map(|(_, entry)| entry)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub rows: usize,
    /// The first row that doesn't hold, and why.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

/// Walks the whole chain, checking each row's HMAC under `key`.
pub async fn verify(db: &Db, key: &AuditKey) -> Result<AuditReport, ControlError> {
    let rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq")
        .fetch_all(&db.pool)
        .await?;
    let mut report = AuditReport {
        rows: rows.len(),
        broken_at: None,
        reason: None,
    };
    let mut prev = GENESIS.to_string();
    for (index, row) in rows.iter().enumerate() {
        let (workspace_id, entry) = entry(row)?;
        let expected_seq = index as i64 + 1;
        let (before, after) = (
            row.try_get::<String, _>("before_state")?,
            row.try_get::<String, _>("after_state")?,
        );
        let hash_with = |key: Option<&AuditKey>| {
            chain_hash(
                key,
                &entry.prev_hash,
                entry.seq,
                &workspace_id,
                entry.at,
                &entry.actor,
                &entry.action,
                &entry.target,
                &entry.remote,
                &before,
                &after,
            )
        };
        let reason = if entry.seq != expected_seq {
            Some(format!("row {expected_seq} is missing (found {} next)", entry.seq))
        } else if entry.prev_hash != prev {
            Some("does not follow the row before it".to_string())
        } else if !bool::from(entry.hash.as_bytes().ct_eq(hash_with(Some(key)).as_bytes())) {
            if entry.hash == hash_with(None) {
                Some("it carries an unkeyed hash: written before the chain was keyed, or by someone without the master key".to_string())
            } else {
                Some("its content was changed after it was written, or under another master key".to_string())
            }
        } else {
            None
        };
        if let Some(reason) = reason {
            report.broken_at = Some(expected_seq);
            report.reason = Some(reason);
            return Ok(report);
        }
        prev = entry.hash;
    }
    Ok(report)
}
