//! On-disk cache of compiled policy modules, so a restart does not
//! recompile (large components take seconds to compile).
//!
//! A cached artifact is native code that is loaded without recompilation,
//! so an entry is trusted only when everything about it is as this agent
//! left it; on any doubt the module is compiled again and nothing from disk
//! is deserialized:
//!
//! * the directory is a real directory (not a symlink), owned by the
//!   agent's user and writable by no one else; it is created 0700;
//! * every entry is authenticated: it holds an HMAC-SHA256, under a key
//!   kept in the directory (`key`, 32 random bytes, created 0600, same
//!   checks), of the module's sha256, the engine tag and the artifact, so an
//!   entry can neither be forged nor swapped for another module's;
//! * key and entries are opened with `O_NOFOLLOW` and checked on the open
//!   file: a regular file, owned by the agent's user, writable by no one
//!   else.
//!
//! An entry is keyed by the module's sha256 and by the engine: the agent's
//! version and [`Engine::precompile_compatibility_hash`]; wasmtime also
//! embeds its own version in every artifact and refuses a mismatch, which
//! is treated like a corrupt entry. Entries are written to a temporary file
//! (`O_EXCL`, 0600) and renamed into place.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Subdirectory of the configured images.
const IMAGES_DIR: &str = "images";
/// Name of the key file in the cache directory.
const KEY_FILE: &str = "key";
/// Bytes of the HMAC key.
const KEY_BYTES: usize = 32;
/// Bytes of an entry's tag.
const TAG_BYTES: usize = 32;
/// Largest entry read, in bytes (a compiled policy is far smaller).
const MAX_ENTRY_BYTES: u64 = 256 << 20;
/// Domain separation of the tag.
const TAG_CONTEXT: &[u8] = b"weft policy artifact v1\0";

