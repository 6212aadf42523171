//! Pod traffic beyond the node (root only), on the simulated VPC fabric: a
//! namespace playing the VPC router (strict reverse-path filtering on every
//! ENI link stands for EC2's source/destination check) and an "internet"
//! host beyond it, with an address outside the VPC. `weftd` runs on the
//! embedded simulator with its node in a namespace of its own; pods are added
//! with the real `weft` plugin; connections are real TCP.
//!
//! * Egress SNAT: the outside sees the node's primary IP, or the pod's own
//!   address for an excluded CIDR and with external SNAT.
//! * The rules, read back through `nft -j`: exactly the expected ones, the
//!   same after a restart, gone after `weftd uninstall`; a table Weft does
//!   not own is untouched throughout.
//! * The NodePort return path: a connection to the node's primary address,
//!   DNATed (a rule of the test's own) to a pod on a secondary ENI, completes
//!   and its replies leave through the primary ENI.
//! * A CIDR block associated with the VPC later is exempted from SNAT at the
//!   next refresh (in process: the simulator's hook changes the VPC).
//! * IPv6 pods reach IPv4-only destinations, in the VPC and beyond it,
//!   through their node-local IPv4 address, which the outside sees as the
//!   node's primary IP (external SNAT or not); without IPv4 egress they
//!   cannot.

use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use weft_host::agent::EgressRules;
use weft_host::cloud::{Cloud, SimCloud};
use weft_host::plumbing::egress::EgressConfig;
use weft_host::plumbing::{Plumbing, PlumbingConfig};
use weft_tests::support::agent::TestAgent;
use weft_tests::support::fabric::{INTERNET_IP, TestVpc, VPC_CIDR, primary_ip};
use weft_tests::support::netns::TestNetns;
use weft_tests::support::tcp::{PeerEcho, peer_seen};
use weft_tests::weftd_binary;

/// A node on the fabric running `weftd` with `extra` configuration; nodes
/// one after another on one fabric need their own `seed` (ENI ids, and so
/// the router's link names, come from it).
fn node_agent(vpc: &TestVpc, seed: u64, extra: &str) -> TestAgent {
    node_agent_on(TestNetns::new("node"), vpc, seed, extra)
}

fn node_agent_on(node: TestNetns, vpc: &TestVpc, seed: u64, extra: &str) -> TestAgent {
    vpc.start_agent(node, &format!("seed = {seed}\n"), extra)
}

/// `nft -j <args>` in `ns`, parsed; `None` when nft fails (no such table).
fn nft_json(ns: &TestNetns, args: &[&str]) -> Option<Value> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = ns.exec("nft", &full);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("nft -j prints JSON"))
}

/// The chains and rules of `table ip weft` without their handles (which a
/// re-created table renumbers), or `None` without the table.
fn weft_table(ns: &TestNetns) -> Option<Vec<Value>> {
    let doc = nft_json(ns, &["list", "table", "ip", "weft"])?;
    Some(
        doc["nftables"]
            .as_array()
            .expect("an nftables array")
            .iter()
            .filter(|o| o.get("chain").is_some() || o.get("rule").is_some())
            .map(|o| {
                let mut o = o.clone();
                for kind in ["chain", "rule"] {
                    if let Some(body) = o.get_mut(kind).and_then(Value::as_object_mut) {
                        body.remove("handle");
                    }
                }
                o
            })
            .collect(),
    )
}

fn rules(table: &[Value]) -> Vec<&Value> {
    table.iter().filter_map(|o| o.get("rule")).collect()
}

/// The `ip daddr != …` CIDRs of a rule, as `a.b.c.d/len` strings.
fn exempt_cidrs(rule: &Value) -> Vec<String> {
    let daddr = rule["expr"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["match"]["left"]["payload"]["field"] == "daddr")
        .unwrap_or_else(|| panic!("a daddr match in {rule}"));
    let right = &daddr["match"]["right"];
    let items: Vec<&Value> = match right.get("set") {
        Some(set) => set.as_array().unwrap().iter().collect(),
        None => vec![right],
    };
    items
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["prefix"]["addr"].as_str().unwrap(),
                i["prefix"]["len"]
            )
        })
        .collect()
}

