//! The `CNI_*` environment variables, validated per command as the spec
//! requires.
//!
//! | command | required | optional |
//! | --- | --- | --- |
//! | `ADD`, `CHECK` | `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME` | `CNI_ARGS` |
//! | `DEL` | `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_IFNAME` | `CNI_NETNS`, `CNI_ARGS` |
//! | `GC`, `STATUS`, `VERSION` | `CNI_COMMAND` | |
//!
//! `CNI_PATH` is accepted but never needed: `weft` delegates to no other
//! plugin.

use crate::error::CniError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The operation the runtime asks for (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach a container; idempotent.
    Del,
    /// Verify a container's networking (0.4.0+).
    Check,
    /// Remove resources of attachments the runtime no longer knows (1.1.0+).
    Gc,
    /// Report whether the plugin can serve `ADD` (1.1.0+).
    Status,
    /// Report the supported spec versions.
    Version,
}

impl Command {
    /// The command as the runtime spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Gc => "GC",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
        }
    }

    /// Reads `CNI_COMMAND` through `get`.
    pub fn from_env(get: &dyn Fn(&str) -> Option<OsString>) -> Result<Command, CniError> {
        const EXPECTED: &str =
            "the runtime must set CNI_COMMAND to one of ADD, DEL, CHECK, GC, STATUS, VERSION";
        let value = var(get, "CNI_COMMAND")?
            .ok_or_else(|| CniError::invalid_env("CNI_COMMAND is not set", EXPECTED))?;
        match value.as_str() {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "GC" => Ok(Command::Gc),
            "STATUS" => Ok(Command::Status),
            "VERSION" => Ok(Command::Version),
            other => Err(CniError::invalid_env(
                format!("unknown CNI_COMMAND {other:?}"),
                EXPECTED,
            )),
        }
    }
}

