//! On-disk cache of compiled policy modules, so a restart does not
//! recompile (large components take seconds to compile).
//!
//! An entry is keyed by the module's sha256 and by the engine: the agent's
//! version and [`Engine::precompile_compatibility_hash`]; wasmtime also
//! embeds its own version in every artifact and refuses a mismatch, which
//! is treated like a corrupt entry. Its file
//! holds the sha256 of the artifact followed by the artifact, so a truncated
//! or corrupted entry is detected, ignored and rewritten. Entries are written
//! to a temporary file and renamed into place.
//!
//! The directory must be writable by the agent only: a cached artifact is
//! native code that is loaded without recompilation.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir`, created when first written.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ArtifactCache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry's path for a module with hash `module_sha256`.
    pub fn entry_path(&self, engine: &Engine, module_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", engine_tag(engine)))
    }

    /// The cached component, if a valid entry exists. Invalid entries are
    /// logged and ignored (the caller compiles and [`store`](Self::store)s).
    pub fn load(&self, engine: &Engine, module_sha256: &str) -> Option<Component> {
        let path = self.entry_path(engine, module_sha256);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read cached policy artifact: {e}");
                return None;
            }
        };
        let Some((sum, artifact)) = bytes.split_at_checked(32) else {
            tracing::warn!(path = %path.display(), "cached policy artifact is truncated; recompiling");
            return None;
        };
        if Sha256::digest(artifact).as_slice() != sum {
            tracing::warn!(path = %path.display(), "cached policy artifact is corrupt; recompiling");
            return None;
        }
        // SAFETY: the artifact was produced by `Component::serialize` for an
        // engine with the same version and compatibility hash (both in the
        // file name), its checksum matches, and the cache directory is
        // documented as writable by the agent only.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cached policy artifact is incompatible ({e}); recompiling");
                None
            }
        }
    }

    /// Writes `component`'s artifact for `module_sha256` (temp + rename).
    pub fn store(
        &self,
        engine: &Engine,
        module_sha256: &str,
        component: &Component,
    ) -> std::io::Result<()> {
        let artifact = component.serialize().map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.entry_path(engine, module_sha256);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&Sha256::digest(&artifact))?;
            file.write_all(&artifact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
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
