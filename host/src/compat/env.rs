//! The Amazon VPC CNI's environment variables, as operators set them on the
//! `aws-node` DaemonSet, mapped onto Weft's configuration.
//!
//! The mapping works on the parsed TOML document before it becomes an
//! [`AgentConfig`](crate::config::AgentConfig), so a variable sets exactly the
//! key a file would set and the file's own validation applies to both. A key
//! the file already sets to a different value is a conflict: an error that
//! names the variable and the key, never a silent winner.
//!
//! Variables the VPC CNI knows and Weft does not map are returned as
//! [`EnvOverlay::ignored`], for the caller to report once at start.

use std::fmt;
use toml::Value;

/// How a variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A non-negative integer.
    Int,
    /// `true` or `false`.
    Bool,
    /// `true`/`false`, negated (`DISABLE_X=true` sets `x = false`).
    NotBool,
    /// Any non-empty text.
    Text,
    /// Comma-separated items (empty ones dropped), as a list of strings.
    List,
    /// A non-negative integer, decimal or `0x` hexadecimal (a mark).
    Mark,
    /// `true` sets this value (e.g. an endpoint `off`); `false` leaves
    /// the key alone.
    SetWhenTrue(&'static str),
    /// `true` sets this value unless the key is set already (by the file
    /// or by a more specific variable); `false` leaves it alone.
    DefaultWhenTrue(&'static str),
}

/// One key a variable sets: the TOML path and the kind of value.
#[derive(Debug, Clone, Copy)]
struct Target {
    path: &'static [&'static str],
    kind: Kind,
}

const fn to(path: &'static [&'static str], kind: Kind) -> Target {
    Target { path, kind }
}

/// The built-in default a `[policies.X] settings` key belongs to, so that a
/// variable aimed at it is refused when `[policies.X]` loads a module.
fn builtin_of(path: &[&str]) -> Option<(&'static str, &'static str)> {
    match path {
        ["policies", "pool-sizing", "settings", ..] => Some(("pool-sizing", "warm-pool")),
        ["policies", "subnet-selection", "settings", ..] => {
            Some(("subnet-selection", "subnet-most-free"))
        }
        _ => None,
    }
}

/// The label VPC CNI's custom networking reads when `ENI_CONFIG_LABEL_DEF`
/// is unset.
pub(crate) const DEFAULT_ENI_CONFIG_LABEL: &str = "k8s.amazonaws.com/eniConfig";

