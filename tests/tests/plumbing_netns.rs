//! Pod and ENI plumbing in real network namespaces (root only).
//!
//! Each test builds its own "node" namespace (never the machine's) with
//! stand-in NICs, and pod namespaces; all are deleted on drop.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use weft_host::plumbing::{EniLink, Plumbing, PlumbingConfig, PodNetwork};
use weft_tests::support::netns::TestNetns;

/// Node address on the primary "ENI" (not managed by the plumbing).
const NODE_IP: &str = "10.0.0.10";
const ENI_MAC: &str = "02:aa:00:00:00:06";

/// A node namespace with a primary NIC carrying [`NODE_IP`] and a secondary
/// NIC `ens6` (MAC [`ENI_MAC`]) to be set up as ENI device 1.
fn node() -> TestNetns {
    let node = TestNetns::new("node");
    node.add_nic("ens5", "02:aa:00:00:00:05");
    node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "ens5"]);
    node.add_nic("ens6", ENI_MAC);
    node
}

async fn plumbing(node: &TestNetns) -> Plumbing {
    let config = PlumbingConfig {
        node_netns: Some(node.path()),
        ..Default::default()
    };
    Plumbing::new(config)
        .await
        .expect("plumbing starts in the node namespace")
}

fn eni() -> EniLink {
    EniLink {
        mac: ENI_MAC.parse().unwrap(),
        device_index: 1,
        subnet: "10.0.1.0/24".parse().unwrap(),
        primary_ip: Ipv4Addr::new(10, 0, 1, 10),
        mtu: 9001,
    }
}

fn pod(ns: &TestNetns, name: &str, ip: Ipv4Addr, eni_table: Option<u32>) -> PodNetwork {
    PodNetwork {
        netns: ns.path(),
        ifname: "eth0".into(),
        pod_namespace: "default".into(),
        pod_name: name.into(),
        ip: ip.into(),
        eni_table,
        mtu: None,
        egress_ipv4: None,
    }
}

/// Elements of a JSON array whose fields include all of `fields`.
fn matching<'a>(list: &'a Value, fields: &Value) -> Vec<&'a Value> {
    let fields = fields.as_object().unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|item| fields.iter().all(|(k, v)| item.get(k) == Some(v)))
        .collect()
}

/// Rules of the node that mention `ip`.
fn rules_of(node: &TestNetns, ip: &str) -> Vec<Value> {
    let rules = node.ip_json(&["rule", "show"]);
    rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("src") == Some(&json!(ip)) || r.get("dst") == Some(&json!(ip)))
        .cloned()
        .collect()
}

fn link_exists(ns: &TestNetns, name: &str) -> bool {
    let links = ns.ip_json(&["link", "show"]);
    !matching(&links, &json!({ "ifname": name })).is_empty()
}

/// The pod side is exactly as specified.
fn assert_pod_side(pod_ns: &TestNetns, ip: &str, host_mac: &str, mtu: u64) {
    let addrs = pod_ns.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let link = &addrs[0];
    assert_eq!(link["mtu"], json!(mtu));
    assert!(
        link["flags"].as_array().unwrap().contains(&json!("UP")),
        "eth0 down: {link}"
    );
    let inet: Vec<_> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["local"].clone(), a["prefixlen"].clone()))
        .collect();
    assert_eq!(inet, [(json!(ip), json!(32))], "pod addresses");

    let routes = pod_ns.ip_json(&["-4", "route", "show"]);
    let routes: Vec<_> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dst"].clone(),
                r.get("gateway").cloned(),
                r["dev"].clone(),
                r.get("scope").cloned(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            (
                json!("default"),
                Some(json!("169.254.1.1")),
                json!("eth0"),
                None
            ),
            (
                json!("169.254.1.1"),
                None,
                json!("eth0"),
                Some(json!("link"))
            ),
        ],
        "pod routes"
    );

    let neigh = pod_ns.ip_json(&["-4", "neigh", "show", "dev", "eth0"]);
    let gw = matching(&neigh, &json!({ "dst": "169.254.1.1" }));
    assert_eq!(gw.len(), 1, "gateway neighbour: {neigh}");
    assert_eq!(gw[0]["lladdr"], json!(host_mac));
    assert_eq!(gw[0]["state"], json!(["PERMANENT"]));
}

