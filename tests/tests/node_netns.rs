//! A whole node, end to end, in real network namespaces (root only): `weftd`
//! on the embedded VPC simulator (a mock of EC2 only in the sense that no
//! EC2 can run here; its limits are those of the real instance type), the
//! real `weft` plugin exec'd as a runtime does, real pod namespaces, and the
//! reference plugins from Debian's containernetworking-plugins for chaining.

use serde_json::{Value, json};
use weft_tests::support::agent::{NODE_IP, TestAgent, exec_plugin, ok_json, pod_ip, succeeded};
use weft_tests::support::netns::{TestNetns, entries};
use weft_tests::support::tcp::free_port;
use weft_tests::support::wiring::assert_ipv4_pod_wired;

/// An agent on an m5.large, its netconf in `cni_version`, and pods `a` and
/// `b` (containers `ctr-a`, `ctr-b`) added, each with its ADD result.
fn agent_with_two_pods(cni_version: &str) -> (TestAgent, Value, [(TestNetns, Value); 2]) {
    let agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf(cni_version);
    let pods = ["a", "b"].map(|name| {
        let ns = TestNetns::new(&format!("pod-{name}"));
        let result = agent.cni_add(name, &ns, &netconf);
        (ns, result)
    });
    (agent, netconf, pods)
}

