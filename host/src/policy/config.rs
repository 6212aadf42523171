//! Policy configuration, as embedded in the agent's TOML:
//!
//! ```toml
//! [policies]
//! cache-dir = "/var/lib/weft/policy-cache"
//! dir = "/etc/weft/policies.d"        # drop-in NAME.wasm (+ NAME.toml); overrides the tables below
//!
//! [policies.pool-sizing]
//! module = "/etc/weft/policies/warm-pool.wasm"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! settings = { warm-ip-target = 5 }
//! deadline-ms = 10
//! memory-mib = 32
//! on-failure = "fallback"
//! ```

use super::error::Decision;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default wall-clock deadline of one decision, in milliseconds.
pub const DEFAULT_DEADLINE_MS: u64 = 10;
/// Default memory cap of one decision, in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 32;
/// Largest accepted `memory-mib` (the engine reserves this much per slot).
pub(super) const MAX_MEMORY_MIB: u32 = 1024;
/// Largest accepted `deadline-ms`.
pub(super) const MAX_DEADLINE_MS: u64 = 10_000;
/// The policy directory when `[policies] dir` is not set.
pub(super) const DEFAULT_DIR: &str = "/etc/weft/policies.d";

/// The `[policies]` table: one optional entry per decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PoliciesConfig {
    /// Directory for compiled modules, so a restart does not recompile.
    /// Created 0700; entries are authenticated with a key kept in it, and a
    /// directory or entry others can write is ignored (see
    /// [`super::cache`]). No cache when unset.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The drop-in policy directory (`NAME.wasm`, optional `NAME.toml`),
    /// watched for changes. A module there overrides the table of its
    /// world below. Default [`DEFAULT_DIR`] in the agent's configuration;
    /// a missing directory holds no policies.
    #[serde(default = "default_dir")]
    pub dir: Option<PathBuf>,
    /// The pool-sizing policy; the built-in `warm-pool` when unset.
    #[serde(default)]
    pub pool_sizing: Option<PolicyConfig>,
    /// The subnet-selection policy; the built-in `subnet-most-free` when unset.
    #[serde(default)]
    pub subnet_selection: Option<PolicyConfig>,
    /// The security-groups policy; the built-in `sg-selector` when unset.
    #[serde(default)]
    pub security_groups: Option<PolicyConfig>,
}

fn default_dir() -> Option<PathBuf> {
    Some(PathBuf::from(DEFAULT_DIR))
}

impl PoliciesConfig {
    /// The entry for `decision`, if configured.
    pub(crate) fn get(&self, decision: Decision) -> Option<&PolicyConfig> {
        match decision {
            Decision::PoolSizing => self.pool_sizing.as_ref(),
            Decision::SubnetSelection => self.subnet_selection.as_ref(),
            Decision::SecurityGroups => self.security_groups.as_ref(),
        }
    }

    /// Checks every entry; the error names the entry's decision and says
    /// which field is wrong.
    pub fn validate(&self) -> Result<(), (Decision, String)> {
        for decision in Decision::ALL {
            if let Some(entry) = self.get(decision) {
                entry.validate(decision).map_err(|e| (decision, e))?;
                if entry.shadow {
                    return Err((
                        decision,
                        "shadow = true only applies to a file in the policy directory".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What to do when a policy fails (load error, trap, deadline, memory,
/// invalid output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Use the built-in default policy for this decision. The default for
    /// pool sizing and subnet selection, so pods keep starting.
    Fallback,
    /// Fail the request with an error naming the policy. The default for
    /// security groups, since guessing a pod's security groups is a security
    /// decision.
    FailClosed,
}

impl OnFailure {
    /// The failure mode used when `on-failure` is not set.
    pub(crate) fn default_for(decision: Decision) -> Self {
        match decision {
            Decision::SecurityGroups => OnFailure::FailClosed,
            Decision::PoolSizing | Decision::SubnetSelection => OnFailure::Fallback,
        }
    }
}

/// One policy entry, e.g. `[policies.security-groups]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name used in logs, metrics and errors. Defaults to the module's file
    /// stem, or to the built-in policy's name when no module is set.
    #[serde(default)]
    pub name: Option<String>,
    /// Path of the policy component (`.wasm`). When unset the built-in
    /// default runs natively with `settings`.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// Expected sha256 of the module file (64 hex digits). A module whose
    /// hash differs is refused.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The policy's settings, passed to its `configure` as JSON.
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    /// Settings of the built-in default used as the fallback when a module
    /// is set and fails (`{}` when unset). Without a module, `settings` are
    /// the built-in default's settings.
    #[serde(default)]
    pub fallback_settings: Option<serde_json::Value>,
    /// Wall-clock deadline of one decision (instantiation, `configure` and
    /// the call), in milliseconds. Default 10. The one `configure` call at
    /// load gets at least 1 s.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory cap of one decision, in MiB. Default 32, at most 1024.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// What to do when the policy fails: `fallback` (default for pool sizing
    /// and subnet selection) or `fail-closed` (default for security groups).
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// Security groups only: the ids a policy may return. Any other id is an
    /// invalid output. Unset: any well-formed id.
    #[serde(default)]
    pub allowed_security_groups: Option<Vec<String>>,
    /// Drop-in files only: run beside the active policy of its world on
    /// every decision, never acting; disagreements are logged and counted.
    /// A file named `NAME.shadow.wasm` is a shadow without it.
    #[serde(default)]
    pub shadow: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

fn default_memory_mib() -> u32 {
    DEFAULT_MEMORY_MIB
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            name: None,
            module: None,
            sha256: None,
            settings: empty_object(),
            fallback_settings: None,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_mib: DEFAULT_MEMORY_MIB,
            on_failure: None,
            allowed_security_groups: None,
            shadow: false,
        }
    }
}

impl PolicyConfig {
    /// An entry running the module at `path` with default limits.
    pub fn module(path: impl Into<PathBuf>) -> Self {
        PolicyConfig {
            module: Some(path.into()),
            ..PolicyConfig::default()
        }
    }

    /// The failure mode, with the per-decision default applied.
    pub(crate) fn on_failure(&self, decision: Decision) -> OnFailure {
        self.on_failure
            .unwrap_or_else(|| OnFailure::default_for(decision))
    }

    /// Checks field ranges and formats.
    pub fn validate(&self, decision: Decision) -> Result<(), String> {
        if self.deadline_ms == 0 || self.deadline_ms > MAX_DEADLINE_MS {
            return Err(format!(
                "deadline-ms = {} is out of range 1..={MAX_DEADLINE_MS}",
                self.deadline_ms
            ));
        }
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "memory-mib = {} is out of range 1..={MAX_MEMORY_MIB}",
                self.memory_mib
            ));
        }
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("sha256 = {sha:?} is not 64 hex digits"));
        }
        if self.sha256.is_some() && self.module.is_none() {
            return Err("sha256 is set but module is not".to_owned());
        }
        if let Some(allowed) = &self.allowed_security_groups {
            if decision != Decision::SecurityGroups {
                return Err("allowed-security-groups only applies to security-groups".to_owned());
            }
            if let Some(bad) = allowed
                .iter()
                .find(|id| !super::validate::is_security_group_id(id))
            {
                return Err(format!(
                    "allowed-security-groups: {bad:?} is not a security group id (sg- and 8 or 17 lowercase hex digits)"
                ));
            }
        }
        Ok(())
    }

