//! Errors of the state directory.

use std::path::PathBuf;

/// Why state could not be read or written. Messages name the file and what
/// the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another agent holds the state directory.
    #[error(
        "state directory {} is locked by another process (lock file {}); \
         stop the other weftd or give this one its own state directory",
        path.display(), lock.display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A file was written by another (newer) format version.
    #[error(
        "{} has format version {found:?} but this weftd reads only {expected:?}; \
         run a weftd that understands it, or move the file away to rebuild from EC2",
        path.display()
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: String,
        /// The version this build reads.
        expected: &'static str,
    },
    /// A file is not valid.
    #[error(
        "{} is corrupt{}: {source}; move it away to rebuild from EC2",
        path.display(),
        line.map(|l| format!(" at line {l}")).unwrap_or_default()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line, for line-based files.
        line: Option<usize>,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl StateError {
    /// An [`StateError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    }
}

/// Why a pod assignment or release was not made; in either case nothing
/// changed, in memory or on disk.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The pool refused it (for example: no free address in the group).
    #[error(transparent)]
    Refused(#[from] crate::ipam::IpamError),
    /// Its checkpoint could not be written.
    #[error(transparent)]
    NotSaved(#[from] StateError),
}
