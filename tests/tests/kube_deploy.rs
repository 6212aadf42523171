//! `kubectl apply -f deploy/` against a real API server (kube-apiserver 1.20
//! from `scripts/k8s`): every object is accepted and the DaemonSet exists.
//! Nothing runs it there (no controller-manager); the manifests' agreement
//! with the code is checked in `host/tests/deploy_manifests.rs`.

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde::Deserialize;
use std::path::Path;
use weft_tests::support::k8s::TestApiServer;

#[tokio::test(flavor = "multi_thread")]
async fn the_manifests_apply_and_create_the_daemonset() {
    let api = TestApiServer::start();
    let client = api.client().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut created = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let object: DynamicObject = DynamicObject::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let types = object.types.clone().expect("apiVersion and kind");
            let gvk = GroupVersionKind::try_from(&types).unwrap();
            let resource = ApiResource::from_gvk(&gvk);
            let objects: Api<DynamicObject> = match object.metadata.namespace.as_deref() {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            objects
                .create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| {
                    panic!("{} {:?} refused: {e}", types.kind, object.metadata.name)
                });
            created.push(format!(
                "{}/{}",
                types.kind,
                object.metadata.name.unwrap_or_default()
            ));
        }
    }
    for kind in [
        "ServiceAccount/weft",
        "ClusterRole/weft",
        "ClusterRoleBinding/weft",
        "ConfigMap/weft-config",
        "DaemonSet/weft",
    ] {
        assert!(
            created.iter().any(|c| c == kind),
            "{kind} not in {created:?}"
        );
    }
    let ds = Api::<DaemonSet>::namespaced(client, "kube-system")
        .get("weft")
        .await
        .expect("the DaemonSet is stored");
    let spec = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
}
