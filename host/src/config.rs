//! The agent's configuration file (`weftd run --config FILE`), TOML.
//!
//! ```toml
//! [agent]
//! socket = "/run/weft/weftd.sock"     # the API the `weft` plugin calls (mode 0600)
//! state-dir = "/run/weft/state"       # checkpoint + journal; tmpfs, like VPC CNI's /var/run/aws-node
//!
//! [cloud]
//! provider = "sim"                    # or "ec2"
//! instance-type = "m5.large"          # sim: a real instance type and its real limits
//! subnets = ["10.0.0.0/22"]           # sim: the first is the node's subnet
//!
//! [pool]                              # see `reconcile::PoolConfig`
//! cooldown-seconds = 30
//!
//! [plumbing]
//! mtu = 9001
//! veth-prefix = "eni"
//!
//! [policies.pool-sizing]              # see `policy::PolicyConfig`; built-in defaults when unset
//! settings = { warm-ip-target = 5 }
//!
//! [egress]                            # see `plumbing::egress::EgressConfig`; SNAT, NodePort
//! external-snat = false               # the VPC CNI's variables override it (`load`)
//! ```
//!
//! Every table and field but `[cloud]` has a default; unknown fields are
//! refused so a typo fails at start, not silently.

use crate::cloud::sim::SubnetSpec;
use crate::cloud::{Api, Ec2Config, NodeIdentity, RateLimits, SimCloud};
use crate::plumbing::PlumbingConfig;
use crate::plumbing::egress::EgressConfig;
use crate::policy::PoliciesConfig;
use crate::reconcile::PoolConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the agent keeps its socket and state.
    #[serde(default)]
    pub agent: AgentSection,
    /// Which cloud the agent talks to.
    pub cloud: CloudConfig,
    /// How the address pool behaves.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Pod networking on the node.
    #[serde(default)]
    pub plumbing: PlumbingSection,
    /// The policies that make the pool's decisions.
    #[serde(default)]
    pub policies: PoliciesConfig,
    /// Egress SNAT and the NodePort return path.
    #[serde(default)]
    pub egress: EgressConfig,
}

/// The `[agent]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AgentSection {
    /// The API socket the `weft` plugin calls; its netconf field `socket`
    /// must name the same path. Created with mode 0600.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Directory of the assignment checkpoint and the EC2 operation journal.
    /// Only one agent may use it at a time (it is locked). Pod assignments
    /// mean nothing after a reboot, so a tmpfs (`/run`) is the right place:
    /// it makes the checkpoint written before every ADD answer cheap.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
}

fn default_socket() -> PathBuf {
    PathBuf::from(weft_cni::netconf::DEFAULT_SOCKET)
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/run/weft/state")
}

impl Default for AgentSection {
    fn default() -> Self {
        AgentSection {
            socket: default_socket(),
            state_dir: default_state_dir(),
        }
    }
}

/// The `[cloud]` table: `provider = "sim"` or `provider = "ec2"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "kebab-case")]
pub enum CloudConfig {
    /// The embedded VPC simulator.
    Sim(SimSection),
    /// Amazon EC2 through the standard credential chain.
    Ec2(Ec2Section),
}

