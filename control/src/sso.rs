//! Single sign-on through any OpenID Connect provider: the authorization code flow
//! with PKCE (`openidconnect`). `GET /v1/sso/<name>/login` sends the browser to the
//! provider with a fresh state, nonce and code challenge (kept in `sso_logins` for ten
//! minutes); the provider sends it back to `/v1/sso/<name>/callback`, where the code is
//! exchanged, the ID token verified (signature, issuer, audience, expiry, nonce), and the
//! user found by the provider's (issuer, subject), or created, and given the role its
//! provider groups map to in the configured workspace. Someone whose groups map to no
//! role (and no `default_role`) is refused. The provider's own second-factor policy
//! applies: an SSO session counts as verified with a second factor.
//!
//! A provider is trusted for its own workspace only. So an SSO session reaches only
//! that workspace, and a first SSO sign-in links an existing account by email only when
//! that account has neither a password nor a second factor (nothing to take over);
//! otherwise its user links the provider from a signed-in session
//! (`GET /v1/sso/<name>/link`). The login's `state` is bound to the browser that started
//! it by a short-lived cookie checked at the callback.

use std::collections::BTreeMap;

use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::Mutex;

use subtle::ConstantTimeEq;

use crate::audit::{self, AuditAction};
use crate::model::{Actor, Role, Session};
use crate::secrets::digest;
use crate::signin::{SESSION_MS, TokenScope};
use crate::{Control, ControlError, now_ms};

/// How long a login may take between the redirect and the callback.
const PENDING_MS: i64 = 10 * 60 * 1000;
/// Provider metadata and keys are fetched again after this long (key rotation).
const METADATA_MS: i64 = 3600 * 1000;

/// `[[control.sso]]`: one OpenID Connect provider and where its users land.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// In the paths: `/v1/sso/<name>/login`.
    pub name: String,
    /// The issuer; its `/.well-known/openid-configuration` is read.
    pub issuer_url: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// This server's `/v1/sso/<name>/callback` as the provider knows it.
    pub redirect_url: String,
    /// The workspace its users are signed into.
    pub workspace: String,
    /// The ID token claim holding the user's groups (a string or a list of strings).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// Group → role; the highest role any of the user's groups maps to wins.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The role of someone whose groups map to none; absent: such a user is refused.
    #[serde(default)]
    pub default_role: Option<Role>,
    /// Scopes asked for besides `openid email profile`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_role_claim() -> String {
    "groups".into()
}

impl std::fmt::Debug for SsoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoConfig")
            .field("name", &self.name)
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field("workspace", &self.workspace)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl SsoConfig {
    /// The role for these groups, if any.
    pub fn role_for(&self, groups: &[String]) -> Option<Role> {
        groups
            .iter()
            .filter_map(|group| self.roles.get(group).copied())
            .max_by_key(|role| role.rank())
            .or(self.default_role)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("no SSO provider named {0:?}")]
    UnknownProvider(String),
    #[error("the identity provider could not be used: {0}")]
    Provider(String),
    #[error("sign-in refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Control(#[from] ControlError),
}

/// The configured providers; discovery happens on first use and every hour after.
#[derive(Debug)]
pub struct Sso {
    providers: Vec<Provider>,
    http: openidconnect::reqwest::Client,
}

#[derive(Debug)]
struct Provider {
    config: SsoConfig,
    metadata: Mutex<Option<(i64, CoreProviderMetadata)>>,
}

