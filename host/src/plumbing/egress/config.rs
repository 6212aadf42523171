//! The `[egress]` table of the agent's configuration (the VPC CNI's
//! variables named beside each key set it: `compat::env`).
//!
//! ```toml
//! [egress]
//! external-snat = false              # AWS_VPC_K8S_CNI_EXTERNALSNAT
//! exclude-snat-cidrs = []            # AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS (comma-separated)
//! randomize-snat = "prng"            # AWS_VPC_K8S_CNI_RANDOMIZESNAT: none | hashrandom | prng
//! node-port-support = true           # AWS_VPC_CNI_NODE_PORT_SUPPORT
//! connmark = 0x80                    # AWS_VPC_K8S_CNI_CONNMARK
//! vpc-cidr-refresh-seconds = 60      # how often the VPC's CIDR blocks are read again
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{EgressSpec, SnatRandom};

/// The `[egress]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EgressConfig {
    /// SNAT happens outside the node (a NAT gateway): no SNAT rule.
    #[serde(default)]
    pub external_snat: bool,
    /// Destinations besides the VPC's CIDRs that are never SNATed.
    #[serde(default)]
    pub exclude_snat_cidrs: Vec<Ipv4Net>,
    /// How SNAT picks source ports.
    #[serde(default = "default_random")]
    pub randomize_snat: SnatRandom,
    /// Connections that arrive through the primary ENI and go to pods on
    /// secondary ENIs reply through the primary ENI.
    #[serde(default = "default_true")]
    pub node_port_support: bool,
    /// The connection mark bit(s) Weft uses.
    #[serde(default = "default_connmark")]
    pub connmark: u32,
    /// How often the VPC's CIDR blocks are read again (they change when a
    /// block is associated or disassociated).
    #[serde(default = "default_refresh")]
    pub vpc_cidr_refresh_seconds: u64,
}

fn default_random() -> SnatRandom {
    SnatRandom::Prng
}

fn default_true() -> bool {
    true
}

fn default_connmark() -> u32 {
    0x80
}

fn default_refresh() -> u64 {
    60
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            external_snat: false,
            exclude_snat_cidrs: Vec::new(),
            randomize_snat: default_random(),
            node_port_support: true,
            connmark: default_connmark(),
            vpc_cidr_refresh_seconds: default_refresh(),
        }
    }
}

impl EgressConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.connmark == 0 {
            return Err("`connmark` must have at least one bit set (VPC CNI: 0x80)".into());
        }
        if self.vpc_cidr_refresh_seconds == 0 {
            return Err("`vpc-cidr-refresh-seconds` must be at least 1".into());
        }
        Ok(())
    }

    /// The rules' inputs on a node.
    pub fn spec(
        &self,
        primary_ip: Ipv4Addr,
        primary_link: Option<String>,
        vpc_cidrs: Vec<Ipv4Net>,
        pod_veth_prefix: &str,
    ) -> EgressSpec {
        EgressSpec {
            primary_ip,
            primary_link,
            vpc_cidrs,
            excluded_cidrs: self.exclude_snat_cidrs.clone(),
            snat: (!self.external_snat).then_some(self.randomize_snat),
            node_port: self.node_port_support,
            connmark: self.connmark,
            pod_veth_prefix: pod_veth_prefix.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_as_documented() {
        let config: EgressConfig = toml::from_str(
            "external-snat = false\nexclude-snat-cidrs = [\"10.9.0.0/16\"]\nrandomize-snat = \"none\"\n",
        )
        .unwrap();
        assert_eq!(config.randomize_snat, SnatRandom::None);
        assert!(config.node_port_support);
        assert_eq!(config.connmark, 0x80);
        let spec = EgressConfig {
            external_snat: true,
            ..config
        }
        .spec(Ipv4Addr::new(10, 0, 0, 5), None, vec![], "eni");
        assert_eq!(spec.snat, None, "external SNAT: no SNAT on the node");
    }

    #[test]
    fn a_bad_value_says_which_key() {
        let err = toml::from_str::<EgressConfig>("randomize-snat = \"fully\"\n").unwrap_err();
        assert!(err.to_string().contains("randomize-snat"), "{err}");
        let zero = EgressConfig {
            connmark: 0,
            ..EgressConfig::default()
        };
        assert!(zero.validate().unwrap_err().contains("connmark"));
    }
}