/// The node side of a pod is exactly as specified.
fn assert_node_side(node: &TestNetns, ip: &str, host_veth: &str, table: Option<u32>) {
    let routes = node.ip_json(&["-4", "route", "show", "table", "main"]);
    let host_routes = matching(&routes, &json!({ "dst": ip }));
    assert_eq!(host_routes.len(), 1, "node routes to {ip}: {routes}");
    assert_eq!(host_routes[0]["dev"], json!(host_veth));
    assert_eq!(host_routes[0]["scope"], json!("link"));

    // Every rule carries Weft's protocol (87), the mark GC goes by.
    let mut expected = vec![
        json!({ "priority": 512, "src": "all", "dst": ip, "table": "main", "protocol": "87" }),
    ];
    if let Some(table) = table {
        expected.push(
            json!({ "priority": 1536, "src": ip, "table": table.to_string(), "protocol": "87" }),
        );
    }
    assert_eq!(rules_of(node, ip), expected, "node rules of {ip}");

    let link = &node.ip_json(&["link", "show", "dev", host_veth])[0];
    assert!(
        link["flags"].as_array().unwrap().contains(&json!("UP")),
        "host veth down: {link}"
    );
    assert_eq!(
        node.sysctl(&format!("net.ipv6.conf.{host_veth}.accept_ra")),
        "0"
    );
    assert_eq!(
        node.sysctl(&format!("net.ipv6.conf.{host_veth}.forwarding")),
        "0"
    );
}

/// Nothing of the pod is left on the node nor in its namespace.
fn assert_gone(node: &TestNetns, pod_ns: &TestNetns, ip: &str, host_veth: &str) {
    assert!(!link_exists(node, host_veth), "host veth {host_veth} left");
    assert!(!link_exists(pod_ns, "eth0"), "pod eth0 left");
    assert_eq!(
        rules_of(node, ip),
        Vec::<Value>::new(),
        "rules of {ip} left"
    );
    let routes = node.ip_json(&["-4", "route", "show", "table", "all"]);
    assert!(
        matching(&routes, &json!({ "dst": ip })).is_empty(),
        "routes to {ip} left: {routes}"
    );
}

#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn pods_on_primary_and_secondary_eni_reach_each_other_and_the_node() {
    let node = node();
    let plumbing = plumbing(&node).await;
    assert_eq!(node.sysctl("net.ipv4.ip_forward"), "1");

    plumbing.setup_eni(&eni()).await.expect("setup ENI");
    plumbing
        .setup_eni(&eni())
        .await
        .expect("setup ENI is idempotent");
    assert_eq!(node.sysctl("net.ipv4.conf.ens6.rp_filter"), "2");
    assert_eq!(
        node.ip_json(&["link", "show", "dev", "ens6"])[0]["mtu"],
        json!(9001)
    );
    let table2 = node.ip_json(&["-4", "route", "show", "table", "2"]);
    assert_eq!(
        matching(
            &table2,
            &json!({ "dst": "10.0.1.0/24", "dev": "ens6", "scope": "link" })
        )
        .len(),
        1,
        "{table2}"
    );
    assert_eq!(
        matching(
            &table2,
            &json!({ "dst": "default", "gateway": "10.0.1.1", "dev": "ens6" })
        )
        .len(),
        1,
        "{table2}"
    );
    let main = node.ip_json(&["-4", "route", "show", "table", "main"]);
    assert!(
        matching(&main, &json!({ "dst": "10.0.1.0/24" })).is_empty(),
        "ENI subnet left in main: {main}"
    );
    assert_eq!(
        rules_of(&node, "10.0.1.10"),
        [json!({ "priority": 1024, "src": "10.0.1.10", "table": "2", "protocol": "87" })]
    );

    let (ns_a, ns_b) = (TestNetns::new("pa"), TestNetns::new("pb"));
    let pod_a = pod(&ns_a, "a", Ipv4Addr::new(10, 0, 0, 21), None);
    let pod_b = pod(
        &ns_b,
        "b",
        Ipv4Addr::new(10, 0, 1, 22),
        Some(eni().route_table()),
    );
    let links_a = plumbing.setup_pod(&pod_a).await.expect("setup pod a");
    let links_b = plumbing.setup_pod(&pod_b).await.expect("setup pod b");
    assert_eq!(
        links_a.host_veth,
        plumbing.host_veth_name("default", "a", "eth0")
    );
    assert_eq!(links_a.pod_ifname, "eth0");

    assert_pod_side(&ns_a, "10.0.0.21", &links_a.host_mac.to_string(), 9001);
    assert_pod_side(&ns_b, "10.0.1.22", &links_b.host_mac.to_string(), 9001);
    assert_eq!(
        ns_a.ip_json(&["link", "show", "dev", "eth0"])[0]["address"],
        json!(links_a.pod_mac.to_string())
    );
    assert_node_side(&node, "10.0.0.21", &links_a.host_veth, None);
    assert_node_side(&node, "10.0.1.22", &links_b.host_veth, Some(2));
    assert_eq!(
        plumbing.check_pod(&pod_a).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        plumbing.check_pod(&pod_b).await.unwrap(),
        Vec::<String>::new()
    );

    assert!(ns_a.ping("10.0.1.22"), "pod a cannot reach pod b");
    assert!(ns_b.ping("10.0.0.21"), "pod b cannot reach pod a");
    assert!(ns_a.ping(NODE_IP), "pod a cannot reach the node");
    assert!(ns_b.ping(NODE_IP), "pod b cannot reach the node");

    for (p, ns, links) in [(&pod_a, &ns_a, &links_a), (&pod_b, &ns_b, &links_b)] {
        let removal = plumbing.teardown_pod(p).await.expect("teardown");
        assert!(removal.is_pending(), "teardown must remove the veth");
        removal.wait().await.expect("veth removed");
        assert_gone(&node, ns, &p.ip.to_string(), &links.host_veth);
        let again = plumbing
            .teardown_pod(p)
            .await
            .expect("teardown is idempotent");
        assert!(!again.is_pending());
    }

    plumbing.teardown_eni(&eni()).await.expect("teardown ENI");
    plumbing
        .teardown_eni(&eni())
        .await
        .expect("teardown ENI is idempotent");
    assert_eq!(rules_of(&node, "10.0.1.10"), Vec::<Value>::new());
    assert_eq!(
        node.ip_json(&["-4", "route", "show", "table", "2"]),
        json!([])
    );
}

