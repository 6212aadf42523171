//! DELs that could not reach `weftd`, kept on disk until it carries them out.
//!
//! The CNI spec asks DEL to succeed where it can, and a runtime may never
//! retry a failed DEL. When `weftd` cannot answer (stopped, restarting,
//! overloaded) the plugin records the DEL here and answers success; the
//! pod's side goes with its network namespace, and the address stays
//! assigned (so it cannot be handed out twice) until `weftd` carries the DEL
//! out: at start, before it serves any ADD, and whenever it finds new
//! entries while it runs.
//!
//! The spool is the directory `del-spool` beside weftd's socket (mode 0700,
//! owned by the plugin's user: root). One file per attachment
//! (`del-<hash of network, container, interface>.json`), written to a
//! temporary file opened with `O_NOFOLLOW | O_EXCL`, fsync'd, renamed into
//! place, the directory fsync'd: a crash leaves either the whole entry or
//! none. An entry says when it was kept on the node's boot clock
//! ([`BootInstant`]), which weftd compares with when it assigned the
//! attachment's address; entries of format 1 (wall-clock time, written by
//! older plugins) are still read. At most [`MAX_ENTRIES`] entries of at most [`MAX_ENTRY_BYTES`]
//! each. Every file is treated as hostile when read back.
//!
//! A plugin killed between its write and its rename leaves its temporary
//! file behind; weftd removes such leftovers
//! ([`DelSpool::remove_leftovers`]). Which ones are dead is decided by a
//! lock, not by their age: a writing plugin holds the spool's writers' lock
//! (`flock`, shared) from before it creates its temporary file until the
//! entry is in place, and weftd removes temporary files only while it holds
//! that lock exclusively, when no plugin can be writing. The kernel drops
//! a killed plugin's lock with its process. No age would be safe: a plugin
//! can be stopped (SIGSTOP, a frozen cgroup, swap) for any length of time,
//! and a file's age is wall-clock time, which steps.

use crate::api::DelRequest;
use crate::boottime::BootInstant;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The spool's directory name, beside the socket.
pub const DIR_NAME: &str = "del-spool";
/// The most DELs waiting; a full spool refuses more (the DEL fails with
/// "try again later", as before there was a spool).
pub const MAX_ENTRIES: usize = 1024;
/// The largest entry read or written.
pub const MAX_ENTRY_BYTES: u64 = 16 * 1024;
/// The entry format's version: 2 stamps entries on the boot clock; 1
/// (wall-clock time) is still read.
const VERSION: u32 = 2;
/// The name of a plugin's temporary file starts with this.
const TEMP_PREFIX: &str = ".tmp-";
/// The writers' lock (see the module docs), a file that stays.
pub const WRITERS_LOCK: &str = ".writers.lock";

/// Why the spool could not be used or an entry not read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory is not one only root can write.
    #[error("the DEL spool {} is unsafe: {why}", path.display())]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// [`MAX_ENTRIES`] DELs are waiting already.
    #[error("the DEL spool {} is full ({MAX_ENTRIES} DELs wait for weftd)", path.display())]
    Full {
        /// The directory.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A file in the spool is not an entry this version wrote.
    #[error("{} is not a spooled DEL: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// When a DEL was kept: an assignment made after it belongs to a later ADD
/// and stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpooledAt {
    /// On the node's boot clock (format 2).
    Boot(BootInstant),
    /// Wall-clock time only (format 1, older plugins): it cannot be ordered
    /// against anything reliably.
    Wall(SystemTime),
}

/// One DEL waiting for weftd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledDel {
    /// When the plugin answered the runtime.
    pub spooled_at: SpooledAt,
    /// The DEL as the plugin would have sent it.
    pub request: DelRequest,
}

/// An entry as this version writes it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Entry {
    version: u32,
    spooled_at: BootInstant,
    request: DelRequest,
}

