//! Each source's age identities, kept in the archive's own stores beside the objects:
//! one object per identity, `<prefix>/_keys/source_id=<id>/<UTC time, ns>-<uuid>.age`. With a
//! master key (an age X25519 identity, from `SWITCHYARD_MASTER_KEY`, or a file named by
//! `SWITCHYARD_MASTER_KEY_FILE`, e.g. a mounted Kubernetes Secret) each is age-encrypted
//! to the master key and authenticated: `switchyard-archive-key/1\n<hex HMAC>\n<age>`,
//! the HMAC-SHA256 of the source id and the ciphertext under a key derived from the
//! master key. Encrypting to the master's public key proves nothing (anyone can), so
//! without the HMAC whoever can write to the bucket could plant a key of their own and
//! read every object written after it; a key object without a valid HMAC (planted,
//! plaintext, copied from another source) is refused, counted and logged, never used.
//! Without a master key (a first local run on a local store; an S3 store refuses to
//! start without one) keys are plain `age-keygen` text, and a warning says so.
//!
//! Why objects and not a key file: every router replica of a source must encrypt to
//! keys every other can read, and a pod's own disk doesn't outlive it. One object per
//! identity needs no conditional writes: two routers creating a source's first key at
//! once each write their own, both stay in the ring, and reading tries them all. New
//! objects use the newest identity a router knows; objects written before a rotation
//! stay readable. A source's deletion deletes its keys, so an object a deletion missed
//! (a replica out of reach) can no longer be read.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret;
use age::x25519::Identity;
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::Sha256;

use crate::config::ArchiveError;
use crate::object::{decrypt, encrypt};

/// Where the master key comes from.
pub const MASTER_KEY_ENV: &str = "SWITCHYARD_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "SWITCHYARD_MASTER_KEY_FILE";

/// A key the ring has just created in the primary store, for the caller to copy to
/// the replica (with retries, like an object).
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub path: ObjectPath,
    pub bytes: Vec<u8>,
}

/// The identities of the sources, from the archive's stores.
pub struct KeyRing {
    primary: Arc<dyn ObjectStore>,
    replica: Option<Arc<dyn ObjectStore>>,
    prefix: String,
    master: Option<Identity>,
    /// Authenticates key objects; derived from the master key.
    mac_key: Option<[u8; 32]>,
    /// The identity each source's new objects are encrypted to, once known.
    current: Mutex<HashMap<String, Identity>>,
    /// Key objects refused (no valid HMAC), by source.
    refused: Mutex<HashMap<String, u64>>,
}

/// The first line of an authenticated key object.
const KEY_HEADER: &[u8] = b"switchyard-archive-key/1\n";

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("prefix", &self.prefix)
            .field("master", &self.master.is_some())
            .finish_non_exhaustive()
    }
}

/// The master key from the environment, if one is set.
pub fn master_from_env() -> Result<Option<Identity>, ArchiveError> {
    let failed = |path: &str, reason: String| ArchiveError::Key {
        path: path.to_string(),
        reason,
    };
    let text = match (std::env::var(MASTER_KEY_ENV), std::env::var(MASTER_KEY_FILE_ENV)) {
        (Ok(text), _) if !text.is_empty() => text,
        (_, Ok(path)) if !path.is_empty() => {
            std::fs::read_to_string(&path).map_err(|e| failed(&path, e.to_string()))?
        }
        _ => return Ok(None),
    };
    let identities = parse_identities(&text).map_err(|reason| failed(MASTER_KEY_ENV, reason))?;
    Ok(identities.into_iter().next_back())
}

