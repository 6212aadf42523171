//! The real `weft` plugin executed as a runtime executes it, against the real
//! agent API server. Behind the API is `FakeAgent`, the test double of
//! weftd's backend that records what it receives (address allocation and
//! plumbing are tested by their own modules).

use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use weft_tests::support::backend::{EMPTY_POOL_DETAILS, EMPTY_POOL_MSG, FakeApi, NOT_READY};

struct Exec {
    success: bool,
    stdout: String,
}

impl Exec {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{:?} is not JSON: {e}", self.stdout))
    }
}

/// Runs a CNI plugin as a runtime does (env + stdin), on a blocking thread.
async fn exec_plugin(binary: &Path, env: Vec<(&'static str, String)>, stdin: Value) -> Exec {
    let binary = binary.to_owned();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = weft_tests::support::agent::exec_plugin(None, &binary, &env, &stdin.to_string());
        Exec {
            success: out.status.success(),
            stdout: String::from_utf8(out.stdout)
                .expect("UTF-8")
                .trim()
                .to_string(),
        }
    })
    .await
    .expect("the plugin thread")
}

const NETNS: &str = "/proc/self/ns/net";

fn env(command: &str, pod: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.into()),
        ("CNI_CONTAINERID", "4f1c0de5".into()),
        ("CNI_NETNS", NETNS.into()),
        ("CNI_IFNAME", "eth0".into()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={pod};K8S_POD_UID=9e1;K8S_POD_INFRA_CONTAINER_ID=4f1c0de5"
            ),
        ),
        ("CNI_PATH", "/opt/cni/bin".into()),
    ]
}

fn conf(version: &str, socket: &Path) -> Value {
    json!({"cniVersion": version, "name": "vpc", "type": "weft", "socket": socket, "log-level": "off"})
}

