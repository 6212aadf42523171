//! The policy directory (`[policies] dir`): `NAME.wasm` with an optional
//! `NAME.toml` (the fields of a `[policies.<role>]` table but `module`),
//! and `NAME.shadow.wasm` (or `shadow = true`) for a shadow. The world a
//! component implements decides its role. A module of the directory
//! overrides the main configuration's table of its role; removing it puts
//! that table (or the built-in default) back in force.
//!
//! [`PolicySet::apply_directory`] reads the whole directory and changes
//! each role at most once, atomically. A file that cannot be read, parsed,
//! compiled, configured or matched to its pin is refused and changes
//! nothing: the module in force for its path stays. Two modules for one
//! role are both refused. Names starting with `.` are skipped: a ConfigMap
//! mount keeps its real files in `..data/` behind symlinks, which are
//! followed.

use super::config::PolicyConfig;
use super::error::Decision;
use super::module::{CompiledPolicy, PolicyModule};
use super::set::PolicySet;
use super::shadow::Shadow;
use super::slot::{DirFile, Origin, Slot, SlotState, configure_module};
use super::view::Refusal;
use crate::metrics::Metrics;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use weft_policy_sdk::{PoolSizing, SecurityGroups, SubnetSelection};

/// The suffix of a shadow module's stem.
const SHADOW_SUFFIX: &str = ".shadow";

/// A `NAME.wasm` file of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `NAME` without `.shadow`: the policy's default name.
    name: String,
    wasm: PathBuf,
    /// `NAME.toml`, when it exists.
    toml: Option<PathBuf>,
    /// Named `NAME.shadow.wasm`.
    shadow: bool,
}

/// The `.wasm` files of `dir`, sorted by name; a missing directory has
/// none.
fn scan(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for item in read {
        let file_name = item?.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let Some(stem) = file_name.strip_suffix(".wasm") else {
            continue;
        };
        let toml = dir.join(format!("{stem}.toml"));
        let (name, shadow) = match stem.strip_suffix(SHADOW_SUFFIX) {
            Some(name) => (name, true),
            None => (stem, false),
        };
        entries.push(Entry {
            name: name.to_owned(),
            wasm: dir.join(file_name),
            toml: toml.exists().then_some(toml),
            shadow,
        });
    }
    entries.sort_by(|a, b| a.wasm.cmp(&b.wasm));
    Ok(entries)
}

/// A file ready to be put in force for a role.
struct Candidate {
    decision: Decision,
    shadow: bool,
    file: DirFile,
    /// `None` when the same file is already in force for this role.
    loaded: Option<(PolicyConfig, Arc<PolicyModule>)>,
}

/// A refused file and, when it got that far, the role it implements.
struct Refused {
    decision: Option<Decision>,
    refusal: Refusal,
}

