//! Secrets at rest: destination credentials sealed with XChaCha20-Poly1305 under a key
//! derived (HKDF-SHA256) from the master key, bound to the row they belong to; tokens
//! and write keys kept as SHA-256 digests; passwords hashed with argon2id (bcrypt
//! hashes are accepted on import and replaced by argon2id at the next login).

use age::secrecy::ExposeSecret;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::ControlError;

/// Sealed values start with this version byte, then a 24-byte nonce.
const VERSION: u8 = 1;

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    audit: crate::audit::AuditKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// The credentials key, derived from the master key (an age identity).
    pub fn from_master(master: &age::x25519::Identity) -> Sealer {
        let secret = master.to_string();
        let derive = hkdf::Hkdf::<Sha256>::new(Some(b"switchyard-control"), secret.expose_secret().as_bytes());
        let mut key = [0u8; 32];
        derive
            .expand(b"destination credentials v1", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let mut audit = [0u8; 32];
        derive
            .expand(b"audit chain v1", &mut audit)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.into()),
            audit: crate::audit::AuditKey(audit),
        }
    }

    /// The key the audit chain is authenticated with (derived from the master key, so
    /// write access to the database alone can't rewrite the chain unnoticed).
    pub fn audit_key(&self) -> crate::audit::AuditKey {
        self.audit
    }

    /// Seals `plaintext` for the row named by `bound_to` (a sealed value copied to
    /// another row doesn't open).
    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> Result<Vec<u8>, ControlError> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| ControlError::Crypto("cannot seal".into()))?;
        let mut out = Vec::with_capacity(1 + nonce.len() + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], bound_to: &str) -> Result<Vec<u8>, ControlError> {
        if sealed.len() < 25 || sealed[0] != VERSION {
            return Err(ControlError::Crypto("not a sealed value".into()));
        }
        self.cipher
            .decrypt(
                XNonce::from_slice(&sealed[1..25]),
                Payload {
                    msg: &sealed[25..],
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| ControlError::Crypto("cannot open: another master key, or the row was altered".into()))
    }
}

/// A new random secret (a token or a write key): `prefix` then 32 random bytes, base64url.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// How a token or write key is stored and looked up.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String, ControlError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ControlError::Crypto(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ControlError::Crypto(e.to_string()))
}

/// Whether `password` matches `stored` (argon2id, or bcrypt from an import), and
/// whether the stored hash should be replaced by an argon2id one.
pub fn verify_password(password: &str, stored: &str) -> (bool, bool) {
    if stored.starts_with("$2") {
        return (bcrypt::verify(password, stored).unwrap_or(false), true);
    }
    let ok = PasswordHash::new(stored)
        .map(|hash| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false);
    (ok, false)
}

/// Whether `stored` is a password hash this accepts (for imports).
pub fn is_password_hash(stored: &str) -> bool {
    (stored.starts_with("$2") && stored.parse::<bcrypt::HashParts>().is_ok()) || PasswordHash::new(stored).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_with_the_same_master_key_and_row() {
        let master = age::x25519::Identity::generate();
        let sealer = Sealer::from_master(&master);
        let sealed = sealer
            .seal(b"{\"bearer_token\":\"t0ps3cret\"}", "dest-1")
            .expect("sealed");
        assert!(!sealed.windows(9).any(|w| w == b"t0ps3cret"), "ciphertext");
        assert_eq!(
            sealer.open(&sealed, "dest-1").expect("opened"),
            b"{\"bearer_token\":\"t0ps3cret\"}"
        );
        assert!(sealer.open(&sealed, "dest-2").is_err(), "bound to its row");
        let other = Sealer::from_master(&age::x25519::Identity::generate());
        assert!(other.open(&sealed, "dest-1").is_err(), "another master key");
        let again = Sealer::from_master(&master);
        assert!(again.open(&sealed, "dest-1").is_ok(), "the key is derived, not random");
    }

    #[test]
    fn argon2id_by_default_and_bcrypt_accepted_from_an_import() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_eq!(verify_password("correct horse", &hash), (true, false));
        assert_eq!(verify_password("wrong", &hash), (false, false));
        let imported = bcrypt::hash("battery staple", 4).expect("bcrypt");
        assert!(is_password_hash(&imported) && is_password_hash(&hash));
        assert!(!is_password_hash("plain text"));
        assert_eq!(
            verify_password("battery staple", &imported),
            (true, true),
            "upgraded at login"
        );
        assert!(!verify_password("staple", &imported).0);
    }

    #[test]
    fn secrets_are_random_and_stored_as_digests() {
        let (a, b) = (new_secret("sy_"), new_secret("sy_"));
        assert_ne!(a, b);
        assert!(a.starts_with("sy_") && a.len() > 40);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), a);
    }
}
