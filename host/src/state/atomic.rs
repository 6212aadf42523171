//! Crash-safe file replacement.

use super::StateError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The temporary file [`write_atomic`] writes `path` through. A crash can
/// leave it behind; readers ignore it and the next write truncates it.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either
/// the old or the new content: write a temporary file, `fsync` it, rename it
/// over `path`, `fsync` the directory (which makes the rename durable).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(StateError::io("create", &tmp))?;
    file.write_all(bytes)
        .map_err(StateError::io("write", &tmp))?;
    file.sync_all().map_err(StateError::io("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(StateError::io("rename into place", path))?;
    sync_parent(path)
}

/// `fsync`s the directory holding `path`, making a create or rename in it
/// durable.
pub(crate) fn sync_parent(path: &Path) -> Result<(), StateError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StateError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn overwrites_a_leftover_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        fs::write(
            temp_path(&path),
            b"garbage from a crash, longer than the new content",
        )
        .unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn reports_the_path_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("f.json");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("f.json.tmp"), "{err}");
    }
}
