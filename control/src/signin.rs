//! Signing in and what a token may do: password login with lockout after repeated
//! failures, the TOTP second factor (RFC 6238) with hashed recovery codes, sessions and
//! scoped API tokens (listed and revoked by id), and each workspace's sign-in policy
//! (owners need a second factor; SSO only).

use rand::Rng;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use crate::audit::{self, AuditAction};
use crate::model::*;
use crate::roles::Access;
use crate::secrets::{digest, hash_password, new_secret, verify_password};
use crate::store::{json_text, strings};
use crate::{Control, ControlError, now_ms};

/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
const API_TOKEN_DEFAULT_MS: i64 = 90 * 24 * 3600 * 1000;
/// Failed sign-ins in a row (wrong password or code) that lock an account...
pub const MAX_FAILED_LOGINS: i64 = 5;
/// ...for this long. A success resets the count.
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;
const TOTP_STEP_SECS: u64 = 30;
const RECOVERY_CODES: usize = 10;

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

/// `digest` prefix shown as a token's id.
fn token_id(digest: &str) -> String {
    digest.chars().take(16).collect()
}

fn totp(secret: Vec<u8>) -> Result<TOTP, ControlError> {
    TOTP::new(Algorithm::SHA1, 6, 1, TOTP_STEP_SECS, secret).map_err(|e| ControlError::Crypto(e.to_string()))
}

fn unix_secs() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or_default()
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

struct LoginRow {
    user_id: String,
    password_hash: Option<String>,
    failed_logins: i64,
    locked_until: i64,
    totp_enabled: bool,
    totp_secret: Option<Vec<u8>>,
    totp_last_step: i64,
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

    async fn login_row(&self, email: &str) -> Result<Option<LoginRow>, ControlError> {
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

    /// A code for the current time step (or one either side, for clock drift) that is
    /// newer than the last one accepted, so a code can't be replayed.
    async fn accept_totp(&self, user: &LoginRow, code: &str) -> Result<bool, ControlError> {
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

    async fn use_recovery_code(
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

    // Tokens.

    /// A new session or API token, and its audit row, in one transaction: a session is
    /// a sign-in (`user.login`, in every workspace of the user), an API token is written
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

    // Workspace policy.

    /// A member's access as a token may use it: the token's scope caps the role, and the
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

/// What a new token carries besides its owner.
#[derive(Debug, Clone)]
pub struct TokenScope {
    pub method: String,
    pub mfa: bool,
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
}

/// A change to an account, written to the audit log of every workspace it belongs to
/// (where that workspace's owners see it), or to the global one when none.
async fn audit_for_user(
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

fn policy(row: &AnyRow) -> Result<WorkspacePolicy, ControlError> {
    Ok(WorkspacePolicy {
        require_mfa: row.try_get::<i64, _>("require_mfa")? != 0,
        password_login: row.try_get::<i64, _>("password_login")? != 0,
    })
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
    fn the_csrf_token_is_bound_to_its_session() {
        assert_eq!(csrf_token("sy_a"), csrf_token("sy_a"));
        assert_ne!(csrf_token("sy_a"), csrf_token("sy_b"));
        assert_ne!(csrf_token("sy_a"), digest("sy_a"), "not the token's stored digest");
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
