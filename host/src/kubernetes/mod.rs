//! Pod and node metadata from the Kubernetes API (kube-rs).
//!
//! * Pods: a reflector of the pods bound to this node (field selector
//!   `spec.nodeName`) gives the security-groups policy each pod's labels,
//!   annotations and service account. A pod the watch has not delivered yet
//!   (created just before its ADD), or whose UID differs from the one the
//!   runtime passes (a recreated pod of the same name), is read directly,
//!   bounded by `pod-wait-ms`. When neither answers, the ADD is decided on
//!   `CNI_ARGS` alone and the agent says so (once per outage).
//! * The node: a reflector of this node's object gives the subnet-selection
//!   policy its labels, annotations and zone (custom networking).
//! * `annotate-pod-ip`: a successful ADD patches the pod with its address
//!   before it answers, as the VPC CNI's `ANNOTATE_POD_IP`.
//!
//! Only plain list-then-watch is used (no streaming lists), so API servers
//! from 1.20 on work.

mod meta;

pub(crate) use meta::PodMetadata;

use crate::config::{ApiMode, KubernetesSection};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use weft_policy_sdk::subnet;

/// The annotation the VPC CNI writes with `ANNOTATE_POD_IP`; Weft writes the
/// same, so controllers that read it keep working.
pub(crate) const POD_IPS_ANNOTATION: &str = "vpc.amazonaws.com/pod-ips";

/// The Kubernetes API could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig or in-cluster configuration is unusable.
    #[error("Kubernetes API configuration from {source_name}: {message}")]
    Config {
        /// The kubeconfig path, or `in-cluster`.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// `api = "on"` without any configuration.
    #[error(
        "[kubernetes] api = \"on\" but no API server is configured: set [kubernetes] kubeconfig, \
         or run weftd in a pod (KUBERNETES_SERVICE_HOST)"
    )]
    Required,
    /// The node's name is unknown.
    #[error(
        "the node's name is unknown: set [kubernetes] node-name or NODE_NAME (the DaemonSet sets \
         it from spec.nodeName)"
    )]
    NoNodeName,
}

/// What is known about a pod at its ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodLookup {
    /// The pod as the API has it.
    Found(PodMetadata),
    /// The API has no such pod (deleted already, or another UID).
    Missing,
    /// The API did not answer; the reason.
    Unavailable(String),
}

/// The agent's view of the Kubernetes API.
pub(crate) struct Kubernetes {
    client: kube::Client,
    node_name: String,
    pods: Store<Pod>,
    nodes: Store<Node>,
    pod_wait: Duration,
    annotate_pod_ip: bool,
    watches: Vec<JoinHandle<()>>,
}

impl Drop for Kubernetes {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.abort();
        }
    }
}

async fn client_config(section: &KubernetesSection) -> Result<Option<kube::Config>, KubeError> {
    let error = |source_name: &str| {
        let source_name = source_name.to_owned();
        move |e: &dyn std::fmt::Display| KubeError::Config {
            source_name,
            message: e.to_string(),
        }
    };
    match (section.api, &section.kubeconfig) {
        (ApiMode::Off, _) => Ok(None),
        (_, Some(path)) => {
            let name = path.display().to_string();
            let kubeconfig =
                kube::config::Kubeconfig::read_from(path).map_err(|e| error(&name)(&e))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map(Some)
                .map_err(|e| error(&name)(&e))
        }
        (_, None) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster()
                .map(Some)
                .map_err(|e| error("in-cluster")(&e))
        }
        (ApiMode::On, None) => Err(KubeError::Required),
        (ApiMode::Auto, None) => Ok(None),
    }
}

fn node_name(section: &KubernetesSection) -> Result<String, KubeError> {
    if let Some(name) = section.node_name.clone().filter(|n| !n.is_empty()) {
        return Ok(name);
    }
    if let Some(name) = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()) {
        return Ok(name);
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or(KubeError::NoNodeName)
}

/// Runs a reflector of `api` filtered by `fields` in the background; its
/// failures are logged when they start and when they end.
fn reflect<K>(api: Api<K>, fields: String, what: &'static str) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().fields(&fields)),
    )
    .default_backoff();
    let handle = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!(%fields, "the watch of {what} works again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%fields, %error, "the watch of {what} failed; retrying with backoff");
                }
                Err(_) => {}
            }
        }
    });
    (reader, handle)
}

