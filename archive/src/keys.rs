//! Each source's age identities: generated on first use, rotated on request, and kept
//! in `<key dir>/<source id>.age`, newest last. With a master key (an age X25519
//! identity, from `SWITCHYARD_MASTER_KEY`, or a file named by
//! `SWITCHYARD_MASTER_KEY_FILE`, e.g. a mounted Kubernetes Secret) the file is itself
//! age-encrypted to the master key; without one (a first local run) it is plain
//! `age-keygen` text with mode 0600, and a warning says so.
//!
//! New objects are encrypted to a source's newest identity; reading tries them all, so
//! objects written before a rotation stay readable. `switchyard archive export-key`
//! writes a source's identities in plain `age-keygen` form, for `age -d -i`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use age::secrecy::ExposeSecret;
use age::x25519::Identity;

use crate::config::ArchiveError;

/// Where the master key comes from.
pub const MASTER_KEY_ENV: &str = "SWITCHYARD_MASTER_KEY";
pub const MASTER_KEY_FILE_ENV: &str = "SWITCHYARD_MASTER_KEY_FILE";

/// The identities of the sources, from the key directory.
pub struct KeyRing {
    dir: PathBuf,
    master: Option<Identity>,
    loaded: Mutex<HashMap<String, Vec<Identity>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
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
    pub fn new(dir: &Path, master: Option<Identity>) -> Self {
        if master.is_none() {
            tracing::warn!(
                key_dir = %dir.display(),
                "archive keys are stored unencrypted: set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV} to an age identity"
            );
        }
        KeyRing {
            dir: dir.to_path_buf(),
            master,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, source_id: &str) -> PathBuf {
        self.dir.join(format!("{source_id}.age"))
    }

    fn failed(&self, source_id: &str, reason: String) -> ArchiveError {
        ArchiveError::Key {
            path: self.path(source_id).display().to_string(),
            reason,
        }
    }

    /// Every identity of the source, oldest first; the first use creates one.
    pub fn identities(&self, source_id: &str) -> Result<Vec<Identity>, ArchiveError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(identities) = loaded.get(source_id) {
            return Ok(identities.clone());
        }
        let identities = match std::fs::read(self.path(source_id)) {
            Ok(bytes) => self.read(&bytes).map_err(|reason| self.failed(source_id, reason))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let identities = vec![Identity::generate()];
                self.write(source_id, &identities, true)?;
                tracing::info!(source_id, encrypted = self.master.is_some(), "archive key created");
                identities
            }
            Err(error) => return Err(self.failed(source_id, error.to_string())),
        };
        loaded.insert(source_id.to_string(), identities.clone());
        Ok(identities)
    }

    /// The identity new objects of the source are encrypted to.
    pub fn identity(&self, source_id: &str) -> Result<Identity, ArchiveError> {
        self.identities(source_id)?
            .pop()
            .ok_or_else(|| self.failed(source_id, "no identity".into()))
    }

    /// Adds a new identity for the source's new objects; old ones stay for reading.
    /// Running processes pick it up when they restart.
    pub fn rotate(&self, source_id: &str) -> Result<Identity, ArchiveError> {
        let mut identities = self.identities(source_id)?;
        let fresh = Identity::generate();
        identities.push(fresh.clone());
        self.write(source_id, &identities, false)?;
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(source_id.to_string(), identities);
        Ok(fresh)
    }

    /// The source's identities as `age-keygen` text, for `age -d -i`.
    pub fn export(&self, source_id: &str) -> Result<String, ArchiveError> {
        Ok(keygen_text(&self.identities(source_id)?))
    }

    fn read(&self, bytes: &[u8]) -> Result<Vec<Identity>, String> {
        let text = match (&self.master, bytes.starts_with(b"age-encryption.org/")) {
            (Some(master), true) => {
                let decryptor = age::Decryptor::new(bytes).map_err(|e| e.to_string())?;
                let mut reader = decryptor
                    .decrypt(std::iter::once(master as &dyn age::Identity))
                    .map_err(|e| format!("the master key doesn't open it: {e}"))?;
                let mut text = String::new();
                reader.read_to_string(&mut text).map_err(|e| e.to_string())?;
                text
            }
            (None, true) => {
                return Err(format!(
                    "it is encrypted: set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}"
                ));
            }
            (_, false) => String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?,
        };
        parse_identities(&text)
    }

    fn write(&self, source_id: &str, identities: &[Identity], new: bool) -> Result<(), ArchiveError> {
        let text = keygen_text(identities);
        let bytes = match &self.master {
            Some(master) => {
                let recipient = master.to_public();
                let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .map_err(|e| self.failed(source_id, e.to_string()))?;
                let mut sealed = Vec::new();
                let mut writer = encryptor
                    .wrap_output(&mut sealed)
                    .map_err(|e| self.failed(source_id, e.to_string()))?;
                writer
                    .write_all(text.as_bytes())
                    .and_then(|()| writer.finish().map(drop))
                    .map_err(|e| self.failed(source_id, e.to_string()))?;
                sealed
            }
            None => text.into_bytes(),
        };
        write_private(&self.path(source_id), &bytes, new).map_err(|e| self.failed(source_id, e.to_string()))
    }
}

