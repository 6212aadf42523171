//! What the DaemonSet relies on, on a whole node in namespaces (root only):
//! `weftd install` puts the plugin into a CNI bin dir, the agent writes the
//! conflist once ready and the runtime's chain (weft + portmap) works from
//! it, metrics and introspection answer on TCP, `weftd status` summarises,
//! and a container added by libcni's cnitool (no Kubernetes arguments) gets an
//! address with an identity the security-groups policy can tell apart.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use weft_tests::support::agent::{AgentOptions, TestAgent, exec_plugin, ok_json, pod_ip};
use weft_tests::support::binaries::install_plugin;
use weft_tests::support::k8s::kit_binary;
use weft_tests::support::netns::TestNetns;
use weft_tests::support::tcp::free_port;
use weft_tests::{weft_plugin_binary, weftd_binary};

fn http(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_owned())
}

#[test]
#[ignore = "needs root: network namespaces"]
fn install_conflist_tcp_endpoints_and_status() {
    // `weftd install` copies the plugin (portmap: the node already has it).
    let bin = tempfile::tempdir().unwrap();
    std::fs::copy("/usr/lib/cni/portmap", bin.path().join("portmap")).unwrap();
    install_plugin(bin.path());
    let installed = std::fs::read(bin.path().join("weft")).unwrap();
    assert_eq!(installed, std::fs::read(weft_plugin_binary()).unwrap());

    let (metrics, introspection) = (free_port(), free_port());
    let agent_keys = format!(
        "metrics-address = \"127.0.0.1:{metrics}\"\nintrospection-address = \"127.0.0.1:{introspection}\""
    );
    // The conflist must appear only once the agent is ready, i.e. after its
    // socket (the agent answers ADDs from the moment the socket exists). A
    // watcher notes when it first appears; a slow EC2 at start (the first
    // inventory) widens the time between the process starting and serving.
    let conf_dir = tempfile::tempdir().unwrap();
    let conflist_path = conf_dir.path().join("10-weft.conflist");
    let first_seen = {
        let path = conflist_path.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if path.exists() {
                    return Some(SystemTime::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    };
    let options = AgentOptions {
        agent_keys: &agent_keys,
        cloud: "api-latency-ms = { DescribeNetworkInterfaces = 500 }",
        cni_conf_dir: Some(conf_dir.path().to_path_buf()),
        ..AgentOptions::default()
    };
    let agent = TestAgent::start_with_options("m5.large", &options, "");
    let first_seen = first_seen
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("no conflist:\n{}", agent.log()));
    let served = std::fs::symlink_metadata(agent.socket())
        .and_then(|m| m.modified())
        .unwrap();
    assert!(
        first_seen >= served,
        "the conflist existed before the agent served its socket"
    );
    // (The log line follows the write.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent
        .log()
        .contains("ready: wrote the CNI network configuration")
    {
        assert!(Instant::now() < deadline, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let conflist: Value =
        serde_json::from_str(&std::fs::read_to_string(&conflist_path).unwrap()).unwrap();
    assert_eq!(
        conflist["plugins"][0]["socket"],
        agent.socket().to_str().unwrap()
    );

    // The runtime's chain from that conflist, with the installed binaries:
    // weft, then portmap with the previous result.
    let pod = TestNetns::new("pod-ds");
    let mut netconf = conflist["plugins"][0].clone();
    netconf["cniVersion"] = conflist["cniVersion"].clone();
    netconf["name"] = conflist["name"].clone();
    let env = |command| {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "ctr-ds"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", bin.path().to_str().unwrap()),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=ds;K8S_POD_NAME=p"),
        ]
    };
    let netns = pod.path().display().to_string();
    let mut add = env("ADD");
    add.push(("CNI_NETNS", &netns));
    let result = ok_json(&exec_plugin(
        None,
        &bin.path().join("weft"),
        &add,
        &netconf.to_string(),
    ));
    let mut portmap = conflist["plugins"][1].clone();
    portmap["cniVersion"] = conflist["cniVersion"].clone();
    portmap["name"] = conflist["name"].clone();
    portmap["prevResult"] = result.clone();
    portmap["runtimeConfig"] = serde_json::json!({"portMappings": []});
    ok_json(&exec_plugin(
        Some(&agent.node),
        &bin.path().join("portmap"),
        &add,
        &portmap.to_string(),
    ));

    // Metrics on TCP: the pool gauges per group.
    let (code, text) = http(&format!("http://127.0.0.1:{metrics}/metrics"));
    assert_eq!(code, 200);
    for line in [
        "weft_enis{group=",
        "weft_addresses{group=",
        "state=\"assigned\"} 1",
        "state=\"free\"}",
        "weft_max_pods 29",
        "weft_max_enis 3",
        "weft_max_addresses 27",
        "weft_pending_adds{group=",
        "weft_cni_request_seconds_count{command=\"ADD\",outcome=\"ok\"} 1",
        "weft_policy_decisions_total{policy=\"sg-selector\",",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // Introspection on TCP: read-only views, no CNI commands.
    let (code, pool) = http(&format!("http://127.0.0.1:{introspection}/v1/pool"));
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&pool).unwrap(),
        agent.get_json("/v1/pool")
    );
    let (code, _) = http(&format!("http://127.0.0.1:{introspection}/v1/pods"));
    assert_eq!(code, 200);
    let (code, policies) = http(&format!("http://127.0.0.1:{introspection}/v1/policies"));
    assert_eq!(
        code, 200,
        "the socket's read-only routes, policies included"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&policies).unwrap()["roles"][2]["policy"],
        "sg-selector"
    );
    // The ENIs: the pod's address is on one of them, assigned to it.
    let (code, enis) = http(&format!("http://127.0.0.1:{introspection}/v1/enis"));
    assert_eq!(code, 200);
    let enis: Value = serde_json::from_str(&enis).unwrap();
    let pod_ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let holder = enis["enis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|eni| {
            eni["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["ip"] == pod_ip)
        })
        .unwrap_or_else(|| panic!("no ENI holds {pod_ip}: {enis}"));
    let on_eni = holder["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["ip"] == pod_ip);
    assert_eq!(on_eni.unwrap()["state"], "assigned", "{enis}");
    assert_eq!(enis["assignments"][0]["ip"], pod_ip, "{enis}");
    let (code, _) = http(&format!("http://127.0.0.1:{introspection}/v1/cni/add"));
    assert_eq!(code, 404, "no CNI command over TCP");
    // The live policy inputs read EC2 on every request: the socket only.
    let (code, _) = http(&format!(
        "http://127.0.0.1:{introspection}/v1/policies/inputs"
    ));
    assert_eq!(
        code, 404,
        "no EC2 read at an unauthenticated port's request"
    );
    assert!(agent.get_json("/v1/policies/inputs")["pool-sizing"].is_array());
    let (code, _) = http(&format!("http://127.0.0.1:{metrics}/v1/pool"));
    assert_eq!(code, 404, "the metrics port serves metrics only");

    // A failed request shows in `weftd status`: CHECK of a container the
    // agent never added.
    let mut check = env("CHECK");
    check[1] = ("CNI_CONTAINERID", "never-added");
    check.push(("CNI_NETNS", &netns));
    let mut checked = netconf.clone();
    checked["prevResult"] = result.clone();
    let out = exec_plugin(None, &bin.path().join("weft"), &check, &checked.to_string());
    assert!(!out.status.success());
    let status = Command::new(weftd_binary())
        .args(["status", "--socket"])
        .arg(agent.socket())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(text.contains(": ready"), "{text}");
    assert!(text.contains("(default): "), "{text}");
    assert!(text.contains(" addresses: 1 assigned"), "{text}");
    assert!(text.contains("pods: 1"), "{text}");
    assert!(text.contains("CHECK code 3: "), "{text}");
    let ready = Command::new(weftd_binary())
        .args(["status", "--check-ready", "--socket"])
        .arg(agent.socket())
        .status()
        .unwrap();
    assert!(ready.success());

    let mut del = env("DEL");
    del.push(("CNI_NETNS", &netns));
    ok_or_empty(&exec_plugin(
        Some(&agent.node),
        &bin.path().join("portmap"),
        &del,
        &portmap.to_string(),
    ));
}

