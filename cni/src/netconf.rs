//! The network configuration on stdin.
//!
//! Spec fields: `cniVersion`, `name`, `type` (required), `dns`, `mtu`,
//! `prevResult`, `cni.dev/valid-attachments` (GC). Weft's own fields:
//!
//! | field | default | meaning |
//! | --- | --- | --- |
//! | `socket` | `/run/weft/weftd.sock` | the agent's API socket (absolute path) |
//! | `timeout-ms` | `30000` | how long to wait for `weftd` (1 to 600000) |
//! | `log-level` | `error` | `off`, `error`, `info` or `debug`, written to stderr |
//!
//! Fields the runtime may add and `weft` has no use for (`args`,
//! `capabilities`, `runtimeConfig`, `cniVersions`, `disableCheck`,
//! `disableGC`, `cni.dev/…`) are accepted and ignored. `ipam` and a true
//! `ipMasq` are refused with code 2 (Weft allocates VPC addresses itself and
//! pods keep their VPC source address), as is any other field, so that a
//! misspelt setting fails loudly instead of being ignored.

use crate::api::Attachment;
use crate::error::CniError;
use crate::log::LogLevel;
use crate::result::{Dns, NetworkResult};
use crate::version::CniVersion;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The agent socket used when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/weft/weftd.sock";
/// How long `weft` waits for the agent by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(30_000);
/// The smallest MTU accepted (IPv4 minimum).
pub const MIN_MTU: u32 = 576;
/// The largest MTU accepted (VPC jumbo frames).
pub const MAX_MTU: u32 = 9001;
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

const IGNORED: &[&str] = &[
    "args",
    "capabilities",
    "runtimeConfig",
    "cniVersions",
    "disableCheck",
    "disableGC",
];

/// A validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`: the version results and errors are written in.
    pub cni_version: CniVersion,
    /// `name`: the network name.
    pub name: String,
    /// `dns`: DNS settings reported in the result when the agent gives none.
    pub dns: Dns,
    /// `mtu`: overrides the agent's pod MTU.
    pub mtu: Option<u32>,
    /// `socket`: the agent's API socket.
    pub socket: PathBuf,
    /// `timeout-ms`: how long to wait for the agent.
    pub timeout: Duration,
    /// `log-level`.
    pub log_level: LogLevel,
    prev_result: Option<Value>,
    valid_attachments: Option<Value>,
}

/// Parses stdin into a JSON object (code 6 if it is not one).
pub fn parse_object(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CniError::decode(
            format!(
                "the network configuration is {}, not a JSON object",
                kind(&other)
            ),
            "the runtime must pass the network configuration as a JSON object on stdin",
        )),
        Err(e) => Err(CniError::decode(
            format!("the network configuration on stdin is not valid JSON: {e}"),
            "check the .conf/.conflist file in the CNI configuration directory (e.g. /etc/cni/net.d) with a JSON validator",
        )),
    }
}

/// The configuration's `cniVersion` if it is supported: the version errors
/// are reported in, even when the rest of the configuration is invalid.
pub fn version_hint(obj: &Map<String, Value>) -> Option<CniVersion> {
    obj.get("cniVersion")
        .and_then(Value::as_str)
        .and_then(CniVersion::parse)
}