/// Why an entry, the key or the directory is not trusted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Ownership, type or mode is not what the agent leaves.
    #[error("{path}: {why}; not trusted")]
    Untrusted {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The entry's tag does not match its content.
    #[error("{0}: authentication failed (tampered, or written with another key)")]
    Forged(PathBuf),
    /// wasmtime refused the artifact.
    #[error("{path}: incompatible artifact: {message}")]
    Incompatible {
        /// The entry.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
}

/// A directory of compiled artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir`, created (0700) when first written.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArtifactCache { dir: dir.into() }
    }

    /// The cache directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cache of configured images (`super::image`): the subdirectory
    /// `images`, with its own key and the same checks. Images are kept
    /// apart because one module has an image per settings.
    pub(crate) fn images(&self) -> ArtifactCache {
        ArtifactCache::new(self.dir.join(IMAGES_DIR))
    }

    /// The entry's path for a module with hash `module_sha256`.
    pub(crate) fn entry_path(&self, engine: &Engine, module_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", engine_tag(engine)))
    }

    /// The cached component, if an entry exists and is trusted. Any doubt is
    /// logged and the caller compiles (and [`store`](Self::store)s).
    pub(crate) fn load(&self, engine: &Engine, module_sha256: &str) -> Option<Component> {
        match self.try_load(engine, module_sha256) {
            Ok(component) => component,
            Err(e) => {
                tracing::warn!("cached policy artifact not used, recompiling: {e}");
                None
            }
        }
    }

    fn try_load(
        &self,
        engine: &Engine,
        module_sha256: &str,
    ) -> Result<Option<Component>, CacheError> {
        let path = self.entry_path(engine, module_sha256);
        if !self.dir.exists() {
            return Ok(None);
        }
        check_dir(&self.dir)?;
        let Some(file) = open_trusted(&path)? else {
            return Ok(None);
        };
        let key = self.key(false)?.ok_or_else(|| CacheError::Untrusted {
            path: self.dir.join(KEY_FILE),
            why: "an entry exists but the key does not".to_owned(),
        })?;
        let bytes = read_all(file, &path)?;
        let Some((tag, artifact)) = bytes.split_at_checked(TAG_BYTES) else {
            return Err(CacheError::Forged(path));
        };
        mac(&key, module_sha256, engine, artifact)
            .verify_slice(tag)
            .map_err(|_| CacheError::Forged(path.clone()))?;
        // SAFETY: the artifact is authenticated: it was written by this
        // agent (which alone holds the key) with `Component::serialize` for
        // this module and an engine with the same version and compatibility
        // hash, and neither it nor the key can have been changed by another
        // user (ownership and modes checked on the open files and the
        // directory).
        #[allow(
            unsafe_code,
            reason = "wasmtime offers no safe way to load a precompiled artifact"
        )]
        let loaded = unsafe { Component::deserialize(engine, artifact) };
        match loaded {
            Ok(component) => Ok(Some(component)),
            Err(e) => Err(CacheError::Incompatible {
                path,
                message: format!("{e:#}"),
            }),
        }
    }

    /// Writes `component`'s artifact for `module_sha256` (temp + rename),
    /// creating the directory and key when missing.
    pub(crate) fn store(
        &self,
        engine: &Engine,
        module_sha256: &str,
        component: &Component,
    ) -> Result<(), CacheError> {
        let artifact = component.serialize().map_err(|e| CacheError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| io(&self.dir, source))?;
        check_dir(&self.dir)?;
        let key = self.key(true)?.ok_or_else(|| CacheError::Untrusted {
            path: self.dir.join(KEY_FILE),
            why: "the key could not be created".to_owned(),
        })?;
        let tag = mac(&key, module_sha256, engine, &artifact)
            .finalize()
            .into_bytes();
        let path = self.entry_path(engine, module_sha256);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = write_new(&tmp, &[tag.as_slice(), &artifact])
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| io(&path, e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The HMAC key: read when trusted, created when missing and `create`.
    fn key(&self, create: bool) -> Result<Option<[u8; KEY_BYTES]>, CacheError> {
        let path = self.dir.join(KEY_FILE);
        if let Some(file) = open_trusted(&path)? {
            let bytes = read_all(file, &path)?;
            return match <[u8; KEY_BYTES]>::try_from(bytes.as_slice()) {
                Ok(key) => Ok(Some(key)),
                Err(_) => Err(CacheError::Untrusted {
                    path,
                    why: format!("holds {} bytes, not {KEY_BYTES}", bytes.len()),
                }),
            };
        }
        if !create {
            return Ok(None);
        }
        let mut key = [0u8; KEY_BYTES];
        rand::fill(&mut key);
        // Written whole under a temporary name, then linked into place:
        // a concurrent reader never sees half a key, and a concurrent
        // creator's key is kept (the link fails if it exists).
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        write_new(&tmp, &[&key])?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Some(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.key(false),
            Err(e) => Err(io(&path, e)),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> CacheError {
    CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The cache directory must be a directory (not a symlink to one) owned by
/// the agent's user and writable by no one else.
fn check_dir(dir: &Path) -> Result<(), CacheError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io(dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(CacheError::Untrusted {
            path: dir.to_owned(),
            why: "is not a directory (a symlink?)".to_owned(),
        });
    }
    check_owner_and_mode(dir, &meta)
}

fn check_owner_and_mode(path: &Path, meta: &Metadata) -> Result<(), CacheError> {
    let euid = nix::unistd::geteuid().as_raw();
    let why = if meta.uid() != euid {
        format!("owned by uid {}, not by the agent (uid {euid})", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!("mode {:o} lets others write it", meta.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(CacheError::Untrusted {
        path: path.to_owned(),
        why,
    })
}

/// Opens `path` for reading without following a symlink or blocking on a
/// FIFO, and checks the open file: regular, the agent's, not writable by
/// others. `None` when it does not exist.
fn open_trusted(path: &Path) -> Result<Option<File>, CacheError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(CacheError::Untrusted {
                path: path.to_owned(),
                why: "is a symlink".to_owned(),
            });
        }
        Err(e) => return Err(io(path, e)),
    };
    let meta = file.metadata().map_err(|e| io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(CacheError::Untrusted {
            path: path.to_owned(),
            why: "is not a regular file".to_owned(),
        });
    }
    check_owner_and_mode(path, &meta)?;
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(CacheError::Untrusted {
            path: path.to_owned(),
            why: format!("is {} bytes, more than any artifact", meta.len()),
        });
    }
    Ok(Some(file))
}

fn read_all(mut file: File, path: &Path) -> Result<Vec<u8>, CacheError> {
    let mut bytes = Vec::new();
    Read::by_ref(&mut file)
        .take(MAX_ENTRY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path, e))?;
    Ok(bytes)
}

/// Creates `path` (it must not exist; 0600, not following symlinks), writes
/// `parts` and syncs it.
fn write_new(path: &Path, parts: &[&[u8]]) -> Result<(), CacheError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io(path, e))?;
    let result = parts
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| file.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(path);
        return Err(io(path, e));
    }
    Ok(())
}

/// The tag of an entry: the module, the engine and the artifact.
fn mac(
    key: &[u8; KEY_BYTES],
    module_sha256: &str,
    engine: &Engine,
    artifact: &[u8],
) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(TAG_CONTEXT);
    mac.update(module_sha256.as_bytes());
    mac.update(b"\0");
    mac.update(engine_tag(engine).as_bytes());
    mac.update(b"\0");
    mac.update(artifact);
    mac
}

/// 16 hex digits identifying the agent version and engine settings.
fn engine_tag(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// A stable [`Hasher`] over sha256 (std's hashers are not stable).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
