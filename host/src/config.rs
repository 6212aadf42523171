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

use crate::Result;
use crate::cloud::sim::SubnetSpec;
use crate::cloud::{Ec2Action, Ec2Config, NodeIdentity, RateLimits, SimCloud};
use crate::compat::env::EnvError;
use crate::compat::env::EnvOverlay;
use crate::plumbing::PlumbingConfig;
use crate::plumbing::egress::EgressConfig;
use crate::policy::PoliciesConfig;
use crate::reconcile::PoolConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration was refused. Every message names what to fix: the
/// file, the table and the field, or the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// Not TOML, or a field serde refuses (unknown, or of the wrong type);
    /// the message names it.
    #[error("{0}")]
    Toml(#[source] toml::de::Error),
    /// A VPC CNI environment variable is invalid or conflicts with the file.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A field is out of range or inconsistent with another.
    #[error("[{table}]: {message}")]
    Invalid {
        /// The table, e.g. `pool` or `policies.pool-sizing`.
        table: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The configuration file `path` was refused.
    #[error("invalid configuration {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<ConfigError>,
    },
}

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
    pub plumbing: PlumbingConfig,
    /// The policies that make the pool's decisions.
    #[serde(default)]
    pub policies: PoliciesConfig,
    /// Egress SNAT and the NodePort return path.
    #[serde(default)]
    pub egress: EgressConfig,
    /// Where the plugin and its network configuration are installed.
    #[serde(default)]
    pub cni: CniSection,
    /// Pod and node metadata from the Kubernetes API.
    #[serde(default)]
    pub kubernetes: KubernetesSection,
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
    /// Prometheus metrics over TCP (`GET /metrics`), as aws-node's
    /// 61678; `"off"` disables it. The socket serves them too.
    #[serde(default = "default_metrics_address")]
    pub metrics_address: Endpoint,
    /// Read-only introspection JSON over TCP (`/v1/status`, `/v1/pool`,
    /// `/v1/pods`), as aws-node's 61679; `"off"` disables it.
    #[serde(default = "default_introspection_address")]
    pub introspection_address: Endpoint,
}

/// A TCP endpoint, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(pub Option<std::net::SocketAddr>);

impl TryFrom<String> for Endpoint {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        if text == "off" {
            return Ok(Endpoint(None));
        }
        text.parse().map(|a| Endpoint(Some(a))).map_err(|_| {
            format!("{text:?} is not an address:port (e.g. \"127.0.0.1:61678\") or \"off\"")
        })
    }
}

impl From<Endpoint> for String {
    fn from(endpoint: Endpoint) -> String {
        endpoint.0.map_or_else(|| "off".into(), |a| a.to_string())
    }
}

/// aws-node's metrics port, on loopback.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:61678";
/// aws-node's introspection port, on loopback.
pub const DEFAULT_INTROSPECTION_ADDRESS: &str = "127.0.0.1:61679";

fn default_metrics_address() -> Endpoint {
    Endpoint(DEFAULT_METRICS_ADDRESS.parse().ok())
}

fn default_introspection_address() -> Endpoint {
    Endpoint(DEFAULT_INTROSPECTION_ADDRESS.parse().ok())
}

/// The `[cni]` table: where `weftd install` puts the plugin and where the
/// agent writes the network configuration once it can answer ADDs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CniSection {
    /// The runtime's plugin directory (`weftd install` copies `weft` there).
    #[serde(default = "default_cni_bin_dir")]
    pub bin_dir: PathBuf,
    /// The runtime's network configuration directory.
    #[serde(default = "default_cni_conf_dir")]
    pub conf_dir: PathBuf,
    /// The conflist's file name in `conf-dir`.
    #[serde(default = "default_conflist")]
    pub conflist: String,
    /// Write the conflist when ready (and remove it at shutdown). Off for
    /// nodes whose conflist is managed otherwise.
    #[serde(default = "default_true")]
    pub write_conflist: bool,
    /// The network's `name`.
    #[serde(default = "default_network")]
    pub network: String,
    /// Chain the reference `portmap` plugin (hostPort), as the VPC CNI does.
    #[serde(default = "default_true")]
    pub chain_portmap: bool,
}

