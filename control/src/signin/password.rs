//! Password sign-in, with lockout after repeated failures.

use serde_json::json;
use sqlx::Row;

use crate::audit::AuditAction;
use crate::model::*;
use crate::secrets::{hash_password, verify_password};
use crate::{Control, ControlError, now_ms};

use super::*;

pub(super) struct LoginRow {
    pub(super) user_id: String,
    pub(super) password_hash: Option<String>,
    pub(super) failed_logins: i64,
    pub(super) locked_until: i64,
    pub(super) totp_enabled: bool,
    pub(super) totp_secret: Option<Vec<u8>>,
    pub(super) totp_last_step: i64,
}

impl Control {
    /// Checks a password and opens a session (remote: "local").
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, ControlError> {
        let login = Login {
            email: email.to_string(),
            password: password.to_string(),
            otp: None,
            recovery_code: None,
        };
        self.sign_in(&login, "local").await
    }

    /// Checks a password (and the second factor of an account that has one) and opens a
    /// session. Five failures in a row lock the account for 15 minutes (audited); while
    /// locked, even the right password is refused. A bcrypt hash from an import is
    /// replaced by an argon2id one on the way.
    pub async fn sign_in(&self, login: &Login, remote: &str) -> Result<Session, ControlError> {
        let email = login.email.trim().to_ascii_lowercase();
        let Some(user) = self.login_row(&email).await? else {
            // The same work as a real check, so timing doesn't tell which emails exist.
            let _ = hash_password(&login.password);
            return Err(ControlError::BadLogin);
        };
        if user.locked_until > now_ms() {
            return Err(ControlError::Locked {
                until: user.locked_until,
            });
        }
        let (ok, rehash) = user
            .password_hash
            .as_deref()
            .map_or((false, false), |hash| verify_password(&login.password, hash));
        if !ok {
            return Err(self.failed_login(&user.user_id, &email, remote, "password").await?);
        }
        if user.totp_enabled {
            match (&login.otp, &login.recovery_code) {
                (None, None) => return Err(ControlError::MfaRequired),
                (Some(code), _) => {
                    if !self.accept_totp(&user, code).await? {
                        return Err(self.failed_login(&user.user_id, &email, remote, "otp").await?);
                    }
                }
                (None, Some(code)) => {
                    if !self.use_recovery_code(&user.user_id, &email, remote, code).await? {
                        return Err(self
                            .failed_login(&user.user_id, &email, remote, "recovery_code")
                            .await?);
                    }
                }
            }
        }
        if user.failed_logins > 0 {
            sqlx::query("UPDATE users SET failed_logins = 0 WHERE id = $1")
                .bind(&user.user_id)
                .execute(&self.db.pool)
                .await?;
        }
        if rehash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash_password(&login.password)?)
                .bind(&user.user_id)
                .execute(&self.db.pool)
                .await?;
        }
        let scope = TokenScope {
            method: "password".into(),
            mfa: user.totp_enabled,
            workspace_id: None,
            role: None,
        };
        let actor = Actor {
            email: email.clone(),
            remote: remote.to_string(),
        };
        self.issue_token(&actor, &user.user_id, "session", "", SESSION_MS, &scope)
            .await
    }

    pub(super) async fn login_row(&self, email: &str) -> Result<Option<LoginRow>, ControlError> {
        let row = sqlx::query(
            "SELECT id, password_hash, failed_logins, locked_until, totp_enabled_at, totp_secret, totp_last_step \
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|row| {
            Ok(LoginRow {
                user_id: row.try_get("id")?,
                password_hash: row.try_get("password_hash")?,
                failed_logins: row.try_get("failed_logins")?,
                locked_until: row.try_get("locked_until")?,
                totp_enabled: row.try_get::<i64, _>("totp_enabled_at")? > 0,
                totp_secret: row.try_get("totp_secret")?,
                totp_last_step: row.try_get("totp_last_step")?,
            })
        })
        .transpose()
    }

    /// Counts a failure; the one that reaches the limit locks the account and is
    /// written to the audit log of every workspace the user belongs to.
    async fn failed_login(
        &self,
        user_id: &str,
        email: &str,
        remote: &str,
        what: &str,
    ) -> Result<ControlError, ControlError> {
        tracing::warn!(%email, %remote, failed = what, "login refused");
        let (user, email, remote, what) = (
            user_id.to_string(),
            email.to_string(),
            remote.to_string(),
            what.to_string(),
        );
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let row = sqlx::query(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
                )
                .bind(&user)
                .fetch_one(&mut *tx)
                .await?;
                let failures: i64 = row.try_get("failed_logins")?;
                let actor = Actor {
                    email: email.clone(),
                    remote: remote.clone(),
                };
                let failed = json!({"email": email, "failed": what, "failed_logins": failures});
                audit_for_user(tx, &key, &user, &actor, AuditAction::UserLoginFailed, &email, &failed).await?;
                if failures < MAX_FAILED_LOGINS {
                    return Ok(ControlError::BadLogin);
                }
                let until = now_ms() + LOCKOUT_MS;
                sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                    .bind(until)
                    .bind(&user)
                    .execute(&mut *tx)
                    .await?;
                tracing::warn!(%email, %remote, until, "account locked after repeated failed logins");
                let actor = Actor {
                    email: email.clone(),
                    remote,
                };
                let after = json!({"email": email, "failed_logins": failures, "locked_until": until});
                audit_for_user(tx, &key, &user, &actor, AuditAction::UserLockout, &email, &after).await?;
                Ok(ControlError::Locked { until })
            })
        })
        .await
    }
}