/// `[cloud]` with `provider = "sim"`: the embedded VPC simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SimSection {
    /// A real instance type; its real ENI and address limits are enforced.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// The VPC's subnets as CIDRs; the first is the node's own subnet.
    #[serde(default = "default_sim_subnets")]
    pub subnets: Vec<String>,
    /// Tags per subnet CIDR, e.g. `{ "10.0.4.0/22" = { "kubernetes.io/role/cni" = "1" } }`.
    #[serde(default)]
    pub subnet_tags: BTreeMap<String, BTreeMap<String, String>>,
    /// The node's availability zone.
    #[serde(default = "default_zone")]
    pub availability_zone: String,
    /// The primary ENI's security groups.
    #[serde(default = "default_sim_security_groups")]
    pub security_groups: Vec<String>,
    /// Seed of every random choice (ids, MACs, addresses).
    #[serde(default)]
    pub seed: u64,
    /// Cluster name written to ENI tags.
    #[serde(default = "default_cluster")]
    pub cluster_name: String,
    /// Make attached secondary ENIs real links (with the ENI's MAC) in the
    /// node namespace, so their host setup runs for real.
    #[serde(default)]
    pub materialise_enis: bool,
    /// The namespace playing the VPC router (e.g. `/run/netns/vpc`), made
    /// by whoever runs the simulation: with `materialise-enis`, every ENI,
    /// the primary too, is connected to it and it routes their addresses
    /// (the simulated VPC fabric; several nodes may share it).
    #[serde(default)]
    pub vpc_netns: Option<PathBuf>,
    /// How long after its attachment a materialised ENI's link appears
    /// (EC2: hundreds of milliseconds to seconds). Default 0.
    #[serde(default)]
    pub link_delay_ms: u64,
    /// Minimum age of a leaked ENI the collector deletes, in seconds
    /// (default 300, as on EC2).
    #[serde(default = "default_leak_min_age_seconds")]
    pub leaked_eni_min_age_seconds: u64,
    /// The VPC's CIDR blocks (what egress SNAT leaves alone); default the
    /// /16 around each subnet.
    #[serde(default)]
    pub vpc_cidrs: Vec<String>,
    /// Where the simulated VPC is kept across agent restarts; default
    /// `sim-vpc.json` in the state directory. Delete it for a new VPC.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Added latency per EC2 action in milliseconds, e.g.
    /// `{ AssignPrivateIpAddresses = 3000 }`: a slow EC2, for tests and demos.
    #[serde(default)]
    pub api_latency_ms: BTreeMap<String, u64>,
}

fn default_leak_min_age_seconds() -> u64 {
    crate::cloud::leak::DEFAULT_MIN_AGE.as_secs()
}

fn default_instance_type() -> String {
    "m5.large".into()
}

fn default_sim_subnets() -> Vec<String> {
    vec!["10.0.0.0/22".into()]
}

fn default_zone() -> String {
    "us-east-1a".into()
}

fn default_sim_security_groups() -> Vec<String> {
    vec!["sg-0a1b2c3d4e5f60718".into()]
}

fn default_cluster() -> String {
    "weft".into()
}

/// `[cloud]` with `provider = "ec2"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Ec2Section {
    /// Cluster name, written to ENI tags and used to find leaked ENIs.
    pub cluster_name: String,
    /// AWS region; from the environment or IMDS when unset.
    #[serde(default)]
    pub region: Option<String>,
    /// EC2 endpoint; `AWS_ENDPOINT_URL_EC2` or the regional one when unset.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Timeout of one attempt of one EC2 call, in milliseconds.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// The node's identity (`[cloud.identity]`: instance-id, instance-type,
    /// availability-zone, vpc-id, primary-eni-id, subnet-id,
    /// security-groups, mac), for machines without IMDS. Read from IMDS
    /// when unset.
    #[serde(default)]
    pub identity: Option<NodeIdentity>,
    /// EC2 meters the whole account: each node keeps its client-side
    /// buckets at 1/N of the account's, N being how many nodes may call
    /// EC2 at the same time (20: a rolling scale-up of a 100-node cluster).
    #[serde(default = "default_rate_share_nodes")]
    pub rate_share_nodes: u32,
}

fn default_call_timeout_ms() -> u64 {
    10_000
}

fn default_rate_share_nodes() -> u32 {
    crate::cloud::ec2::DEFAULT_RATE_SHARE_NODES
}

/// The `[plumbing]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlumbingSection {
    /// Pod MTU when the netconf asks for none.
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// Prefix of host-side veth names (1 to 4 characters).
    #[serde(default = "default_veth_prefix")]
    pub veth_prefix: String,
    /// Set `net.ipv4.ip_forward = 1` on the node at start.
    #[serde(default = "default_true")]
    pub enable_ip_forward: bool,
    /// The node's network namespace, when it is not the agent's own (tests
    /// and the demo run a whole node inside a namespace they made).
    #[serde(default)]
    pub node_netns: Option<PathBuf>,
}

