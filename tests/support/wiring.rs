//! A pod's wiring as the VPC CNI wires it, read back with `ip -j`: the
//! assertions the node tests share.

use super::netns::{TestNetns, entries};
use serde_json::{Value, json};

/// `gateway` is a permanent neighbour on the pod's eth0 at the host veth's
/// MAC `host_mac` (`family`: `-4` or `-6`).
pub fn assert_permanent_neighbour(pod: &TestNetns, family: &str, gateway: &str, host_mac: &str) {
    let neigh = pod.ip_json(&[family, "neigh", "show", "dev", "eth0"]);
    assert!(
        entries(&neigh).iter().any(|n| n["dst"] == gateway
            && n["lladdr"] == json!(host_mac)
            && n["state"]
                .as_array()
                .is_some_and(|s| s.contains(&json!("PERMANENT")))),
        "permanent neighbour {gateway} -> {host_mac}: {neigh}"
    );
}

/// The pod's IPv4 wiring, exactly: one IPv4 address `/32` on eth0,
/// `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1`, and
/// `169.254.1.1` a permanent neighbour at the host veth's MAC.
pub fn assert_ipv4_pod_wired(pod: &TestNetns, ipv4: &str, host_mac: &str) {
    let addrs = pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let found: Vec<(&Value, &Value)> = entries(&addrs[0]["addr_info"])
        .iter()
        .map(|a| (&a["local"], &a["prefixlen"]))
        .collect();
    assert_eq!(found, [(&json!(ipv4), &json!(32))], "{addrs}");
    let routes = pod.ip_json(&["-4", "route", "show", "dev", "eth0"]);
    assert!(
        entries(&routes)
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "169.254.1.1"),
        "default via 169.254.1.1: {routes}"
    );
    assert!(
        entries(&routes)
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["scope"] == "link"),
        "169.254.1.1 dev eth0 scope link: {routes}"
    );
    assert_permanent_neighbour(pod, "-4", "169.254.1.1", host_mac);
}
