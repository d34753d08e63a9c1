//! Files the commands write: secrets only their owner may read.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes a new file only its owner can read (refusing to overwrite one).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