impl<P, S, G> PolicySet<P, S, G>
where
    P: PoolSizing + Send + Sync,
    S: SubnetSelection + Send + Sync,
    G: SecurityGroups + Send + Sync,
{
    /// Reads the policy directory (if one is configured) and puts its
    /// modules in force; returns the files refused. Safe to call at any
    /// time from any thread: a decision in flight finishes on the module
    /// it started with.
    pub fn apply_directory(&self) -> Vec<Refusal> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let entries = match scan(dir) {
            Ok(entries) => entries,
            Err(e) => {
                let refusal = Refusal::now(
                    vec![dir.clone()],
                    format!(
                        "cannot read the policy directory {}: {e}; every policy stays as it is",
                        dir.display()
                    ),
                );
                tracing::error!("{}", refusal.message);
                return self.set_refused(vec![refusal]);
            }
        };
        let mut candidates: BTreeMap<(Decision, bool), Vec<Candidate>> = BTreeMap::new();
        let mut refused = Vec::new();
        let mut refused_paths = HashSet::new();
        for entry in entries {
            match self.prepare(&entry) {
                Ok(candidate) => candidates
                    .entry((candidate.decision, candidate.shadow))
                    .or_default()
                    .push(candidate),
                Err(r) => {
                    refused_paths.insert(entry.wasm.clone());
                    // A file that never revealed its world is charged to the
                    // role it is in force for, if any.
                    let decision = r.decision.or_else(|| self.in_force_at(&entry.wasm));
                    self.refuse(decision, &r.refusal);
                    refused.push(r.refusal);
                }
            }
        }
        for decision in Decision::ALL {
            for shadow in [false, true] {
                let found = candidates.remove(&(decision, shadow)).unwrap_or_default();
                let outcome = match decision {
                    Decision::PoolSizing => apply(
                        &self.pool,
                        &self.metrics,
                        shadow,
                        found,
                        &refused_paths,
                        P::configure,
                    ),
                    Decision::SubnetSelection => apply(
                        &self.subnet,
                        &self.metrics,
                        shadow,
                        found,
                        &refused_paths,
                        S::configure,
                    ),
                    Decision::SecurityGroups => apply(
                        &self.security,
                        &self.metrics,
                        shadow,
                        found,
                        &refused_paths,
                        G::configure,
                    ),
                };
                if let Err(refusal) = outcome {
                    self.refuse(Some(decision), &refusal);
                    refused.push(refusal);
                }
            }
        }
        self.set_refused(refused)
    }

    fn set_refused(&self, refused: Vec<Refusal>) -> Vec<Refusal> {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = refused.clone();
        refused
    }

    /// Logs and counts a refusal; remembers it as its role's last one.
    pub(super) fn refuse(&self, decision: Option<Decision>, refusal: &Refusal) {
        tracing::error!(role = ?decision.map(Decision::as_str), "{}", refusal.message);
        self.metrics
            .policy_reload(decision.map_or("unknown", Decision::as_str), "refused");
        match decision {
            Some(Decision::PoolSizing) => self.pool.refused(refusal.clone()),
            Some(Decision::SubnetSelection) => self.subnet.refused(refusal.clone()),
            Some(Decision::SecurityGroups) => self.security.refused(refusal.clone()),
            None => {}
        }
    }

    /// Reads, checks and (unless it is in force as it is) loads one file.
    fn prepare(&self, entry: &Entry) -> Result<Candidate, Refused> {
        let refused = |decision: Option<Decision>, why: String| Refused {
            decision,
            refusal: Refusal::now(
                vec![entry.wasm.clone()],
                format!(
                    "policy file {} refused: {why}; {}",
                    entry.wasm.display(),
                    "the module in force for it stays"
                ),
            ),
        };
        let bytes = std::fs::read(&entry.wasm).map_err(|e| refused(None, e.to_string()))?;
        let toml = match &entry.toml {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| refused(None, format!("cannot read {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let file = DirFile {
            wasm: entry.wasm.clone(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            toml,
        };
        if let Some((decision, shadow)) = self.in_force(&file) {
            return Ok(Candidate {
                decision,
                shadow,
                file,
                loaded: None,
            });
        }
        let config = entry_config(entry, file.toml.as_deref()).map_err(|m| refused(None, m))?;
        let compiled = CompiledPolicy::from_bytes(
            &self.engine,
            &bytes,
            &config.display_name(&entry.name),
            None,
            config.sha256.as_deref(),
        )
        .map_err(|e| refused(e.decision, e.to_string()))?;
        let decision = compiled.report().decision;
        config
            .validate(decision)
            .map_err(|m| refused(Some(decision), format!("{}: {m}", toml_name(entry))))?;
        let module = configure_module(&compiled, &config)
            .map_err(|e| refused(Some(decision), e.to_string()))?;
        Ok(Candidate {
            decision,
            shadow: config.shadow,
            file,
            loaded: Some((config, Arc::new(module))),
        })
    }

    /// The role a file at `path` is in force for (as module or shadow).
    fn in_force_at(&self, path: &Path) -> Option<Decision> {
        let at = |origin: &Origin| matches!(origin, Origin::Directory(f) if f.wasm == path);
        let shadow_at = |s: Option<Arc<Shadow>>| s.is_some_and(|s| s.file.wasm == path);
        [
            (
                Decision::PoolSizing,
                at(&self.pool.current().origin) || shadow_at(self.pool.shadow()),
            ),
            (
                Decision::SubnetSelection,
                at(&self.subnet.current().origin) || shadow_at(self.subnet.shadow()),
            ),
            (
                Decision::SecurityGroups,
                at(&self.security.current().origin) || shadow_at(self.security.shadow()),
            ),
        ]
        .into_iter()
        .find_map(|(decision, found)| found.then_some(decision))
    }

    /// The role and kind (shadow or not) `file` is in force for, unchanged.
    fn in_force(&self, file: &DirFile) -> Option<(Decision, bool)> {
        let same = |origin: &Origin| matches!(origin, Origin::Directory(f) if f == file);
        Decision::ALL.into_iter().find_map(|decision| {
            let (active, shadow) = match decision {
                Decision::PoolSizing => (
                    same(&self.pool.current().origin),
                    self.pool.shadow().is_some_and(|s| &s.file == file),
                ),
                Decision::SubnetSelection => (
                    same(&self.subnet.current().origin),
                    self.subnet.shadow().is_some_and(|s| &s.file == file),
                ),
                Decision::SecurityGroups => (
                    same(&self.security.current().origin),
                    self.security.shadow().is_some_and(|s| &s.file == file),
                ),
            };
            (active || shadow).then_some((decision, shadow))
        })
    }
}

/// The configuration of a file: its `NAME.toml` (without `module`), the
/// module path, the name (default `NAME`), shadow from the file name.
fn entry_config(entry: &Entry, toml: Option<&str>) -> Result<PolicyConfig, String> {
    let mut config: PolicyConfig = match toml {
        Some(text) => toml::from_str(text).map_err(|e| format!("{}: {e}", toml_name(entry)))?,
        None => PolicyConfig::default(),
    };
    if config.module.is_some() {
        return Err(format!(
            "{}: `module` is not allowed here; the module is {}",
            toml_name(entry),
            entry.wasm.display()
        ));
    }
    config.module = Some(entry.wasm.clone());
    config.name.get_or_insert_with(|| entry.name.clone());
    config.shadow |= entry.shadow;
    Ok(config)
}

fn toml_name(entry: &Entry) -> String {
    entry
        .toml
        .as_ref()
        .map_or_else(|| "settings".to_owned(), |p| p.display().to_string())
}

/// Puts the directory's module (active or shadow) for one role in force.
/// Nothing changes when two files claim the role (the error names both),
/// or when none does but the file in force is still there (refused).
fn apply<N>(
    slot: &Slot<N>,
    metrics: &Metrics,
    shadow: bool,
    mut found: Vec<Candidate>,
    refused_paths: &HashSet<PathBuf>,
    configure: fn(&str) -> Result<N, String>,
) -> Result<(), Refusal> {
    let current = slot.current();
    let decision = current.decision;
    let kind = if shadow { "shadow" } else { "module" };
    if found.len() > 1 {
        let files: Vec<PathBuf> = found.iter().map(|c| c.file.wasm.clone()).collect();
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let in_force = if shadow {
            slot.shadow()
                .map_or_else(|| "none".to_owned(), |s| s.name.clone())
        } else {
            current.name.clone()
        };
        return Err(Refusal::now(
            files,
            format!(
                "two {kind}s for the {decision} policy: {}; remove all but one (the {kind} in force stays: {in_force})",
                names.join(" and ")
            ),
        ));
    }
    let Some(candidate) = found.pop() else {
        // The role's file is gone (back to the main configuration), or it
        // is there but refused (its module stays).
        if shadow {
            if let Some(old) = slot.shadow()
                && !refused_paths.contains(&old.file.wasm)
            {
                tracing::info!(role = %decision, shadow = %old.name, "shadow policy removed");
                slot.set_shadow(None);
            }
        } else if let Origin::Directory(file) = &current.origin
            && !refused_paths.contains(&file.wasm)
        {
            slot.restore_base();
            let back = slot.current();
            tracing::info!(role = %decision, removed = %file.wasm.display(), policy = %back.name, "policy file removed; the main configuration's policy is back in force");
            metrics.policy_reload(decision.as_str(), "removed");
        }
        return Ok(());
    };
    let Some((config, module)) = candidate.loaded else {
        return Ok(());
    };
    let sha256 = candidate.file.sha256.clone();
    let path = candidate.file.wasm.clone();
    if shadow {
        let name = config.display_name(&current.name);
        tracing::info!(role = %decision, shadow = %name, %sha256, file = %path.display(), "shadow policy loaded");
        slot.set_shadow(Some(Shadow::new(
            name,
            module,
            candidate.file,
            config.allowed_security_groups.clone(),
        )));
    } else {
        let state = SlotState::assemble(
            decision,
            config,
            Some(Ok(module)),
            Origin::Directory(candidate.file),
            configure,
        )
        .map_err(|e| {
            Refusal::now(
                vec![path.clone()],
                format!(
                    "policy file {} refused: {e}; the module in force stays",
                    path.display()
                ),
            )
        })?;
        tracing::info!(role = %decision, policy = %state.name, %sha256, file = %path.display(), "policy loaded from the policy directory");
        slot.replace(state);
    }
    metrics.policy_reload(decision.as_str(), "loaded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_modules_settings_and_shadows_and_skips_hidden_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "pool.wasm",
            "pool.toml",
            "strict.shadow.wasm",
            "notes.txt",
            ".pool.wasm.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        std::fs::write(dir.path().join("..data/hidden.wasm"), b"x").expect("write");
        let found = scan(dir.path()).expect("scan");
        assert_eq!(
            found,
            vec![
                Entry {
                    name: "pool".into(),
                    wasm: dir.path().join("pool.wasm"),
                    toml: Some(dir.path().join("pool.toml")),
                    shadow: false,
                },
                Entry {
                    name: "strict".into(),
                    wasm: dir.path().join("strict.shadow.wasm"),
                    toml: None,
                    shadow: true,
                },
            ]
        );
        assert!(
            scan(&dir.path().join("missing"))
                .expect("missing")
                .is_empty()
        );
    }

    #[test]
    fn a_settings_file_may_not_name_another_module() {
        let entry = Entry {
            name: "pool".into(),
            wasm: "/d/pool.wasm".into(),
            toml: Some("/d/pool.toml".into()),
            shadow: false,
        };
        let err = entry_config(&entry, Some("module = \"/elsewhere.wasm\"")).expect_err("module");
        assert!(err.contains("`module` is not allowed"), "{err}");
        let config = entry_config(&entry, Some("shadow = true\nsettings = { a = 1 }")).expect("ok");
        assert!(config.shadow);
        assert_eq!(config.name.as_deref(), Some("pool"));
        assert_eq!(config.module.as_deref(), Some(Path::new("/d/pool.wasm")));
        assert!(entry_config(&entry, Some("nonsense = 1")).is_err());
    }
}