fn ok_or_empty(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_container_without_kubernetes_args_gets_an_address_and_its_own_identity() {
    // sg-selector: containers that are not pods (empty namespace) get their
    // own group, so they land on an ENI of that group.
    let agent = TestAgent::start(
        "m5.large",
        r#"[policies.security-groups]
settings = { rules = [ { namespaces = [""], security-groups = ["sg-0000000000000c0de"] } ] }
"#,
    );
    let netconf = agent.netconf("1.0.0");
    let container = TestNetns::new("cnitool");
    let pod = TestNetns::new("k8s-pod");
    // libcni's cnitool, as a new user tries a plugin before a cluster: it
    // passes no K8S_POD_* (no CNI_ARGS at all) and derives the container id
    // from the namespace path.
    let conf_dir = agent.dir.path().join("cnitool.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("10-weft.conf"), netconf.to_string()).unwrap();
    let plugin = weft_plugin_binary();
    let cnitool = |command: &str| {
        Command::new(kit_binary("cnitool"))
            .args([command, "weft"])
            .arg(container.path())
            .env_clear()
            .env("NETCONFPATH", &conf_dir)
            .env("CNI_PATH", plugin.parent().unwrap())
            .output()
            .expect("run cnitool")
    };
    let result = ok_json(&cnitool("add"));
    let ip = pod_ip(&result);
    ok_json(&agent.cni("ADD", "ctr-pod", &pod.path(), "pod", &netconf));

    let pods = agent.get_json("/v1/pods");
    let entry = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ip"] == ip)
        .expect("the container is listed");
    let id = entry["container_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cnitool-"), "{entry}");
    assert_eq!(entry["pod"]["namespace"], "", "no Kubernetes namespace");
    assert_eq!(entry["pod"]["name"], id, "named by its container id");
    // Its ENI belongs to the group the policy gave containers; the pod's not.
    let pool = agent.get_json("/v1/pool");
    let group_of = |eni: &Value| {
        pool["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| {
                g["enis"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["id"] == *eni)
            })
            .map(|g| g["group"].clone())
            .unwrap()
    };
    assert_eq!(
        group_of(&entry["eni_id"]),
        serde_json::json!(["sg-0000000000000c0de"])
    );
    let pod_entry = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["container_id"] == "ctr-pod")
        .unwrap();
    assert_ne!(
        group_of(&pod_entry["eni_id"]),
        serde_json::json!(["sg-0000000000000c0de"])
    );
    // Reachable like any pod: the node pings it.
    assert!(agent.node.ping(&ip), "the container answers at {ip}");
    // No API server is configured: pods are known from CNI_ARGS alone, said
    // once at start.
    assert_eq!(
        agent
            .log()
            .matches("no Kubernetes API server configured")
            .count(),
        1,
        "{}",
        agent.log()
    );
    // CHECK and DEL through cnitool work too; DEL releases it.
    let checked = cnitool("check");
    assert!(checked.status.success(), "{checked:?}");
    let deleted = cnitool("del");
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(
        !agent
            .get_json("/v1/pods")
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["container_id"] == id.as_str())
    );
}
