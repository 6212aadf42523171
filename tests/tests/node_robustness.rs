//! A whole node (real `weftd` on the simulator in a node namespace, the real
//! `weft` plugin, real pod namespaces; root only) facing what a real node
//! meets: another CNI's veths and rules, a runtime that gives up on an ADD
//! and deletes it, a bad `CNI_NETNS`, pods with two interfaces.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft_tests::support::agent::{TestAgent, cni_error, ok_json, pod_ip, succeeded};
use weft_tests::support::netns::{TestNetns, entries};

/// What the Amazon VPC CNI leaves on a node: a host veth named `eni` + 11
/// hex characters and the pod rules at priorities 512 and 1536.
const VPC_CNI_VETH: &str = "eni0123456789f";
const VPC_CNI_POD_IP: &str = "10.0.3.9";

fn add_vpc_cni_pod(node: &TestNetns) {
    node.ip(&[
        "link",
        "add",
        VPC_CNI_VETH,
        "type",
        "veth",
        "peer",
        "name",
        "vpccni-peer",
    ]);
    node.ip(&[
        "rule",
        "add",
        "to",
        VPC_CNI_POD_IP,
        "lookup",
        "main",
        "priority",
        "512",
    ]);
    node.ip(&[
        "rule",
        "add",
        "from",
        VPC_CNI_POD_IP,
        "lookup",
        "2",
        "priority",
        "1536",
    ]);
}

fn assert_vpc_cni_pod_intact(node: &TestNetns, when: &str) {
    let links = node.ip_json(&["link", "show"]);
    assert!(
        entries(&links).iter().any(|l| l["ifname"] == VPC_CNI_VETH),
        "the VPC CNI's veth survives {when}: {links}"
    );
    let rules = node.ip_entries(&["rule", "show"]);
    for (priority, side) in [(512, "dst"), (1536, "src")] {
        assert!(
            rules
                .iter()
                .any(|r| r["priority"] == priority && r[side] == VPC_CNI_POD_IP),
            "the VPC CNI's rule at {priority} survives {when}: {rules:?}"
        );
    }
}

fn links_with_alias(node: &TestNetns, needle: &str) -> Vec<Value> {
    node.ip_entries(&["link", "show"])
        .into_iter()
        .filter(|l| l["ifalias"].as_str().is_some_and(|a| a.contains(needle)))
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces"]
fn another_cnis_veths_and_rules_survive_startup_gc_and_cni_gc() {
    let mut agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.1.0");
    let pod = TestNetns::new("pod");
    let weft_pod = agent.cni_add("w", &pod, &netconf);
    let host_veth = weft_pod["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        links_with_alias(&agent.node, "weft:e2e/w/eth0")[0]["ifname"],
        json!(host_veth),
        "Weft marks its host veth"
    );

    agent.stop();
    add_vpc_cni_pod(&agent.node);
    agent.spawn();
    assert_vpc_cni_pod_intact(&agent.node, "weftd's start-up GC");

    // CNI GC with no valid attachment: Weft's pod goes, the other CNI's stays.
    succeeded(&agent.cni_gc(&netconf, json!([])));
    assert_vpc_cni_pod_intact(&agent.node, "CNI GC");
    assert_eq!(agent.get_json("/v1/pods"), json!([]));
}

#[test]
#[ignore = "needs root: network namespaces"]
fn two_interfaces_of_one_pod_get_two_veths() {
    let agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.0.0");
    let pod = TestNetns::new("pod");
    let eth0 = ok_json(&agent.cni_if("ADD", "ctr", &pod.path(), "p", "eth0", &netconf));
    let net1 = ok_json(&agent.cni_if("ADD", "ctr", &pod.path(), "p", "net1", &netconf));
    let veth = |r: &Value| r["interfaces"][0]["name"].as_str().unwrap().to_owned();
    assert_ne!(veth(&eth0), veth(&net1));
    // The second ADD left the first interface's wiring alone.
    for (result, ifname) in [(&eth0, "eth0"), (&net1, "net1")] {
        let ip = pod_ip(result);
        let routes = agent.node.ip_json(&["route", "show", &ip]);
        assert_eq!(routes[0]["dev"], json!(veth(result)), "{ip}: {routes}");
        let addrs = pod.ip_json(&["addr", "show", "dev", ifname]);
        assert!(addrs.to_string().contains(&ip), "{ifname}: {addrs}");
    }
    // DEL of one interface keeps the other.
    succeeded(&agent.cni_if("DEL", "ctr", &pod.path(), "p", "net1", &netconf));
    let routes = agent.node.ip_json(&["route", "show", &pod_ip(&eth0)]);
    assert_eq!(routes[0]["dev"], json!(veth(&eth0)), "{routes}");
}

#[test]
#[ignore = "needs root: network namespaces"]
fn an_add_into_a_fifo_fails_clearly_and_later_adds_work() {
    let agent = TestAgent::start("m5.large", "");
    let fifo = agent.dir.path().join("not-a-netns");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils)");
    assert!(status.success());
    let mut short = agent.netconf("1.1.0");
    short["timeout-ms"] = json!(5000);
    let err = cni_error(&agent.cni("ADD", "ctr-f", &fifo, "f", &short));
    let msg = format!("{} {}", err["msg"], err["details"]);
    assert!(msg.contains("is not a network namespace"), "{err}");
    assert_eq!(
        agent.get_json("/v1/pods"),
        json!([]),
        "its address went back"
    );

    // A GC (which waits for every wiring ADD) and a normal ADD both go through.
    succeeded(&agent.cni_gc(&short, json!([])));
    let pod = TestNetns::new("pod");
    agent.cni_add("ok", &pod, &short);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_del_during_an_add_waiting_for_an_address_leaves_nothing_behind() {
    // Addresses take 3 s to arrive: the first ADD waits for the reconciler.
    let agent = TestAgent::start_with(
        "m5.large",
        "api-latency-ms = { AssignPrivateIpAddresses = 3000, CreateNetworkInterface = 3000 }",
        "[pool]\nadd-wait-ms = 15000\n",
    );
    let pod = TestNetns::new("pod");
    // The runtime gives up on the ADD after 500 ms (weftd carries on) ...
    let mut impatient = agent.netconf("1.0.0");
    impatient["timeout-ms"] = json!(500);
    let err = cni_error(&agent.cni("ADD", "ctr-x", &pod.path(), "x", &impatient));
    assert_eq!(err["code"], json!(11), "{err}");
    // ... and deletes the container, retrying until the DEL succeeds.
    let patient = agent.netconf("1.0.0");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agent
        .cni("DEL", "ctr-x", &pod.path(), "x", &patient)
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "DEL keeps failing");
    }
    // Wait until weftd has finished the abandoned ADD, whatever it did.
    let finished = |metrics: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(r#"weft_cni_request_seconds_count{command="ADD""#))
            .count()
            > 0
    };
    while !finished(&agent.get("/metrics")) {
        assert!(Instant::now() < deadline, "the abandoned ADD never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        agent.get_json("/v1/pods"),
        json!([]),
        "the abandoned ADD holds no address"
    );
    // DEL leaves the veth to a background removal: give the kernel a moment.
    while !links_with_alias(&agent.node, "/x/").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the deleted container's host veth stays"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rules = agent.node.ip_json(&["rule", "show"]);
    assert!(
        !entries(&rules).iter().any(|r| r["priority"] == 512),
        "no pod rule left: {rules}"
    );
}
