//! What the policies see of a pod and of the node, taken from the API
//! objects (pure conversions).

use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::BTreeMap;
use weft_policy_sdk::{Tag, subnet};

/// A pod's metadata as the security-groups policy sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodMetadata {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`, sorted by key.
    pub labels: Vec<Tag>,
    /// `metadata.annotations`, sorted by key.
    pub annotations: Vec<Tag>,
    /// `spec.serviceAccountName` (`default` when unset, as Kubernetes).
    pub service_account: String,
}

fn tags(map: Option<&BTreeMap<String, String>>) -> Vec<Tag> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| Tag::new(k, v))
        .collect()
}

impl PodMetadata {
    /// The metadata of `pod`.
    pub(crate) fn of(pod: &Pod) -> PodMetadata {
        PodMetadata {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: tags(pod.metadata.labels.as_ref()),
            annotations: tags(pod.metadata.annotations.as_ref()),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
        }
    }
}

/// The node as the subnet-selection policy sees it (its zone is in the ENI
/// request already, from EC2): name, labels and annotations sorted by key.
pub(super) fn node_metadata(node: &Node) -> subnet::Node {
    subnet::Node {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: tags(node.metadata.labels.as_ref()),
        annotations: tags(node.metadata.annotations.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn pod_metadata_defaults_the_service_account_and_sorts_labels() {
        let pod = Pod {
            metadata: ObjectMeta {
                uid: Some("u1".into()),
                labels: Some([("b".into(), "2".into()), ("a".into(), "1".into())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let meta = PodMetadata::of(&pod);
        assert_eq!(meta.labels, [Tag::new("a", "1"), Tag::new("b", "2")]);
        assert_eq!(meta.service_account, "default");
        assert_eq!(meta.uid, "u1");
    }

    #[test]
    fn node_metadata_keeps_name_and_labels() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some([("k8s.amazonaws.com/eniConfig".into(), "pods-a".into())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let meta = node_metadata(&node);
        assert_eq!(meta.name, "n1");
        assert_eq!(
            meta.labels,
            [Tag::new("k8s.amazonaws.com/eniConfig", "pods-a")]
        );
    }
}