impl Sso {
    /// Checks each provider's settings (names, URLs) before the server starts.
    pub fn new(configs: &[SsoConfig]) -> Result<Sso, SsoError> {
        for (index, config) in configs.iter().enumerate() {
            let bad = |reason: String| SsoError::Provider(format!("control.sso[{index}] {reason}"));
            if !switchyard_config::is_valid_id(&config.name) {
                return Err(bad(format!("name {:?}: 1-64 letters, digits, '-' or '_'", config.name)));
            }
            if configs[..index].iter().any(|other| other.name == config.name) {
                return Err(bad(format!("name {:?} is used twice", config.name)));
            }
            IssuerUrl::new(config.issuer_url.clone()).map_err(|e| bad(format!("issuer_url: {e}")))?;
            RedirectUrl::new(config.redirect_url.clone()).map_err(|e| bad(format!("redirect_url: {e}")))?;
            if !config
                .redirect_url
                .ends_with(&format!("/v1/sso/{}/callback", config.name))
            {
                return Err(bad(format!(
                    "redirect_url must end with /v1/sso/{}/callback",
                    config.name
                )));
            }
        }
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would let a provider's response send us anywhere (SSRF).
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| SsoError::Provider(e.to_string()))?;
        Ok(Sso {
            providers: configs
                .iter()
                .map(|config| Provider {
                    config: config.clone(),
                    metadata: Mutex::new(None),
                })
                .collect(),
            http,
        })
    }

    /// Whether some provider signs users into this workspace.
    pub fn serves(&self, workspace_id: &str) -> bool {
        self.providers.iter().any(|p| p.config.workspace == workspace_id)
    }

    fn provider(&self, name: &str) -> Result<&Provider, SsoError> {
        self.providers
            .iter()
            .find(|p| p.config.name == name)
            .ok_or_else(|| SsoError::UnknownProvider(name.to_string()))
    }

    async fn client(
        &self,
        provider: &Provider,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SsoError,
    > {
        let config = &provider.config;
        let mut cached = provider.metadata.lock().await;
        let metadata = match cached.as_ref() {
            Some((at, metadata)) if now_ms() - at < METADATA_MS => metadata.clone(),
            _ => {
                let issuer =
                    IssuerUrl::new(config.issuer_url.clone()).map_err(|e| SsoError::Provider(e.to_string()))?;
                let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| SsoError::Provider(format!("discovery at {}: {e}", config.issuer_url)))?;
                *cached = Some((now_ms(), metadata.clone()));
                metadata
            }
        };
        let redirect = RedirectUrl::new(config.redirect_url.clone()).map_err(|e| SsoError::Provider(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's authorization URL to send the browser to; `login_hint` is passed on.
    /// `browser` is the secret of the cookie the browser is given with the redirect;
    /// `link_user_id` a signed-in user linking this provider to their account.
    pub async fn begin(
        &self,
        control: &Control,
        name: &str,
        login_hint: Option<&str>,
        browser: &str,
        link_user_id: Option<&str>,
    ) -> Result<String, SsoError> {
        let provider = self.provider(name)?;
        let client = self.client(provider).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        for scope in &provider.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_string());
        }
        let (url, state, nonce) = request.url();
        sqlx::query("DELETE FROM sso_logins WHERE created_at < $1")
            .bind(now_ms() - PENDING_MS)
            .execute(&control.db.pool)
            .await
            .map_err(ControlError::from)?;
        sqlx::query(
            "INSERT INTO sso_logins (state, provider, pkce_verifier, nonce, created_at, browser, link_user_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(state.secret())
        .bind(name)
        .bind(verifier.secret())
        .bind(nonce.secret())
        .bind(now_ms())
        .bind(digest(browser))
        .bind(link_user_id)
        .execute(&control.db.pool)
        .await
        .map_err(ControlError::from)?;
        Ok(url.to_string())
    }

    /// Completes a login: the state must be one this server issued for this provider in
    /// the last ten minutes (and is used up) to this browser, the ID token must verify,
    /// its email must be verified, and the user's groups must map to a role.
    pub async fn finish(
        &self,
        control: &Control,
        name: &str,
        code: &str,
        state: &str,
        browser: Option<&str>,
        remote: &str,
    ) -> Result<Session, SsoError> {
        let provider = self.provider(name)?;
        let pending = sqlx::query(
            "DELETE FROM sso_logins WHERE state = $1 AND provider = $2 AND created_at > $3 \
             RETURNING pkce_verifier, nonce, browser, link_user_id",
        )
        .bind(state)
        .bind(name)
        .bind(now_ms() - PENDING_MS)
        .fetch_optional(&control.db.pool)
        .await
        .map_err(ControlError::from)?
        .ok_or_else(|| SsoError::Refused("unknown or expired login state; start again".into()))?;
        let verifier: String = pending.try_get("pkce_verifier").map_err(ControlError::from)?;
        let nonce: String = pending.try_get("nonce").map_err(ControlError::from)?;
        let bound: String = pending.try_get("browser").map_err(ControlError::from)?;
        let link_user_id: Option<String> = pending.try_get("link_user_id").map_err(ControlError::from)?;
        let same_browser = browser.is_some_and(|cookie| bool::from(digest(cookie).as_bytes().ct_eq(bound.as_bytes())));
        if !same_browser {
            return Err(SsoError::Refused(
                "this sign-in was started in another browser (or its cookie is gone); start again".into(),
            ));
        }
        let client = self.client(provider).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| SsoError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Provider(format!("code exchange: {e}")))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| SsoError::Provider("no ID token in the token response".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce))
            .map_err(|e| SsoError::Refused(format!("ID token: {e}")))?;
        let email = claims
            .email()
            .map(|email| email.as_str().trim().to_ascii_lowercase())
            .ok_or_else(|| SsoError::Refused("the ID token carries no email".into()))?;
        if claims.email_verified() != Some(true) {
            return Err(SsoError::Refused(format!("the provider has not verified {email}")));
        }
        let groups = groups(id_token, &provider.config.role_claim)?;
        let role = provider.config.role_for(&groups).ok_or_else(|| {
            SsoError::Refused(format!(
                "{email} has no role in this workspace: none of its groups {groups:?} (claim {:?}) is mapped",
                provider.config.role_claim
            ))
        })?;
        let actor = Actor {
            email: email.clone(),
            remote: remote.to_string(),
        };
        let identity = SsoIdentity {
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            email,
            link_user_id,
        };
        Ok(control.sso_session(&actor, &provider.config, &identity, role).await?)
    }
}