fn default_cni_bin_dir() -> PathBuf {
    PathBuf::from("/opt/cni/bin")
}

fn default_cni_conf_dir() -> PathBuf {
    PathBuf::from("/etc/cni/net.d")
}

fn default_conflist() -> String {
    "10-weft.conflist".into()
}

fn default_network() -> String {
    "weft".into()
}

impl Default for CniSection {
    fn default() -> Self {
        CniSection {
            bin_dir: default_cni_bin_dir(),
            conf_dir: default_cni_conf_dir(),
            conflist: default_conflist(),
            write_conflist: true,
            network: default_network(),
            chain_portmap: true,
        }
    }
}

/// The `[kubernetes]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KubernetesSection {
    /// `auto` (in-cluster when `KUBERNETES_SERVICE_HOST` is set, the
    /// kubeconfig when one is given, else none), `off`, or `on` (an API
    /// server is required).
    #[serde(default)]
    pub api: ApiMode,
    /// A kubeconfig file; in-cluster configuration when unset.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name; `$NODE_NAME` (the DaemonSet sets it from
    /// `spec.nodeName`), else the host name, when unset.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Patch the pod with its address (`vpc.amazonaws.com/pod-ips`) after a
    /// successful ADD, as the VPC CNI's `ANNOTATE_POD_IP`.
    #[serde(default)]
    pub annotate_pod_ip: bool,
    /// How long an ADD for a pod the watch has not delivered yet waits for
    /// it before reading the pod directly. Default 2000.
    #[serde(default = "default_pod_wait_ms")]
    pub pod_wait_ms: u64,
}

/// Whether the agent uses the Kubernetes API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApiMode {
    /// When a configuration is found.
    #[default]
    Auto,
    /// Never: pods are known from `CNI_ARGS` alone.
    Off,
    /// Always: start fails without an API server configuration.
    On,
}

fn default_pod_wait_ms() -> u64 {
    2_000
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
            metrics_address: default_metrics_address(),
            introspection_address: default_introspection_address(),
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
    /// Set on every agent sharing one simulated VPC (the same `state-file`,
    /// `seed` and subnets), a different number on each: each is its own node.
    #[serde(default)]
    pub node_index: Option<u32>,
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
    /// EC2 at the same time (100 by default: every node of a 100-node
    /// cluster; see [`crate::cloud::ec2::DEFAULT_RATE_SHARE_NODES`]).
    #[serde(default = "default_rate_share_nodes")]
    pub rate_share_nodes: u32,
}

fn default_call_timeout_ms() -> u64 {
    10_000
}

fn default_rate_share_nodes() -> u32 {
    crate::cloud::ec2::DEFAULT_RATE_SHARE_NODES
}

fn default_true() -> bool {
    true
}