/// Every mapped variable and the keys it sets. The README's migration
/// table is this table.
const MAPPED: &[(&str, &[Target])] = &[
    (
        "WARM_ENI_TARGET",
        &[to(
            &["policies", "pool-sizing", "settings", "warm-eni-target"],
            Kind::Int,
        )],
    ),
    (
        "WARM_IP_TARGET",
        &[to(
            &["policies", "pool-sizing", "settings", "warm-ip-target"],
            Kind::Int,
        )],
    ),
    (
        "MINIMUM_IP_TARGET",
        &[to(
            &["policies", "pool-sizing", "settings", "minimum-ip-target"],
            Kind::Int,
        )],
    ),
    (
        "WARM_PREFIX_TARGET",
        &[to(
            &["policies", "pool-sizing", "settings", "warm-prefix-target"],
            Kind::Int,
        )],
    ),
    (
        "ENABLE_PREFIX_DELEGATION",
        &[
            to(&["pool", "prefix-delegation"], Kind::Bool),
            to(
                &["policies", "pool-sizing", "settings", "prefix-delegation"],
                Kind::Bool,
            ),
        ],
    ),
    (
        "IP_COOLDOWN_PERIOD",
        &[to(&["pool", "cooldown-seconds"], Kind::Int)],
    ),
    ("AWS_VPC_ENI_MTU", &[to(&["plumbing", "mtu"], Kind::Int)]),
    ("POD_MTU", &[to(&["plumbing", "pod-mtu"], Kind::Int)]),
    (
        "CLUSTER_NAME",
        &[to(&["cloud", "cluster-name"], Kind::Text)],
    ),
    ("MAX_ENI", &[to(&["pool", "max-enis"], Kind::Int)]),
    (
        "ENI_CONFIG_LABEL_DEF",
        &[to(
            &["policies", "subnet-selection", "settings", "node-label"],
            Kind::Text,
        )],
    ),
    (
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
        &[
            to(&["pool", "primary-eni-serves-pods"], Kind::NotBool),
            to(
                &["policies", "subnet-selection", "settings", "node-label"],
                Kind::DefaultWhenTrue(DEFAULT_ENI_CONFIG_LABEL),
            ),
        ],
    ),
    (
        "DISABLE_LEAKED_ENI_CLEANUP",
        &[to(&["pool", "disable-leaked-eni-cleanup"], Kind::Bool)],
    ),
    (
        "ANNOTATE_POD_IP",
        &[to(&["kubernetes", "annotate-pod-ip"], Kind::Bool)],
    ),
    (
        "AWS_VPC_K8S_CNI_VETHPREFIX",
        &[to(&["plumbing", "veth-prefix"], Kind::Text)],
    ),
    (
        "AWS_EC2_ENDPOINT",
        &[to(&["cloud", "endpoint-url"], Kind::Text)],
    ),
    (
        "DISABLE_METRICS",
        &[to(&["agent", "metrics-address"], Kind::SetWhenTrue("off"))],
    ),
    (
        "DISABLE_INTROSPECTION",
        &[to(
            &["agent", "introspection-address"],
            Kind::SetWhenTrue("off"),
        )],
    ),
    (
        "INTROSPECTION_BIND_ADDRESS",
        &[to(&["agent", "introspection-address"], Kind::Text)],
    ),
    (
        "AWS_VPC_K8S_CNI_EXTERNALSNAT",
        &[to(&["egress", "external-snat"], Kind::Bool)],
    ),
    (
        "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
        &[to(&["egress", "exclude-snat-cidrs"], Kind::List)],
    ),
    (
        "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
        &[to(&["egress", "randomize-snat"], Kind::Text)],
    ),
    (
        "ENABLE_IPv6",
        &[to(&["pool", "ip-family"], Kind::SetWhenTrue("ipv6"))],
    ),
    (
        "ENABLE_V4_EGRESS",
        &[to(&["egress", "ipv4-egress"], Kind::Bool)],
    ),
    (
        "AWS_VPC_CNI_NODE_PORT_SUPPORT",
        &[to(&["egress", "node-port-support"], Kind::Bool)],
    ),
    (
        "AWS_VPC_K8S_CNI_CONNMARK",
        &[to(&["egress", "connmark"], Kind::Mark)],
    ),
];

/// The log-level variable; it sets the agent's log filter when `RUST_LOG`
/// is unset (see [`log_filter`]).
pub const LOG_LEVEL_VAR: &str = "AWS_VPC_K8S_CNI_LOGLEVEL";

/// VPC CNI variables that have no Weft equivalent (besides any other
/// `AWS_VPC_*`). Reported once at start, then ignored.
const KNOWN_UNMAPPED: &[&str] = &[
    "AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER",
    "AWS_VPC_K8S_CNI_LOG_FILE",
    "AWS_VPC_K8S_PLUGIN_LOG_FILE",
    "AWS_VPC_K8S_PLUGIN_LOG_LEVEL",
    "AWS_EXTERNAL_SERVICE_CFG",
    "ENABLE_POD_ENI",
    "POD_SECURITY_GROUP_ENFORCING_MODE",
    "ENABLE_IPv4",
    "ENABLE_BANDWIDTH_PLUGIN",
    "ENABLE_NFTABLES",
    "ENABLE_SUBNET_DISCOVERY",
    "ENABLE_V6_EGRESS",
    "DISABLE_NETWORK_RESOURCE_PROVISIONING",
    "DISABLE_TCP_EARLY_DEMUX",
    "DISABLE_POD_V6",
    "WARM_ENI_TARGET_PER_NIC",
    "ENABLE_MULTI_NIC",
    "CLUSTER_ENDPOINT",
    "NETWORK_POLICY_ENFORCING_MODE",
    "VPC_CNI_VERSION",
];