    /// The name used in logs, metrics and errors.
    pub(crate) fn display_name(&self, builtin: &str) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        self.module
            .as_deref()
            .and_then(|p| p.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| builtin.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_entry_from_toml() {
        let text = r#"
            cache-dir = "/tmp/cache"
            [security-groups]
            module = "sg.wasm"
            sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
            settings = { rules = [ { namespace = "db", groups = ["sg-0123abcd"] } ] }
            deadline-ms = 5
            memory-mib = 16
            on-failure = "fallback"
            allowed-security-groups = ["sg-0123abcd"]
        "#;
        let config: PoliciesConfig = toml::from_str(text).expect("parses");
        config.validate().expect("valid");
        let sg = config.get(Decision::SecurityGroups).expect("entry");
        assert_eq!(sg.deadline_ms, 5);
        assert_eq!(sg.memory_mib, 16);
        assert_eq!(sg.on_failure(Decision::SecurityGroups), OnFailure::Fallback);
        assert_eq!(sg.settings["rules"][0]["groups"][0], "sg-0123abcd");
        assert_eq!(sg.display_name("sg-selector"), "sg");
        assert!(config.pool_sizing.is_none());
    }

    #[test]
    fn defaults_and_failure_modes_per_decision() {
        let entry: PolicyConfig = toml::from_str("").expect("parses");
        assert_eq!(entry.deadline_ms, DEFAULT_DEADLINE_MS);
        assert_eq!(entry.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(entry.settings, empty_object());
        assert_eq!(entry.on_failure(Decision::PoolSizing), OnFailure::Fallback);
        assert_eq!(
            entry.on_failure(Decision::SubnetSelection),
            OnFailure::Fallback
        );
        assert_eq!(
            entry.on_failure(Decision::SecurityGroups),
            OnFailure::FailClosed
        );
        assert_eq!(entry.display_name("warm-pool"), "warm-pool");
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let err = toml::from_str::<PolicyConfig>("deadline = 5").expect_err("unknown field");
        assert!(
            err.to_string().contains("unknown field `deadline`"),
            "{err}"
        );

        let bad = [
            ("deadline-ms = 0", "deadline-ms"),
            ("memory-mib = 4096", "memory-mib"),
            ("module = \"a.wasm\"\nsha256 = \"abc\"", "sha256"),
            (
                "allowed-security-groups = [\"sg-1\"]",
                "allowed-security-groups",
            ),
        ];
        for (text, field) in bad {
            let entry: PolicyConfig = toml::from_str(text).expect("parses");
            let err = entry.validate(Decision::SecurityGroups).expect_err(text);
            assert!(err.contains(field), "{text}: {err}");
        }
        let entry: PolicyConfig =
            toml::from_str("allowed-security-groups = [\"sg-0123abcd\"]").expect("parses");
        assert!(entry.validate(Decision::PoolSizing).is_err());
    }
}
