//! Configuration of the plumbing layer.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::PlumbingError;
use super::names;

/// Default pod MTU: the ENI's jumbo MTU, as the Amazon VPC CNI.
pub const DEFAULT_MTU: u32 = 9001;

/// Smallest MTU an IPv4 interface may have.
const MIN_MTU: u32 = 68;

/// Largest MTU accepted (the largest an ENI supports is 9001; virtual links
/// go higher, the kernel checks the rest).
const MAX_MTU: u32 = 65535;

/// How the plumbing is set up on a node: the `[plumbing]` table of the
/// agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct PlumbingConfig {
    /// The node's network namespace, where host veths, ENIs, routes and
    /// rules live. `None` is the agent's own namespace (production); tests
    /// and the demo run a whole node inside a namespace of their own, such
    /// as `/var/run/netns/<name>`.
    pub node_netns: Option<PathBuf>,
    /// Prefix of host-side veth names, 1 to 4 characters (default `eni`).
    pub veth_prefix: String,
    /// MTU of the node's secondary ENIs, and of pods unless `pod-mtu` is set
    /// (default 9001).
    pub mtu: u32,
    /// Pod MTU when the netconf asks for none; `mtu` when unset.
    pub pod_mtu: Option<u32>,
    /// Set `net.ipv4.ip_forward = 1` in the node namespace at start
    /// (default true; pod traffic is routed through the node).
    pub enable_ip_forward: bool,
    /// Set `net.ipv6.conf.all.forwarding = 1` in the node namespace at
    /// start. Not a setting: the agent turns it on in IPv6 mode.
    #[serde(skip)]
    pub enable_ipv6_forward: bool,
}

impl Default for PlumbingConfig {
    fn default() -> Self {
        Self {
            node_netns: None,
            veth_prefix: names::DEFAULT_VETH_PREFIX.to_owned(),
            mtu: DEFAULT_MTU,
            pod_mtu: None,
            enable_ip_forward: true,
            enable_ipv6_forward: false,
        }
    }
}

impl PlumbingConfig {
    /// Checks the values, with a message saying which one to fix.
    pub fn validate(&self) -> Result<(), PlumbingError> {
        names::validate_veth_prefix(&self.veth_prefix).map_err(PlumbingError::InvalidInput)?;
        validate_mtu(self.mtu)?;
        self.pod_mtu.map_or(Ok(()), validate_mtu)
    }

    /// The MTU of a pod whose netconf asks for none.
    pub(crate) fn pod_mtu(&self) -> u32 {
        self.pod_mtu.unwrap_or(self.mtu)
    }
}

/// Checks an MTU against what an IPv4 link accepts.
pub(crate) fn validate_mtu(mtu: u32) -> Result<(), PlumbingError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(PlumbingError::InvalidInput(format!(
            "MTU {mtu} is outside {MIN_MTU}..={MAX_MTU}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert!(PlumbingConfig::default().validate().is_ok());
    }

    #[test]
    fn rejects_bad_values() {
        let long_prefix = PlumbingConfig {
            veth_prefix: "toolong".into(),
            ..Default::default()
        };
        assert!(
            long_prefix
                .validate()
                .unwrap_err()
                .to_string()
                .contains("veth prefix")
        );
        let tiny_mtu = PlumbingConfig {
            mtu: 20,
            ..Default::default()
        };
        assert!(
            tiny_mtu
                .validate()
                .unwrap_err()
                .to_string()
                .contains("MTU 20")
        );
        let tiny_pod_mtu = PlumbingConfig {
            pod_mtu: Some(20),
            ..Default::default()
        };
        assert!(tiny_pod_mtu.validate().is_err());
    }
}