/// A variable's value that cannot be used, or a conflict with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The value is not of the kind the variable takes.
    #[error("{var}={value:?} is not {expected}")]
    Invalid {
        /// The variable.
        var: String,
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The file sets the same key to another value.
    #[error(
        "{var}={value} (environment) conflicts with {key} = {file_value} in the configuration file: \
         remove one of them"
    )]
    Conflict {
        /// The variable.
        var: String,
        /// Its value, as TOML.
        value: String,
        /// The key, as `[table] key`.
        key: String,
        /// The file's value, as TOML.
        file_value: String,
    },
    /// The variable sets a built-in policy's setting, but the file replaces
    /// that policy with a module.
    #[error(
        "{var} sets the built-in {builtin} policy's `{setting}`, but [policies.{decision}] loads \
         the module {module}: put the setting in that policy's settings, or unset {var}"
    )]
    NotBuiltin {
        /// The variable.
        var: String,
        /// The built-in policy's name.
        builtin: &'static str,
        /// The decision, e.g. `pool-sizing`.
        decision: &'static str,
        setting: String,
        /// The module the file configures.
        module: String,
    },
}

/// What the environment changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnvOverlay {
    /// The variables applied, as `VAR=value`.
    pub applied: Vec<String>,
    /// VPC CNI variables set but not mapped, to report once.
    pub ignored: Vec<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", key_name(self.path))
    }
}

/// `[pool] cooldown-seconds` or `[policies.pool-sizing] settings.warm-ip-target`.
fn key_name(path: &[&str]) -> String {
    let (table, rest) = match path {
        ["policies", decision, rest @ ..] => (format!("policies.{decision}"), rest),
        [table, rest @ ..] => ((*table).to_owned(), rest),
        [] => (String::new(), path),
    };
    format!("[{table}] {}", rest.join("."))
}

fn parse_bool(var: &str, value: &str) -> Result<bool, EnvError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(EnvError::Invalid {
            var: var.into(),
            value: value.into(),
            expected: "a boolean (true or false)",
        }),
    }
}

/// The TOML value a variable sets, or `None` when it leaves the key alone.
fn convert(var: &str, value: &str, kind: Kind) -> Result<Option<Value>, EnvError> {
    Ok(match kind {
        Kind::Int => {
            let n: u32 = value.trim().parse().map_err(|_| EnvError::Invalid {
                var: var.into(),
                value: value.into(),
                expected: "a non-negative integer",
            })?;
            Some(Value::Integer(n.into()))
        }
        Kind::Bool => Some(Value::Boolean(parse_bool(var, value)?)),
        Kind::NotBool => Some(Value::Boolean(!parse_bool(var, value)?)),
        Kind::SetWhenTrue(set) => parse_bool(var, value)?.then(|| Value::String(set.into())),
        Kind::DefaultWhenTrue(default) => {
            parse_bool(var, value)?.then(|| Value::String(default.into()))
        }
        Kind::Text if value.trim().is_empty() => {
            return Err(EnvError::Invalid {
                var: var.into(),
                value: value.into(),
                expected: "a non-empty value",
            });
        }
        Kind::Text => Some(Value::String(value.trim().to_owned())),
        Kind::List => Some(Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        )),
        Kind::Mark => {
            let text = value.trim();
            let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => text.parse(),
            };
            let mark = parsed.map_err(|_| EnvError::Invalid {
                var: var.into(),
                value: value.into(),
                expected: "a number such as 0x80",
            })?;
            Some(Value::Integer(mark.into()))
        }
    })
}