/// The role claim of an ID token whose signature and claims were already verified: its
/// payload is read again as JSON, since the claim is not one of the standard ones.
fn groups(id_token: &openidconnect::core::CoreIdToken, claim: &str) -> Result<Vec<String>, SsoError> {
    let jwt = serde_json::to_value(id_token).map_err(|e| SsoError::Provider(e.to_string()))?;
    let payload = jwt
        .as_str()
        .and_then(|jwt| jwt.split('.').nth(1))
        .and_then(|part| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or_else(|| SsoError::Provider("ID token payload is not JSON".into()))?;
    Ok(match payload.get(claim) {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    })
}

/// Who a provider says signed in.
#[derive(Debug, Clone)]
pub struct SsoIdentity {
    pub issuer: String,
    pub subject: String,
    /// Verified by the provider; used only to create or link an account the first time.
    pub email: String,
    /// Set when a signed-in user started the login to link the provider to their account.
    pub link_user_id: Option<String>,
}

/// The account an identity signs in as: the one it is linked to; or, the first time,
/// the signed-in user who asked to link it, a new account, or an account with this email
/// that has neither a password nor a second factor. Links are audited.
async fn linked_user(
    tx: &mut sqlx::AnyConnection,
    key: &audit::AuditKey,
    workspace: &str,
    actor: &Actor,
    provider: &str,
    identity: &SsoIdentity,
) -> Result<String, ControlError> {
    let linked = sqlx::query("SELECT user_id FROM sso_identities WHERE issuer = $1 AND subject = $2")
        .bind(&identity.issuer)
        .bind(&identity.subject)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<String, _>("user_id"))
        .transpose()?;
    match (linked, &identity.link_user_id) {
        (Some(user_id), Some(asking)) if &user_id != asking => {
            return Err(ControlError::Conflict(format!(
                "a link of this {provider} account to another user"
            )));
        }
        (Some(user_id), _) => return Ok(user_id),
        (None, _) => {}
    }
    let user_id = match &identity.link_user_id {
        Some(asking) => asking.clone(),
        None => {
            let user = sqlx::query("SELECT id, password_hash, totp_enabled_at FROM users WHERE email = $1")
                .bind(&identity.email)
                .fetch_optional(&mut *tx)
                .await?;
            match user {
                Some(row) => {
                    let password: Option<String> = row.try_get("password_hash")?;
                    let mfa: i64 = row.try_get("totp_enabled_at")?;
                    if password.is_some() || mfa != 0 {
                        // Reads "... already exists".
                        return Err(ControlError::Conflict(format!(
                            "an account for {} (with a password or second factor: sign in to it, then link {provider} \
                             from that session with GET /v1/sso/{provider}/link)",
                            identity.email
                        )));
                    }
                    row.try_get::<String, _>("id")?
                }
                None => {
                    let id = uuid::Uuid::new_v4().to_string();
                    sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, NULL, $3)")
                        .bind(&id)
                        .bind(&identity.email)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                    let after = json!({"user_id": id, "email": identity.email, "by": format!("sso:{provider}")});
                    audit::append(
                        &mut *tx,
                        key,
                        workspace,
                        actor,
                        AuditAction::UserCreate,
                        &identity.email,
                        &Value::Null,
                        &after,
                    )
                    .await?;
                    id
                }
            }
        }
    };
    sqlx::query(
        "INSERT INTO sso_identities (issuer, subject, user_id, provider, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(&user_id)
    .bind(provider)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let after =
        json!({"user_id": user_id, "provider": provider, "issuer": identity.issuer, "subject": identity.subject});
    audit::append(
        &mut *tx,
        key,
        workspace,
        actor,
        AuditAction::UserSsoLink,
        &identity.email,
        &Value::Null,
        &after,
    )
    .await?;
    Ok(user_id)
}