#[tokio::test(flavor = "multi_thread")]
async fn add_renders_each_version_and_the_agent_gets_the_pod() {
    let binary = weft_tests::weft_plugin_binary();
    let api = FakeApi::start().await;
    let mode = std::fs::metadata(&api.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for version in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let out = exec_plugin(&binary, env("ADD", "web-0"), conf(version, &api.socket)).await;
        assert!(out.success, "{}", out.stdout);
        let ip = if version.starts_with("0.") {
            json!({"version": "4", "address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1})
        } else {
            json!({"address": "10.0.1.5/32", "gateway": "169.254.1.1", "interface": 1})
        };
        let mut host = json!({"name": "eni5f2a6b7c8d9", "mac": "0a:58:0a:00:01:05"});
        let mut pod = json!({"name": "eth0", "mac": "0a:58:0a:00:01:06", "sandbox": NETNS});
        if version == "1.1.0" {
            host["mtu"] = json!(9001);
            pod["mtu"] = json!(9001);
        }
        assert_eq!(
            out.json(),
            json!({
                "cniVersion": version,
                "interfaces": [host, pod],
                "ips": [ip],
                "routes": [{"dst": "169.254.1.1/32"}, {"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {}
            }),
            "version {version}"
        );
    }
    let adds = api.agent.requests("add");
    assert_eq!(adds.len(), 4);
    assert_eq!(
        adds[3],
        json!({
            "network": "vpc", "container_id": "4f1c0de5", "ifname": "eth0", "netns": NETNS,
            "cni_version": "1.1.0",
            "pod": {"namespace": "shop", "name": "web-0", "uid": "9e1", "infra_container_id": "4f1c0de5"}
        })
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn del_check_gc_status_round_trip() {
    let binary = weft_tests::weft_plugin_binary();
    let api = FakeApi::start().await;
    let added = exec_plugin(&binary, env("ADD", "web-0"), conf("1.1.0", &api.socket)).await;
    assert!(added.success);

    let mut check = conf("1.1.0", &api.socket);
    check["prevResult"] = added.json();
    let out = exec_plugin(&binary, env("CHECK", "web-0"), check.clone()).await;
    assert!(out.success && out.stdout.is_empty(), "{}", out.stdout);
    check["prevResult"]["routes"] = json!([]);
    let out = exec_plugin(&binary, env("CHECK", "web-0"), check).await;
    assert!(!out.success);
    assert_eq!(out.json()["code"], 102);
    assert!(
        out.json()["details"]
            .as_str()
            .expect("details")
            .contains("route default")
    );

    let mut del_env = env("DEL", "web-0");
    del_env.retain(|(k, _)| *k != "CNI_NETNS");
    let out = exec_plugin(&binary, del_env, conf("1.1.0", &api.socket)).await;
    assert!(out.success && out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(api.agent.requests("del")[0]["container_id"], "4f1c0de5");
    assert!(api.agent.requests("del")[0].get("netns").is_none());

    let mut gc = conf("1.1.0", &api.socket);
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "4f1c0de5", "ifname": "eth0"}]);
    let out = exec_plugin(
        &binary,
        vec![
            ("CNI_COMMAND", "GC".into()),
            ("CNI_PATH", "/opt/cni/bin".into()),
        ],
        gc,
    )
    .await;
    assert!(out.success && out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(
        api.agent.requests("gc")[0],
        json!({"network": "vpc", "valid_attachments": [{"containerID": "4f1c0de5", "ifname": "eth0"}]})
    );

    let out = exec_plugin(
        &binary,
        vec![("CNI_COMMAND", "STATUS".into())],
        conf("1.1.0", &api.socket),
    )
    .await;
    assert!(out.success && out.stdout.is_empty(), "{}", out.stdout);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_errors_pass_through_with_their_code() {
    let binary = weft_tests::weft_plugin_binary();
    let api = FakeApi::start_with(false, |_| {}).await;
    let out = exec_plugin(
        &binary,
        env("ADD", "empty-pool"),
        conf("0.4.0", &api.socket),
    )
    .await;
    assert!(!out.success);
    assert_eq!(
        out.json(),
        json!({
            "cniVersion": "0.4.0", "code": 11,
            "msg": EMPTY_POOL_MSG,
            "details": EMPTY_POOL_DETAILS
        })
    );
    let out = exec_plugin(
        &binary,
        vec![("CNI_COMMAND", "STATUS".into())],
        conf("1.1.0", &api.socket),
    )
    .await;
    assert!(!out.success);
    assert_eq!(out.json()["code"], 50);
    assert_eq!(out.json()["details"], NOT_READY);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_client_does_not_block_the_plugin() {
    let binary = weft_tests::weft_plugin_binary();
    let api = FakeApi::start().await;
    let mut stalled = tokio::net::UnixStream::connect(&api.socket)
        .await
        .expect("connect");
    stalled
        .write_all(b"POST /v1/cni/add HTTP/1.1\r\nHost: weft\r\nContent-Length: 900\r\n\r\n{")
        .await
        .expect("write");
    let out = exec_plugin(&binary, env("ADD", "web-1"), conf("1.0.0", &api.socket)).await;
    assert!(out.success, "{}", out.stdout);
    assert_eq!(out.json()["ips"][0]["address"], "10.0.1.5/32");
    drop(stalled);
    api.stop().await;
}

/// Where Debian's containernetworking-plugins puts the reference plugins.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// weft's result must be exactly what libcni-based plugins expect as
/// `prevResult`: `portmap` and `bandwidth` without port mappings or limits
/// parse it with libcni's types (checking versions and interface indexes)
/// and print it back. Chained weft → portmap → bandwidth, as in a conflist.
#[tokio::test(flavor = "multi_thread")]
async fn result_chains_through_the_reference_plugins() {
    let binary = weft_tests::weft_plugin_binary();
    let plugins = Path::new(REFERENCE_PLUGINS);
    for plugin in ["portmap", "bandwidth"] {
        assert!(
            plugins.join(plugin).is_file(),
            "{}/{plugin} is missing: install the reference plugins (apt-get install -y containernetworking-plugins)",
            plugins.display()
        );
    }
    let api = FakeApi::start().await;
    // The reference plugins (1.1.x) speak up to 1.0.0.
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let ours = exec_plugin(&binary, env("ADD", "web-0"), conf(version, &api.socket)).await;
        assert!(ours.success, "{}", ours.stdout);
        let mut prev = ours.json();
        for plugin in ["portmap", "bandwidth"] {
            let stdin = json!({
                "cniVersion": version, "name": "vpc", "type": plugin,
                "capabilities": {"portMappings": true, "bandwidth": true},
                "prevResult": prev
            });
            let out = exec_plugin(&plugins.join(plugin), env("ADD", "web-0"), stdin).await;
            assert!(
                out.success,
                "{plugin} rejected weft's {version} result: {}",
                out.stdout
            );
            prev = out.json();
        }
        assert_eq!(
            prev,
            ours.json(),
            "the chain passes weft's {version} result through unchanged"
        );
    }
    api.stop().await;
}
