//! Pod and node metadata from a real Kubernetes API server (kube-apiserver
//! 1.20 + etcd from `scripts/k8s`), with `weftd` on the simulator in network
//! namespaces (root only). There is no scheduler: pods are bound with
//! `spec.nodeName`, as the kubelet of that node would see them.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use weft_host::cloud::Cloud;
use weft_tests::support::agent::{AgentOptions, TestAgent, ok_json, pod_ip};
use weft_tests::support::k8s::TestApiServer;
use weft_tests::support::netns::TestNetns;

const DB_GROUP: &str = "sg-00000000000000db0";

async fn create_node(client: &kube::Client, name: &str, labels: Value) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create the node");
}

async fn create_pod(client: &kube::Client, node: &str, name: &str, labels: Value) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels, "annotations": {"team": "payments"}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "reports",
            "containers": [{"name": "c", "image": "localhost/weft-busybox:v1"}],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create the pod")
}

/// CNI_ARGS as containerd passes them for `pod`.
fn args_of(pod: &Pod) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_UID={}",
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap()
    )
}

/// The security-group set of the ENI holding `container`'s address.
fn group_of(agent: &TestAgent, container: &str) -> Vec<String> {
    let pods = agent.get_json("/v1/pods");
    let eni = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["container_id"] == container)
        .unwrap_or_else(|| panic!("{container} not in /v1/pods: {pods}"))["eni_id"]
        .clone();
    let pool = agent.get_json("/v1/pool");
    let group = pool["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["enis"].as_array().unwrap().iter().any(|e| e["id"] == eni))
        .expect("the ENI's group")["group"]
        .clone();
    serde_json::from_value(group).unwrap()
}

