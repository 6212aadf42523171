//! IPv6 mode end to end, in real network namespaces (root only): `weftd`
//! with `[pool] ip-family = "ipv6"` on the embedded VPC simulator (which
//! delegates the primary ENI a /80 of the documentation range
//! 2001:db8::/32), the real `weft` plugin, real pod namespaces. Pods are
//! wired as the VPC CNI's IPv6 mode wires them, with a node-local IPv4
//! address for IPv4 egress (`egress_netns` shows where it leads).

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft_tests::support::agent::{TestAgent, pod_ip};
use weft_tests::support::netns::{TestNetns, entries};
use weft_tests::support::wiring::{assert_ipv4_pod_wired, assert_permanent_neighbour};

/// The simulator's /80 for the primary ENI of the first subnet's node, and
/// the addresses pods get from it, in order.
const PREFIX: &str = "2001:db8:0:0:1::/80";
const POD_1: &str = "2001:db8::1:0:0:1";
const POD_2: &str = "2001:db8::1:0:0:2";
const POD_3: &str = "2001:db8::1:0:0:3";
/// The node's own IPv6 address, on its stand-in primary NIC.
const NODE_IP6: &str = "2001:db8::10";
/// The pods' node-local IPv4 addresses (IPv4 egress), in order.
const POD_1_V4: &str = "169.254.172.1";
const POD_2_V4: &str = "169.254.172.2";

fn start() -> TestAgent {
    let agent = TestAgent::start("m5.large", "[pool]\nip-family = \"ipv6\"\n");
    agent.node.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{NODE_IP6}/128"),
        "dev",
        "ens5",
        "nodad",
    ]);
    agent
}

/// The pod's IPv6 wiring, exactly: one global address `/128` without DAD,
/// `fe80::1 dev eth0`, `default via fe80::1 dev eth0`, and `fe80::1` a
/// permanent neighbour at the host veth's MAC; DAD off on the interface.
fn assert_pod_wired(pod: &TestNetns, ip: &str, host_mac: &str) {
    let addrs = pod.ip_json(&["-6", "addr", "show", "dev", "eth0", "scope", "global"]);
    // `ip -j` prints filtered-out addresses as `{}`.
    let global: Vec<&Value> = entries(&addrs[0]["addr_info"])
        .iter()
        .filter(|a| a.get("local").is_some())
        .collect();
    assert_eq!(global.len(), 1, "one global address: {addrs}");
    assert_eq!(global[0]["local"], json!(ip));
    assert_eq!(global[0]["prefixlen"], json!(128));
    assert_eq!(
        global[0]["nodad"],
        json!(true),
        "added without DAD: {addrs}"
    );
    assert!(
        global[0].get("tentative").is_none() && global[0].get("dadfailed").is_none(),
        "usable at once: {addrs}"
    );
    assert_eq!(pod.sysctl("net.ipv6.conf.eth0.accept_dad"), "0");
    let routes = pod.ip_json(&["-6", "route", "show", "dev", "eth0"]);
    assert!(
        entries(&routes)
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fe80::1"),
        "default via fe80::1: {routes}"
    );
    assert!(
        entries(&routes).iter().any(|r| r["dst"] == "fe80::1"),
        "fe80::1 dev eth0: {routes}"
    );
    assert_permanent_neighbour(pod, "-6", "fe80::1", host_mac);
}

/// The pod of ADD `result` is wired both ways, for its IPv6 address `ip`
/// and, exactly as an IPv4 pod, for its IPv4 egress address `ipv4`; returns
/// the host veth.
fn assert_dual_stack_wired(
    agent: &TestAgent,
    pod: &TestNetns,
    result: &Value,
    ip: &str,
    ipv4: &str,
) -> String {
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap();
    let host_mac = result["interfaces"][0]["mac"].as_str().unwrap();
    assert_pod_wired(pod, ip, host_mac);
    assert_ipv4_pod_wired(pod, ipv4, host_mac);
    assert_node_routes(agent, ip, host_veth);
    assert_node_routes(agent, ipv4, host_veth);
    host_veth.to_owned()
}

/// `ip`'s family switch for `ip(8)`.
fn family(ip: &str) -> &'static str {
    if ip.contains(':') { "-6" } else { "-4" }
}