/// The `field` of every pod the agent holds, in its order.
fn held(agent: &TestAgent, field: &str) -> Vec<Value> {
    entries(&agent.get_json("/v1/pods"))
        .iter()
        .map(|p| p[field].clone())
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces"]
fn pods_get_vpc_addresses_ping_each_other_and_the_node_and_del_cleans_up() {
    let (agent, netconf, [(a, ra), (b, rb)]) = agent_with_two_pods("1.0.0");
    let (ip_a, ip_b) = (pod_ip(&ra), pod_ip(&rb));
    assert_ne!(ip_a, ip_b);
    for ip in [&ip_a, &ip_b] {
        assert!(
            ip.starts_with("10.0."),
            "{ip} comes from the node's subnet 10.0.0.0/22"
        );
    }

    // The pod side, exactly as the VPC CNI wires it.
    let host_veth = ra["interfaces"][0]["name"].as_str().unwrap().to_owned();
    let host_mac = ra["interfaces"][0]["mac"].as_str().unwrap().to_owned();
    assert_ipv4_pod_wired(&a, &ip_a, &host_mac);

    // The node side: /32 route to the veth, `to IP lookup main` at 512.
    let node_routes = agent.node.ip_json(&["route", "show", &ip_a]);
    assert_eq!(node_routes[0]["dev"], json!(host_veth), "{node_routes}");
    let rules = agent.node.ip_json(&["rule", "show"]);
    assert!(
        entries(&rules)
            .iter()
            .any(|r| r["priority"] == 512 && r["dst"] == json!(ip_a) && r["table"] == "main"),
        "rule 512 to {ip_a} lookup main: {rules}"
    );

    assert!(a.ping(&ip_b), "pod a reaches pod b");
    assert!(b.ping(&ip_a), "pod b reaches pod a");
    assert!(a.ping(NODE_IP), "pod a reaches the node");

    // A repeated ADD of the same container gets the same address.
    let again = agent.cni_add("a", &a, &netconf);
    assert_eq!(pod_ip(&again), ip_a);

    // DEL removes the node side; a second DEL and a DEL of an unknown
    // container succeed.
    agent.cni_del("a", &a, &netconf);
    agent.cni_del("a", &a, &netconf);
    succeeded(&agent.cni("DEL", "ctr-never", &a.path(), "never", &netconf));
    let rules = agent.node.ip_json(&["rule", "show"]);
    assert!(
        !entries(&rules)
            .iter()
            .any(|r| r["dst"] == json!(ip_a) || r["src"] == json!(ip_a)),
        "no rule for {ip_a} after DEL: {rules}"
    );
    assert!(
        agent.node.ip_entries(&["route", "show", &ip_a]).is_empty(),
        "no route to {ip_a} after DEL"
    );
    assert!(!b.ping(&ip_a), "the deleted pod is unreachable");

    // Every request is in the agent's metrics, by command and outcome.
    let metrics = agent.get("/metrics");
    for line in [
        r#"weft_cni_request_seconds_count{command="ADD",outcome="ok"} 3"#,
        r#"weft_cni_request_seconds_count{command="DEL",outcome="ok"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn check_catches_a_removed_route_and_gc_removes_stale_attachments() {
    let (agent, netconf, [(a, result), (_b, rb)]) = agent_with_two_pods("1.1.0");

    let mut with_prev = netconf.clone();
    with_prev["prevResult"] = result.clone();
    let check = agent.cni("CHECK", "ctr-a", &a.path(), "a", &with_prev);
    assert!(
        check.status.success(),
        "CHECK of a healthy pod passes: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    a.ip(&["route", "del", "default"]);
    let check = agent.cni("CHECK", "ctr-a", &a.path(), "a", &with_prev);
    assert!(
        !check.status.success(),
        "CHECK catches the removed default route"
    );
    let err: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        err["msg"].as_str().unwrap_or("").contains("route")
            || err["details"].as_str().unwrap_or("").contains("route"),
        "{err}"
    );

    // GC with only ctr-b valid releases ctr-a and its node side; ctr-b,
    // whose host veth someone deleted, keeps its address and is reported.
    let veth_b = rb["interfaces"][0]["name"].as_str().unwrap().to_owned();
    agent.node.ip(&["link", "del", &veth_b]);
    let ip_a = pod_ip(&result);
    let out = agent.cni_gc(
        &netconf,
        json!([{ "containerID": "ctr-b", "ifname": "eth0" }]),
    );
    assert!(
        out.status.success(),
        "GC: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        agent.node.ip_entries(&["route", "show", &ip_a]).is_empty(),
        "GC removed the route of the stale attachment"
    );
    assert!(
        agent.log().contains(&veth_b) && agent.log().contains("has no host veth"),
        "GC reports the pod whose veth is gone:\n{}",
        agent.log()
    );
    assert_eq!(held(&agent, "container_id"), vec![json!("ctr-b")]);
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_secondary_eni_gets_its_route_table_and_its_pods_their_from_rule() {
    // t3.medium: 3 ENIs x 6 IPv4 (5 pod addresses each); 8 pods need a
    // secondary ENI.
    let agent = TestAgent::start("t3.medium", "[pool]\nadd-wait-ms = 15000\n");
    let netconf = agent.netconf("1.0.0");
    let pods: Vec<_> = (0..8).map(|i| TestNetns::new(&format!("p{i}"))).collect();
    let mut ips = Vec::new();
    for (i, ns) in pods.iter().enumerate() {
        let r = ok_json(&agent.cni(
            "ADD",
            &format!("ctr-{i}"),
            &ns.path(),
            &format!("p{i}"),
            &netconf,
        ));
        ips.push(pod_ip(&r));
    }
    let rules = agent.node.ip_json(&["rule", "show"]);
    let from_rules: Vec<_> = entries(&rules)
        .iter()
        .filter(|r| r["priority"] == 1536)
        .collect();
    assert!(
        !from_rules.is_empty(),
        "pods on a secondary ENI get `from IP lookup <table>`: {rules}"
    );
    let table = from_rules[0]["table"].as_str().unwrap().to_owned();
    let eni_routes = agent.node.ip_json(&["route", "show", "table", &table]);
    assert!(
        entries(&eni_routes).iter().any(|r| r["dst"] == "default"),
        "the ENI's table {table} has a default route: {eni_routes}"
    );
    // Every pod reaches every other across ENIs.
    assert!(pods[0].ping(&ips[7]));
    assert!(pods[7].ping(&ips[0]));
}

#[test]
#[ignore = "needs root: network namespaces"]
fn chained_with_portmap_and_bandwidth_a_port_mapping_reaches_the_pod() {
    let agent = TestAgent::start("m5.large", "");
    let pod = TestNetns::new("web");
    let conf = |plugin: Value, prev: Option<&Value>| {
        let mut c = plugin;
        c["cniVersion"] = json!("1.0.0");
        c["name"] = json!("weft");
        if let Some(prev) = prev {
            c["prevResult"] = prev.clone();
        }
        c
    };
    let weft = ok_json(&agent.cni(
        "ADD",
        "ctr-web",
        &pod.path(),
        "web",
        &agent.netconf("1.0.0"),
    ));
    let port = free_port();
    let env = |cmd: &'static str| {
        vec![
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", "ctr-web".to_owned()),
            ("CNI_NETNS", pod.path().display().to_string()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_PATH", "/usr/lib/cni".to_owned()),
        ]
    };
    let run = |bin: &str, cmd: &'static str, netconf: Value| {
        let vars = env(cmd);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // The reference plugins act on the node: run them in its namespace.
        let plugin = std::path::PathBuf::from(format!("/usr/lib/cni/{bin}"));
        assert!(
            plugin.is_file(),
            "install containernetworking-plugins (scripts/setup)"
        );
        exec_plugin(Some(&agent.node), &plugin, &vars, &netconf.to_string())
    };
    let portmap = ok_json(&run(
        "portmap",
        "ADD",
        conf(
            json!({"type": "portmap", "capabilities": {"portMappings": true},
                   "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 8080, "protocol": "tcp"}]}}),
            Some(&weft),
        ),
    ));
    let bandwidth = ok_json(&run(
        "bandwidth",
        "ADD",
        conf(
            // Ingress shaping only: a tbf on the host veth. Egress shaping
            // would load the `ifb` module, whose load creates ifb0/ifb1 in
            // the machine's own namespace.
            json!({"type": "bandwidth", "ingressRate": 100_000_000, "ingressBurst": 1_000_000}),
            Some(&portmap),
        ),
    ));
    assert_eq!(
        bandwidth["ips"], weft["ips"],
        "prevResult passed along unchanged"
    );
    let host_veth = weft["interfaces"][0]["name"].as_str().unwrap();
    let qdiscs = std::process::Command::new("tc")
        .args(["-n", &agent.node.name, "qdisc", "show", "dev", host_veth])
        .output()
        .expect("tc (iproute2)");
    assert!(
        String::from_utf8_lossy(&qdiscs.stdout).contains("tbf"),
        "bandwidth shaped weft's host veth {host_veth}: {}",
        String::from_utf8_lossy(&qdiscs.stdout)
    );

    // A server in the pod, reached through the node's host port.
    let server = pod.spawn(
        "python3",
        &[
            "-c",
            "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
             s.bind(('0.0.0.0', 8080)); s.listen(1); c,_=s.accept(); c.sendall(b'hello from the pod'); c.close()",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = agent.node.exec("python3", &["-c", &format!(
        "import socket; s=socket.create_connection(('{NODE_IP}', {port}), timeout=5); print(s.recv(100).decode())"
    )]);
    drop(server);
    assert!(
        got.status.success(),
        "connect through the port mapping: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "hello from the pod"
    );

    succeeded(&run(
        "bandwidth",
        "DEL",
        conf(json!({"type": "bandwidth"}), Some(&portmap)),
    ));
    succeeded(&run(
        "portmap",
        "DEL",
        conf(
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 8080, "protocol": "tcp"}]}}),
            Some(&weft),
        ),
    ));
    succeeded(&agent.cni(
        "DEL",
        "ctr-web",
        &pod.path(),
        "web",
        &agent.netconf("1.0.0"),
    ));
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_restarted_agent_keeps_its_pods_and_removes_node_leftovers() {
    let (mut agent, netconf, [(a, ra), (_b, rb)]) = agent_with_two_pods("1.0.0");
    let (ip_a, ip_b) = (pod_ip(&ra), pod_ip(&rb));

    // While the agent is down: leftovers of a pod that went away (a host
    // veth with Weft's prefix and alias, its rule with Weft's protocol), and
    // nothing else changes.
    agent.stop();
    agent.node.ip(&[
        "link",
        "add",
        "eni0123456789a",
        "type",
        "veth",
        "peer",
        "name",
        "stray-peer",
    ]);
    agent.node.ip(&[
        "link",
        "set",
        "eni0123456789a",
        "alias",
        "weft:e2e/gone/eth0",
    ]);
    agent.node.ip(&[
        "rule", "add", "to", "10.0.3.3", "lookup", "main", "priority", "512", "protocol", "87",
    ]);
    agent.spawn();

    let links = agent.node.ip_json(&["link", "show"]);
    assert!(
        !entries(&links)
            .iter()
            .any(|l| l["ifname"] == "eni0123456789a"),
        "the stray veth is removed at start: {links}"
    );
    let rules = agent.node.ip_json(&["rule", "show"]);
    assert!(
        !entries(&rules).iter().any(|r| r["dst"] == "10.0.3.3"),
        "the stray rule is removed at start: {rules}"
    );
    // The pods kept their addresses (checkpoint + the simulated VPC kept in
    // the state directory), their wiring and their reachability, untouched.
    assert!(
        !agent.log().contains("dropped assignment"),
        "no assignment is dropped across a restart:\n{}",
        agent.log()
    );
    assert!(a.ping(&ip_b), "pod a reaches pod b across the restart");
    assert_eq!(held(&agent, "ip"), vec![json!(ip_a), json!(ip_b)]);
    let again = agent.cni_add("a", &a, &netconf);
    assert_eq!(
        pod_ip(&again),
        ip_a,
        "a repeated ADD after the restart gets the same address"
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_failed_add_gives_its_address_back() {
    let agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.0.0");
    // A path that exists but is no network namespace: the agent assigns an
    // address, then the wiring fails.
    let not_a_netns = agent.dir.path().join("not-a-netns");
    std::fs::write(&not_a_netns, "").unwrap();
    let out = agent.cni("ADD", "ctr-x", &not_a_netns, "x", &netconf);
    assert!(!out.status.success(), "ADD into a non-namespace fails");
    let err: Value = serde_json::from_slice(&out.stdout).expect("a CNI error object");
    assert_eq!(err["code"], json!(103), "{err}");
    assert!(err["msg"].as_str().unwrap().contains("e2e/x"), "{err}");
    // Nothing is held for the container, and the node has no trace of it.
    let pods = agent.get_json("/v1/pods");
    assert_eq!(pods, json!([]), "the address went back to the pool");
    let host_links = agent.node.ip_json(&["link", "show"]);
    assert!(
        !entries(&host_links)
            .iter()
            .any(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("eni"))),
        "no host veth left behind: {host_links}"
    );
}

/// On EC2 a new ENI's device appears up to seconds after the attach call answered. With the
/// simulator's links appearing 2 s late, pods that need a second ENI get their addresses; every
/// ENI is created once and none is deleted (no create/delete loop).
#[test]
#[ignore = "needs root: network namespaces"]
fn a_new_enis_late_device_is_waited_for_not_recreated() {
    // t3.medium: 5 pod addresses per ENI; 8 pods need a secondary ENI.
    let agent = TestAgent::start_with(
        "t3.medium",
        "link-delay-ms = 2000\n",
        "[pool]\nadd-wait-ms = 20000\n",
    );
    let netconf = agent.netconf("1.0.0");
    let pods: Vec<_> = (0..8).map(|i| TestNetns::new(&format!("s{i}"))).collect();
    for (i, ns) in pods.iter().enumerate() {
        ok_json(&agent.cni(
            "ADD",
            &format!("ctr-{i}"),
            &ns.path(),
            &format!("s{i}"),
            &netconf,
        ));
    }
    // The reconciler may still be waiting for the device of an ENI it
    // created after the last ADD (warm targets): give it the bound the
    // device delay needs before comparing what was created with the pool.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (secondary, created, metrics) = loop {
        let pool = agent.get_json("/v1/pool");
        let secondary = pool["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["enis"].as_array().unwrap().clone())
            .filter(|e| e["device-index"].as_u64() != Some(0))
            .count();
        let metrics = agent.get("/metrics");
        let created = metrics
            .lines()
            .find(|l| {
                l.starts_with("weft_pool_events_total{")
                    && l.contains(r#"event="create-eni",outcome="ok""#)
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        if created == secondary || std::time::Instant::now() > deadline {
            break (secondary, created, metrics);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(secondary >= 1, "no secondary ENI: {metrics}");
    assert_eq!(created, secondary, "{metrics}\n{}", agent.log());
    assert!(
        !metrics.lines().any(|l| l.contains(r#"event="delete-eni""#)),
        "an ENI was deleted: {metrics}\n{}",
        agent.log()
    );
}
