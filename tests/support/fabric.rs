//! The simulated VPC around test nodes: a namespace playing the VPC router
//! (the simulator connects every materialised ENI to it and routes their
//! addresses; see `weft_host::cloud::sim`), and an "internet" namespace
//! behind an internet-gateway-like hop, with an address outside the VPC.

use super::agent::{AgentOptions, TestAgent};
use super::netns::TestNetns;

/// The VPC's CIDR (the test agents' subnets lie in it).
pub const VPC_CIDR: &str = "10.0.0.0/16";
/// The internet host's address: outside the VPC.
pub const INTERNET_IP: &str = "203.0.113.1";
/// The router's address on the internet side.
const IGW_IP: &str = "203.0.113.254";

/// The router and internet namespaces; removed on drop.
pub struct TestVpc {
    /// The VPC router.
    pub router: TestNetns,
    /// A host beyond the internet gateway.
    pub internet: TestNetns,
}

impl TestVpc {
    /// Makes the router (forwarding, the gateway hop) and the internet host.
    pub fn new() -> TestVpc {
        let router = TestNetns::new("vpc");
        let internet = TestNetns::new("inet");
        router.ip(&[
            "link",
            "add",
            "igw",
            "type",
            "veth",
            "peer",
            "name",
            "uplink",
            "netns",
            &internet.name,
        ]);
        router.ip(&["addr", "add", &format!("{IGW_IP}/24"), "dev", "igw"]);
        router.ip(&["link", "set", "igw", "up"]);
        let forward = router.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        assert!(forward.status.success(), "forwarding in the router");
        internet.ip(&["addr", "add", &format!("{INTERNET_IP}/24"), "dev", "uplink"]);
        internet.ip(&["link", "set", "uplink", "up"]);
        internet.ip(&["route", "add", VPC_CIDR, "via", IGW_IP]);
        TestVpc { router, internet }
    }

    /// `weftd` on an m5.large whose node is `node` and whose ENIs are on
    /// this fabric, with `cloud` lines added to its `[cloud]` table and
    /// `extra` configuration; returns once it serves.
    pub fn start_agent(&self, node: TestNetns, cloud: &str, extra: &str) -> TestAgent {
        let cloud = format!(
            "vpc-netns = \"{}\"\nvpc-cidrs = [\"{VPC_CIDR}\"]\n{cloud}",
            self.router.path().display()
        );
        let options = AgentOptions {
            cloud: &cloud,
            ..AgentOptions::default()
        };
        let agent = TestAgent::start_on(node, "m5.large", &options, extra);
        agent.wait_serving();
        agent
    }
}

impl Default for TestVpc {
    fn default() -> Self {
        Self::new()
    }
}

/// A node's primary private IP, as the simulator's "DHCP" put it on eth0.
pub fn primary_ip(agent: &TestAgent) -> String {
    let addrs = agent.node.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    addrs[0]["addr_info"][0]["local"]
        .as_str()
        .expect("eth0 has the primary address")
        .to_owned()
}