/// The container attachment an `ADD`, `DEL` or `CHECK` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`: the interface name inside the container.
    pub ifname: String,
    /// `CNI_NETNS`: always set for `ADD` and `CHECK`; optional for `DEL`.
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS`, unparsed (empty when unset).
    pub args: String,
}

impl AttachmentEnv {
    /// Reads and validates the variables `command` needs.
    pub fn from_env(
        command: Command,
        get: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<AttachmentEnv, CniError> {
        let container_id = required(get, "CNI_CONTAINERID", command)?;
        validate_container_id(&container_id)?;
        let ifname = required(get, "CNI_IFNAME", command)?;
        validate_ifname(&ifname)?;
        let netns = match var(get, "CNI_NETNS")? {
            Some(path) if !path.is_empty() => {
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(CniError::invalid_env(
                        format!("CNI_NETNS {:?} is not an absolute path", path.display()),
                        "the runtime must pass the path of the pod's network namespace, e.g. /var/run/netns/cni-…",
                    ));
                }
                Some(path)
            }
            _ if command == Command::Del => None,
            _ => return Err(missing("CNI_NETNS", command)),
        };
        let args = var(get, "CNI_ARGS")?.unwrap_or_default();
        Ok(AttachmentEnv {
            container_id,
            ifname,
            netns,
            args,
        })
    }
}

/// Fails with code 4 unless `netns` exists (`ADD` and `CHECK` need it).
pub fn require_netns_exists(netns: &Path) -> Result<(), CniError> {
    match std::fs::symlink_metadata(netns) {
        Ok(_) => Ok(()),
        Err(e) => Err(CniError::invalid_env(
            format!("CNI_NETNS {:?} cannot be used: {e}", netns.display()),
            "the runtime must create the pod's network namespace before ADD/CHECK and pass its path",
        )),
    }
}

fn var(get: &dyn Fn(&str) -> Option<OsString>, name: &str) -> Result<Option<String>, CniError> {
    match get(name) {
        None => Ok(None),
        Some(value) => value.into_string().map(Some).map_err(|raw| {
            CniError::invalid_env(
                format!("{name} is not valid UTF-8: {raw:?}"),
                format!("the runtime must pass {name} as UTF-8 text"),
            )
        }),
    }
}

fn required(
    get: &dyn Fn(&str) -> Option<OsString>,
    name: &str,
    command: Command,
) -> Result<String, CniError> {
    match var(get, name)? {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(missing(name, command)),
    }
}

fn missing(name: &str, command: Command) -> CniError {
    CniError::invalid_env(
        format!("{name} is not set"),
        format!("the runtime must set {name} for {}", command.as_str()),
    )
}

/// A container id starts with an alphanumeric character, followed by
/// alphanumerics, `_`, `.` or `-` (spec, section 2).
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(CniError::invalid_env(
            format!("CNI_CONTAINERID {id:?} is not a valid container id"),
            "it must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
        ))
    }
}

/// An interface name: 1–15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        Err(CniError::invalid_env(
            format!("CNI_IFNAME {name:?} is not a valid interface name"),
            "it must be 1 to 15 bytes, not '.' or '..', without '/', ':' or whitespace",
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAME=a"),
    ];

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        FULL.iter().copied().filter(|(k, _)| *k != name).collect()
    }

    #[test]
    fn commands() {
        for (s, c) in [
            ("ADD", Command::Add),
            ("DEL", Command::Del),
            ("CHECK", Command::Check),
            ("GC", Command::Gc),
            ("STATUS", Command::Status),
            ("VERSION", Command::Version),
        ] {
            assert_eq!(Command::from_env(&env(&[("CNI_COMMAND", s)])).unwrap(), c);
            assert_eq!(c.as_str(), s);
        }
        let err = Command::from_env(&env(&[])).unwrap_err();
        assert_eq!(
            (err.code.0, err.msg.as_str()),
            (4, "CNI_COMMAND is not set")
        );
        let err = Command::from_env(&env(&[("CNI_COMMAND", "add")])).unwrap_err();
        assert_eq!(err.code.0, 4);
        assert!(err.msg.contains("\"add\""), "{}", err.msg);
    }

    #[test]
    fn add_needs_every_variable() {
        let ok = AttachmentEnv::from_env(Command::Add, &env(FULL)).unwrap();
        assert_eq!(ok.container_id, "abc123");
        assert_eq!(ok.netns.as_deref(), Some(Path::new("/var/run/netns/x")));
        assert_eq!(ok.args, "K8S_POD_NAME=a");
        for name in ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"] {
            for command in [Command::Add, Command::Check] {
                let err = AttachmentEnv::from_env(command, &env(&without(name))).unwrap_err();
                assert_eq!(err.code.0, 4);
                assert_eq!(err.msg, format!("{name} is not set"));
            }
        }
        let no_args = AttachmentEnv::from_env(Command::Add, &env(&without("CNI_ARGS"))).unwrap();
        assert_eq!(no_args.args, "");
    }

    #[test]
    fn del_tolerates_a_missing_netns() {
        let del = AttachmentEnv::from_env(Command::Del, &env(&without("CNI_NETNS"))).unwrap();
        assert_eq!(del.netns, None);
        let err = AttachmentEnv::from_env(Command::Del, &env(&without("CNI_IFNAME"))).unwrap_err();
        assert_eq!(err.msg, "CNI_IFNAME is not set");
    }

    #[test]
    fn rejects_bad_values() {
        let mut bad_id = without("CNI_CONTAINERID");
        bad_id.push(("CNI_CONTAINERID", "-abc"));
        assert!(
            AttachmentEnv::from_env(Command::Add, &env(&bad_id))
                .unwrap_err()
                .msg
                .contains("CNI_CONTAINERID")
        );
        for name in ["eth0:1", "a b", ".", "..", "a/b", "sixteen-chars-xx"] {
            let mut vars = without("CNI_IFNAME");
            vars.push(("CNI_IFNAME", name));
            let err = AttachmentEnv::from_env(Command::Add, &env(&vars)).unwrap_err();
            assert!(err.msg.contains("CNI_IFNAME"), "{name}: {}", err.msg);
        }
        let mut relative = without("CNI_NETNS");
        relative.push(("CNI_NETNS", "netns/x"));
        let err = AttachmentEnv::from_env(Command::Add, &env(&relative)).unwrap_err();
        assert!(err.msg.contains("absolute"));
    }

    #[test]
    fn non_utf8_is_invalid_env() {
        use std::os::unix::ffi::OsStringExt;
        let get = |k: &str| (k == "CNI_COMMAND").then(|| OsString::from_vec(vec![0xff, 0xfe]));
        let err = Command::from_env(&get).unwrap_err();
        assert_eq!(err.code.0, 4);
        assert!(err.msg.contains("UTF-8"));
    }

    #[test]
    fn netns_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        assert!(require_netns_exists(dir.path()).is_ok());
        let err = require_netns_exists(&dir.path().join("gone")).unwrap_err();
        assert_eq!(err.code.0, 4);
        assert!(err.msg.contains("gone"));
    }
}