impl AgentConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_env(path, &|_| None, &[]).map(|(config, _)| config)
    }

    /// Reads a configuration file and applies the VPC CNI environment
    /// variables `get` finds ([`crate::compat::env`]); `set_vars` are the
    /// names of every variable set, to find unmapped VPC CNI ones.
    pub fn load_with_env(
        path: &Path,
        get: &dyn Fn(&str) -> Option<String>,
        set_vars: &[String],
    ) -> Result<(Self, EnvOverlay)> {
        let in_file = |source| ConfigError::File {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let text = std::fs::read_to_string(path).map_err(|e| in_file(ConfigError::Read(e)))?;
        Ok(Self::parse_with_env(&text, get, set_vars).map_err(in_file)?)
    }

    /// Parses and validates a configuration document.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> std::result::Result<Self, ConfigError> {
        Self::parse_with_env(text, &|_| None, &[]).map(|(config, _)| config)
    }

    /// Parses a configuration document, applies the VPC CNI variables and
    /// validates the result.
    pub fn parse_with_env(
        text: &str,
        get: &dyn Fn(&str) -> Option<String>,
        set_vars: &[String],
    ) -> std::result::Result<(Self, EnvOverlay), ConfigError> {
        let mut doc: toml::Value = toml::from_str(text).map_err(ConfigError::Toml)?;
        let overlay = crate::compat::env::apply(&mut doc, get, set_vars)?;
        let config: AgentConfig = doc.try_into().map_err(ConfigError::Toml)?;
        config.validate()?;
        Ok((config, overlay))
    }

    /// The embedded default: the simulator, state and socket under `dir`.
    #[cfg(test)]
    pub(crate) fn simulated(dir: &Path) -> Self {
        AgentConfig {
            agent: AgentSection {
                socket: dir.join("weftd.sock"),
                state_dir: dir.join("state"),
                ..AgentSection::default()
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
                node_index: None,
                state_file: None,
                api_latency_ms: BTreeMap::new(),
            }),
            pool: PoolConfig::default(),
            plumbing: PlumbingConfig::default(),
            policies: PoliciesConfig::default(),
            egress: EgressConfig::default(),
            cni: CniSection::default(),
            kubernetes: KubernetesSection::default(),
        }
    }

    /// Checks what serde cannot; the error names the table and field.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let invalid = |table: &str| {
            let table = table.to_owned();
            move |message: String| ConfigError::Invalid { table, message }
        };
        self.policies
            .validate()
            .map_err(|(decision, message)| invalid(&format!("policies.{decision}"))(message))?;
        self.egress.validate().map_err(invalid("egress"))?;
        self.pool.validate().map_err(invalid("pool"))?;
        self.plumbing
            .validate()
            .map_err(|e| invalid("plumbing")(e.to_string()))?;
        let cloud = match &self.cloud {
            CloudConfig::Sim(sim) if sim.subnets.is_empty() => {
                Err("`subnets` needs at least the node's subnet".to_owned())
            }
            CloudConfig::Sim(sim) => match sim
                .api_latency_ms
                .keys()
                .find(|name| Ec2Action::from_name(name).is_none())
            {
                Some(name) => Err(format!(
                    "`api-latency-ms` names {name:?}, which is not an EC2 action weftd \
                     calls; use names such as AssignPrivateIpAddresses"
                )),
                None => Ok(()),
            },
            CloudConfig::Ec2(ec2) if ec2.cluster_name.is_empty() => {
                Err("`cluster-name` must not be empty".to_owned())
            }
            _ => Ok(()),
        };
        cloud.map_err(invalid("cloud"))
    }
}

impl SimSection {
    /// The subnets' CIDRs (unparsable ones are refused by the simulator's build).
    pub(crate) fn subnet_nets(&self) -> Vec<ipnet::Ipv4Net> {
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
        if let Some(index) = self.node_index {
            builder = builder.node_index(index);
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
            if let Some(api) = Ec2Action::from_name(name) {
                builder = builder.latency(api, Duration::from_millis(*ms));
            }
        }
        Ok(builder.build()?)
    }
}

impl Ec2Section {
    /// The EC2 client's configuration.
    pub(crate) fn ec2_config(&self) -> Ec2Config {
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
    use crate::plumbing::egress::SnatRandom;

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
            .unwrap_err()
            .to_string();
        assert!(err.contains("sokcet"), "{err}");
    }