/// An entry of format 1.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct EntryV1 {
    version: u32,
    spooled_at_ms: u64,
    request: DelRequest,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct DelSpool {
    dir: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DelSpool {
    /// The spool of the agent whose socket is `socket`.
    pub fn beside(socket: &Path) -> DelSpool {
        let parent = socket.parent().unwrap_or_else(|| Path::new("/"));
        DelSpool {
            dir: parent.join(DIR_NAME),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (0700) unless it exists, and checks that it is
    /// a real directory (not a link) of this process's user that nobody
    /// else can write or read.
    pub fn open(&self) -> Result<(), SpoolError> {
        // Missing parents too, as weftd makes its socket's (0700).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_error(&self.dir))?;
        let meta = std::fs::symlink_metadata(&self.dir).map_err(io_error(&self.dir))?;
        let unsafe_because = |why: String| SpoolError::Unsafe {
            path: self.dir.clone(),
            why,
        };
        if !meta.file_type().is_dir() {
            return Err(unsafe_because("not a directory (a link?)".into()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        #[allow(unsafe_code, reason = "the standard library does not expose geteuid")]
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid {
            return Err(unsafe_because(format!(
                "owned by uid {}, not {euid}",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(unsafe_because(format!(
                "mode {:o}: others may write or read it (must be 0700)",
                meta.mode() & 0o777
            )));
        }
        Ok(())
    }

    /// The entry file of `request`'s attachment.
    fn entry_path(&self, request: &DelRequest) -> PathBuf {
        let mut hash = Sha256::new();
        for part in [&request.network, &request.container_id, &request.ifname] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let name: String = hash
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("del-{name}.json"))
    }

    /// The writers' lock file (refused unless a regular file).
    fn writers_lock(&self) -> Result<File, SpoolError> {
        let path = self.dir.join(WRITERS_LOCK);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(io_error(&path))?;
        if !file.metadata().map_err(io_error(&path))?.is_file() {
            return Err(SpoolError::Unsafe {
                path,
                why: "its writers' lock is not a regular file".into(),
            });
        }
        Ok(file)
    }

    /// Holds the writers' lock shared (waiting while weftd removes
    /// leftovers) until the returned file is dropped.
    fn writing(&self) -> Result<File, SpoolError> {
        let file = self.writers_lock()?;
        file.lock_shared()
            .map_err(io_error(&self.dir.join(WRITERS_LOCK)))?;
        Ok(file)
    }

    /// Removes the temporary files of plugins that died between their write
    /// and their rename; while a plugin is writing, removes nothing (the
    /// next call will). Returns how many it removed.
    pub fn remove_leftovers(&self) -> Result<usize, SpoolError> {
        let no_writer = self.writers_lock()?;
        match no_writer.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(0),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io_error(&self.dir.join(WRITERS_LOCK))(e));
            }
        }
        let leftovers: Vec<PathBuf> = self.files()?.into_iter().filter(|p| is_temp(p)).collect();
        for path in &leftovers {
            DelSpool::remove(path)?;
        }
        Ok(leftovers.len())
    }

    /// Records `request` as spooled at `now`, durably; replaces an earlier
    /// entry of the same attachment. Returns the entry's path.
    pub fn record(&self, request: &DelRequest, now: BootInstant) -> Result<PathBuf, SpoolError> {
        self.open()?;
        // Held until the entry is in place: weftd leaves our temporary file.
        let _writing = self.writing()?;
        let path = self.entry_path(request);
        if !path.exists() && self.entries()?.len() >= MAX_ENTRIES {
            return Err(SpoolError::Full {
                path: self.dir.clone(),
            });
        }
        let entry = Entry {
            version: VERSION,
            spooled_at: now,
            request: request.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| SpoolError::Invalid {
            path: path.clone(),
            why: e.to_string(),
        })?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(SpoolError::Invalid {
                path,
                why: format!("{} bytes, more than {MAX_ENTRY_BYTES}", bytes.len()),
            });
        }
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            path.file_name().and_then(|n| n.to_str()).unwrap_or("del")
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temp, &path))
            .and_then(|()| File::open(&self.dir)?.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(&path)(e));
        }
        Ok(path)
    }

    /// Every file but the writers' lock, sorted by name.
    fn files(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n != WRITERS_LOCK))
            .collect();
        files.sort();
        Ok(files)
    }

    /// The entry files, oldest name first (plugins' temporary files are not
    /// entries).
    pub fn entries(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut entries = self.files()?;
        entries.retain(|p| !is_temp(p));
        Ok(entries)
    }

    /// Whether the spool holds nothing: no entry, no temporary file.
    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.files()?.is_empty())
    }

    /// Reads one entry, refusing anything but a regular file of at most
    /// [`MAX_ENTRY_BYTES`] holding a valid entry of format 2 or 1 (links
    /// are not followed; FIFOs do not block).
    pub fn read(path: &Path) -> Result<SpooledDel, SpoolError> {
        let invalid = |why: String| SpoolError::Invalid {
            path: path.to_owned(),
            why,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(io_error(path))?;
        let meta = file.metadata().map_err(io_error(path))?;
        if !meta.file_type().is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error(path))?;
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return Err(invalid(format!("larger than {MAX_ENTRY_BYTES} bytes")));
        }
        let parse_error = |e: serde_json::Error| invalid(e.to_string());
        let probe: VersionProbe = serde_json::from_slice(&bytes).map_err(parse_error)?;
        match probe.version {
            VERSION => {
                let entry: Entry = serde_json::from_slice(&bytes).map_err(parse_error)?;
                Ok(SpooledDel {
                    spooled_at: SpooledAt::Boot(entry.spooled_at),
                    request: entry.request,
                })
            }
            1 => {
                let entry: EntryV1 = serde_json::from_slice(&bytes).map_err(parse_error)?;
                debug_assert_eq!(entry.version, 1);
                Ok(SpooledDel {
                    spooled_at: SpooledAt::Wall(
                        UNIX_EPOCH + Duration::from_millis(entry.spooled_at_ms),
                    ),
                    request: entry.request,
                })
            }
            other => Err(invalid(format!(
                "version {other}, this weftd reads 1 and {VERSION}"
            ))),
        }
    }

    /// Removes one entry (no error when it is gone already).
    pub fn remove(path: &Path) -> Result<(), SpoolError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
            _ => Ok(()),
        }
    }
}