fn kube_section(api: &TestApiServer, node: &str, annotate: bool) -> String {
    format!(
        "[kubernetes]\napi = \"on\"\nkubeconfig = \"{}\"\nnode-name = \"{node}\"\nannotate-pod-ip = {annotate}\n",
        api.kubeconfig().display()
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: network namespaces"]
async fn pods_are_decided_on_their_labels_annotated_and_served_without_the_api_server() {
    let mut api = TestApiServer::start();
    let client = api.client().await;
    let node = format!("weft-node-{}", std::process::id());
    create_node(&client, &node, json!({"kubernetes.io/os": "linux"})).await;
    let db = create_pod(&client, &node, "db-1", json!({"app": "db"})).await;
    let web = create_pod(&client, &node, "web-1", json!({"app": "web"})).await;

    let agent = TestAgent::start(
        "m5.large",
        &format!(
            "{}\n[policies.security-groups]\nsettings = {{ rules = [ {{ match-labels = {{ app = \"db\" }}, service-accounts = [\"default/reports\"], security-groups = [\"{DB_GROUP}\"] }} ] }}\n",
            kube_section(&api, &node, true)
        ),
    );
    let netconf = agent.netconf("1.0.0");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Labels and service account from the API decide the group.
    let ns_db = TestNetns::new("db1");
    let db_ip = pod_ip(&ok_json(&agent.cni_args(
        "ADD",
        "ctr-db1",
        &ns_db.path(),
        &args_of(&db),
        &netconf,
    )));
    assert_eq!(group_of(&agent, "ctr-db1"), [DB_GROUP]);
    let ns_web = TestNetns::new("web1");
    ok_json(&agent.cni_args("ADD", "ctr-web1", &ns_web.path(), &args_of(&web), &netconf));
    assert_ne!(group_of(&agent, "ctr-web1"), [DB_GROUP]);

    // The address annotation is on the pod when the ADD answers.
    let annotated = pods.get("db-1").await.unwrap();
    assert_eq!(
        annotated.metadata.annotations.unwrap()["vpc.amazonaws.com/pod-ips"],
        db_ip
    );

    // A pod created just before its ADD is decided on its real labels.
    let fresh = create_pod(&client, &node, "db-2", json!({"app": "db"})).await;
    let ns_db2 = TestNetns::new("db2");
    ok_json(&agent.cni_args("ADD", "ctr-db2", &ns_db2.path(), &args_of(&fresh), &netconf));
    assert_eq!(group_of(&agent, "ctr-db2"), [DB_GROUP]);

    // A label change is seen by the pod's next ADD (a new sandbox), once the
    // watch has delivered it.
    pods.patch(
        "web-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    assert!(
        agent
            .cni_args("DEL", "ctr-web1", &ns_web.path(), &args_of(&web), &netconf)
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let id = format!("ctr-web1-{attempt}");
        ok_json(&agent.cni_args("ADD", &id, &ns_web.path(), &args_of(&web), &netconf));
        if group_of(&agent, &id) == [DB_GROUP] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the label change never reached an ADD"
        );
        assert!(
            agent
                .cni_args("DEL", &id, &ns_web.path(), &args_of(&web), &netconf)
                .status
                .success()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The API server goes away: ADDs keep being served from CNI_ARGS alone,
    // and the agent says so.
    api.stop();
    let ns_late = TestNetns::new("late");
    let late = ok_json(&agent.cni_args(
        "ADD",
        "ctr-late",
        &ns_late.path(),
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=late-1;K8S_POD_UID=0000",
        &netconf,
    ));
    assert!(!pod_ip(&late).is_empty());
    assert_ne!(
        group_of(&agent, "ctr-late"),
        [DB_GROUP],
        "no labels: the default group"
    );
    assert!(
        agent.log().contains("the Kubernetes API does not answer"),
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: network namespaces"]
async fn without_annotate_pod_ip_the_pod_is_not_patched() {
    let api = TestApiServer::start();
    let client = api.client().await;
    let node = format!("weft-node-{}", std::process::id());
    create_node(&client, &node, json!({})).await;
    let pod = create_pod(&client, &node, "plain-1", json!({"app": "plain"})).await;
    let agent = TestAgent::start("m5.large", &kube_section(&api, &node, false));
    let ns = TestNetns::new("plain");
    ok_json(&agent.cni_args(
        "ADD",
        "ctr-plain",
        &ns.path(),
        &args_of(&pod),
        &agent.netconf("1.0.0"),
    ));
    let after = Api::<Pod>::namespaced(client, "default")
        .get("plain-1")
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version, pod.metadata.resource_version,
        "the pod was changed"
    );
    assert!(
        agent
            .log()
            .contains("pod and node metadata from the Kubernetes API")
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: network namespaces"]
async fn a_node_label_picks_the_subnet_of_new_enis() {
    // The simulated VPC's subnet ids follow from its seed: ask a simulator
    // built from the same settings.
    let subnets = ["10.0.0.0/22", "10.0.8.0/22"];
    let sim: weft_host::config::SimSection =
        serde_json::from_value(json!({"subnets": subnets})).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let pod_subnet = sim
        .build(None, scratch.path())
        .unwrap()
        .list_subnets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.cidr.to_string() == subnets[1])
        .unwrap()
        .id;

    let api = TestApiServer::start();
    let client = api.client().await;
    let node = format!("weft-node-{}", std::process::id());
    create_node(
        &client,
        &node,
        json!({"k8s.amazonaws.com/eniConfig": "pods-b"}),
    )
    .await;
    let pod = create_pod(&client, &node, "custom-1", json!({})).await;
    // Custom networking: pods never on the primary ENI, their ENIs in the
    // subnet the node's label names.
    let options = AgentOptions {
        subnets: &subnets,
        ..AgentOptions::default()
    };
    let agent = TestAgent::start_with_options(
        "m5.large",
        &options,
        &format!(
            "{}\n[pool]\nprimary-eni-serves-pods = false\n[policies.subnet-selection]\nsettings = {{ node-subnets = {{ pods-b = [\"{pod_subnet}\"] }} }}\n",
            kube_section(&api, &node, false)
        ),
    );
    let ns = TestNetns::new("custom");
    let result = ok_json(&agent.cni_args(
        "ADD",
        "ctr-custom",
        &ns.path(),
        &args_of(&pod),
        &agent.netconf("1.0.0"),
    ));
    assert!(pod_ip(&result).starts_with("10.0.8."), "{result}");
}
