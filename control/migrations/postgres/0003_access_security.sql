-- Sign-in hardening: lockout after repeated failures, TOTP second factor with hashed
-- recovery codes, tokens that carry how they were obtained and what they may do,
-- per-workspace sign-in policy, and the pending state of SSO logins.
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
-- Sealed like destination credentials; totp_enabled_at is 0 until the first code is confirmed.
ALTER TABLE users ADD COLUMN totp_secret BYTEA;
ALTER TABLE users ADD COLUMN totp_enabled_at BIGINT NOT NULL DEFAULT 0;
-- The last time step accepted, so one code can't be used twice.
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;

CREATE TABLE recovery_codes (
    digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    used_at BIGINT
);

-- id: shown to the owner, for listing and revoking. method: password, sso:<provider>
-- or the method of the session an API token was made from. mfa: 1 when a second factor
-- was checked. workspace_id/role: an API token's scope (NULL: none).
ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE tokens ADD COLUMN mfa BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN workspace_id TEXT;
ALTER TABLE tokens ADD COLUMN role TEXT;

ALTER TABLE workspaces ADD COLUMN require_mfa BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN password_login BIGINT NOT NULL DEFAULT 1;

-- An SSO login between the redirect to the provider and its callback.
CREATE TABLE sso_logins (
    state TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