fn lookup<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, key| v.get(key))
}

/// Sets `path` in `doc`, creating tables on the way; `None` when a value on
/// the way is not a table (the file's own parse then reports it).
fn set(doc: &mut Value, path: &[&str], value: Value) -> Option<()> {
    let (last, tables) = path.split_last()?;
    let mut here = doc;
    for key in tables {
        here = here
            .as_table_mut()?
            .entry(*key)
            .or_insert_with(|| Value::Table(Default::default()));
    }
    here.as_table_mut()?.insert((*last).to_owned(), value);
    Some(())
}

/// Applies the VPC CNI variables `get` finds to the configuration document.
pub(crate) fn apply(
    doc: &mut Value,
    get: &dyn Fn(&str) -> Option<String>,
    set_vars: &[String],
) -> Result<EnvOverlay, EnvError> {
    let mut overlay = EnvOverlay::default();
    for (var, targets) in MAPPED {
        let Some(value) = get(var) else { continue };
        for target in *targets {
            let Some(new) = convert(var, &value, target.kind)? else {
                continue;
            };
            if let Some((decision, builtin)) = builtin_of(target.path) {
                let module = lookup(doc, &["policies", decision, "module"]);
                if module.is_some() && matches!(target.kind, Kind::DefaultWhenTrue(_)) {
                    continue;
                }
                if let Some(module) = module {
                    return Err(EnvError::NotBuiltin {
                        var: (*var).into(),
                        builtin,
                        decision,
                        setting: target.path.last().copied().unwrap_or_default().into(),
                        module: module.to_string(),
                    });
                }
            }
            match lookup(doc, target.path) {
                Some(_) if matches!(target.kind, Kind::DefaultWhenTrue(_)) => {}
                Some(existing) if *existing != new => {
                    return Err(EnvError::Conflict {
                        var: (*var).into(),
                        value: new.to_string(),
                        key: target.to_string(),
                        file_value: existing.to_string(),
                    });
                }
                Some(_) => {}
                None => {
                    // A non-table on the way is the file's error; its parse reports it.
                    let _ = set(doc, target.path, new);
                }
            }
        }
        overlay.applied.push(format!("{var}={value}"));
    }
    let mapped = |name: &str| name == LOG_LEVEL_VAR || MAPPED.iter().any(|(v, _)| *v == name);
    overlay.ignored = set_vars
        .iter()
        .filter(|name| {
            !mapped(name)
                && (name.starts_with("AWS_VPC_") || KNOWN_UNMAPPED.contains(&name.as_str()))
        })
        .cloned()
        .collect();
    overlay.ignored.sort();
    Ok(overlay)
}

/// The agent's log filter from `AWS_VPC_K8S_CNI_LOGLEVEL` (`DEBUG`, `INFO`,
/// `WARN`, `ERROR`), for when `RUST_LOG` is unset.
pub fn log_filter(value: &str) -> Result<&'static str, EnvError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok("trace"),
        "debug" => Ok("debug"),
        "info" => Ok("info"),
        "warn" | "warning" => Ok("warn"),
        "error" | "fatal" => Ok("error"),
        _ => Err(EnvError::Invalid {
            var: LOG_LEVEL_VAR.into(),
            value: value.into(),
            expected: "one of DEBUG, INFO, WARN, ERROR",
        }),
    }
}