impl Kubernetes {
    /// Connects as `section` says, or returns `None` (and says once that pods
    /// are known from `CNI_ARGS` alone) when there is no API server to use.
    /// The watches start in the background: an API server that is down at
    /// start only delays the metadata.
    pub(crate) async fn connect(
        section: &KubernetesSection,
    ) -> Result<Option<Arc<Kubernetes>>, KubeError> {
        let Some(mut config) = client_config(section).await? else {
            tracing::info!(
                "no Kubernetes API server configured: pods are known from CNI_ARGS alone \
                 (namespace, name, UID; no labels, annotations or service account)"
            );
            return Ok(None);
        };
        config.connect_timeout = Some(Duration::from_secs(2));
        let cluster = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| KubeError::Config {
            source_name: cluster.clone(),
            message: e.to_string(),
        })?;
        let node_name = node_name(section)?;
        let (pods, pod_watch) = reflect(
            Api::<Pod>::all(client.clone()),
            format!("spec.nodeName={node_name}"),
            "this node's pods",
        );
        let (nodes, node_watch) = reflect(
            Api::<Node>::all(client.clone()),
            format!("metadata.name={node_name}"),
            "this node",
        );
        let pod_wait = Duration::from_millis(section.pod_wait_ms);
        // The first ENI's subnet may depend on the node's labels: give the
        // node's watch a moment, never more than an ADD would wait.
        let _ = tokio::time::timeout(pod_wait, nodes.wait_until_ready()).await;
        tracing::info!(
            api_server = %cluster,
            node = %node_name,
            annotate_pod_ip = section.annotate_pod_ip,
            "pod and node metadata from the Kubernetes API"
        );
        Ok(Some(Arc::new(Kubernetes {
            client,
            node_name,
            pods,
            nodes,
            pod_wait,
            annotate_pod_ip: section.annotate_pod_ip,
            watches: vec![pod_watch, node_watch],
        })))
    }

    /// The pod's metadata: from the watch, else read directly (bounded by
    /// `pod-wait-ms`). `uid`, when the runtime passed one, must match.
    pub(crate) async fn pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> PodLookup {
        if let Some(meta) = self.watched_pod(namespace, name, uid) {
            return PodLookup::Found(meta);
        }
        let current = |pod: &Pod| uid.is_none_or(|u| pod.metadata.uid.as_deref() == Some(u));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(self.pod_wait, api.get_opt(name)).await {
            Ok(Ok(Some(pod))) if current(&pod) => PodLookup::Found(PodMetadata::of(&pod)),
            Ok(Ok(_)) => PodLookup::Missing,
            Ok(Err(error)) => PodLookup::Unavailable(error.to_string()),
            Err(_) => {
                PodLookup::Unavailable(format!("no answer within {} ms", self.pod_wait.as_millis()))
            }
        }
    }

    /// The pod's metadata if the watch has delivered it (no API call).
    pub(crate) fn watched_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Option<PodMetadata> {
        self.pods
            .get(&ObjectRef::new(name).within(namespace))
            .filter(|pod| uid.is_none_or(|u| pod.metadata.uid.as_deref() == Some(u)))
            .map(|pod| PodMetadata::of(&pod))
    }

    /// This node's metadata, once the watch has delivered it.
    pub(crate) fn node(&self) -> Option<subnet::Node> {
        self.nodes
            .get(&ObjectRef::new(&self.node_name))
            .map(|node| meta::node_metadata(&node))
    }

    /// Patches the pod with its address when `annotate-pod-ip` is on, before
    /// the ADD is answered (as the VPC CNI), bounded by `pod-wait-ms`. A
    /// failure is logged and does not fail the ADD: the kubelet reports the
    /// address anyway.
    pub(crate) async fn annotate_pod_ip(&self, namespace: &str, name: &str, ip: IpAddr) {
        if !self.annotate_pod_ip {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch =
            serde_json::json!({"metadata": {"annotations": {POD_IPS_ANNOTATION: ip.to_string()}}});
        let pod = format!("{namespace}/{name}");
        let params = PatchParams::default();
        match tokio::time::timeout(
            self.pod_wait,
            api.patch(name, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(Ok(_)) => tracing::debug!(%pod, %ip, "annotated the pod with its address"),
            Ok(Err(error)) => {
                tracing::warn!(%pod, %ip, %error, "could not annotate the pod with its address")
            }
            Err(_) => tracing::warn!(%pod, %ip, "the pod-ip annotation got no answer in time"),
        }
    }
}
