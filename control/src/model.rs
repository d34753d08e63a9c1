//! What the admin API takes and gives. Inputs refuse unknown fields; outputs never
//! carry a secret (write keys are shown once, at creation or rotation; destination
//! credentials only by name).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchyard_config::WebhookSourceConfig;
use utoipa::ToSchema;

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including members.
    Owner,
    /// May change any source and destination.
    Member,
    /// Sees everything, changes nothing.
    ReadOnly,
    /// Sees and changes only its sources and the destinations fed only by them.
    SourceCollaborator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::ReadOnly => "read_only",
            Role::SourceCollaborator => "source_collaborator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Owner, Role::Member, Role::ReadOnly, Role::SourceCollaborator]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

/// Who is asking: a signed-in user (by session or API token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub token: TokenInfo,
}

/// What the token a request came with says about how it was obtained and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Public id (listing, revoking): the first 16 hex digits of the token's digest.
    pub id: String,
    /// `session` or `api`.
    pub kind: String,
    /// `password` or `sso:<provider>`; an API token carries its session's.
    pub method: String,
    /// A second factor was checked at sign-in (an SSO provider's own policy counts).
    pub mfa: bool,
    /// An API token's scope: the one workspace it reaches and the most it may do there.
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
    /// When it was issued (ms): for a session, when its user signed in.
    pub created_at: i64,
}

impl Role {
    /// Owner > member > source collaborator > read-only. A token scoped to a role above
    /// its user's current one gets the user's.
    pub fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Member => 2,
            Role::SourceCollaborator => 1,
            Role::ReadOnly => 0,
        }
    }
}

/// A workspace's sign-in policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct WorkspacePolicy {
    /// Owners must have signed in with a second factor (TOTP or their SSO provider's).
    pub require_mfa: bool,
    /// Sessions from a local password reach the workspace; off: SSO only.
    pub password_login: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePolicyPatch {
    pub require_mfa: Option<bool>,
    pub password_login: Option<bool>,
}

/// A token as its owner sees it (never the token itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub method: String,
    pub workspace_id: Option<String>,
    pub role: Option<Role>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// TOTP enrolment under way: add the secret to an authenticator app, then confirm
/// with a code.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaEnrolment {
    /// Base32, as authenticator apps take it.
    pub secret: String,
    /// `otpauth://totp/...` for a QR code.
    pub otpauth_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    pub code: String,
}

/// Shown once: each signs in once in place of a code. Only their digests are kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// Who did something, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub email: String,
    /// The client's address.
    pub remote: String,
}

impl Actor {
    /// A change made on this machine (the CLI), not through the API.
    pub fn local(what: &str) -> Actor {
        Actor {
            email: what.to_string(),
            remote: "local".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    /// For a source collaborator: the sources it may see and change.
    pub sources: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub email: String,
    pub role: Role,
    #[serde(default)]
    pub sources: Vec<String>,
    /// For a user not yet known: the password it signs in with.
    #[serde(default)]
    pub password: Option<String>,
}

/// A source's settings besides its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_events_per_sec: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst_events: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SourceView {
    pub id: String,
    pub name: String,
    /// `segment` (write keys) or `webhook` (signed deliveries to `/v1/webhooks/<id>`).
    pub kind: String,
    pub settings: SourceSettings,
    /// A webhook source's settings, its secret `<redacted>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub webhook: Option<Value>,
    /// Hash steps' salts `<redacted>` when serialized; opened in memory.
    #[schema(value_type = Vec<Object>)]
    #[serde(serialize_with = "crate::salts::serialize_redacted")]
    pub transforms: Vec<Value>,
    /// Write keys that work now (more than one during a rotation's overlap).
    pub active_write_keys: usize,
    pub created_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub settings: SourceSettings,
    /// Makes a webhook source (no write key): `{"preset": "stripe", "secret": "whsec_..."}`;
    /// the settings are those of the configuration file's `[sources.webhook]`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub webhook: Option<WebhookSourceConfig>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub transforms: Vec<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    pub name: Option<String>,
    pub settings: Option<SourceSettings>,
    /// A webhook source's new settings; without `secret`, the stored one is kept.
    #[schema(value_type = Option<Object>)]
    pub webhook: Option<WebhookSourceConfig>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub transforms: Option<Vec<Value>>,
}

/// A new write key: shown this once, kept only as a digest.
#[derive(Debug, Serialize, ToSchema)]
pub struct WriteKey {
    pub source_id: String,
    pub write_key: String,
    /// When the keys it replaces stop working (a rotation), if any.
    pub previous_keys_expire_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedSource {
    pub source: SourceView,
    /// Shown this once; a webhook source has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_key: Option<String>,
    /// Where a webhook source's provider posts, on the ingest host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWriteKey {
    /// How long the current keys keep working, so senders can switch over.
    #[serde(default = "default_overlap")]
    pub overlap_secs: u64,
}

fn default_overlap() -> u64 {
    24 * 3600
}

/// A destination as given: `settings` are kept as they are, `credentials` sealed.
/// Together (with id, kind, sources and transforms) they make a destination of the
/// configuration file's shape, and are checked as one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDestination {
    pub id: String,
    pub kind: String,
    pub sources: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub transforms: Vec<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationPatch {
    pub sources: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
    /// Replaces every credential when given.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub transforms: Option<Vec<Value>>,
}

/// The value every credential shows in output.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DestinationView {
    pub id: String,
    pub kind: String,
    pub sources: Vec<String>,
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// The credentials' names, each with the value `<redacted>`.
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
    /// Hash steps' salts `<redacted>` when serialized; opened in memory.
    #[schema(value_type = Vec<Object>)]
    #[serde(serialize_with = "crate::salts::serialize_redacted")]
    pub transforms: Vec<Value>,
    pub created_at: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
    /// The current 6-digit code, for an account with two-factor sign-in.
    #[serde(default)]
    pub otp: Option<String>,
    /// Or one of its recovery codes (each works once).
    #[serde(default)]
    pub recovery_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// Public id of the token, for `DELETE /v1/tokens/{id}`.
    pub id: String,
    /// `Authorization: Bearer <token>` on every other request (a browser may use the
    /// `sy_session` cookie set at sign-in instead).
    pub token: String,
    pub expires_at: i64,
    /// With the cookie, changes need `X-CSRF-Token: <this>` (also in the `sy_csrf` cookie).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    pub name: String,
    /// The one workspace the token reaches.
    pub workspace: String,
    /// The most it may do there; absent: the creator's role. Never above it.
    #[serde(default)]
    pub role: Option<Role>,
    /// Lifetime; absent: 90 days.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// One audit log row.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub remote: String,
    #[schema(value_type = Object)]
    pub before: Value,
    #[schema(value_type = Object)]
    pub after: Value,
    pub prev_hash: String,
    pub hash: String,
}