#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn check_catches_removed_routes_and_re_add_in_the_same_netns_works() {
    let node = node();
    let plumbing = plumbing(&node).await;
    let ns = TestNetns::new("p");
    let pod = pod(&ns, "web", Ipv4Addr::new(10, 0, 0, 31), None);
    plumbing.setup_pod(&pod).await.expect("setup");
    assert_eq!(
        plumbing.check_pod(&pod).await.unwrap(),
        Vec::<String>::new()
    );

    ns.ip(&["route", "del", "default"]);
    let found = plumbing.check_pod(&pod).await.unwrap();
    assert_eq!(
        found,
        ["pod route default via 169.254.1.1 dev eth0 is missing"]
    );
    node.ip(&["route", "del", "10.0.0.31/32"]);
    let found = plumbing.check_pod(&pod).await.unwrap();
    assert!(
        found.iter().any(|l| l.contains("node route 10.0.0.31/32")),
        "{found:?}"
    );

    // Repeated ADD over the broken setup repairs it.
    let links = plumbing.setup_pod(&pod).await.expect("repeated ADD");
    assert_eq!(
        plumbing.check_pod(&pod).await.unwrap(),
        Vec::<String>::new()
    );
    assert_pod_side(&ns, "10.0.0.31", &links.host_mac.to_string(), 9001);
    assert_node_side(&node, "10.0.0.31", &links.host_veth, None);

    // DEL without waiting for the veth, then ADD into the same (surviving) namespace.
    drop(plumbing.teardown_pod(&pod).await.expect("DEL"));
    let links = plumbing
        .setup_pod(&pod)
        .await
        .expect("ADD after DEL in the same netns");
    assert_eq!(
        plumbing.check_pod(&pod).await.unwrap(),
        Vec::<String>::new()
    );
    assert_pod_side(&ns, "10.0.0.31", &links.host_mac.to_string(), 9001);
    assert!(ns.ping(NODE_IP), "re-added pod cannot reach the node");

    // A missing namespace is a difference for CHECK and no obstacle for DEL.
    let gone = PodNetwork {
        netns: "/var/run/netns/weft-does-not-exist".into(),
        ..pod.clone()
    };
    let found = plumbing.check_pod(&gone).await.unwrap();
    assert!(
        found
            .iter()
            .any(|l| l.contains("pod namespace cannot be entered")),
        "{found:?}"
    );
    plumbing
        .teardown_pod(&gone)
        .await
        .expect("DEL with the netns gone")
        .wait()
        .await
        .unwrap();
    assert!(!link_exists(&node, &links.host_veth));
}