impl KeyRing {
    pub fn new(
        primary: Arc<dyn ObjectStore>,
        replica: Option<Arc<dyn ObjectStore>>,
        prefix: &str,
        master: Option<Identity>,
    ) -> Self {
        if master.is_none() {
            tracing::warn!(
                prefix,
                "archive keys are stored unencrypted: set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV} to an age identity"
            );
        }
        let mac_key = master.as_ref().map(mac_key);
        KeyRing {
            primary,
            replica,
            prefix: prefix.to_string(),
            master,
            mac_key,
            current: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Key objects of the source refused since start (planted, plaintext, or moved).
    pub fn refused(&self, source_id: &str) -> u64 {
        self.refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(source_id)
            .copied()
            .unwrap_or_default()
    }

    /// Where a source's key objects live.
    pub fn base(&self, source_id: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/_keys/source_id={source_id}", self.prefix))
    }

    fn failed(&self, source_id: &str, reason: String) -> ArchiveError {
        ArchiveError::Key {
            path: self.base(source_id).to_string(),
            reason,
        }
    }

    /// The store objects are written to first.
    pub fn primary(&self) -> &Arc<dyn ObjectStore> {
        &self.primary
    }

    pub fn replica(&self) -> Option<&Arc<dyn ObjectStore>> {
        self.replica.as_ref()
    }

    /// The primary store, then the replica if there is one.
    pub fn stores(&self) -> Vec<Arc<dyn ObjectStore>> {
        std::iter::once(&self.primary)
            .chain(self.replica.as_ref())
            .cloned()
            .collect()
    }

    /// The first path segment of every archive object.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key objects of the source in every store, by path (oldest first).
    async fn sealed(&self, source_id: &str) -> Result<BTreeMap<ObjectPath, Arc<dyn ObjectStore>>, ArchiveError> {
        let base = self.base(source_id);
        let mut found = BTreeMap::new();
        for (n, store) in self.stores().into_iter().enumerate() {
            let listed: Result<Vec<ObjectPath>, _> =
                store.list(Some(&base)).map_ok(|meta| meta.location).try_collect().await;
            let paths = match listed {
                Ok(paths) => paths,
                // The replica is a copy: while it is out of reach, the primary's keys do.
                Err(error) if n > 0 => {
                    tracing::warn!(source_id, %error, "archive replica unreachable; reading keys from the primary only");
                    continue;
                }
                Err(source) => {
                    return Err(ArchiveError::Store {
                        path: base.to_string(),
                        source,
                    });
                }
            };
            for path in paths {
                found.entry(path).or_insert_with(|| store.clone());
            }
        }
        Ok(found)
    }

    /// Every identity of the source, oldest first: from both stores, so an object
    /// either holds can be read. None yet (or deleted) is an error.
    pub async fn identities(&self, source_id: &str) -> Result<Vec<Identity>, ArchiveError> {
        let mut identities = Vec::new();
        let mut refused_here = 0;
        for (path, store) in self.sealed(source_id).await? {
            let failed = |source| ArchiveError::Store {
                path: path.to_string(),
                source,
            };
            let bytes = crate::object::fetch(store.as_ref(), &path).await.map_err(failed)?;
            let sealed = match self.authenticated(source_id, &bytes) {
                Ok(sealed) => sealed,
                Err(reason) => {
                    *self
                        .refused
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .entry(source_id.to_string())
                        .or_default() += 1;
                    tracing::error!(source_id, path = %path, reason, "archive key object refused, not used");
                    refused_here += 1;
                    continue;
                }
            };
            let mut read = self.read(sealed).map_err(|reason| ArchiveError::Key {
                path: path.to_string(),
                reason,
            })?;
            identities.append(&mut read);
        }
        if identities.is_empty() && refused_here > 0 {
            return Err(self.failed(
                source_id,
                format!("none of its {refused_here} key objects is authenticated under this master key (another master key's, or planted)"),
            ));
        }
        if identities.is_empty() {
            return Err(self.failed(
                source_id,
                "no key: nothing was archived for this source, or its archive was deleted".into(),
            ));
        }
        Ok(identities)
    }

    /// The identity the source's new objects are encrypted to: its newest, or a new
    /// one written to the primary store (returned for the caller to replicate).
    pub async fn current(&self, source_id: &str) -> Result<(Identity, Option<CreatedKey>), ArchiveError> {
        if let Some(identity) = self.lock().get(source_id) {
            return Ok((identity.clone(), None));
        }
        let (identity, created) = match self.identities(source_id).await {
            Ok(mut identities) => (identities.pop().expect("identities() is never empty"), None),
            Err(ArchiveError::Key { .. }) => {
                let identity = Identity::generate();
                let created = self.put(source_id, &identity, false).await?;
                tracing::info!(source_id, encrypted = self.master.is_some(), "archive key created");
                (identity, Some(created))
            }
            Err(error) => return Err(error),
        };
        self.lock().insert(source_id.to_string(), identity.clone());
        Ok((identity, created))
    }

    /// Adds a new identity for the source's new objects, in both stores; old ones stay
    /// for reading. Running routers pick it up when they restart.
    pub async fn rotate(&self, source_id: &str) -> Result<Identity, ArchiveError> {
        self.identities(source_id).await?;
        let fresh = Identity::generate();
        self.put(source_id, &fresh, true).await?;
        self.lock().insert(source_id.to_string(), fresh.clone());
        Ok(fresh)
    }

    /// The source's identities as `age-keygen` text, for `age -d -i`.
    pub async fn export(&self, source_id: &str) -> Result<String, ArchiveError> {
        Ok(keygen_text(&self.identities(source_id).await?))
    }

    /// Deletes every key of the source from both stores; returns how many objects.
    pub async fn delete(&self, source_id: &str) -> Result<usize, ArchiveError> {
        let base = self.base(source_id);
        let mut deleted = 0;
        for store in self.stores() {
            deleted += crate::object::delete_under(store.as_ref(), &base).await?;
        }
        self.lock().remove(source_id);
        Ok(deleted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Identity>> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes one identity as a new key object: to the primary, and to the replica too
    /// when `everywhere`.
    async fn put(&self, source_id: &str, identity: &Identity, everywhere: bool) -> Result<CreatedKey, ArchiveError> {
        let bytes = self
            .seal(source_id, identity)
            .map_err(|reason| self.failed(source_id, reason))?;
        let path = ObjectPath::from(format!(
            "{}/{}-{}.age",
            self.base(source_id),
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ"),
            uuid::Uuid::new_v4().simple()
        ));
        let targets = if everywhere {
            self.stores()
        } else {
            vec![self.primary.clone()]
        };
        for store in targets {
            store
                .put(&path, PutPayload::from(bytes.clone()))
                .await
                .map_err(|source| ArchiveError::Store {
                    path: path.to_string(),
                    source,
                })?;
        }
        Ok(CreatedKey { path, bytes })
    }

    fn seal(&self, source_id: &str, identity: &Identity) -> Result<Vec<u8>, String> {
        let text = keygen_text(std::slice::from_ref(identity));
        let (Some(master), Some(key)) = (&self.master, &self.mac_key) else {
            return Ok(text.into_bytes());
        };
        let ciphertext = encrypt(text.as_bytes(), &master.to_public())?;
        let mut out = KEY_HEADER.to_vec();
        out.extend_from_slice(hex::encode(object_mac(key, source_id, &ciphertext)).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// With a master key: the ciphertext of an object whose HMAC holds for this source.
    /// Without one: the object as it is.
    fn authenticated<'a>(&self, source_id: &str, bytes: &'a [u8]) -> Result<&'a [u8], &'static str> {
        let Some(key) = &self.mac_key else {
            return Ok(bytes);
        };
        let rest = bytes
            .strip_prefix(KEY_HEADER)
            .ok_or("not an authenticated key object (planted, or plaintext)")?;
        let newline = rest.iter().position(|b| *b == b'\n').ok_or("no HMAC line")?;
        let (mac_hex, ciphertext) = (&rest[..newline], &rest[newline + 1..]);
        let mac = hex::decode(mac_hex).map_err(|_| "the HMAC is not hex")?;
        let Ok(mut check) = Hmac::<Sha256>::new_from_slice(key) else {
            return Err("no HMAC key");
        };
        check.update(&mac_input(source_id, ciphertext));
        check
            .verify_slice(&mac)
            .map_err(|_| "its HMAC does not hold: written without the master key, or for another source")?;
        Ok(ciphertext)
    }

    fn read(&self, bytes: &[u8]) -> Result<Vec<Identity>, String> {
        let encrypted = bytes.starts_with(b"age-encryption.org/") || bytes.starts_with(KEY_HEADER);
        let plain = match (&self.master, encrypted) {
            (Some(master), true) => {
                decrypt(bytes, master).map_err(|e| format!("the master key doesn't open it: {e}"))?
            }
            (Some(_), false) => return Err("it is not encrypted to the master key".into()),
            (None, true) => {
                return Err(format!(
                    "it is encrypted: set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}"
                ));
            }
            (None, false) => bytes.to_vec(),
        };
        parse_identities(&String::from_utf8(plain).map_err(|e| e.to_string())?)
    }
}

/// The key object HMAC key: HKDF-SHA256 of the master identity.
fn mac_key(master: &Identity) -> [u8; 32] {
    let secret = master.to_string();
    let derive = hkdf::Hkdf::<Sha256>::new(Some(b"switchyard-archive"), secret.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = derive.expand(b"archive key objects v1", &mut key);
    key
}

/// What a key object's HMAC covers: its source (so it can't be moved to another) and
/// its ciphertext.
fn mac_input(source_id: &str, ciphertext: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(source_id.len() + 1 + ciphertext.len());
    input.extend_from_slice(source_id.as_bytes());
    input.push(0);
    input.extend_from_slice(ciphertext);
    input
}

fn object_mac(key: &[u8; 32], source_id: &str, ciphertext: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(&mac_input(source_id, ciphertext));
    mac.finalize().into_bytes().to_vec()
}

/// The identity lines of `age-keygen` style text (comments skipped), in order.
pub fn parse_identities(text: &str) -> Result<Vec<Identity>, String> {
    let identities: Vec<Identity> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| Identity::from_str(line).map_err(str::to_string))
        .collect::<Result<_, _>>()?;
    if identities.is_empty() {
        return Err("no identity in it".into());
    }
    Ok(identities)
}

/// Identities as `age-keygen` writes them (a public-key comment above each).
pub fn keygen_text(identities: &[Identity]) -> String {
    identities
        .iter()
        .map(|identity| {
            format!(
                "# public key: {}\n{}\n",
                identity.to_public(),
                identity.to_string().expose_secret()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{open, seal};
    use object_store::memory::InMemory;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn an_identity_is_created_once_and_shared_by_every_ring_on_the_store() {
        runtime().block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let ring = KeyRing::new(store.clone(), None, "archive", None);
            let Err(error) = ring.identities("web").await else {
                panic!("a key before any was made")
            };
            assert!(error.to_string().contains("no key"), "{error}");
            let (first, created) = ring.current("web").await.expect("created");
            let created = created.expect("a new key to replicate");
            assert!(
                created.path.as_ref().starts_with("archive/_keys/source_id=web/"),
                "{}",
                created.path
            );
            let text = String::from_utf8(created.bytes).expect("text");
            assert!(
                text.contains("AGE-SECRET-KEY-1"),
                "age-keygen format without a master key"
            );
            let (again, none) = KeyRing::new(store, None, "archive", None)
                .current("web")
                .await
                .expect("read");
            assert!(none.is_none(), "not created twice");
            assert_eq!(first.to_public().to_string(), again.to_public().to_string());
        });
    }

    #[test]
    fn under_a_master_key_keys_are_encrypted_and_rotation_keeps_old_objects_readable() {
        runtime().block_on(async {
            let (primary, replica): (Arc<dyn ObjectStore>, Arc<dyn ObjectStore>) =
                (Arc::new(InMemory::new()), Arc::new(InMemory::new()));
            let master = Identity::generate();
            let keys = KeyRing::new(primary.clone(), Some(replica.clone()), "archive", Some(master.clone()));
            let (first, created) = keys.current("web").await.expect("created");
            let bytes = created.expect("created").bytes;
            assert!(bytes.starts_with(KEY_HEADER), "authenticated under the master key");
            let ciphertext = &bytes[KEY_HEADER.len() + 65..];
            assert!(
                ciphertext.starts_with(b"age-encryption.org/v1"),
                "encrypted to the master key"
            );
            assert!(
                !bytes.windows(14).any(|w| w == b"AGE-SECRET-KEY"),
                "no key in the clear"
            );
            let old_object = seal(b"{\"messageId\":\"old\"}\n", &first.to_public()).expect("sealed");

            let second = keys.rotate("web").await.expect("rotated");
            assert_ne!(first.to_public().to_string(), second.to_public().to_string());
            let reopened = KeyRing::new(primary.clone(), None, "archive", Some(master.clone()));
            let (newest, _) = reopened.current("web").await.expect("newest");
            assert_eq!(
                newest.to_public().to_string(),
                second.to_public().to_string(),
                "new objects use the new key"
            );
            let all = reopened.identities("web").await.expect("all");
            assert_eq!(all.len(), 2);
            assert!(
                all.iter().any(|identity| open(&old_object, identity).is_ok()),
                "old objects stay readable"
            );
            let replica_only = KeyRing::new(replica.clone(), None, "archive", Some(master.clone()));
            assert_eq!(replica_only.identities("web").await.expect("rotated key").len(), 1);

            let Err(error) = KeyRing::new(primary.clone(), None, "archive", None)
                .identities("web")
                .await
            else {
                panic!("opened without the master key")
            };
            assert!(error.to_string().contains(MASTER_KEY_ENV), "{error}");
            let stranger = KeyRing::new(primary.clone(), None, "archive", Some(Identity::generate()));
            let Err(error) = stranger.identities("web").await else {
                panic!("opened with another master key")
            };
            assert!(error.to_string().contains("master key"), "{error}");
            assert_eq!(
                keys.export("web")
                    .await
                    .expect("export")
                    .matches("AGE-SECRET-KEY-1")
                    .count(),
                2
            );

            assert_eq!(
                keys.delete("web").await.expect("deleted"),
                3,
                "two in the primary, one in the replica"
            );
            assert!(reopened.identities("web").await.is_err(), "no key is left");
        });
    }

    /// Whoever can write to the bucket plants key objects: encrypted to the master's
    /// public key (anyone can), in plain text, or a valid one copied from another
    /// source. None is used; each is counted.
    #[test]
    fn planted_plaintext_or_moved_key_objects_are_refused_and_never_used() {
        runtime().block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let master = Identity::generate();
            let ring = KeyRing::new(store.clone(), None, "archive", Some(master.clone()));
            let (genuine, _) = ring.current("web").await.expect("created");
            let (other_source, _) = ring.current("ios").await.expect("created");

            let attacker = Identity::generate();
            let text = keygen_text(std::slice::from_ref(&attacker));
            let planted = encrypt(text.as_bytes(), &master.to_public()).expect("anyone can encrypt to it");
            let moved = ring.seal("ios", &other_source).expect("a genuine object of ios");
            // Named to sort last, as the newest key would.
            for (name, bytes) in [
                ("z1-planted", planted),
                ("z2-plain", text.into_bytes()),
                ("z3-moved", moved),
            ] {
                let path = ObjectPath::from(format!("{}/{name}.age", ring.base("web")));
                store.put(&path, PutPayload::from(bytes)).await.expect("planted");
            }

            let fresh = KeyRing::new(store.clone(), None, "archive", Some(master.clone()));
            let (current, created) = fresh.current("web").await.expect("current");
            assert!(created.is_none(), "the genuine key is still there");
            assert_eq!(
                current.to_public().to_string(),
                genuine.to_public().to_string(),
                "new objects go to the genuine key, never the planted one"
            );
            let all = fresh.identities("web").await.expect("identities");
            assert!(
                all.iter()
                    .all(|i| i.to_public().to_string() != attacker.to_public().to_string()
                        && i.to_public().to_string() != other_source.to_public().to_string()),
                "no refused key is tried either"
            );
            assert_eq!(fresh.refused("web"), 6, "three objects, refused on each of two reads");
        });
    }
}
