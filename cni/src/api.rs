//! The agent API: versioned request and response types shared by the `weft`
//! plugin and `weftd`.
//!
//! HTTP/1.1 with JSON bodies on `weftd`'s unix socket, so standard tools
//! work: `curl --unix-socket /run/weft/weftd.sock http://weft/v1/status`.
//! Every path carries the API version (`/v1/…`); a breaking change gets a
//! new prefix while the old one keeps being served for plugins already on
//! nodes.
//!
//! | method and path | request | success (200) |
//! | --- | --- | --- |
//! | `POST /v1/cni/add` | [`AddRequest`] | [`AddResponse`] |
//! | `POST /v1/cni/del` | [`DelRequest`] | [`DelResponse`] |
//! | `POST /v1/cni/check` | [`CheckRequest`] | [`CheckResponse`] |
//! | `POST /v1/cni/gc` | [`GcRequest`] | [`GcResponse`] |
//! | `GET /v1/status` | | [`StatusResponse`] |
//!
//! Failures answer a non-2xx status with an [`ApiError`] body: the CNI
//! error's `{code, msg, details}`, which the plugin prints unchanged, so an
//! agent error reaches the runtime with its code (for example 11 when the
//! address pool stays empty).

use crate::result::NetworkResult;
use crate::version::CniVersion;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// Path of the `ADD` call.
pub const PATH_ADD: &str = "/v1/cni/add";
/// Path of the `DEL` call.
pub const PATH_DEL: &str = "/v1/cni/del";
/// Path of the `CHECK` call.
pub const PATH_CHECK: &str = "/v1/cni/check";
/// Path of the `GC` call.
pub const PATH_GC: &str = "/v1/cni/gc";
/// Path of the readiness call (`STATUS`).
pub const PATH_STATUS: &str = "/v1/status";
/// Largest request or response body either side accepts.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The error body of a failed call: a CNI error, passed through unchanged.
pub type ApiError = crate::error::CniError;

/// The result of a successful `ADD`: interfaces (host veth, then the pod
/// interface with `sandbox` = the netns path), addresses with `interface`
/// indexes into that list, routes and DNS.
pub type AddResponse = NetworkResult;

/// The Kubernetes pod an attachment belongs to (from `CNI_ARGS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID`, when the runtime passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`, when the runtime passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra_container_id: Option<String>,
}

impl PodRef {
    /// The identity of a container that is not a Kubernetes pod (no
    /// `K8S_POD_*` in `CNI_ARGS`: podman, nerdctl, cnitool): an empty
    /// namespace, which no Kubernetes pod has, and the container id as the
    /// name.
    pub fn container(container_id: &str) -> PodRef {
        PodRef {
            namespace: String::new(),
            name: container_id.to_owned(),
            uid: None,
            infra_container_id: None,
        }
    }

    /// Whether this is a Kubernetes pod (see [`PodRef::container`]).
    pub fn is_kubernetes_pod(&self) -> bool {
        !self.namespace.is_empty()
    }
}

/// Attach a container: allocate an address and plumb the pod.
///
/// Idempotent per `(network, container_id, ifname)`: a repeated `ADD`
/// returns the same address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddRequest {
    /// The netconf `name`.
    pub network: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`.
    pub netns: PathBuf,
    /// The netconf `cniVersion` (for the agent's records and logs).
    pub cni_version: CniVersion,
    /// The pod.
    pub pod: PodRef,
    /// The netconf `mtu`, overriding the agent's default pod MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// Detach a container. Succeeds for containers the agent does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelRequest {
    /// The netconf `name`.
    pub network: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`; absent when the runtime no longer has the namespace, and
    /// possibly naming a namespace that is already gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// The pod, when `CNI_ARGS` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
}

/// What a `DEL` released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelResponse {
    /// The address released, or `None` if the attachment was unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<IpAddr>,
}

/// Verify a container's networking against the result of its `ADD`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The netconf `name`.
    pub network: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`.
    pub netns: PathBuf,
    /// The pod, when `CNI_ARGS` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The `prevResult`: what the whole chain reported after `ADD`.
    pub expected: NetworkResult,
}

/// The outcome of a `CHECK`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// Each difference between the expected and the actual networking, as a
    /// sentence naming the object (e.g. `route default via 169.254.1.1 is
    /// missing in the pod`). Empty when everything matches.
    #[serde(default)]
    pub differences: Vec<String>,
}

/// An attachment the runtime still uses (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    /// The container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name inside the container.
    pub ifname: String,
}

/// Release every resource of `network` not held by a valid attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    /// The netconf `name`.
    pub network: String,
    /// The attachments to keep.
    pub valid_attachments: Vec<Attachment>,
}

/// What a `GC` released.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcResponse {
    /// The attachments whose resources were released.
    #[serde(default)]
    pub released: Vec<Attachment>,
}

/// Whether the agent can serve `ADD` now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// `true` when an `ADD` would be served.
    pub ready: bool,
    /// Why the agent is not ready (shown to the operator by `STATUS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the operator should know although ADDs are served, e.g. a
    /// policy file the agent refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_request_wire_format() {
        let req = AddRequest {
            network: "weft".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/p".into(),
            cni_version: CniVersion::V1_0_0,
            pod: PodRef {
                namespace: "default".into(),
                name: "web".into(),
                uid: None,
                infra_container_id: Some("c1".into()),
            },
            mtu: None,
        };
        let value = serde_json::to_value(&req).unwrap();
        assert_eq!(
            value,
            json!({
                "network": "weft", "container_id": "c1", "ifname": "eth0",
                "netns": "/var/run/netns/p", "cni_version": "1.0.0",
                "pod": {"namespace": "default", "name": "web", "infra_container_id": "c1"}
            })
        );
        assert_eq!(serde_json::from_value::<AddRequest>(value).unwrap(), req);
    }

    #[test]
    fn gc_attachments_use_the_spec_key() {
        let req = GcRequest {
            network: "weft".into(),
            valid_attachments: vec![Attachment {
                container_id: "c".into(),
                ifname: "eth0".into(),
            }],
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"network": "weft", "valid_attachments": [{"containerID": "c", "ifname": "eth0"}]})
        );
    }

    #[test]
    fn responses_tolerate_omitted_defaults() {
        assert_eq!(
            serde_json::from_str::<DelResponse>("{}").unwrap(),
            DelResponse::default()
        );
        assert_eq!(
            serde_json::from_str::<CheckResponse>("{}").unwrap(),
            CheckResponse::default()
        );
        assert_eq!(
            serde_json::from_str::<GcResponse>("{}").unwrap(),
            GcResponse::default()
        );
        let s: StatusResponse =
            serde_json::from_str(r#"{"ready":false,"reason":"no ENI"}"#).unwrap();
        assert_eq!(s.reason.as_deref(), Some("no ENI"));
        assert!(serde_json::from_str::<CniVersion>("\"0.2.0\"").is_err());
    }
}