/// The mapped variables and the keys each sets, for documentation and the
/// README check: `(variable, ["[pool] cooldown-seconds", ...])`.
pub fn table() -> Vec<(&'static str, Vec<String>)> {
    MAPPED
        .iter()
        .map(|(var, targets)| (*var, targets.iter().map(|t| t.to_string()).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> (HashMap<String, String>, Vec<String>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let names = map.keys().cloned().collect();
        (map, names)
    }

    fn overlay(file: &str, pairs: &[(&str, &str)]) -> Result<(Value, EnvOverlay), EnvError> {
        let mut doc: Value = toml::from_str(file).unwrap();
        let (map, names) = env(pairs);
        let overlay = apply(&mut doc, &|k| map.get(k).cloned(), &names)?;
        Ok((doc, overlay))
    }

    #[test]
    fn a_conflict_names_the_variable_and_the_key() {
        let err = overlay(
            "[pool]\ncooldown-seconds = 10\n",
            &[("IP_COOLDOWN_PERIOD", "60")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "IP_COOLDOWN_PERIOD=60 (environment) conflicts with [pool] cooldown-seconds = 10 \
             in the configuration file: remove one of them"
        );
        // The same value twice is no conflict.
        overlay(
            "[pool]\ncooldown-seconds = 60\n",
            &[("IP_COOLDOWN_PERIOD", "60")],
        )
        .unwrap();
        let err = overlay(
            "[policies.pool-sizing]\nsettings = { warm-ip-target = 3 }\n",
            &[("WARM_IP_TARGET", "5")],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("WARM_IP_TARGET=5 (environment) conflicts with [policies.pool-sizing] settings.warm-ip-target = 3"),
            "{err}"
        );
    }

    #[test]
    fn enable_ipv6_selects_the_ipv6_family_and_conflicts_with_ipv4() {
        let (doc, _) = overlay("", &[("ENABLE_IPv6", "true")]).unwrap();
        assert_eq!(doc["pool"]["ip-family"].as_str(), Some("ipv6"));
        let (doc, overlay_) = overlay("", &[("ENABLE_IPv6", "false")]).unwrap();
        assert!(doc.get("pool").is_none());
        assert!(overlay_.ignored.is_empty());
        let err =
            overlay("[pool]\nip-family = \"ipv4\"\n", &[("ENABLE_IPv6", "true")]).unwrap_err();
        assert!(err.to_string().contains("[pool] ip-family"), "{err}");
    }

    #[test]
    fn a_builtin_setting_is_refused_when_a_module_replaces_the_policy() {
        let err = overlay(
            "[policies.pool-sizing]\nmodule = \"/etc/weft/p.wasm\"\n",
            &[("WARM_IP_TARGET", "5")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("built-in warm-pool")
                && err.to_string().contains("/etc/weft/p.wasm"),
            "{err}"
        );
    }

    #[test]
    fn unmapped_vpc_cni_variables_are_listed_once_and_others_ignored() {
        let (_, overlay) = overlay(
            "",
            &[
                ("AWS_VPC_K8S_CNI_LOG_FILE", "stdout"),
                ("ENABLE_POD_ENI", "false"),
                ("AWS_VPC_SOMETHING_NEW", "1"),
                ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG"),
                ("HOME", "/root"),
                ("WARM_IP_TARGET", "2"),
            ],
        )
        .unwrap();
        assert_eq!(
            overlay.ignored,
            [
                "AWS_VPC_K8S_CNI_LOG_FILE",
                "AWS_VPC_SOMETHING_NEW",
                "ENABLE_POD_ENI"
            ]
        );
        assert_eq!(overlay.applied, ["WARM_IP_TARGET=2"]);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = overlay("", &[("WARM_IP_TARGET", "five")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WARM_IP_TARGET=\"five\" is not a non-negative integer"
        );
        let err = overlay("", &[("ANNOTATE_POD_IP", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("ANNOTATE_POD_IP"), "{err}");
        assert!(log_filter("LOUD").is_err());
        assert_eq!(log_filter("Debug").unwrap(), "debug");
    }

    #[test]
    fn the_key_names_read_like_the_file() {
        assert_eq!(
            key_name(&["pool", "cooldown-seconds"]),
            "[pool] cooldown-seconds"
        );
        assert_eq!(
            key_name(&["policies", "pool-sizing", "settings", "warm-ip-target"]),
            "[policies.pool-sizing] settings.warm-ip-target"
        );
    }
}
