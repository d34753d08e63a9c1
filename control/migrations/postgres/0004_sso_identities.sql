-- SSO links an account by the provider's (issuer, subject), never by email alone: an
-- identity provider can assert any address, verified or not.
CREATE TABLE sso_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);

-- browser: the digest of the cookie the login's browser got, checked at the callback
-- (a state sent to someone else's browser is useless there). link_user_id: a signed-in
-- user linking this provider to their account.
ALTER TABLE sso_logins ADD COLUMN browser TEXT NOT NULL DEFAULT '';
ALTER TABLE sso_logins ADD COLUMN link_user_id TEXT;
