//! The `[egress]` table of the agent's configuration, and the VPC CNI's
//! environment variables that set the same things.
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

/// The VPC CNI variables read by [`EgressConfig::apply_env`].
pub const ENV_EXTERNAL_SNAT: &str = "AWS_VPC_K8S_CNI_EXTERNALSNAT";
/// See [`ENV_EXTERNAL_SNAT`].
pub const ENV_EXCLUDE_SNAT_CIDRS: &str = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS";
/// See [`ENV_EXTERNAL_SNAT`].
pub const ENV_RANDOMIZE_SNAT: &str = "AWS_VPC_K8S_CNI_RANDOMIZESNAT";
/// See [`ENV_EXTERNAL_SNAT`].
pub const ENV_NODE_PORT_SUPPORT: &str = "AWS_VPC_CNI_NODE_PORT_SUPPORT";
/// See [`ENV_EXTERNAL_SNAT`].
pub const ENV_CONNMARK: &str = "AWS_VPC_K8S_CNI_CONNMARK";

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

    /// Lets the VPC CNI's environment variables (set on its DaemonSet)
    /// override the table; `env` looks a variable up. A value that cannot
    /// be read is refused with the variable's name.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let bad = |name: &str, value: &str, expected: &str| {
            format!("{name}={value:?}: expected {expected}")
        };
        if let Some(v) = env(ENV_EXTERNAL_SNAT) {
            self.external_snat =
                parse_bool(&v).ok_or_else(|| bad(ENV_EXTERNAL_SNAT, &v, "true or false"))?;
        }
        if let Some(v) = env(ENV_NODE_PORT_SUPPORT) {
            self.node_port_support =
                parse_bool(&v).ok_or_else(|| bad(ENV_NODE_PORT_SUPPORT, &v, "true or false"))?;
        }
        if let Some(v) = env(ENV_EXCLUDE_SNAT_CIDRS) {
            self.exclude_snat_cidrs = v
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| c.parse::<Ipv4Net>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    bad(
                        ENV_EXCLUDE_SNAT_CIDRS,
                        &v,
                        "comma-separated IPv4 CIDRs such as 10.1.0.0/16,192.168.0.0/24",
                    )
                })?;
        }
        if let Some(v) = env(ENV_RANDOMIZE_SNAT) {
            self.randomize_snat = match v.trim() {
                "none" => SnatRandom::None,
                "hashrandom" => SnatRandom::HashRandom,
                "prng" => SnatRandom::Prng,
                _ => return Err(bad(ENV_RANDOMIZE_SNAT, &v, "none, hashrandom or prng")),
            };
        }
        if let Some(v) = env(ENV_CONNMARK) {
            let t = v.trim();
            let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => t.parse(),
            };
            self.connmark = parsed.map_err(|_| bad(ENV_CONNMARK, &v, "a number such as 0x80"))?;
        }
        self.validate()
            .map_err(|e| format!("[egress] after the environment: {e}"))
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

/// A boolean as Go's `strconv.ParseBool` reads it (the VPC CNI's parser).
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_vpc_cni_variables_override_the_table() {
        let mut config = EgressConfig::default();
        config
            .apply_env(env(&[
                (ENV_EXTERNAL_SNAT, "true"),
                (ENV_EXCLUDE_SNAT_CIDRS, "192.168.0.0/24, 172.16.0.0/12"),
                (ENV_RANDOMIZE_SNAT, "hashrandom"),
                (ENV_NODE_PORT_SUPPORT, "false"),
                (ENV_CONNMARK, "0x100"),
            ]))
            .unwrap();
        assert!(config.external_snat);
        assert_eq!(config.exclude_snat_cidrs.len(), 2);
        assert_eq!(config.randomize_snat, SnatRandom::HashRandom);
        assert!(!config.node_port_support);
        assert_eq!(config.connmark, 0x100);
        let spec = config.spec(Ipv4Addr::new(10, 0, 0, 5), None, vec![], "eni");
        assert_eq!(spec.snat, None, "external SNAT: no SNAT on the node");
    }

    #[test]
    fn unreadable_variables_are_refused_with_their_name() {
        for (name, value) in [
            (ENV_EXTERNAL_SNAT, "yes"),
            (ENV_EXCLUDE_SNAT_CIDRS, "10.0.0.0/33"),
            (ENV_RANDOMIZE_SNAT, "fully"),
            (ENV_CONNMARK, "0"),
        ] {
            let err = EgressConfig::default()
                .apply_env(env(&[(name, value)]))
                .unwrap_err();
            assert!(err.contains(name) || err.contains("connmark"), "{err}");
        }
    }

    #[test]
    fn the_table_reads_as_documented() {
        let config: EgressConfig = toml::from_str(
            "external-snat = false\nexclude-snat-cidrs = [\"10.9.0.0/16\"]\nrandomize-snat = \"none\"\n",
        )
        .unwrap();
        assert_eq!(config.randomize_snat, SnatRandom::None);
        assert!(config.node_port_support);
        assert_eq!(config.connmark, 0x80);
    }
}