/// Whether `path` is a plugin's temporary file.
fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(TEMP_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn request(container: &str) -> DelRequest {
        DelRequest {
            network: "weft".into(),
            container_id: container.into(),
            ifname: "eth0".into(),
            netns: Some("/var/run/netns/x".into()),
            pod: None,
        }
    }

    fn spool() -> (tempfile::TempDir, DelSpool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = DelSpool::beside(&dir.path().join("weftd.sock"));
        (dir, spool)
    }

    fn now() -> BootInstant {
        BootInstant::now().unwrap()
    }

    #[test]
    fn a_recorded_del_reads_back_and_replaces_an_earlier_one_of_its_attachment() {
        let (_dir, spool) = spool();
        let at = now();
        let first = spool.record(&request("a"), at).unwrap();
        let again = spool.record(&request("a"), at).unwrap();
        spool.record(&request("b"), at).unwrap();
        assert_eq!(first, again);
        assert_eq!(spool.entries().unwrap().len(), 2);
        let entry = DelSpool::read(&first).unwrap();
        assert_eq!(entry.request, request("a"));
        assert_eq!(entry.spooled_at, SpooledAt::Boot(at));
        let mode = std::fs::metadata(spool.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        DelSpool::remove(&first).unwrap();
        DelSpool::remove(&first).unwrap();
        assert_eq!(spool.entries().unwrap().len(), 1);
    }

    #[test]
    fn an_unsafe_directory_is_refused() {
        let (dir, spool) = spool();
        std::fs::create_dir(spool.dir()).unwrap();
        std::fs::set_permissions(spool.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            spool.record(&request("a"), now()),
            Err(SpoolError::Unsafe { .. })
        ));
        std::fs::remove_dir(spool.dir()).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.dir()).unwrap();
        assert!(matches!(
            spool.record(&request("a"), now()),
            Err(SpoolError::Unsafe { .. })
        ));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_full_spool_refuses_new_attachments() {
        let (_dir, spool) = spool();
        for n in 0..MAX_ENTRIES {
            spool.record(&request(&format!("c{n}")), now()).unwrap();
        }
        assert!(matches!(
            spool.record(&request("one-more"), now()),
            Err(SpoolError::Full { .. })
        ));
        // An attachment already waiting is still recorded again.
        spool.record(&request("c0"), now()).unwrap();
    }

    #[test]
    fn an_entry_of_format_1_is_read_with_its_wall_clock_time() {
        let (_dir, spool) = spool();
        spool.open().unwrap();
        let path = spool.dir().join("del-old.json");
        std::fs::write(
            &path,
            br#"{"version":1,"spooled-at-ms":1764000000123,"request":{"network":"w","container_id":"c","ifname":"eth0"}}"#,
        )
        .unwrap();
        let entry = DelSpool::read(&path).unwrap();
        assert_eq!(
            entry.spooled_at,
            SpooledAt::Wall(UNIX_EPOCH + Duration::from_millis(1_764_000_000_123))
        );
        assert_eq!(entry.request.container_id, "c");
    }

    #[test]
    fn leftovers_of_dead_writers_go_but_never_a_file_being_written() {
        let (_dir, spool) = spool();
        let kept = spool.record(&request("a"), now()).unwrap();
        // A plugin killed between its write and its rename left this one.
        let dead = spool.dir().join(".tmp-4194304-del-dead.json");
        std::fs::write(&dead, b"{\"version\":").unwrap();
        // Another plugin is writing its entry right now.
        let writing = spool.writing().unwrap();
        let live = spool.dir().join(".tmp-4194305-del-live.json");
        std::fs::write(&live, b"{").unwrap();
        assert!(!spool.is_empty().unwrap());

        assert_eq!(spool.remove_leftovers().unwrap(), 0, "a plugin writes");
        assert!(dead.exists() && live.exists());
        // It renames its file into place and lets go of the lock.
        let renamed = spool.dir().join("del-live.json");
        std::fs::rename(&live, &renamed).unwrap();
        drop(writing);

        assert_eq!(spool.remove_leftovers().unwrap(), 1);
        assert!(!dead.exists());
        assert_eq!(spool.entries().unwrap(), vec![kept, renamed]);
    }

    #[test]
    fn hostile_files_are_refused_without_blocking_or_following() {
        let (dir, spool) = spool();
        spool.open().unwrap();
        let at = |name: &str| spool.dir().join(name);
        std::fs::write(at("del-garbage.json"), b"{not json").unwrap();
        std::fs::write(at("del-huge.json"), vec![b' '; 64 * 1024]).unwrap();
        std::fs::write(
            at("del-future.json"),
            br#"{"version":3,"spooled-at-ms":0,"request":{"network":"w","container_id":"c","ifname":"eth0"}}"#,
        )
        .unwrap();
        // A valid entry elsewhere: only a followed link would read it.
        let target = dir.path().join("elsewhere.json");
        std::fs::write(
            &target,
            br#"{"version":1,"spooled-at-ms":0,"request":{"network":"w","container_id":"c","ifname":"eth0"}}"#,
        )
        .unwrap();
        assert!(DelSpool::read(&target).is_ok());
        std::os::unix::fs::symlink(&target, at("del-link.json")).unwrap();
        let fifo =
            std::ffi::CString::new(at("del-fifo.json").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        #[allow(unsafe_code, reason = "mkfifo has no std wrapper")]
        let made = unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
        assert_eq!(made, 0);
        // Format 1's fields under format 2's number.
        std::fs::write(
            at("del-mixed.json"),
            br#"{"version":2,"spooled-at-ms":0,"request":{"network":"w","container_id":"c","ifname":"eth0"}}"#,
        )
        .unwrap();
        let entries = spool.entries().unwrap();
        assert_eq!(entries.len(), 6);
        for path in entries {
            assert!(DelSpool::read(&path).is_err(), "{} refused", path.display());
        }
    }
}
