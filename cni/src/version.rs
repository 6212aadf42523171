//! CNI specification versions the plugin speaks, and what each one allows.

use crate::error::CniError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A CNI specification version supported by `weft`.
///
/// Versions before 0.3.0 have a different result type (`ip4`/`ip6`) that no
/// current runtime asks for, so they are refused with error code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// 0.3.0: rich result type (interfaces, ips, routes) and chaining.
    V0_3_0,
    /// 0.3.1: typo fixes only.
    V0_3_1,
    /// 0.4.0: adds `CHECK` and `prevResult` on `DEL`.
    V0_4_0,
    /// 1.0.0: drops `version` from `ips` entries.
    V1_0_0,
    /// 1.1.0: adds `GC`, `STATUS`, and `mtu` on interfaces.
    V1_1_0,
}

impl CniVersion {
    /// Every supported version, oldest first (the `VERSION` command's list).
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest supported version.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// The version as written in JSON, e.g. `"1.0.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a version string; `None` if `weft` does not support it.
    pub fn parse(s: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Parses a version string, or explains which versions are supported (code 1).
    pub fn require(s: &str) -> Result<CniVersion, CniError> {
        CniVersion::parse(s).ok_or_else(|| {
            CniError::incompatible_version(
                format!("CNI version {s:?} is not supported by weft"),
                format!(
                    "set \"cniVersion\" in the network configuration to one of {}",
                    supported_list()
                ),
            )
        })
    }

    /// Whether `CHECK` exists in this version (0.4.0 and later).
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// Whether `GC` and `STATUS` exist in this version (1.1.0 and later).
    pub fn has_gc_and_status(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// Whether result `ips` entries carry `"version": "4"|"6"` (before 1.0.0).
    pub fn ips_have_version(self) -> bool {
        self < CniVersion::V1_0_0
    }

    /// Whether result interfaces may carry `mtu` (1.1.0 and later).
    pub fn interfaces_have_mtu(self) -> bool {
        self >= CniVersion::V1_1_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CniVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CniVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        CniVersion::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unsupported CNI version {s:?}")))
    }
}

/// The supported versions as a human-readable list: `0.3.0, 0.3.1, …`.
pub fn supported_list() -> String {
    CniVersion::ALL
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `VERSION` command's output.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    /// The version of this output's format.
    #[serde(rename = "cniVersion")]
    pub cni_version: CniVersion,
    /// Every version the plugin supports.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: [CniVersion; 5],
}

impl VersionInfo {
    /// The plugin's version information.
    pub fn current() -> VersionInfo {
        VersionInfo {
            cni_version: CniVersion::LATEST,
            supported_versions: CniVersion::ALL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_versions_only() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
        for bad in ["0.1.0", "0.2.0", "1.2.0", "1.0", "", "v1.0.0"] {
            assert_eq!(CniVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn unsupported_version_is_code_1_listing_supported() {
        let err = CniVersion::require("0.2.0").unwrap_err();
        assert_eq!(err.code.0, 1);
        assert!(err.msg.contains("0.2.0"));
        assert!(err.details.contains("1.1.0") && err.details.contains("0.3.1"));
    }

    #[test]
    fn feature_gates_follow_the_spec() {
        assert!(!CniVersion::V0_3_1.has_check());
        assert!(CniVersion::V0_4_0.has_check());
        assert!(!CniVersion::V1_0_0.has_gc_and_status());
        assert!(CniVersion::V1_1_0.has_gc_and_status());
        assert!(CniVersion::V0_4_0.ips_have_version());
        assert!(!CniVersion::V1_0_0.ips_have_version());
        assert!(!CniVersion::V1_0_0.interfaces_have_mtu());
        assert!(CniVersion::V1_1_0.interfaces_have_mtu());
    }

    #[test]
    fn version_output_lists_every_version() {
        let json = serde_json::to_value(VersionInfo::current()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            })
        );
    }
}