#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn bad_input_fails_with_a_clear_message_and_leaves_nothing() {
    let node = node();
    let plumbing = plumbing(&node).await;
    let ns = TestNetns::new("p");

    let missing = PodNetwork {
        netns: "/var/run/netns/weft-does-not-exist".into(),
        ..pod(&ns, "x", Ipv4Addr::new(10, 0, 0, 41), None)
    };
    let err = plumbing.setup_pod(&missing).await.unwrap_err().to_string();
    assert!(err.contains("weft-does-not-exist"), "{err}");

    let not_a_netns = PodNetwork {
        netns: "/proc/self/status".into(),
        ..missing.clone()
    };
    let err = plumbing
        .setup_pod(&not_a_netns)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/proc/self/status is not a network namespace"),
        "{err}"
    );

    let bad_ifname = PodNetwork {
        ifname: "a/b".into(),
        ..pod(&ns, "x", Ipv4Addr::new(10, 0, 0, 41), None)
    };
    assert!(
        plumbing
            .setup_pod(&bad_ifname)
            .await
            .unwrap_err()
            .to_string()
            .contains("interface name")
    );

    let unknown_eni = EniLink {
        mac: "02:bb:00:00:00:09".parse().unwrap(),
        ..eni()
    };
    let err = plumbing
        .setup_eni(&unknown_eni)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("02:bb:00:00:00:09") && err.contains("is the ENI attached"),
        "{err}"
    );

    let leftovers = plumbing.leftovers(&HashSet::new()).await.unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!link_exists(&ns, "eth0"));
}

#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn gc_removes_veths_and_rules_of_pods_that_are_gone() {
    let node = node();
    let plumbing = plumbing(&node).await;
    let (ns_keep, ns_gone) = (TestNetns::new("pk"), TestNetns::new("pg"));
    let keep = pod(&ns_keep, "keep", Ipv4Addr::new(10, 0, 1, 51), Some(2));
    let gone = pod(&ns_gone, "gone", Ipv4Addr::new(10, 0, 1, 52), Some(2));
    let keep_links = plumbing.setup_pod(&keep).await.unwrap();
    let gone_links = plumbing.setup_pod(&gone).await.unwrap();
    // A rule whose pod vanished without a DEL (its veth went with its
    // namespace), and the same rule of another CNI (no Weft protocol).
    node.ip(&[
        "rule",
        "add",
        "to",
        "10.0.1.53",
        "lookup",
        "main",
        "prio",
        "512",
        "protocol",
        "87",
    ]);
    node.ip(&[
        "rule",
        "add",
        "to",
        "10.0.1.54",
        "lookup",
        "main",
        "prio",
        "512",
    ]);

    let valid = HashSet::from([keep_links.host_veth.clone()]);
    let found = plumbing.leftovers(&valid).await.unwrap();
    assert_eq!(found.veths, std::slice::from_ref(&gone_links.host_veth));
    let mut ips: Vec<_> = found
        .rules
        .iter()
        .map(|r| (r.priority, r.ip.to_string(), r.table))
        .collect();
    ips.sort();
    assert_eq!(
        ips,
        [
            (512, "10.0.1.52".to_owned(), 254),
            (512, "10.0.1.53".to_owned(), 254),
            (1536, "10.0.1.52".to_owned(), 2)
        ],
        "rules of the stale veth's IP and the orphan rule, nothing of the valid pod"
    );

    let removed = plumbing.gc(&valid).await.unwrap();
    assert_eq!(removed, found);
    assert!(
        !link_exists(&node, &gone_links.host_veth),
        "leftover veth still there"
    );
    assert!(rules_of(&node, "10.0.1.52").is_empty());
    assert!(rules_of(&node, "10.0.1.53").is_empty());
    assert_eq!(
        rules_of(&node, "10.0.1.54").len(),
        1,
        "another CNI's rule stays"
    );
    assert!(plumbing.leftovers(&valid).await.unwrap().is_empty());

    assert_eq!(
        plumbing.check_pod(&keep).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(link_exists(&node, &keep_links.host_veth));
}