/// The node routes `ip` (`/128`, or `/32` for an IPv4 egress address) to
/// `host_veth`, and only there.
fn assert_node_routes(agent: &TestAgent, ip: &str, host_veth: &str) {
    let routes = agent.node.ip_json(&[family(ip), "route", "show", ip]);
    assert_eq!(entries(&routes).len(), 1, "{routes}");
    assert_eq!(routes[0]["dst"], json!(ip));
    assert_eq!(routes[0]["dev"], json!(host_veth), "{routes}");
}

/// The node no longer routes to `ip` (DEL and GC remove the route before
/// they answer).
fn assert_node_unrouted(agent: &TestAgent, ip: &str) {
    assert!(
        entries(&agent.node.ip_json(&[family(ip), "route", "show", ip])).is_empty(),
        "no route to {ip}"
    );
}

/// Waits until the pod's veth is gone (removed in the background after DEL
/// and GC), then checks that neither the node nor the pod has a neighbour
/// entry or route of the pod left.
fn assert_unwired(agent: &TestAgent, pod: &TestNetns, ip: &str) {
    wait_gone(pod);
    let neigh = agent.node.ip_json(&["-6", "neigh", "show", ip]);
    assert!(
        entries(&neigh).is_empty(),
        "no node neighbour {ip}: {neigh}"
    );
    assert!(entries(&pod.ip_json(&["-6", "neigh", "show"])).is_empty());
    assert!(entries(&pod.ip_json(&["-6", "route", "show"])).is_empty());
}