/// The identity lines of `age-keygen` style text (comments skipped), in order.
fn parse_identities(text: &str) -> Result<Vec<Identity>, String> {
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

fn keygen_text(identities: &[Identity]) -> String {
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

/// Writes with mode 0600: a new file only when `new` (never clobber a key), else in
/// place of the old one through a temporary file.
fn write_private(path: &Path, bytes: &[u8], new: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let target = if new {
        path.to_path_buf()
    } else {
        path.with_extension("age.new")
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    if !new {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::{open, seal};

    #[test]
    fn an_identity_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let first = KeyRing::new(dir.path(), None).identity("web").expect("created");
        let again = KeyRing::new(dir.path(), None).identity("web").expect("read");
        assert_eq!(first.to_public().to_string(), again.to_public().to_string());
        let text = std::fs::read_to_string(dir.path().join("web.age")).expect("file");
        assert!(text.contains("AGE-SECRET-KEY-1"), "age-keygen format");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("web.age"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn under_a_master_key_the_file_is_encrypted_and_rotation_keeps_old_objects_readable() {
        let dir = tempfile::tempdir().expect("dir");
        let master = Identity::generate();
        let keys = KeyRing::new(dir.path(), Some(master.clone()));
        let first = keys.identity("web").expect("created");
        let bytes = std::fs::read(dir.path().join("web.age")).expect("file");
        assert!(
            bytes.starts_with(b"age-encryption.org/v1"),
            "encrypted to the master key"
        );
        assert!(
            !bytes.windows(14).any(|w| w == b"AGE-SECRET-KEY"),
            "no key in the clear"
        );
        let old_object = seal(b"{\"messageId\":\"old\"}\n", &first.to_public()).expect("sealed");

        let second = keys.rotate("web").expect("rotated");
        assert_ne!(first.to_public().to_string(), second.to_public().to_string());
        let reopened = KeyRing::new(dir.path(), Some(master));
        assert_eq!(
            reopened.identity("web").expect("newest").to_public().to_string(),
            second.to_public().to_string(),
            "new objects use the new key"
        );
        let all = reopened.identities("web").expect("all");
        assert_eq!(all.len(), 2);
        assert!(
            all.iter().any(|identity| open(&old_object, identity).is_ok()),
            "old objects stay readable"
        );

        let Err(error) = KeyRing::new(dir.path(), None).identity("web") else {
            panic!("opened without the master key")
        };
        assert!(error.to_string().contains(MASTER_KEY_ENV), "{error}");
        let Err(error) = KeyRing::new(dir.path(), Some(Identity::generate())).identity("web") else {
            panic!("opened with another master key")
        };
        assert!(error.to_string().contains("master key"), "{error}");
        let exported = keys.export("web").expect("export");
        assert_eq!(exported.matches("AGE-SECRET-KEY-1").count(), 2);
    }
}
