//! Installing Weft into the container runtime's CNI directories, as aws-node
//! does: `weftd install` copies the plugin binaries into the CNI bin dir, and
//! the agent writes the network configuration into the CNI conf dir only once
//! it can answer ADDs, so the kubelet reports the node Ready only then.
//!
//! Both writes are atomic (a temporary file in the target directory, fsync,
//! rename): a runtime never execs half a plugin or reads half a conflist.

use crate::config::CniSection;
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The plugin binary's name.
pub(crate) const PLUGIN: &str = "weft";
/// The reference port-mapping plugin chained after `weft`.
pub(crate) const PORTMAP: &str = "portmap";

/// An installation step failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file could not be read, written or renamed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the paths.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin to install is in neither the source nor the bin directory.
    #[error("{name} is not in {source_dir} and not yet in {bin_dir}: {hint}")]
    Missing {
        /// The plugin.
        name: String,
        /// Where it was looked for.
        source_dir: String,
        /// The CNI bin directory.
        bin_dir: String,
        /// What to do.
        hint: &'static str,
    },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> InstallError {
    move |source| InstallError::Io { context, source }
}

/// Writes `bytes` to `target` atomically with `mode`.
fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.weft-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file =
            std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        file.write_all(bytes)
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, target).map_err(io(format!(
            "renaming {} to {}",
            tmp.display(),
            target.display()
        )))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing {}", dir.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The plugins `weftd install` puts into the bin dir for `cni`.
pub fn plugins(cni: &CniSection) -> Vec<&'static str> {
    let mut names = vec![PLUGIN];
    if cni.chain_portmap {
        names.push(PORTMAP);
    }
    names
}

/// Copies each plugin of `names` from `source` into `bin_dir` atomically.
/// A chained reference plugin (`portmap`) missing from `source` is accepted
/// when `bin_dir` already has it (the node's own CNI plugins). Returns the
/// installed paths.
pub fn install_plugins(
    source: &Path,
    bin_dir: &Path,
    names: &[&str],
) -> Result<Vec<PathBuf>, InstallError> {
    let mut installed = Vec::new();
    for name in names {
        let from = source.join(name);
        let to = bin_dir.join(name);
        let bytes = match std::fs::read(&from) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if *name != PLUGIN && to.exists() {
                    continue;
                }
                return Err(InstallError::Missing {
                    name: (*name).into(),
                    source_dir: source.display().to_string(),
                    bin_dir: bin_dir.display().to_string(),
                    hint: if *name == PLUGIN {
                        "pass --source with the directory holding the weft binary"
                    } else {
                        "install the reference CNI plugins on the node, ship them in the image, or set [cni] chain-portmap = false"
                    },
                });
            }
            Err(e) => return Err(io(format!("reading {}", from.display()))(e)),
        };
        write_atomic(&to, &bytes, 0o755)?;
        installed.push(to);
    }
    Ok(installed)
}

/// The network configuration list the agent writes: `weft`, then `portmap`
/// when chained (as the VPC CNI's `10-aws.conflist`).
pub fn conflist(cni: &CniSection, socket: &Path) -> serde_json::Value {
    let mut plugins = vec![json!({"type": PLUGIN, "socket": socket})];
    if cni.chain_portmap {
        plugins.push(json!({
            "type": PORTMAP,
            "capabilities": {"portMappings": true},
            "snat": true,
        }));
    }
    json!({"cniVersion": "1.0.0", "name": cni.network, "plugins": plugins})
}

/// Writes the conflist into the conf dir atomically; returns its path.
pub(crate) fn write_conflist(cni: &CniSection, socket: &Path) -> Result<PathBuf, InstallError> {
    let path = cni.conf_dir.join(&cni.conflist);
    let mut text = serde_json::to_string_pretty(&conflist(cni, socket))
        .expect("a JSON value always serialises");
    text.push('\n');
    write_atomic(&path, text.as_bytes(), 0o644)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(dir: &Path) -> CniSection {
        CniSection {
            bin_dir: dir.join("bin"),
            conf_dir: dir.join("net.d"),
            ..CniSection::default()
        }
    }

    #[test]
    fn plugins_are_copied_executable_and_portmap_may_already_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::write(source.join(PLUGIN), b"#!/bin/true\n").unwrap();
        let cni = section(dir.path());
        let err = install_plugins(&source, &cni.bin_dir, &plugins(&cni)).unwrap_err();
        assert!(err.to_string().contains("portmap is not in"), "{err}");
        std::fs::create_dir_all(&cni.bin_dir).unwrap();
        std::fs::write(cni.bin_dir.join(PORTMAP), b"node's own").unwrap();
        let installed = install_plugins(&source, &cni.bin_dir, &plugins(&cni)).unwrap();
        assert_eq!(installed, [cni.bin_dir.join(PLUGIN)]);
        let meta = std::fs::metadata(cni.bin_dir.join(PLUGIN)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        // Nothing but the two plugins is left in the directory.
        let mut names: Vec<_> = std::fs::read_dir(&cni.bin_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [PORTMAP, PLUGIN]);
    }

    #[test]
    fn the_conflist_chains_portmap_and_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let cni = section(dir.path());
        let path = write_conflist(&cni, Path::new("/run/weft/weftd.sock")).unwrap();
        assert_eq!(path, dir.path().join("net.d/10-weft.conflist"));
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["plugins"][0]["type"], "weft");
        assert_eq!(written["plugins"][0]["socket"], "/run/weft/weftd.sock");
        assert_eq!(written["plugins"][1]["type"], "portmap");
        let alone = CniSection {
            chain_portmap: false,
            ..cni
        };
        assert_eq!(
            conflist(&alone, Path::new("/s"))["plugins"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