impl Control {
    /// Signs in a user an SSO provider vouched for (see [`linked_user`]), made a member
    /// with `role` (or moved to it: the provider's groups are the source of truth),
    /// audited when anything changed; then a session that reaches the provider's
    /// workspace only.
    pub async fn sso_session(
        &self,
        actor: &Actor,
        provider: &SsoConfig,
        identity: &SsoIdentity,
        role: Role,
    ) -> Result<Session, ControlError> {
        let signed_in = actor.clone();
        let (actor, workspace, identity, provider_name, method) = (
            actor.clone(),
            provider.workspace.clone(),
            identity.clone(),
            provider.name.clone(),
            format!("sso:{}", provider.name),
        );
        let email_owned = identity.email.clone();
        let key = self.sealer.audit_key();
        let user_id = self
            .change(move |tx| {
                Box::pin(async move {
                    let exists = sqlx::query("SELECT id FROM workspaces WHERE id = $1")
                        .bind(&workspace)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_none() {
                        return Err(ControlError::NotFound(format!(
                            "workspace {workspace} of the SSO provider"
                        )));
                    }
                    let user_id = linked_user(&mut *tx, &key, &workspace, &actor, &provider_name, &identity).await?;
                    let current = sqlx::query("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                        .bind(&workspace)
                        .bind(&user_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|row| row.try_get::<String, _>("role"))
                        .transpose()?;
                    if current.as_deref() != Some(role.as_str()) {
                        sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                            .bind(&workspace)
                            .bind(&user_id)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "INSERT INTO memberships (workspace_id, user_id, role, sources) VALUES ($1, $2, $3, '[]')",
                        )
                        .bind(&workspace)
                        .bind(&user_id)
                        .bind(role.as_str())
                        .execute(&mut *tx)
                        .await?;
                        let before = current.map_or(Value::Null, |role| json!({"role": role}));
                        let after = json!({"email": email_owned, "role": role.as_str(), "by": method});
                        audit::append(
                            &mut *tx,
                            &key,
                            &workspace,
                            &actor,
                            AuditAction::MemberSsoRole,
                            &email_owned,
                            &before,
                            &after,
                        )
                        .await?;
                    }
                    Ok(user_id)
                })
            })
            .await?;
        let scope = TokenScope {
            method: format!("sso:{}", provider.name),
            mfa: true,
            workspace_id: Some(provider.workspace.clone()),
            role: None,
        };
        self.issue_token(&signed_in, &user_id, "session", "", SESSION_MS, &scope)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_mapped_group_wins_and_unmapped_users_get_the_default_or_nothing() {
        let mut config: SsoConfig = serde_json::from_value(json!({
            "name": "corp", "issuer_url": "https://idp.example", "client_id": "c",
            "redirect_url": "https://sy.example/v1/sso/corp/callback", "workspace": "w",
            "roles": {"admins": "owner", "analysts": "read_only"},
        }))
        .expect("config");
        let groups = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(config.role_for(&groups(&["analysts", "admins"])), Some(Role::Owner));
        assert_eq!(config.role_for(&groups(&["analysts"])), Some(Role::ReadOnly));
        assert_eq!(config.role_for(&groups(&["sales"])), None);
        config.default_role = Some(Role::ReadOnly);
        assert_eq!(config.role_for(&[]), Some(Role::ReadOnly));
    }

    #[test]
    fn the_client_secret_stays_out_of_debug_output() {
        let config: SsoConfig = serde_json::from_value(json!({
            "name": "corp", "issuer_url": "https://idp.example", "client_id": "c", "client_secret": "hunter2-secret",
            "redirect_url": "https://sy.example/cb", "workspace": "w",
        }))
        .expect("config");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