fn default_mtu() -> u32 {
    crate::plumbing::DEFAULT_MTU
}

fn default_veth_prefix() -> String {
    PlumbingConfig::default().veth_prefix
}

fn default_true() -> bool {
    true
}

impl Default for PlumbingSection {
    fn default() -> Self {
        PlumbingSection {
            mtu: default_mtu(),
            veth_prefix: default_veth_prefix(),
            enable_ip_forward: true,
            node_netns: None,
        }
    }
}

impl PlumbingSection {
    /// The plumbing layer's configuration.
    pub fn plumbing_config(&self) -> PlumbingConfig {
        PlumbingConfig {
            host_netns: self.node_netns.clone(),
            veth_prefix: self.veth_prefix.clone(),
            mtu: self.mtu,
            enable_ip_forward: self.enable_ip_forward,
        }
    }
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!("reading the configuration {}", path.display()),
            source,
        })?;
        let mut config =
            Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        config
            .egress
            .apply_env(|name| std::env::var(name).ok())
            .map_err(Error::Config)?;
        Ok(config)
    }

    /// Parses and validates a configuration document.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The embedded default: the simulator, state and socket under `dir`.
    pub fn simulated(dir: &Path) -> Self {
        AgentConfig {
            agent: AgentSection {
                socket: dir.join("weftd.sock"),
                state_dir: dir.join("state"),
            },
            cloud: CloudConfig::Sim(SimSection {
                instance_type: default_instance_type(),
                subnets: default_sim_subnets(),
                subnet_tags: BTreeMap::new(),
                availability_zone: default_zone(),
                security_groups: default_sim_security_groups(),
                seed: 0,
                cluster_name: default_cluster(),
                materialise_enis: false,
                vpc_netns: None,
                link_delay_ms: 0,
                leaked_eni_min_age_seconds: default_leak_min_age_seconds(),
                vpc_cidrs: Vec::new(),
                state_file: None,
                api_latency_ms: BTreeMap::new(),
            }),
            pool: PoolConfig::default(),
            plumbing: PlumbingSection::default(),
            policies: PoliciesConfig::default(),
            egress: EgressConfig::default(),
        }
    }

    /// Checks what serde cannot; the message names the table and field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.policies.validate()?;
        self.egress
            .validate()
            .map_err(|e| format!("[egress]: {e}"))?;
        self.pool.validate().map_err(|e| format!("[pool]: {e}"))?;
        self.plumbing
            .plumbing_config()
            .validate()
            .map_err(|e| format!("[plumbing]: {e}"))?;
        match &self.cloud {
            CloudConfig::Sim(sim) if sim.subnets.is_empty() => {
                Err("[cloud]: `subnets` needs at least the node's subnet".into())
            }
            CloudConfig::Sim(sim) => match sim
                .api_latency_ms
                .keys()
                .find(|name| Api::from_name(name).is_none())
            {
                Some(name) => Err(format!(
                    "[cloud]: `api-latency-ms` names {name:?}, which is not an EC2 action weftd \
                     calls; use names such as AssignPrivateIpAddresses"
                )),
                None => Ok(()),
            },
            CloudConfig::Ec2(ec2) if ec2.cluster_name.is_empty() => {
                Err("[cloud]: `cluster-name` must not be empty".into())
            }
            _ => Ok(()),
        }
    }
}

impl SimSection {
    /// The subnets' CIDRs (unparsable ones are refused by the simulator's build).
    pub fn subnet_nets(&self) -> Vec<ipnet::Ipv4Net> {
        self.subnets.iter().filter_map(|c| c.parse().ok()).collect()
    }

