//! Each source's age identity, generated on first use.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use age::secrecy::ExposeSecret;
use age::x25519::Identity;

use crate::config::ArchiveError;

/// The identities of the sources, from the key directory.
pub struct KeyRing {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Identity>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    pub fn new(dir: &Path) -> Self {
        KeyRing {
            dir: dir.to_path_buf(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, source_id: &str) -> PathBuf {
        self.dir.join(format!("{source_id}.age"))
    }

    /// The source's identity, read from its file or generated and written there.
    pub fn identity(&self, source_id: &str) -> Result<Identity, ArchiveError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(identity) = loaded.get(source_id) {
            return Ok(identity.clone());
        }
        let path = self.path(source_id);
        let failed = |reason: String| ArchiveError::Key {
            path: path.display().to_string(),
            reason,
        };
        let identity = match std::fs::read_to_string(&path) {
            Ok(text) => read_identity(&text).map_err(failed)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate();
                write_private(&path, &identity).map_err(|e| failed(e.to_string()))?;
                tracing::info!(source_id, path = %path.display(), "archive key created");
                identity
            }
            Err(error) => return Err(failed(error.to_string())),
        };
        loaded.insert(source_id.to_string(), identity.clone());
        Ok(identity)
    }
}

/// The identity line of an `age-keygen` style file (comments skipped).
fn read_identity(text: &str) -> Result<Identity, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or("no identity in the file")?;
    Identity::from_str(line).map_err(str::to_string)
}

fn write_private(path: &Path, identity: &Identity) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "# public key: {}", identity.to_public())?;
    writeln!(file, "{}", identity.to_string().expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let first = KeyRing::new(dir.path()).identity("web").expect("created");
        let again = KeyRing::new(dir.path()).identity("web").expect("read");
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
}
