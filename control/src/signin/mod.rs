//! Signing in and what a token may do: password login with lockout after repeated
//! failures, the TOTP second factor (RFC 6238) with hashed recovery codes, sessions and
//! scoped API tokens (listed and revoked by id), and each workspace's sign-in policy
//! (owners need a second factor; SSO only).
//!
//! By concern: `password.rs` (lockout), `mfa.rs` (TOTP and recovery codes), `tokens.rs`
//! (sessions and API tokens), `policy.rs` (workspace policy and token access).

mod mfa;
mod password;
mod policy;
mod tokens;

use serde_json::Value;
use sqlx::Row;

use crate::audit::{self, AuditAction};
use crate::model::*;
use crate::secrets::digest;
use crate::{ControlError, now_ms};

pub use tokens::TokenScope;

/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
/// Failed sign-ins in a row (wrong password or code) that lock an account...
pub const MAX_FAILED_LOGINS: i64 = 5;
/// ...for this long. A success resets the count.
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;

/// Why a token may not act in a workspace, beyond its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a member, or a token scoped to another workspace: told as "not found".
    NotFound,
    /// The workspace takes SSO sessions only.
    SsoRequired,
    /// An owner of a workspace that requires a second factor signed in without one.
    MfaRequired,
}

/// The CSRF token that goes with a session: derived from it, so nothing more is stored,
/// and only someone holding the session can know it.
pub fn csrf_token(session_token: &str) -> String {
    digest(&format!("switchyard-csrf:{session_token}"))
}

pub(super) fn unix_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or_default()
}

/// A change to an account, written to the audit log of every workspace it belongs to
/// (where that workspace's owners see it), or to the global one when none.
pub(super) async fn audit_for_user(
    tx: &mut sqlx::AnyConnection,
    key: &audit::AuditKey,
    user_id: &str,
    actor: &Actor,
    action: AuditAction,
    target: &str,
    after: &Value,
) -> Result<(), ControlError> {
    let workspaces: Vec<String> = sqlx::query("SELECT workspace_id FROM memberships WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get("workspace_id"))
        .collect::<Result<_, _>>()?;
    let targets = if workspaces.is_empty() {
        vec![String::new()]
    } else {
        workspaces
    };
    for workspace in targets {
        audit::append(&mut *tx, key, &workspace, actor, action, target, &Value::Null, after).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_is_bound_to_its_session() {
        assert_eq!(csrf_token("sy_a"), csrf_token("sy_a"));
        assert_ne!(csrf_token("sy_a"), csrf_token("sy_b"));
        assert_ne!(csrf_token("sy_a"), digest("sy_a"), "not the token's stored digest");
    }
}