    /// Builds the simulator; `links` materialises attached ENIs as links;
    /// the VPC is kept in `state-file`, else in `state_dir`.
    pub fn build(
        &self,
        links: Option<std::sync::Arc<dyn crate::cloud::sim::EniLinks>>,
        state_dir: &Path,
    ) -> Result<SimCloud> {
        let state_file = self
            .state_file
            .clone()
            .unwrap_or_else(|| state_dir.join("sim-vpc.json"));
        let mut builder = SimCloud::builder()
            .state_file(state_file)
            .seed(self.seed)
            .instance_type(&self.instance_type)
            .availability_zone(&self.availability_zone)
            .cluster_name(&self.cluster_name)
            .leak_min_age(Duration::from_secs(self.leaked_eni_min_age_seconds))
            .security_groups(self.security_groups.iter().cloned());
        for cidr in &self.vpc_cidrs {
            builder = builder.vpc_cidr(cidr);
        }
        for cidr in &self.subnets {
            builder = builder.subnet_with(SubnetSpec {
                cidr: cidr.clone(),
                availability_zone: None,
                tags: self.subnet_tags.get(cidr).cloned().unwrap_or_default(),
            });
        }
        if let Some(links) = links {
            builder = builder.links(links);
        }
        for (name, ms) in &self.api_latency_ms {
            if let Some(api) = Api::from_name(name) {
                builder = builder.latency(api, Duration::from_millis(*ms));
            }
        }
        Ok(builder.build()?)
    }
}

impl Ec2Section {
    /// The EC2 client's configuration.
    pub fn ec2_config(&self) -> Ec2Config {
        let mut config = Ec2Config::new(&self.cluster_name);
        config.region = self.region.clone();
        config.endpoint_url = self.endpoint_url.clone();
        config.call_timeout = Duration::from_millis(self.call_timeout_ms);
        config.identity = self.identity.clone();
        config.rate_limits = RateLimits::aws().share(self.rate_share_nodes);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_sim_config_takes_defaults() {
        let config = AgentConfig::parse("[cloud]\nprovider = \"sim\"\n").unwrap();
        assert_eq!(config.agent.socket, default_socket());
        assert!(matches!(config.cloud, CloudConfig::Sim(ref s) if s.instance_type == "m5.large"));
        assert_eq!(config.plumbing.mtu, 9001);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = AgentConfig::parse("[cloud]\nprovider = \"sim\"\n[agent]\nsokcet = \"/x\"\n")
            .unwrap_err();
        assert!(err.contains("sokcet"), "{err}");
    }

    #[test]
    fn ec2_needs_a_cluster_name() {
        let err =
            AgentConfig::parse("[cloud]\nprovider = \"ec2\"\ncluster-name = \"\"\n").unwrap_err();
        assert!(err.contains("cluster-name"), "{err}");
    }

    #[test]
    fn ec2_identity_for_machines_without_imds() {
        let config = AgentConfig::parse(
            r#"[cloud]
provider = "ec2"
cluster-name = "prod"
[cloud.identity]
instance-id = "i-0123456789abcdef0"
instance-type = "m5.large"
availability-zone = "us-west-2a"
vpc-id = "vpc-1"
primary-eni-id = "eni-1"
subnet-id = "subnet-1"
security-groups = ["sg-0123456789abcdef0"]
mac = "02:aa:bb:cc:dd:ee"
"#,
        )
        .unwrap();
        let CloudConfig::Ec2(ec2) = config.cloud else {
            panic!("ec2 expected")
        };
        let identity = ec2.ec2_config().identity.expect("identity from the file");
        assert_eq!(identity.mac.to_string(), "02:aa:bb:cc:dd:ee");
        let err = AgentConfig::parse(
            "[cloud]\nprovider = \"ec2\"\ncluster-name = \"p\"\n[cloud.identity]\nmac = \"zz\"\n",
        )
        .unwrap_err();
        assert!(err.contains("invalid MAC address \"zz\""), "{err}");
    }

    #[test]
    fn bad_mtu_names_the_table() {
        let err =
            AgentConfig::parse("[cloud]\nprovider = \"sim\"\n[plumbing]\nmtu = 10\n").unwrap_err();
        assert!(err.contains("[plumbing]"), "{err}");
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let config = AgentConfig::simulated(Path::new("/run/weft-demo"));
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        AgentConfig::parse(&text).unwrap();
    }
}
