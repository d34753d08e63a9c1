//! The TOTP second factor (RFC 6238) and its hashed recovery codes.

use rand::Rng;
use serde_json::json;
use sqlx::Row;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use crate::audit::AuditAction;
use crate::model::*;
use crate::secrets::digest;
use crate::{Control, ControlError, now_ms};

use super::password::LoginRow;
use super::*;

const TOTP_STEP_SECS: u64 = 30;
const RECOVERY_CODES: usize = 10;

pub(super) fn totp(secret: Vec<u8>) -> Result<TOTP, ControlError> {
    TOTP::new(Algorithm::SHA1, 6, 1, TOTP_STEP_SECS, secret).map_err(|e| ControlError::Crypto(e.to_string()))
}

/// Recovery codes as typed: case and dashes don't matter.
fn recovery_digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    digest(&format!("switchyard-recovery:{normal}"))
}

/// 80 random bits as four groups of four base32 characters.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rng();
    let chars: Vec<char> = (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

impl Control {
    /// A code for the current time step (or one either side, for clock drift) that is
    /// newer than the last one accepted, so a code can't be replayed.
    pub(super) async fn accept_totp(&self, user: &LoginRow, code: &str) -> Result<bool, ControlError> {
        let Some(sealed) = &user.totp_secret else {
            return Ok(false);
        };
        let totp = totp(self.sealer.open(sealed, &user.user_id)?)?;
        let now_step = unix_secs() / TOTP_STEP_SECS;
        let code = code.trim();
        let matched = [now_step.saturating_sub(1), now_step, now_step + 1]
            .into_iter()
            .filter(|step| i64::try_from(*step).unwrap_or(i64::MAX) > user.totp_last_step)
            .find(|step| bool::from(totp.generate(step * TOTP_STEP_SECS).as_bytes().ct_eq(code.as_bytes())));
        let Some(step) = matched else {
            return Ok(false);
        };
        // Conditional, so two sign-ins racing with one code can't both pass.
        let updated = sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(i64::try_from(step).unwrap_or(i64::MAX))
            .bind(&user.user_id)
            .execute(&self.db.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    pub(super) async fn use_recovery_code(
        &self,
        user_id: &str,
        email: &str,
        remote: &str,
        code: &str,
    ) -> Result<bool, ControlError> {
        let (user, code_digest) = (user_id.to_string(), recovery_digest(code));
        let actor = Actor {
            email: email.to_string(),
            remote: remote.to_string(),
        };
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                let used = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1 WHERE digest = $2 AND user_id = $3 AND used_at IS NULL",
                )
                .bind(now_ms())
                .bind(&code_digest)
                .bind(&user)
                .execute(&mut *tx)
                .await?;
                if used.rows_affected() != 1 {
                    return Ok(false);
                }
                let left: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
                        .bind(&user)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("n")?;
                let after = json!({"recovery_codes_left": left});
                audit_for_user(
                    tx,
                    &key,
                    &user,
                    &actor,
                    AuditAction::UserRecoveryCodeUsed,
                    &actor.email,
                    &after,
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }

    // Second factor.

    /// Starts TOTP enrolment: a new secret, kept sealed until a code confirms it.
    /// Refused while one is already confirmed.
    pub async fn start_mfa(&self, principal: &Principal) -> Result<MfaEnrolment, ControlError> {
        let enabled: i64 = sqlx::query("SELECT totp_enabled_at FROM users WHERE id = $1")
            .bind(&principal.user_id)
            .fetch_one(&self.db.pool)
            .await?
            .try_get("totp_enabled_at")?;
        if enabled > 0 {
            return Err(ControlError::Conflict("two-factor sign-in for this account".into()));
        }
        let mut secret = vec![0u8; 20];
        rand::rng().fill(secret.as_mut_slice());
        let sealed = self.sealer.seal(&secret, &principal.user_id)?;
        sqlx::query("UPDATE users SET totp_secret = $1, totp_last_step = 0 WHERE id = $2")
            .bind(sealed)
            .bind(&principal.user_id)
            .execute(&self.db.pool)
            .await?;
        let base32 = totp(secret)?.get_secret_base32();
        let account: String = url::form_urlencoded::byte_serialize(principal.email.as_bytes()).collect();
        Ok(MfaEnrolment {
            otpauth_url: format!(
                "otpauth://totp/Switchyard:{account}?secret={base32}&issuer=Switchyard&algorithm=SHA1&digits=6&period={TOTP_STEP_SECS}"
            ),
            secret: base32,
        })
    }

    /// Confirms enrolment with a code from the app: turns the factor on, counts the
    /// current session as verified with it, and returns fresh recovery codes (only
    /// their digests are kept). Audited.
    pub async fn confirm_mfa(
        &self,
        actor: &Actor,
        principal: &Principal,
        code: &str,
    ) -> Result<RecoveryCodes, ControlError> {
        let user = self
            .login_row(&principal.email)
            .await?
            .ok_or_else(|| ControlError::NotFound("user".into()))?;
        if user.totp_enabled {
            return Err(ControlError::Conflict("two-factor sign-in for this account".into()));
        }
        if user.totp_secret.is_none() {
            return Err(ControlError::invalid("code", "start enrolment first: POST /v1/me/mfa"));
        }
        if !self.accept_totp(&user, code).await? {
            return Err(ControlError::invalid(
                "code",
                "not the current code of the enrolled secret",
            ));
        }
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let digests: Vec<String> = codes.iter().map(|c| recovery_digest(c)).collect();
        let (actor, user_id, email, token) = (
            actor.clone(),
            principal.user_id.clone(),
            principal.email.clone(),
            principal.token.id.clone(),
        );
        let key = self.sealer.audit_key();
        self.change(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE users SET totp_enabled_at = $1 WHERE id = $2")
                    .bind(now_ms())
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(&user_id)
                    .execute(&mut *tx)
                    .await?;
                for code_digest in &digests {
                    sqlx::query("INSERT INTO recovery_codes (digest, user_id, used_at) VALUES ($1, $2, NULL)")
                        .bind(code_digest)
                        .bind(&user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE tokens SET mfa = 1 WHERE user_id = $1 AND substr(digest, 1, 16) = $2")
                    .bind(&user_id)
                    .bind(&token)
                    .execute(&mut *tx)
                    .await?;
                audit_for_user(
                    tx,
                    &key,
                    &user_id,
                    &actor,
                    AuditAction::UserMfaEnable,
                    &email,
                    &json!({"email": email}),
                )
                .await
            })
        })
        .await?;
        Ok(RecoveryCodes { recovery_codes: codes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_random_and_match_however_typed() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_ne!(code, new_recovery_code());
        assert_eq!(
            recovery_digest(&code),
            recovery_digest(&code.to_uppercase().replace('-', " "))
        );
    }

    #[test]
    fn totp_codes_match_the_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", 8 digits at T=59 is
        // 94287082; the 6-digit code is its last six digits.
        let totp = totp(b"12345678901234567890".to_vec()).expect("totp");
        assert_eq!(totp.generate(59), "287082");
        assert_eq!(totp.generate(1_111_111_109), "081804");
    }
}