/// Waits (at most 10 s) until the pod's interface is gone.
fn wait_gone(pod: &TestNetns) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries(&pod.ip_json(&["link", "show"]))
        .iter()
        .any(|l| l["ifname"] == "eth0")
    {
        assert!(Instant::now() < deadline, "eth0 is still in the pod");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn held_ips(agent: &TestAgent) -> Vec<Value> {
    entries(&agent.get_json("/v1/pods"))
        .iter()
        .map(|p| p["ip"].clone())
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces"]
fn ipv6_pods_get_prefix_addresses_ping_each_other_and_the_node_and_del_unwires_them() {
    let agent = start();
    let netconf = agent.netconf("1.0.0");
    let a = TestNetns::new("v6-a");
    let b = TestNetns::new("v6-b");
    let ra = agent.cni_add("a", &a, &netconf);
    let rb = agent.cni_add("b", &b, &netconf);
    assert_eq!((pod_ip(&ra), pod_ip(&rb)), (POD_1.into(), POD_2.into()));
    assert!(
        agent.log().contains(&format!("prefix={PREFIX}")),
        "the primary ENI got the /80 once:\n{}",
        agent.log()
    );

    // The CNI result carries the IPv6 address, then the IPv4 egress
    // address (the VPC CNI's order), each with its gateway and default route.
    assert_eq!(
        (&ra["ips"], &ra["routes"]),
        (
            &json!([
                {"address": format!("{POD_1}/128"), "gateway": "fe80::1", "interface": 1},
                {"address": format!("{POD_1_V4}/32"), "gateway": "169.254.1.1", "interface": 1}
            ]),
            &json!([{"dst": "::/0", "gw": "fe80::1"}, {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
        )
    );

    for (pod, result, ip, ipv4) in [(&a, &ra, POD_1, POD_1_V4), (&b, &rb, POD_2, POD_2_V4)] {
        let host_veth = assert_dual_stack_wired(&agent, pod, result, ip, ipv4);
        assert_eq!(
            agent
                .node
                .sysctl(&format!("net.ipv6.conf.{host_veth}.accept_dad")),
            "0"
        );
    }
    // No rules for IPv6 pods, nor for their IPv4 egress addresses.
    for family in ["-4", "-6"] {
        let rules = agent.node.ip_json(&[family, "rule", "show"]);
        assert!(
            !entries(&rules)
                .iter()
                .any(|r| r["dst"] == json!(POD_1) || r["dst"] == json!(POD_1_V4)),
            "{rules}"
        );
    }
    assert_eq!(agent.node.sysctl("net.ipv6.conf.all.forwarding"), "1");

    assert!(a.ping(POD_2), "pod a reaches pod b");
    assert!(b.ping(POD_1), "pod b reaches pod a");
    assert!(a.ping(NODE_IP6), "pod a reaches the node");

    let pods = agent.get_json("/v1/pods");
    assert_eq!(held_ips(&agent), vec![json!(POD_1), json!(POD_2)]);
    let primary = pods[0]["eni_id"].as_str().unwrap();
    assert!(primary.starts_with("eni-"), "{pods}");
    // The IPv4 pool is not sized (its first round ran at start): the node
    // has its primary ENI only, without a single IPv4 pod address.
    let pool = agent.get_json("/v1/pool");
    let group = &pool["groups"][0];
    assert_eq!(
        (&group["node-enis"], &group["node-addresses"]),
        (&json!(1), &json!(0)),
        "{pool}"
    );

    // A repeated ADD keeps the address.
    let again = agent.cni_add("a", &a, &netconf);
    assert_eq!(pod_ip(&again), POD_1);

    // DEL: the node's route goes at once, the veth (with the neighbour
    // entries and routes of both ends) in the background.
    assert!(b.ping(POD_1), "pod b reaches pod a after the repeated ADD");
    assert!(
        !entries(&agent.node.ip_json(&["-6", "neigh", "show", POD_1])).is_empty(),
        "pod b's ping made the node resolve pod a"
    );
    agent.cni_del("a", &a, &netconf);
    assert_node_unrouted(&agent, POD_1);
    assert_node_unrouted(&agent, POD_1_V4);
    assert!(!b.ping(POD_1), "the deleted pod is unreachable");
    assert_unwired(&agent, &a, POD_1);
    agent.cni_del("a", &a, &netconf);
    assert_eq!(held_ips(&agent), vec![json!(POD_2)]);

    // The next pod gets a fresh address, not the one just released.
    let c = TestNetns::new("v6-c");
    let rc = agent.cni_add("c", &c, &netconf);
    assert_eq!(pod_ip(&rc), POD_3);
    assert!(c.ping(POD_2), "pod c reaches pod b");
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_restart_keeps_ipv6_pods_and_gc_unwires_a_stale_one() {
    let mut agent = start();
    let netconf = agent.netconf("1.1.0");
    let a = TestNetns::new("v6r-a");
    let b = TestNetns::new("v6r-b");
    let gone = TestNetns::new("v6r-gone");
    let ra = agent.cni_add("a", &a, &netconf);
    let rb = agent.cni_add("b", &b, &netconf);
    agent.cni_add("gone", &gone, &netconf);
    agent.cni_del("gone", &gone, &netconf);
    assert_eq!((pod_ip(&ra), pod_ip(&rb)), (POD_1.into(), POD_2.into()));

    agent.stop();
    agent.spawn();
    let log = agent.log();
    assert_eq!(
        log.matches("delegated an IPv6 prefix").count(),
        1,
        "the prefix is delegated once, not again at the restart:\n{log}"
    );
    assert!(!log.contains("dropped assignment"), "{log}");
    // Addresses, wiring and reachability are kept.
    assert_eq!(held_ips(&agent), vec![json!(POD_1), json!(POD_2)]);
    for (pod, result, ip, ipv4) in [(&a, &ra, POD_1, POD_1_V4), (&b, &rb, POD_2, POD_2_V4)] {
        assert_dual_stack_wired(&agent, pod, result, ip, ipv4);
    }
    assert!(a.ping(POD_2), "pod a reaches pod b across the restart");
    let again = agent.cni_add("a", &a, &netconf);
    assert_eq!(pod_ip(&again), POD_1, "a repeated ADD keeps the address");
    assert_eq!(again["ips"][1]["address"], json!(format!("{POD_1_V4}/32")));
    // The cursor survived: the address of the pod deleted before the
    // restart is not handed out again.
    let c = TestNetns::new("v6r-c");
    let rc = agent.cni_add("c", &c, &netconf);
    assert_eq!(pod_ip(&rc), "2001:db8::1:0:0:4");
    assert_eq!(rc["ips"][1]["address"], json!("169.254.172.4/32"));

    // GC with a and c valid: b is stale, its route and neighbour go.
    assert!(a.ping(POD_2), "the node resolves pod b");
    let out = agent.cni_gc(
        &netconf,
        json!([
            { "containerID": "ctr-a", "ifname": "eth0" },
            { "containerID": "ctr-c", "ifname": "eth0" }
        ]),
    );
    assert!(
        out.status.success(),
        "GC: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_node_unrouted(&agent, POD_2);
    assert_node_unrouted(&agent, POD_2_V4);
    assert_unwired(&agent, &b, POD_2);
    assert_eq!(
        held_ips(&agent),
        vec![json!(POD_1), json!("2001:db8::1:0:0:4")]
    );
    assert!(!a.ping(POD_2), "the stale pod is unreachable");
}

#[test]
#[ignore = "needs root: network namespaces"]
fn an_ipv4_pod_from_before_a_switch_to_ipv6_stays_wired_until_its_del() {
    let mut agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.0.0");
    let old = TestNetns::new("v4-old");
    let ip4 = pod_ip(&agent.cni_add("old", &old, &netconf));
    agent.stop();
    let mut config = std::fs::read_to_string(agent.config_path()).unwrap();
    config.push_str("[pool]\nip-family = \"ipv6\"\n");
    std::fs::write(agent.config_path(), config).unwrap();
    agent.spawn();

    // The start-up sweep of leftovers keeps the IPv4 pod's wiring.
    let routes = agent.node.ip_json(&["route", "show", &ip4]);
    assert_eq!(entries(&routes).len(), 1, "{routes}");
    let new = TestNetns::new("v6-new");
    let r6 = agent.cni_add("new", &new, &netconf);
    assert_eq!(pod_ip(&r6), POD_1);
    assert_eq!(held_ips(&agent), vec![json!(ip4), json!(POD_1)]);

    // Its DEL releases the IPv4 address and unwires it.
    agent.cni_del("old", &old, &netconf);
    assert!(entries(&agent.node.ip_json(&["route", "show", &ip4])).is_empty());
    assert_eq!(held_ips(&agent), vec![json!(POD_1)]);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn check_passes_on_a_good_ipv6_pod_and_names_what_was_removed() {
    let agent = start();
    let netconf = agent.netconf("1.1.0");
    let a = TestNetns::new("v6chk-a");
    let result = agent.cni_add("a", &a, &netconf);
    let mut with_prev = netconf.clone();
    with_prev["prevResult"] = result.clone();
    let check = || agent.cni("CHECK", "ctr-a", &a.path(), "a", &with_prev);
    let out = check();
    assert!(
        out.status.success(),
        "CHECK of a healthy IPv6 pod passes: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Each removal is named; the pod is repaired by a repeated ADD between
    // them, which CHECK then passes again.
    let host_veth = result["interfaces"][0]["name"].as_str().unwrap().to_owned();
    let breaks: [(&TestNetns, &[&str], String); 5] = [
        (
            &a,
            &["-6", "route", "del", "default"],
            "pod route default via fe80::1 dev eth0 is missing".into(),
        ),
        (
            &a,
            &["-6", "neigh", "del", "fe80::1", "dev", "eth0"],
            "pod neighbour fe80::1 on eth0 is missing".into(),
        ),
        (
            &a,
            &["-4", "route", "del", "default"],
            "pod route default via 169.254.1.1 dev eth0 is missing".into(),
        ),
        (
            &a,
            &["-4", "neigh", "del", "169.254.1.1", "dev", "eth0"],
            "pod neighbour 169.254.1.1 on eth0 is missing".into(),
        ),
        (
            &agent.node,
            &["route", "del", POD_1_V4, "dev", &host_veth],
            format!("node route {POD_1_V4}/32 dev {host_veth} is missing"),
        ),
    ];
    for (ns, args, needle) in breaks {
        ns.ip(args);
        let out = check();
        assert!(
            !out.status.success(),
            "CHECK catches `ip {}`",
            args.join(" ")
        );
        let err: Value = serde_json::from_slice(&out.stdout).unwrap();
        let text = format!("{} {}", err["msg"], err["details"]);
        assert!(text.contains(&needle), "{needle:?} not in {err}");
        agent.cni_add("a", &a, &netconf);
        let out = check();
        assert!(
            out.status.success(),
            "CHECK passes after the repeated ADD: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