/// A removal that fails does not stop GC: the leftovers of the other pods
/// go, and every failure is reported. The failure is injected
/// (`Plumbing::refuse_removal`, under the `testing` feature): root can
/// delete any veth and rule of its own namespace, so no real one can be made.
#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn gc_goes_on_past_a_removal_that_fails() {
    let node = node();
    let plumbing = plumbing(&node).await;
    let namespaces: Vec<TestNetns> = (0..3).map(|n| TestNetns::new(&format!("g{n}"))).collect();
    let mut veths = Vec::new();
    for (n, ns) in namespaces.iter().enumerate() {
        let ip = Ipv4Addr::new(10, 0, 1, 61 + n as u8);
        let links = plumbing
            .setup_pod(&pod(ns, &format!("g{n}"), ip, Some(2)))
            .await
            .unwrap();
        veths.push((links.host_veth, ip.to_string()));
    }
    // The first pod's rules and veth come first in GC's order (rules in the
    // order they were added, veths by index): a GC that stopped at its
    // first failure would leave the others' too.
    let (refused_veth, refused_ip) = &veths[0];
    plumbing.refuse_removal(refused_veth);
    plumbing.refuse_removal(refused_ip);

    let err = plumbing.gc(&HashSet::new()).await.unwrap_err();
    match &err {
        weft_host::plumbing::PlumbingError::Several(all) => {
            assert_eq!(all.len(), 3, "two rules and a veth refused: {err}");
        }
        other => panic!("every failure is reported: {other}"),
    }
    assert!(link_exists(&node, refused_veth));
    assert_eq!(rules_of(&node, refused_ip).len(), 2);
    for (veth, ip) in &veths[1..] {
        assert!(!link_exists(&node, veth), "{veth} removed past the failure");
        assert!(
            rules_of(&node, ip).is_empty(),
            "rules of {ip} removed past the failure"
        );
    }
}

/// An IPv6 pod's IPv4 egress route (`169.254.172.x/32` to its host veth)
/// goes when its teardown (DEL, GC) returns, with the pod's own route, not
/// later with the veth. The veth's removal is held back (a refusal through
/// `Plumbing::refuse_removal`, under the `testing` feature), because the
/// kernel drops every route through a veth it destroys: without the hold,
/// a teardown that forgot the route would look the same a moment later.
#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn teardown_deletes_an_ipv6_pods_ipv4_egress_route_itself() {
    let node = node();
    let plumbing = plumbing(&node).await;
    let ns = TestNetns::new("v6");
    let (ipv6, ipv4) = ("2001:db8::1:0:0:5", "169.254.172.5");
    let pod = PodNetwork {
        ip: ipv6.parse::<std::net::Ipv6Addr>().unwrap().into(),
        egress_ipv4: Some(ipv4.parse().unwrap()),
        ..pod(&ns, "v6", Ipv4Addr::UNSPECIFIED, None)
    };
    let links = plumbing.setup_pod(&pod).await.expect("setup");
    let routes_to = |family: &str, ip: &str| node.ip_json(&[family, "route", "show", ip]);
    assert_eq!(routes_to("-4", ipv4)[0]["dev"], json!(links.host_veth));
    assert_eq!(routes_to("-6", ipv6)[0]["dev"], json!(links.host_veth));

    plumbing.refuse_removal(&links.host_veth);
    let err = plumbing.teardown_pod(&pod).await.unwrap_err();
    assert!(err.to_string().contains("refused by the test"), "{err}");
    assert!(
        link_exists(&node, &links.host_veth),
        "the veth is held back"
    );
    assert_eq!(routes_to("-4", ipv4), json!([]), "IPv4 egress route left");
    assert_eq!(routes_to("-6", ipv6), json!([]), "pod route left");
}

/// ENI teardown collects every failure and goes on: with its first step
/// (the rule from the ENI's primary IP) and one route refused (through
/// `Plumbing::refuse_removal`: root can delete anything of its namespace,
/// so no real failure can be made), the other routes of the ENI's table and
/// its address still go, and both failures are reported.
#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn eni_teardown_goes_on_past_failures_and_reports_them_all() {
    let node = node();
    let plumbing = plumbing(&node).await;
    plumbing.setup_eni(&eni()).await.expect("setup ENI");
    plumbing.refuse_removal("10.0.1.10");
    plumbing.refuse_removal("10.0.1.0/24");

    let err = plumbing.teardown_eni(&eni()).await.unwrap_err();
    match &err {
        weft_host::plumbing::PlumbingError::Several(all) => {
            assert_eq!(all.len(), 2, "the rule and a route refused: {err}");
        }
        other => panic!("every failure is reported: {other}"),
    }
    assert_eq!(rules_of(&node, "10.0.1.10").len(), 1, "refused rule stays");
    let table2 = node.ip_json(&["-4", "route", "show", "table", "2"]);
    // The refused subnet route goes with the address (the kernel drops
    // it); the default route went through teardown's own delete.
    assert!(
        matching(&table2, &json!({ "dst": "default" })).is_empty(),
        "the default route went past the failures: {table2}"
    );
    let addrs = node.ip_json(&["-4", "addr", "show", "dev", "ens6"]);
    assert!(
        !addrs.to_string().contains("10.0.1.10"),
        "the address went past the failures: {addrs}"
    );
}
