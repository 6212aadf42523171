//! Several nodes on one simulated VPC (root only): each node is a namespace
//! of its own whose ENIs the simulator connects to one namespace playing the
//! VPC router, which routes every address to the ENI holding it; the nodes'
//! simulators share the VPC through one state file (so an address is never
//! handed out twice). The Kubernetes network model holds across nodes: pods
//! reach pods on other nodes, on primary and secondary ENIs, and a node's host
//! network reaches pods on another node, all without NAT.

use std::path::Path;
use std::sync::Arc;
use weft_host::cloud::sim::{EniLinks, NetnsEniLinks};
use weft_host::cloud::{Cloud, SimCloud};
use weft_tests::support::agent::TestAgent;
use weft_tests::support::fabric::{TestVpc, VPC_CIDR, primary_ip};
use weft_tests::support::netns::TestNetns;
use weft_tests::support::tcp::{PeerEcho, peer_seen};

/// A node of the shared VPC in `state_file`.
fn node(vpc: &TestVpc, state_file: &Path, index: u32, extra: &str) -> TestAgent {
    let cloud = format!(
        "state-file = \"{}\"\nnode-index = {index}\n",
        state_file.display()
    );
    vpc.start_agent(TestNetns::new(&format!("node{index}")), &cloud, extra)
}

#[test]
#[ignore = "needs root: network namespaces"]
fn pods_on_two_nodes_reach_each_other_and_the_other_node_without_nat() {
    let vpc = TestVpc::new();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("sim-vpc.json");
    // Node A's pods live on a secondary ENI, node B's on its primary ENI.
    let a = node(&vpc, &file, 0, "[pool]\nprimary-eni-serves-pods = false\n");
    let b = node(&vpc, &file, 1, "");
    assert_ne!(
        primary_ip(&a),
        primary_ip(&b),
        "one VPC: distinct addresses"
    );
    let (pod_a, ip_a) = a.new_pod("pod-a");
    let (pod_b, ip_b) = b.new_pod("pod-b");
    assert_ne!(ip_a, ip_b);
    let _on_a = PeerEcho::start(&pod_a, "0.0.0.0:8080");
    let _on_b = PeerEcho::start(&pod_b, "0.0.0.0:8080");

    assert_eq!(
        peer_seen(&pod_a, &format!("{ip_b}:8080")).as_deref(),
        Some(ip_a.as_str()),
        "pod A (secondary ENI) reaches pod B (primary ENI), which sees A's own address"
    );
    assert_eq!(
        peer_seen(&pod_b, &format!("{ip_a}:8080")).as_deref(),
        Some(ip_b.as_str()),
        "pod B reaches pod A, which sees B's own address"
    );
    assert_eq!(
        peer_seen(&b.node, &format!("{ip_a}:8080")).as_deref(),
        Some(primary_ip(&b).as_str()),
        "node B's host network reaches pod A"
    );
}

#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn an_address_released_on_one_node_and_assigned_on_another_is_routed_to_the_other() {
    let vpc = TestVpc::new();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("sim-vpc.json");
    // A /28 holds 11 addresses: two primaries and the nine secondaries of one
    // m5.large ENI fill it, so the next address B gets is the one A gave back.
    let subnet = "10.0.0.0/28";
    let sim = |node: &TestNetns, index: u32| {
        let links = Arc::new(
            NetnsEniLinks::new(node.path())
                .with_fabric(vpc.router.path(), vec![subnet.parse().unwrap()]),
        );
        let built = SimCloud::builder()
            .subnet(subnet)
            .vpc_cidr(VPC_CIDR)
            .state_file(&file)
            .node_index(index)
            .links(links.clone() as Arc<dyn EniLinks>)
            .build()
            .expect("a node of the shared VPC");
        (Arc::new(built), links)
    };
    let (node_a, node_b) = (TestNetns::new("node-a"), TestNetns::new("node-b"));
    let ((a, links_a), (b, links_b)) = (sim(&node_a, 0), sim(&node_b, 1));
    a.materialise_primary().await.unwrap();
    b.materialise_primary().await.unwrap();
    let primary_a = a.list_enis().await.unwrap().remove(0);
    let primary_b = b.list_enis().await.unwrap().remove(0);
    assert_ne!(primary_a.primary_ip, primary_b.primary_ip);
    let route_dev = |ip: std::net::Ipv4Addr| {
        vpc.router.ip_json(&["route", "show", &format!("{ip}/32")])[0]["dev"]
            .as_str()
            .map(str::to_owned)
    };

    let ips = a.assign_ips(&primary_a.id, 9).await.unwrap();
    let moved = ips[0];
    let link_a = links_a.fabric_name(&primary_a).unwrap();
    let link_b = links_b.fabric_name(&primary_b).unwrap();
    assert_eq!(
        route_dev(moved),
        Some(link_a),
        "routed to A, which holds it"
    );
    a.unassign_ips(&primary_a.id, &[moved]).await.unwrap();
    assert_eq!(route_dev(moved), None, "released: routed nowhere");
    let got = b.assign_ips(&primary_b.id, 1).await.unwrap();
    assert_eq!(got, [moved], "the only free address of the shared subnet");
    assert_eq!(route_dev(moved), Some(link_b), "now routed to B");
}
