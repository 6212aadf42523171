//! The whole node, as the kubelet uses it (root only): kube-apiserver,
//! containerd and kubelet 1.20 from `scripts/k8s`; `weftd install` puts
//! `weft` into the CNI bin dir containerd calls, and the agent writes the
//! conflist into the conf dir containerd reads only once it is ready. Pods
//! created through the API (bound with `spec.nodeName`: there is no
//! scheduler) reach Running with an address from the simulated VPC, reach
//! each other, and give their address back (cooling) when deleted.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use weft_tests::support::agent::{AgentOptions, TestAgent};
use weft_tests::support::binaries::install_plugin;
use weft_tests::support::k8s::TestApiServer;

/// The node's Ready condition: (status, message).
async fn ready(nodes: &Api<Node>, name: &str) -> (String, String) {
    let node = nodes.get(name).await.expect("the node");
    let condition = node
        .status
        .and_then(|s| s.conditions)
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    (condition.status, condition.message.unwrap_or_default())
}

/// Polls `check` every 200 ms until it gives a value, or fails after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod(name: &str, node: &str, command: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "restartPolicy": "Never",
            "containers": [{
                "name": "c",
                "image": "localhost/weft-busybox:v1",
                "imagePullPolicy": "Never",
                "command": command,
            }],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: network namespaces"]
async fn kubelet_runs_pods_on_weft_once_the_agent_is_ready() {
    let mut api = TestApiServer::start();
    let client = api.client().await;
    let node_name = "weft-e2e-node";

    // The CNI bin dir containerd calls: loopback and portmap from Debian, and
    // weft put there by `weftd install`.
    let cni = tempfile::tempdir().unwrap();
    let (bin, conf) = (cni.path().join("bin"), cni.path().join("net.d"));
    std::fs::create_dir_all(&bin).unwrap();
    for plugin in ["loopback", "portmap"] {
        std::fs::copy(format!("/usr/lib/cni/{plugin}"), bin.join(plugin)).unwrap();
    }
    install_plugin(&bin);

    // Without the agent there is no conflist: the kubelet reports NotReady.
    api.start_node(node_name, &bin, &conf);
    let nodes: Api<Node> = Api::all(client.clone());
    let (status, message) = ready(&nodes, node_name).await;
    assert_ne!(
        status, "True",
        "Ready without a CNI configuration: {message}"
    );
    assert_eq!(std::fs::read_dir(&conf).unwrap().count(), 0);

    let options = AgentOptions {
        cni_conf_dir: Some(conf.clone()),
        ..AgentOptions::default()
    };
    let agent = TestAgent::start_with_options(
        "m5.large",
        &options,
        &format!(
            "[kubernetes]\napi = \"on\"\nkubeconfig = \"{}\"\nnode-name = \"{node_name}\"\nannotate-pod-ip = true\n",
            api.kubeconfig().display()
        ),
    );
    eventually(
        "the node to turn Ready",
        Duration::from_secs(60),
        || async { (ready(&nodes, node_name).await.0 == "True").then_some(()) },
    )
    .await;

    // A pod reaches Running with a VPC address from the simulator.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("server", node_name, &["sleep", "3600"]),
    )
    .await
    .unwrap();
    let server_ip = eventually("the server pod to run", Duration::from_secs(60), || async {
        let p = pods.get("server").await.ok()?;
        let status = p.status?;
        (status.phase.as_deref() == Some("Running")).then_some(status.pod_ip?)
    })
    .await;
    assert!(server_ip.starts_with("10.0."), "{server_ip}");
    let listed = agent.get_json("/v1/pods");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["ip"] == server_ip.as_str()),
        "{listed}"
    );

    // A second pod reaches the first (its ping succeeds, so it exits 0).
    let ping = format!("ping -c 2 -W 5 {server_ip}");
    pods.create(
        &PostParams::default(),
        &pod("client", node_name, &["sh", "-c", &ping]),
    )
    .await
    .unwrap();
    let phase = eventually(
        "the client pod to finish",
        Duration::from_secs(60),
        || async {
            let phase = pods.get("client").await.ok()?.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        },
    )
    .await;
    assert_eq!(phase, "Succeeded", "the client could not reach {server_ip}");

    // Deleting the pod releases its address: it cools down.
    pods.delete("server", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually(
        "the server's address to cool down",
        Duration::from_secs(60),
        || async {
            let gone = !agent
                .get_json("/v1/pods")
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["ip"] == server_ip.as_str());
            let cooling: u64 = agent.get_json("/v1/pool")["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["enis"].as_array().unwrap().clone())
                .map(|e| e["cooling"].as_u64().unwrap())
                .sum();
            (gone && cooling >= 1).then_some(())
        },
    )
    .await;
    api.stop_node();
}
