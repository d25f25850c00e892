//! Atomic file writes: nothing fleetkit writes is ever half written.
//!
//! Every write goes to a temporary file in the destination's directory, is fsynced,
//! gets its final mode, and is renamed over the destination; the directory is then
//! fsynced so the rename itself survives a crash. A reader sees the old bytes or the
//! new bytes, never a mix (DESIGN.md security rule 3).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File mode for secrets (private keys, tokens).
pub const SECRET_MODE: u32 = 0o600;
/// File mode for public material.
pub const PUBLIC_MODE: u32 = 0o644;

/// An I/O failure, with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FsError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The name prefix of the temporary files [`write_atomic`] renames into place.
pub const TEMP_PREFIX: &str = ".fleetkit-tmp-";

/// Writes `bytes` to `path` atomically with the given Unix mode.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(|e| FsError::new("cannot create directory", &dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(&dir)
        .map_err(|e| FsError::new("cannot create a temporary file in", &dir, e))?;
    set_mode(tmp.path(), mode)?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| FsError::new("cannot write", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| FsError::new("cannot rename into place", path, e.error))?;
    sync_dir(&dir);
    Ok(())
}

/// Reads a file, refusing anything larger than `max` bytes before reading it whole.
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let meta =
        fs::metadata(path).map_err(|e| ReadError::Io(FsError::new("cannot read", path, e)))?;
    if meta.len() > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    let bytes = fs::read(path).map_err(|e| ReadError::Io(FsError::new("cannot read", path, e)))?;
    // The file may have grown between stat and read.
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// Why [`read_capped`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] FsError),
    #[error(
        "{path}: {size} bytes is larger than the limit of {max} bytes; is this the right file?"
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), FsError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::new("cannot set permissions on", path, e))
}

/// Windows has no modes: a secret (no group or other bits) gets an ACL that only
/// SYSTEM and Administrators can read, with inheritance from ProgramData removed
/// (where every user could otherwise read it).
#[cfg(windows)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), FsError> {
    if mode & 0o077 != 0 {
        return Ok(());
    }
    let status = std::process::Command::new("icacls")
        .arg(path)
        .args([
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:F",
            "*S-1-5-32-544:F",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| FsError::new("cannot run icacls on", path, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(FsError::new(
            "cannot restrict the access rights of",
            path,
            io::Error::other(format!("icacls exited with {status}")),
        ))
    }
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> Result<(), FsError> {
    Ok(())
}

#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) {
    // Best effort: some filesystems refuse fsync on a directory; the data is already
    // durable, only the rename's durability is at stake.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_atomic(&p, b"one", SECRET_MODE).unwrap();
        write_atomic(&p, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_capped_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        fs::write(&p, vec![b'a'; 100]).unwrap();
        assert!(matches!(
            read_capped(&p, 10),
            Err(ReadError::TooLarge { .. })
        ));
        assert_eq!(read_capped(&p, 100).unwrap().len(), 100);
    }
}