fn has_fwmark_rule(node: &TestNetns) -> bool {
    node.ip_json(&["rule", "show"])
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["priority"] == 1024 && r["fwmark"] == "0x80" && r["table"] == "main")
}

#[test]
#[ignore = "needs root: network namespaces"]
fn pods_leave_the_vpc_as_the_node_unless_excluded_or_snat_is_external() {
    let vpc = TestVpc::new();
    let _server = PeerEcho::start(&vpc.internet, &format!("{INTERNET_IP}:8080"));
    let outside = format!("{INTERNET_IP}:8080");

    let agent = node_agent(&vpc, 1, "");
    let (pod, ip) = agent.new_pod("pod-a");
    assert_eq!(
        peer_seen(&pod, &outside).as_deref(),
        Some(primary_ip(&agent).as_str()),
        "the outside sees the node's primary IP, not the pod's {ip}"
    );
    // Inside the VPC there is no NAT: the router sees the pod's own address.
    let _router_server = PeerEcho::start(&vpc.router, "10.0.0.1:8081");
    assert_eq!(
        peer_seen(&pod, "10.0.0.1:8081").as_deref(),
        Some(ip.as_str())
    );
    drop(agent);

    let excluded = node_agent(
        &vpc,
        2,
        "[egress]\nexclude-snat-cidrs = [\"203.0.113.0/24\"]\n",
    );
    let (pod, ip) = excluded.new_pod("pod-b");
    assert_eq!(
        peer_seen(&pod, &outside).as_deref(),
        Some(ip.as_str()),
        "an excluded CIDR sees the pod's own address"
    );
    drop(excluded);

    let external = node_agent(&vpc, 3, "[egress]\nexternal-snat = true\n");
    let (pod, ip) = external.new_pod("pod-c");
    assert_eq!(
        peer_seen(&pod, &outside).as_deref(),
        Some(ip.as_str()),
        "with external SNAT the node does not SNAT"
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn ipv6_pods_reach_ipv4_only_destinations_as_the_node() {
    let vpc = TestVpc::new();
    let _internet = PeerEcho::start(&vpc.internet, &format!("{INTERNET_IP}:8080"));
    let ipv6 = "[pool]\nip-family = \"ipv6\"\n";
    for (seed, egress) in [(1, ""), (2, "external-snat = true\n")] {
        let agent = node_agent(&vpc, seed, &format!("{ipv6}[egress]\n{egress}"));
        // The router has its VPC address once a node is on the fabric.
        let in_vpc = format!("10.0.0.1:808{seed}");
        let _router = PeerEcho::start(&vpc.router, &in_vpc);
        let (pod, ip) = agent.new_pod("pod-6");
        assert!(ip.contains(':'), "an IPv6 pod: {ip}");
        let primary = primary_ip(&agent);
        // The internet host and the VPC router are IPv4 only; neither
        // routes the pod's node-local address: they see the node.
        assert_eq!(
            peer_seen(&pod, &format!("{INTERNET_IP}:8080")).as_deref(),
            Some(primary.as_str()),
            "beyond the VPC (egress: {egress:?})"
        );
        assert_eq!(
            peer_seen(&pod, &in_vpc).as_deref(),
            Some(primary.as_str()),
            "inside the VPC (egress: {egress:?})"
        );
    }
    let off = node_agent(&vpc, 3, &format!("{ipv6}[egress]\nipv4-egress = false\n"));
    let (pod, _) = off.new_pod("pod-6-off");
    assert!(
        pod.ip_json(&["-4", "addr", "show", "dev", "eth0"])
            .as_array()
            .unwrap()
            .is_empty(),
        "no IPv4 address without IPv4 egress"
    );
    assert_eq!(peer_seen(&pod, &format!("{INTERNET_IP}:8080")), None);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn pods_on_a_secondary_eni_leave_through_the_primary_eni() {
    let vpc = TestVpc::new();
    let _server = PeerEcho::start(&vpc.internet, &format!("{INTERNET_IP}:8080"));
    let agent = node_agent(&vpc, 1, "[pool]\nprimary-eni-serves-pods = false\n");
    let (pod, ip) = agent.new_pod("pod-s");
    let on_secondary = agent
        .node
        .ip_json(&["rule", "show"])
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["priority"] == 1536 && r["src"] == ip.as_str());
    assert!(on_secondary, "{ip} is an address of a secondary ENI");
    // SNATed to the primary IP, its packets must leave through the primary
    // ENI: the VPC drops them on the secondary ENI (source/destination check).
    assert_eq!(
        peer_seen(&pod, &format!("{INTERNET_IP}:8080")).as_deref(),
        Some(primary_ip(&agent).as_str())
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn rules_are_exact_survive_restarts_go_on_uninstall_and_leave_other_tables_alone() {
    let vpc = TestVpc::new();
    let node = TestNetns::new("node");
    // Somebody else's table, with a chain on the same hook as Weft's.
    let foreign = "table inet other { chain post { type nat hook postrouting priority 100; \
                   ip daddr 198.51.100.0/24 counter masquerade; }; }";
    let added = node.exec("nft", &[foreign]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let foreign_before = nft_json(&node, &["list", "table", "inet", "other"]).unwrap();

    let mut agent = node_agent_on(
        node,
        &vpc,
        1,
        "[egress]\nexclude-snat-cidrs = [\"192.168.0.0/24\"]\nrandomize-snat = \"hashrandom\"\n",
    );
    let primary = primary_ip(&agent);
    let table = weft_table(&agent.node).expect("table ip weft exists");
    let chains: Vec<(&str, &str, &str, i64)> = table
        .iter()
        .filter_map(|o| o.get("chain"))
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["hook"].as_str().unwrap(),
                c["prio"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chains,
        [
            ("prerouting", "filter", "prerouting", -150),
            ("postrouting", "nat", "postrouting", 100)
        ]
    );
    let rules_now = rules(&table);
    let comments: Vec<&str> = rules_now
        .iter()
        .map(|r| r["comment"].as_str().unwrap())
        .collect();
    assert_eq!(
        comments,
        [
            "weft: connections to the node through its primary ENI",
            "weft: pod connections leaving the VPC",
            "weft: marked connections use the main table",
            "weft: SNAT pod traffic leaving the VPC",
        ]
    );
    let node_port = rules_now[0].to_string();
    assert!(node_port.contains(r#""right":"eth0""#), "{node_port}");
    assert!(
        node_port.contains(r#""flags":["daddr","iif"]"#),
        "{node_port}"
    );
    let snat = rules_now[3];
    assert_eq!(exempt_cidrs(snat), [VPC_CIDR, "192.168.0.0/24"]);
    assert_eq!(exempt_cidrs(rules_now[1]), [VPC_CIDR, "192.168.0.0/24"]);
    let nat = &snat["expr"].as_array().unwrap().last().unwrap()["snat"];
    assert_eq!(nat["addr"], primary.as_str());
    assert_eq!(nat["flags"], "random");
    assert!(
        has_fwmark_rule(&agent.node),
        "fwmark 0x80 lookup main at 1024"
    );
    assert_eq!(agent.node.sysctl("net.ipv4.conf.eth0.rp_filter"), "2");

    // A restart (start-up reconcile) leaves exactly the same rules.
    agent.stop();
    agent.spawn();
    agent.wait_serving();
    assert_eq!(weft_table(&agent.node).as_ref(), Some(&table));
    let fwmark_rules = agent
        .node
        .ip_json(&["rule", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["fwmark"] == "0x80")
        .count();
    assert_eq!(fwmark_rules, 1, "no duplicate fwmark rule");

    // Stopping keeps them (pods keep their traffic); uninstall removes them.
    agent.stop();
    assert_eq!(weft_table(&agent.node).as_ref(), Some(&table));
    let out = Command::new(weftd_binary())
        .args(["uninstall", "--config"])
        .arg(agent.config_path())
        .output()
        .expect("run weftd uninstall");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(weft_table(&agent.node), None, "table ip weft removed");
    assert!(!has_fwmark_rule(&agent.node), "fwmark rule removed");
    assert_eq!(
        nft_json(&agent.node, &["list", "table", "inet", "other"]).as_ref(),
        Some(&foreign_before),
        "a table Weft does not own is untouched"
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn node_port_connections_to_pods_on_secondary_enis_reply_through_the_primary_eni() {
    let vpc = TestVpc::new();
    for (seed, support) in [(1, true), (2, false)] {
        let node = TestNetns::new("node");
        // Strict reverse-path filtering, as on Amazon Linux.
        for key in ["all", "default"] {
            let set = node.exec(
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{key}.rp_filter=1")],
            );
            assert!(set.status.success());
        }
        let agent = node_agent_on(
            node,
            &vpc,
            seed,
            &format!(
                "[pool]\nprimary-eni-serves-pods = false\n[egress]\nnode-port-support = {support}\n"
            ),
        );
        let (pod, ip) = agent.new_pod("pod-np");
        let _server = PeerEcho::start(&pod, "0.0.0.0:8080");
        let secondary = agent
            .node
            .ip_json(&["rule", "show"])
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["priority"] == 1536 && r["src"] == ip.as_str())
            .map(|r| r["table"].as_str().unwrap().to_owned())
            .expect("the pod is on a secondary ENI");
        let eni_link = format!("eth{}", secondary.parse::<u32>().unwrap() - 1);
        // The test's own NodePort: primary address :30080 -> pod :8080, and a
        // counter of the pod's replies leaving through the secondary ENI.
        let rules = format!(
            "table ip nodeport-test {{\n\
               chain pre {{ type nat hook prerouting priority dstnat; tcp dport 30080 dnat to {ip}:8080; }}\n\
               chain post {{ type filter hook postrouting priority 0; oifname \"{eni_link}\" tcp sport 8080 counter; }}\n\
             }}"
        );
        let added = agent.node.exec("nft", &[&rules]);
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        let seen = peer_seen(&vpc.internet, &format!("{}:30080", primary_ip(&agent)));
        let leaked = nft_json(
            &agent.node,
            &["list", "chain", "ip", "nodeport-test", "post"],
        )
        .unwrap()
        .to_string();
        if support {
            assert_eq!(
                seen.as_deref(),
                Some(INTERNET_IP),
                "the connection completes (no SNAT on the way in)"
            );
            assert!(
                leaked.contains(r#""packets":0"#),
                "no reply left through {eni_link}: {leaked}"
            );
        } else {
            assert_eq!(
                seen, None,
                "without the return path the VPC drops the replies"
            );
            assert!(
                !leaked.contains(r#""packets":0"#),
                "replies went out through {eni_link}: {leaked}"
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn a_cidr_block_associated_later_is_exempted_at_the_next_refresh() {
    let node = TestNetns::new("node");
    let plumbing = Arc::new(
        Plumbing::new(PlumbingConfig {
            node_netns: Some(node.path()),
            ..PlumbingConfig::default()
        })
        .await
        .expect("plumbing in the node namespace"),
    );
    let sim = Arc::new(
        SimCloud::builder()
            .subnet("10.0.0.0/24")
            .vpc_cidr(VPC_CIDR)
            .build()
            .unwrap(),
    );
    let identity = sim.identity().await.unwrap();
    let egress = EgressRules::start(
        plumbing,
        sim.clone(),
        &EgressConfig::default(),
        &identity,
        false,
    )
    .await
    .expect("rules applied");
    let snat_exempt = |node: &TestNetns| {
        let table = weft_table(node).expect("table ip weft");
        let snat = rules(&table)
            .into_iter()
            .find(|r| r["comment"] == "weft: SNAT pod traffic leaving the VPC")
            .cloned()
            .expect("the SNAT rule");
        exempt_cidrs(&snat)
    };
    assert_eq!(snat_exempt(&node), [VPC_CIDR]);
    assert!(!egress.refresh().await.unwrap(), "nothing changed");

    sim.set_vpc_cidrs(vec![
        VPC_CIDR.parse().unwrap(),
        "100.64.0.0/16".parse().unwrap(),
    ]);
    assert!(egress.refresh().await.unwrap(), "the new block is seen");
    assert_eq!(snat_exempt(&node), [VPC_CIDR, "100.64.0.0/16"]);
}
