//! The simulated VPC around test nodes: a namespace playing the VPC router
//! (the simulator connects every materialised ENI to it and routes their
//! addresses; see `weft_host::cloud::sim`), and an "internet" namespace
//! behind an internet-gateway-like hop, with an address outside the VPC.

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

    /// The `[cloud]` lines that put a test agent's ENIs on this fabric.
    pub fn cloud_lines(&self) -> String {
        format!(
            "vpc-netns = \"{}\"\nvpc-cidrs = [\"{VPC_CIDR}\"]\n",
            self.router.path().display()
        )
    }
}

impl Default for TestVpc {
    fn default() -> Self {
        Self::new()
    }
}
