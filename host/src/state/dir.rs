//! The agent's state directory and its lock.

use super::{Checkpoint, Intent, Journal, StateError};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Name of the assignment checkpoint.
const CHECKPOINT_FILE: &str = "ipam-checkpoint.json";
/// Name of IPv6 mode's checkpoint.
const IPV6_CHECKPOINT_FILE: &str = "ipam-ipv6-checkpoint.json";
/// Name of the EC2 operation journal.
const JOURNAL_FILE: &str = "ec2-journal.jsonl";
/// Name of the lock file.
const LOCK_FILE: &str = "lock";

/// The directory holding the agent's durable state, locked (`flock`) for as
/// long as this value lives so that two agents cannot share it.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl StateDir {
    /// Creates the directory if needed (mode 0700) and takes its lock.
    /// Fails with [`StateError::Locked`] if another process holds it.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StateError> {
        let path = path.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(StateError::io("create directory", &path))?;
        let lock_path = path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(StateError::io("open lock file", &lock_path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == Errno::EWOULDBLOCK {
                StateError::Locked {
                    path: path.clone(),
                    lock: lock_path.clone(),
                }
            } else {
                StateError::Io {
                    action: "lock",
                    path: lock_path.clone(),
                    source: errno.into(),
                }
            }
        })?;
        Ok(StateDir { path, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join(CHECKPOINT_FILE)
    }

    /// IPv6 mode's checkpoint file ([`super::Ipv6Checkpoint`]).
    pub(crate) fn ipv6_checkpoint_path(&self) -> PathBuf {
        self.path.join(IPV6_CHECKPOINT_FILE)
    }

    /// The journal file.
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.path.join(JOURNAL_FILE)
    }

    /// Loads the checkpoint; empty on first start.
    pub fn load_checkpoint(&self) -> Result<Checkpoint, StateError> {
        Checkpoint::load(&self.checkpoint_path())
    }

    /// Replaces the checkpoint atomically.
    pub fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        checkpoint.save(&self.checkpoint_path())
    }

    /// Opens the journal; returns it with the operations a previous run
    /// left unfinished.
    pub fn open_journal(&self) -> Result<(Journal, Vec<Intent>), StateError> {
        Journal::open(&self.journal_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_agent_is_refused_until_the_first_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state");
        let first = StateDir::open(&path).unwrap();
        let err = StateDir::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("locked by another process"));
        drop(first);
        StateDir::open(&path).unwrap();
    }

    #[test]
    fn creates_a_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path().join("a/b")).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(dir.load_checkpoint().unwrap().allocations.is_empty());
    }
}