impl NetConf {
    /// Validates a configuration object.
    pub fn from_object(mut obj: Map<String, Value>) -> Result<NetConf, CniError> {
        let version: String = required(&mut obj, "cniVersion")?;
        let cni_version = CniVersion::require(&version)?;
        let name: String = required(&mut obj, "name")?;
        validate_name(&name)?;
        let _: String = required(&mut obj, "type")?;
        let dns = take(&mut obj, "dns")?.unwrap_or_default();
        let mtu = take(&mut obj, "mtu")?;
        if let Some(mtu) = mtu.filter(|m| !(MIN_MTU..=MAX_MTU).contains(m)) {
            return Err(CniError::invalid_netconf(
                format!("mtu {mtu} is out of range"),
                format!(
                    "set \"mtu\" between {MIN_MTU} and {MAX_MTU}, or remove it to use the agent's default"
                ),
            ));
        }
        let socket =
            take::<PathBuf>(&mut obj, "socket")?.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        if !socket.is_absolute() || socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(CniError::invalid_netconf(
                format!("socket {:?} is not usable", socket.display()),
                format!(
                    "set \"socket\" to the absolute path of weftd's API socket, at most {MAX_SOCKET_PATH} bytes (default {DEFAULT_SOCKET})"
                ),
            ));
        }
        let timeout = match take::<u64>(&mut obj, "timeout-ms")? {
            None => DEFAULT_TIMEOUT,
            Some(ms @ 1..=600_000) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(CniError::invalid_netconf(
                    format!("timeout-ms {ms} is out of range"),
                    "set \"timeout-ms\" between 1 and 600000 milliseconds",
                ));
            }
        };
        let log_level = match take::<String>(&mut obj, "log-level")? {
            None => LogLevel::Error,
            Some(s) => LogLevel::parse(&s).ok_or_else(|| {
                CniError::invalid_netconf(
                    format!("log-level {s:?} is not a level"),
                    "set \"log-level\" to off, error, info or debug",
                )
            })?,
        };
        if let Some(ipam) = obj.remove("ipam") {
            return Err(unsupported(
                "ipam",
                &ipam,
                "weft allocates VPC addresses through weftd; remove the \"ipam\" section",
            ));
        }
        if let Some(masq) = obj.remove("ipMasq").filter(|v| v != &Value::Bool(false)) {
            return Err(unsupported(
                "ipMasq",
                &masq,
                "pods keep their VPC address as source; remove \"ipMasq\" (SNAT for traffic leaving the VPC is configured on weftd)",
            ));
        }
        let prev_result = obj.remove("prevResult");
        let valid_attachments = obj
            .remove("cni.dev/valid-attachments")
            .or_else(|| obj.remove("cni.dev/attachments"));
        obj.retain(|key, _| !IGNORED.contains(&key.as_str()) && !key.starts_with("cni.dev/"));
        if let Some((key, value)) = obj.iter().next() {
            return Err(unsupported(
                key,
                value,
                "weft knows cniVersion, name, type, dns, mtu, socket, timeout-ms, log-level; check the field's spelling",
            ));
        }
        Ok(NetConf {
            cni_version,
            name,
            dns,
            mtu,
            socket,
            timeout,
            log_level,
            prev_result,
            valid_attachments,
        })
    }

    /// The `prevResult`, if present (code 7 if it is not a CNI result).
    pub fn prev_result(&self) -> Result<Option<NetworkResult>, CniError> {
        self.prev_result
            .as_ref()
            .map(|v| {
                NetworkResult::deserialize(v).map_err(|e| {
                    CniError::invalid_netconf(
                        format!("prevResult is not a valid CNI result: {e}"),
                        "the runtime must pass the result of the previous plugin (or of the last ADD for CHECK) unchanged",
                    )
                })
            })
            .transpose()
    }

    /// `cni.dev/valid-attachments` for `GC` (code 7 if missing or malformed:
    /// collecting garbage without the list would remove every pod).
    pub fn valid_attachments(&self) -> Result<Vec<Attachment>, CniError> {
        let details = "the runtime must pass \"cni.dev/valid-attachments\": [{\"containerID\": …, \"ifname\": …}] with GC";
        let value = self.valid_attachments.as_ref().ok_or_else(|| {
            CniError::invalid_netconf("GC needs cni.dev/valid-attachments", details)
        })?;
        Vec::<Attachment>::deserialize(value).map_err(|e| {
            CniError::invalid_netconf(
                format!("cni.dev/valid-attachments is malformed: {e}"),
                details,
            )
        })
    }
}

fn take<T: DeserializeOwned>(
    obj: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, CniError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(&value).map(Some).map_err(|e| {
            CniError::invalid_netconf(
                format!("field {key:?} is invalid: {e}"),
                format!(
                    "fix \"{key}\" in the network configuration (got {})",
                    excerpt(&value)
                ),
            )
        }),
    }
}

fn required<T: DeserializeOwned>(obj: &mut Map<String, Value>, key: &str) -> Result<T, CniError> {
    take(obj, key)?.ok_or_else(|| {
        CniError::invalid_netconf(
            format!("field {key:?} is missing"),
            format!("add \"{key}\" to the network configuration"),
        )
    })
}

/// Network names start alphanumeric, then alphanumerics, `_`, `.`, `-`.
fn validate_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_netconf(
            format!("network name {name:?} is invalid"),
            "\"name\" must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
        ))
    }
}

fn unsupported(key: &str, value: &Value, details: &str) -> CniError {
    CniError::unsupported_field(
        format!("unsupported field {key:?} = {}", excerpt(value)),
        details,
    )
}

fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> Result<NetConf, CniError> {
        NetConf::from_object(parse_object(v.to_string().as_bytes())?)
    }

    fn minimal() -> Value {
        json!({"cniVersion": "1.0.0", "name": "weft", "type": "weft"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = minimal();
        v[key] = value;
        v
    }

    #[test]
    fn defaults() {
        let c = conf(minimal()).unwrap();
        assert_eq!(c.cni_version, CniVersion::V1_0_0);
        assert_eq!(c.name, "weft");
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.log_level, LogLevel::Error);
        assert_eq!(c.mtu, None);
        assert!(c.dns.is_empty());
        assert_eq!(c.prev_result().unwrap(), None);
    }

    #[test]
    fn weft_fields() {
        let mut v = minimal();
        v["socket"] = json!("/tmp/w.sock");
        v["timeout-ms"] = json!(1500);
        v["log-level"] = json!("debug");
        v["mtu"] = json!(9001);
        v["dns"] = json!({"nameservers": ["10.0.0.2"], "search": ["svc"]});
        v["runtimeConfig"] = json!({"portMappings": []});
        v["capabilities"] = json!({"portMappings": true});
        v["args"] = json!({"labels": {}});
        v["cni.dev/future"] = json!(1);
        v["ipMasq"] = json!(false);
        let c = conf(v).unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/w.sock"));
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.mtu, Some(9001));
        assert_eq!(c.dns.nameservers, ["10.0.0.2"]);
    }

    #[test]
    fn decode_errors_are_code_6() {
        for bad in [&b"{"[..], b"", b"[1]", b"\"x\"", b"\xff"] {
            assert_eq!(parse_object(bad).unwrap_err().code.0, 6);
        }
    }

    #[test]
    fn missing_and_wrongly_typed_fields_are_code_7() {
        for key in ["cniVersion", "name", "type"] {
            let mut v = minimal();
            v.as_object_mut().unwrap().remove(key);
            let err = conf(v).unwrap_err();
            assert_eq!(err.code.0, 7);
            assert!(err.msg.contains(key), "{}", err.msg);
        }
        for (key, value) in [
            ("mtu", json!("big")),
            ("mtu", json!(100)),
            ("mtu", json!(9002)),
            ("socket", json!("relative.sock")),
            ("socket", json!(format!("/{}", "s".repeat(120)))),
            ("timeout-ms", json!(0)),
            ("timeout-ms", json!(-5)),
            ("log-level", json!("loud")),
            ("dns", json!({"nameservers": "1.1.1.1"})),
            ("name", json!("-bad")),
        ] {
            let err = conf(with(key, value.clone())).unwrap_err();
            assert_eq!(err.code.0, 7, "{key}={value}");
            assert!(
                err.msg.contains(key) || err.details.contains(key),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn unsupported_version_is_code_1() {
        let err = conf(with("cniVersion", json!("0.2.0"))).unwrap_err();
        assert_eq!(err.code.0, 1);
    }

    #[test]
    fn unknown_and_unsupported_fields_are_code_2() {
        for (key, value) in [
            ("sockt", json!("/x")),
            ("ipam", json!({"type": "host-local"})),
            ("ipMasq", json!(true)),
        ] {
            let err = conf(with(key, value)).unwrap_err();
            assert_eq!(err.code.0, 2, "{key}");
            assert!(err.msg.contains(key), "{}", err.msg);
        }
    }

    #[test]
    fn version_hint_for_errors() {
        let obj = parse_object(br#"{"cniVersion":"0.4.0","mtu":"x"}"#).unwrap();
        assert_eq!(version_hint(&obj), Some(CniVersion::V0_4_0));
        let obj = parse_object(br#"{"cniVersion":"9.9.9"}"#).unwrap();
        assert_eq!(version_hint(&obj), None);
    }

    #[test]
    fn prev_result_is_parsed_on_demand() {
        let c = conf(with(
            "prevResult",
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/32"}]}),
        ))
        .unwrap();
        assert_eq!(c.prev_result().unwrap().unwrap().ips.len(), 1);
        let c = conf(with("prevResult", json!({"ips": [{"address": "nope"}]}))).unwrap();
        assert_eq!(c.prev_result().unwrap_err().code.0, 7);
    }

    #[test]
    fn valid_attachments_for_gc() {
        let c = conf(with(
            "cni.dev/valid-attachments",
            json!([{"containerID": "c1", "ifname": "eth0"}]),
        ))
        .unwrap();
        assert_eq!(
            c.valid_attachments().unwrap(),
            [Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
        let legacy = conf(with("cni.dev/attachments", json!([]))).unwrap();
        assert!(legacy.valid_attachments().unwrap().is_empty());
        assert_eq!(
            conf(minimal())
                .unwrap()
                .valid_attachments()
                .unwrap_err()
                .code
                .0,
            7
        );
        let bad = conf(with("cni.dev/valid-attachments", json!([{"ifname": 1}]))).unwrap();
        assert_eq!(bad.valid_attachments().unwrap_err().code.0, 7);
    }
}