    #[test]
    fn ec2_needs_a_cluster_name() {
        let err = AgentConfig::parse("[cloud]\nprovider = \"ec2\"\ncluster-name = \"\"\n")
            .unwrap_err()
            .to_string();
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
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid MAC address \"zz\""), "{err}");
    }

    #[test]
    fn bad_mtu_names_the_table() {
        let err = AgentConfig::parse("[cloud]\nprovider = \"sim\"\n[plumbing]\nmtu = 10\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[plumbing]"), "{err}");
    }

    /// One row per mapped VPC CNI variable: the value set, and what it
    /// changes in the configuration (each check is false without it).
    #[test]
    fn each_vpc_cni_variable_changes_what_it_names() {
        let setting = |c: &AgentConfig, key: &str| {
            c.policies
                .pool_sizing
                .as_ref()
                .map(|p| p.settings[key].clone())
                .unwrap_or_default()
        };
        let subnet = |c: &AgentConfig, key: &str| {
            c.policies
                .subnet_selection
                .as_ref()
                .map(|p| p.settings[key].clone())
                .unwrap_or_default()
        };
        let sim = "[cloud]\nprovider = \"sim\"\n";
        let ec2 = "[cloud]\nprovider = \"ec2\"\ncluster-name = \"file\"\n";
        type Row<'a> = (&'a str, &'a str, &'a str, Box<dyn Fn(&AgentConfig) -> bool>);
        let rows: Vec<Row> = vec![
            (
                "WARM_ENI_TARGET",
                "2",
                sim,
                Box::new(move |c| setting(c, "warm-eni-target") == 2),
            ),
            (
                "WARM_IP_TARGET",
                "5",
                sim,
                Box::new(move |c| setting(c, "warm-ip-target") == 5),
            ),
            (
                "MINIMUM_IP_TARGET",
                "10",
                sim,
                Box::new(move |c| setting(c, "minimum-ip-target") == 10),
            ),
            (
                "WARM_PREFIX_TARGET",
                "2",
                sim,
                Box::new(move |c| setting(c, "warm-prefix-target") == 2),
            ),
            (
                "ENABLE_PREFIX_DELEGATION",
                "true",
                sim,
                Box::new(move |c| {
                    c.pool.prefix_delegation && setting(c, "prefix-delegation") == true
                }),
            ),
            (
                "IP_COOLDOWN_PERIOD",
                "60",
                sim,
                Box::new(|c| c.pool.cooldown_seconds == 60),
            ),
            (
                "AWS_VPC_ENI_MTU",
                "1500",
                sim,
                Box::new(|c| c.plumbing.mtu == 1500 && c.plumbing.pod_mtu() == 1500),
            ),
            (
                "POD_MTU",
                "1400",
                sim,
                Box::new(|c| c.plumbing.pod_mtu() == 1400 && c.plumbing.mtu == 9001),
            ),
            (
                "CLUSTER_NAME",
                "prod",
                sim,
                Box::new(|c| matches!(&c.cloud, CloudConfig::Sim(s) if s.cluster_name == "prod")),
            ),
            (
                "MAX_ENI",
                "2",
                sim,
                Box::new(|c| c.pool.max_enis == Some(2)),
            ),
            (
                "ENI_CONFIG_LABEL_DEF",
                "topology.kubernetes.io/zone",
                sim,
                Box::new(move |c| subnet(c, "node-label") == "topology.kubernetes.io/zone"),
            ),
            (
                "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
                "true",
                sim,
                Box::new(move |c| {
                    !c.pool.primary_eni_serves_pods
                        && subnet(c, "node-label") == crate::compat::env::DEFAULT_ENI_CONFIG_LABEL
                }),
            ),
            (
                "DISABLE_LEAKED_ENI_CLEANUP",
                "true",
                sim,
                Box::new(|c| c.pool.disable_leaked_eni_cleanup),
            ),
            (
                "ANNOTATE_POD_IP",
                "true",
                sim,
                Box::new(|c| c.kubernetes.annotate_pod_ip),
            ),
            (
                "AWS_VPC_K8S_CNI_VETHPREFIX",
                "cni",
                sim,
                Box::new(|c| c.plumbing.veth_prefix == "cni"),
            ),
            (
                "AWS_EC2_ENDPOINT",
                "http://127.0.0.1:5000",
                ec2,
                Box::new(
                    |c| matches!(&c.cloud, CloudConfig::Ec2(e) if e.endpoint_url.as_deref() == Some("http://127.0.0.1:5000")),
                ),
            ),
            (
                "DISABLE_METRICS",
                "true",
                sim,
                Box::new(|c| c.agent.metrics_address.0.is_none()),
            ),
            (
                "DISABLE_INTROSPECTION",
                "true",
                sim,
                Box::new(|c| c.agent.introspection_address.0.is_none()),
            ),
            (
                "INTROSPECTION_BIND_ADDRESS",
                "0.0.0.0:61679",
                sim,
                Box::new(|c| {
                    c.agent.introspection_address
                        == Endpoint(Some("0.0.0.0:61679".parse().unwrap()))
                }),
            ),
            (
                "AWS_VPC_K8S_CNI_EXTERNALSNAT",
                "true",
                sim,
                Box::new(|c| c.egress.external_snat),
            ),
            (
                "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
                "192.168.0.0/24, 172.16.0.0/12",
                sim,
                Box::new(|c| c.egress.exclude_snat_cidrs.len() == 2),
            ),
            (
                "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
                "hashrandom",
                sim,
                Box::new(|c| c.egress.randomize_snat == SnatRandom::HashRandom),
            ),
            (
                "ENABLE_IPv6",
                "true",
                sim,
                Box::new(|c| c.pool.ip_family == crate::reconcile::IpFamily::Ipv6),
            ),
            (
                "ENABLE_V4_EGRESS",
                "false",
                sim,
                Box::new(|c| !c.egress.ipv4_egress),
            ),
            (
                "AWS_VPC_CNI_NODE_PORT_SUPPORT",
                "false",
                sim,
                Box::new(|c| !c.egress.node_port_support),
            ),
            (
                "AWS_VPC_K8S_CNI_CONNMARK",
                "0x100",
                sim,
                Box::new(|c| c.egress.connmark == 0x100),
            ),
        ];
        let mapped: Vec<&str> = crate::compat::env::table()
            .iter()
            .map(|(v, _)| *v)
            .collect();
        assert_eq!(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            mapped,
            "one row per mapped variable, in the table's order"
        );
        for (var, value, file, check) in &rows {
            let without = AgentConfig::parse(file).unwrap();
            assert!(
                !check(&without),
                "{var}: the check holds without the variable"
            );
            let (with, overlay) =
                AgentConfig::parse_with_env(file, &|k| (k == *var).then(|| value.to_string()), &[])
                    .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
            assert!(check(&with), "{var}={value} did not change what it names");
            assert_eq!(overlay.applied, [format!("{var}={value}")]);
        }
    }

    #[test]
    fn an_env_conflict_with_the_file_names_both_and_the_file() {
        let err = AgentConfig::parse_with_env(
            "[cloud]\nprovider = \"sim\"\n[plumbing]\nmtu = 9001\n",
            &|k| (k == "AWS_VPC_ENI_MTU").then(|| "1500".into()),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AWS_VPC_ENI_MTU=1500") && err.contains("[plumbing] mtu = 9001"),
            "{err}"
        );
    }

    #[test]
    fn tcp_endpoints_default_to_aws_node_ports_on_loopback_and_turn_off() {
        let config = AgentConfig::parse("[cloud]\nprovider = \"sim\"\n").unwrap();
        assert_eq!(
            String::from(config.agent.metrics_address),
            DEFAULT_METRICS_ADDRESS
        );
        assert_eq!(
            String::from(config.agent.introspection_address),
            DEFAULT_INTROSPECTION_ADDRESS
        );
        let off =
            AgentConfig::parse("[agent]\nmetrics-address = \"off\"\n[cloud]\nprovider = \"sim\"\n")
                .unwrap();
        assert_eq!(off.agent.metrics_address, Endpoint(None));
        let err = AgentConfig::parse(
            "[agent]\nmetrics-address = \"localhost\"\n[cloud]\nprovider = \"sim\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"localhost\" is not an address:port"),
            "{err}"
        );
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let config = AgentConfig::simulated(Path::new("/run/weft-demo"));
        config.validate().unwrap();
        let text = toml::to_string(&config).unwrap();
        AgentConfig::parse(&text).unwrap();
    }
}
