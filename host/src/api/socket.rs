//! Creating the API socket safely: mode 0600 from the first moment it is
//! reachable, a stale socket replaced, a live agent never displaced.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_PATH: usize = 107;

/// Why the API socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket.
    #[error(
        "another agent is serving on {0}; stop it first (only one weftd may run per node), \
         or give this one another `socket` path"
    )]
    InUse(PathBuf),
    /// The path exists and is not a socket; it is left alone.
    #[error("{0} exists and is not a socket; remove it or choose another `socket` path")]
    NotASocket(PathBuf),
    /// The path does not fit a unix socket address.
    #[error(
        "socket path {0} is too long: unix sockets allow {MAX_PATH} bytes and weftd binds \
         `<path>.<pid>.d/s` first; choose a shorter path"
    )]
    PathTooLong(PathBuf),
    /// A filesystem or socket call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_err(context: String) -> impl FnOnce(io::Error) -> SocketError {
    move |source| SocketError::Io { context, source }
}

/// The file of a bound API socket, identified so that only this agent's
/// socket is ever removed.
#[derive(Debug)]
pub struct SocketFile {
    /// The socket's path.
    pub path: PathBuf,
    dev_ino: (u64, u64),
}

impl SocketFile {
    /// Binds `path` with mode 0600 and returns the listener (blocking mode)
    /// with the file's identity.
    ///
    /// Creates the parent directory (mode 0700) if missing; replaces a stale
    /// socket nobody answers on; refuses if an agent answers on it or if the
    /// path is not a socket. The socket is bound inside a private staging
    /// directory (`<path>.<pid>.d`, mode 0700), restricted to 0600 there,
    /// then renamed into place: whatever the umask, nobody else can reach
    /// it before it is 0600 (the parent may be a shared directory).
    pub(crate) fn bind(path: &Path) -> Result<(UnixListener, SocketFile), SocketError> {
        let staging = PathBuf::from(format!("{}.{}.d", path.display(), std::process::id()));
        let tmp = staging.join("s");
        if tmp.as_os_str().len() > MAX_PATH {
            return Err(SocketError::PathTooLong(path.to_owned()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        remove_if_stale(path)?;
        remove_staging(&staging)?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err(format!("creating {}", staging.display())))?;
        let placed = UnixListener::bind(&tmp)
            .map_err(io_err(format!("binding {}", tmp.display())))
            .and_then(|listener| {
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err(format!("restricting {} to 0600", tmp.display())))?;
                std::fs::rename(&tmp, path).map_err(io_err(format!(
                    "moving {} to {}",
                    tmp.display(),
                    path.display()
                )))?;
                Ok(listener)
            });
        let cleaned = remove_staging(&staging);
        let listener = placed?;
        cleaned?;
        let meta =
            std::fs::metadata(path).map_err(io_err(format!("inspecting {}", path.display())))?;
        let file = SocketFile {
            path: path.to_owned(),
            dev_ino: (meta.dev(), meta.ino()),
        };
        Ok((listener, file))
    }

    /// Removes the socket file if it is still the one this agent bound.
    pub(crate) fn remove(&self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.dev_ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn remove_if_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("inspecting {}", path.display()))(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_owned()));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => remove_if_exists(path),
        Err(e) => Err(io_err(format!("probing {}", path.display()))(e)),
    }
}

/// Removes the staging directory of [`SocketFile::bind`] and the socket a
/// failed or interrupted bind left in it.
fn remove_staging(staging: &Path) -> Result<(), SocketError> {
    remove_if_exists(&staging.join("s"))?;
    match std::fs::remove_dir(staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_err(format!("removing {}", staging.display()))(e))
        }
        _ => Ok(()),
    }
}

fn remove_if_exists(path: &Path) -> Result<(), SocketError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_err(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_0600_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/weft/weftd.sock");
        let (_listener, file) = SocketFile::bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o700);
        UnixStream::connect(&path).expect("reachable under the final name");
        file.remove();
        assert!(!path.exists());
    }

    /// Names created (`IN_CREATE`) directly in a watched directory, with
    /// whether each is a directory.
    struct CreateWatch(inotify::Inotify);

    impl CreateWatch {
        fn new(dir: &Path) -> Self {
            let inotify = inotify::Inotify::init().expect("inotify_init1");
            inotify
                .watches()
                .add(dir, inotify::WatchMask::CREATE)
                .expect("inotify_add_watch");
            CreateWatch(inotify)
        }

        /// The events queued so far (the descriptor does not block).
        fn created(&mut self) -> Vec<(String, bool)> {
            let mut buf = vec![0u8; 64 * 1024];
            let Ok(events) = self.0.read_events(&mut buf) else {
                return Vec::new();
            };
            events
                .map(|event| {
                    let name = event.name.map(|n| n.to_string_lossy().into_owned());
                    let is_dir = event.mask.contains(inotify::EventMask::ISDIR);
                    (name.unwrap_or_default(), is_dir)
                })
                .collect()
        }
    }

    #[test]
    fn the_socket_is_never_reachable_before_it_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weftd.sock");
        let mut watch = CreateWatch::new(dir.path());
        let (_listener, _file) = SocketFile::bind(&path).unwrap();
        let created = watch.created();
        assert!(!created.is_empty());
        // Only the private staging directory is created in the (possibly
        // shared) parent; the socket arrives there by rename, already 0600.
        for (name, is_dir) in &created {
            assert!(is_dir, "{name} was created in the shared directory");
            assert!(!dir.path().join(name).exists(), "{name} was left behind");
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn replaces_a_stale_socket_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weftd.sock");
        drop(UnixListener::bind(&path).unwrap());
        let live = SocketFile::bind(&path).expect("a stale socket is replaced");
        match SocketFile::bind(&path) {
            Err(SocketError::InUse(p)) => assert_eq!(p, path),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(live);
    }

    #[test]
    fn refuses_to_delete_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weftd.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(
            SocketFile::bind(&path),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn rejects_too_long_paths() {
        let path = PathBuf::from(format!("/tmp/{}", "x".repeat(100)));
        assert!(matches!(
            SocketFile::bind(&path),
            Err(SocketError::PathTooLong(_))
        ));
    }

    #[test]
    fn remove_leaves_a_replacement_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weftd.sock");
        let (_listener, first) = SocketFile::bind(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _second = UnixListener::bind(&path).unwrap();
        first.remove();
        assert!(path.exists(), "another agent's socket is not removed");
    }
}
