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
//! ipv4-egress = true                 # ENABLE_V4_EGRESS: IPv6 pods reach IPv4 destinations
//! ipv4-egress-cidr = "169.254.172.0/22"  # their node-local IPv4 addresses, SNATed
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{EgressSpec, SnatRandom};
use crate::plumbing::POD_GATEWAY;

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
    /// IPv6 pods (IPv6 mode) reach IPv4 destinations: each gets a
    /// node-local IPv4 address of `ipv4-egress-cidr`, SNATed to the node's
    /// primary IPv4 when it leaves the node (the VPC CNI's `egress-cni`).
    #[serde(default = "default_true")]
    pub ipv4_egress: bool,
    /// Where those node-local addresses come from: link-local, never
    /// routed beyond the node.
    #[serde(default = "default_ipv4_egress_cidr")]
    pub ipv4_egress_cidr: Ipv4Net,
}

/// The VPC CNI's range for `egress-cni`.
fn default_ipv4_egress_cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(169, 254, 172, 0), 22).expect("22 fits IPv4")
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
            ipv4_egress: true,
            ipv4_egress_cidr: default_ipv4_egress_cidr(),
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
        let cidr = self.ipv4_egress_cidr;
        let link_local = Ipv4Net::new(Ipv4Addr::new(169, 254, 0, 0), 16).expect("16 fits IPv4");
        if !link_local.contains(&cidr) || cidr.prefix_len() > 30 {
            return Err(format!(
                "`ipv4-egress-cidr` {cidr} must be a link-local range (within 169.254.0.0/16) of at \
                 least 4 addresses (/30), e.g. 169.254.172.0/22"
            ));
        }
        for (ip, what) in [
            (POD_GATEWAY, "the pods' gateway"),
            (
                Ipv4Addr::new(169, 254, 169, 254),
                "the instance metadata service",
            ),
        ] {
            if cidr.contains(&ip) {
                return Err(format!(
                    "`ipv4-egress-cidr` {cidr} holds {ip}, {what}: pick a range without it, e.g. \
                     169.254.172.0/22"
                ));
            }
        }
        Ok(())
    }

    /// The node-local range of IPv6 pods' IPv4 egress addresses; `None`
    /// when IPv4 egress is off.
    pub(crate) fn ipv4_egress_range(&self) -> Option<Ipv4Net> {
        self.ipv4_egress.then_some(self.ipv4_egress_cidr.trunc())
    }

    /// The rules' inputs on a node; `ipv6_pods` in IPv6 mode.
    pub(crate) fn spec(
        &self,
        primary_ip: Ipv4Addr,
        primary_link: Option<String>,
        vpc_cidrs: Vec<Ipv4Net>,
        pod_veth_prefix: &str,
        ipv6_pods: bool,
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
            ipv4_egress: self
                .ipv4_egress_range()
                .filter(|_| ipv6_pods)
                .map(|cidr| (cidr, self.randomize_snat)),
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
        .spec(Ipv4Addr::new(10, 0, 0, 5), None, vec![], "eni", false);
        assert_eq!(spec.snat, None, "external SNAT: no SNAT on the node");
        assert_eq!(spec.ipv4_egress, None, "IPv4 pods need no IPv4 egress");
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

    #[test]
    fn ipv4_egress_is_on_for_ipv6_pods_unless_turned_off() {
        let config = EgressConfig::default();
        let spec = config.spec(Ipv4Addr::new(10, 0, 0, 5), None, vec![], "eni", true);
        assert_eq!(
            spec.ipv4_egress,
            Some(("169.254.172.0/22".parse().unwrap(), SnatRandom::Prng))
        );
        let off: EgressConfig = toml::from_str("ipv4-egress = false\n").unwrap();
        assert_eq!(off.ipv4_egress_range(), None);
        assert_eq!(
            off.spec(Ipv4Addr::new(10, 0, 0, 5), None, vec![], "eni", true)
                .ipv4_egress,
            None
        );
    }

    #[test]
    fn an_ipv4_egress_range_must_be_link_local_and_miss_the_gateway_and_imds() {
        for (cidr, needle) in [
            ("10.0.0.0/22", "link-local"),
            ("169.254.172.0/31", "link-local"),
            ("169.254.0.0/22", "gateway"),
            ("169.254.168.0/22", "metadata"),
        ] {
            let config: EgressConfig =
                toml::from_str(&format!("ipv4-egress-cidr = \"{cidr}\"\n")).unwrap();
            let err = config.validate().unwrap_err();
            assert!(err.contains(needle) && err.contains(cidr), "{cidr}: {err}");
        }
    }
}
