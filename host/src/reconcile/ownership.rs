//! Which of the node's ENIs Weft manages. Pure.
//!
//! Weft assigns from, releases and detaches only the ENIs it created for
//! this node (its instance tag) and the primary ENI; everything else
//! attached to the instance belongs to someone else and is only reported:
//! interfaces of other network cards, EFA and trunk interfaces, interfaces
//! without private IPv4, and interfaces tagged `no_manage`, the tag the
//! Amazon VPC CNI also honours.

use crate::cloud::{self, InterfaceType, NodeIdentity, TAG_INSTANCE_ID};
use serde::Serialize;

/// The tag that keeps any CNI away from an ENI (value `true`).
pub const TAG_NO_MANAGE: &str = "node.k8s.amazonaws.com/no_manage";

/// An ENI attached to the node that Weft leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UnmanagedEni {
    /// ENI id.
    pub id: String,
    /// Network card of its attachment.
    pub network_card: u32,
    /// Device index on that card.
    pub device_index: Option<u32>,
    /// Why Weft does not manage it.
    pub reason: String,
}

/// Why Weft must not manage `eni`, or `None` when it may.
fn reason(eni: &cloud::Eni, node: &NodeIdentity) -> Option<String> {
    let card = eni.network_card().unwrap_or(0);
    if card != 0 {
        return Some(format!(
            "attached to network card {card}; Weft uses the default card 0 only"
        ));
    }
    match &eni.interface_type {
        InterfaceType::Interface => {}
        InterfaceType::Efa | InterfaceType::EfaOnly => {
            return Some("an Elastic Fabric Adapter, reserved for its HPC workload".into());
        }
        InterfaceType::Trunk => {
            return Some("a trunk interface (security groups for pods)".into());
        }
        InterfaceType::Other(kind) => return Some(format!("an interface of type {kind}")),
    }
    if eni.tags.get(TAG_NO_MANAGE).map(String::as_str) == Some("true") {
        return Some(format!("tagged {TAG_NO_MANAGE}=true"));
    }
    if !eni.has_ipv4() {
        return Some("it has no private IPv4 address".into());
    }
    if eni.id == node.primary_eni_id {
        return None;
    }
    match eni.tags.get(TAG_INSTANCE_ID) {
        Some(instance) if *instance == node.instance_id => None,
        Some(instance) => Some(format!("created by Weft for instance {instance}")),
        None => Some(format!(
            "not created by Weft (no {TAG_INSTANCE_ID} tag naming this instance)"
        )),
    }
}

/// Splits the node's ENIs into those Weft manages and the others.
pub(super) fn classify(
    enis: Vec<cloud::Eni>,
    node: &NodeIdentity,
) -> (Vec<cloud::Eni>, Vec<UnmanagedEni>) {
    let mut managed = Vec::with_capacity(enis.len());
    let mut unmanaged = Vec::new();
    for eni in enis {
        match reason(&eni, node) {
            None => managed.push(eni),
            Some(reason) => unmanaged.push(UnmanagedEni {
                id: eni.id.clone(),
                network_card: eni.network_card().unwrap_or(0),
                device_index: eni.device_index(),
                reason,
            }),
        }
    }
    (managed, unmanaged)
}

/// How many unmanaged ENIs take device slots of the default card.
pub(super) fn on_default_card(unmanaged: &[UnmanagedEni]) -> u32 {
    u32::try_from(unmanaged.iter().filter(|u| u.network_card == 0).count()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Attachment, EniStatus, MacAddr};
    use std::net::Ipv4Addr;

    fn node() -> NodeIdentity {
        NodeIdentity {
            instance_id: "i-1".into(),
            instance_type: "p4d.24xlarge".into(),
            availability_zone: "us-east-1a".into(),
            vpc_id: "vpc-1".into(),
            primary_eni_id: "eni-primary".into(),
            subnet_id: "subnet-1".into(),
            security_groups: vec!["sg-1".into()],
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
        }
    }

    fn eni(id: &str, card: u32, index: u32, tags: &[(&str, &str)]) -> cloud::Eni {
        cloud::Eni {
            id: id.into(),
            subnet_id: "subnet-1".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            primary_ip: Ipv4Addr::new(10, 0, 0, 9),
            secondary_ips: vec![],
            prefixes: vec![],
            security_groups: vec!["sg-1".into()],
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            description: String::new(),
            status: EniStatus::InUse,
            attachment: Some(Attachment {
                id: format!("attach-{id}"),
                instance_id: "i-1".into(),
                device_index: index,
                network_card_index: card,
                delete_on_termination: true,
            }),
            interface_type: InterfaceType::Interface,
        }
    }

    #[test]
    fn only_weft_enis_of_this_node_and_the_primary_are_managed() {
        let ours = [(TAG_INSTANCE_ID, "i-1")];
        let mut efa = eni("eni-efa", 0, 2, &ours);
        efa.interface_type = InterfaceType::Efa;
        let mut trunk = eni("eni-trunk", 0, 3, &ours);
        trunk.interface_type = InterfaceType::Trunk;
        let mut v6 = eni("eni-v6", 0, 4, &ours);
        v6.primary_ip = Ipv4Addr::UNSPECIFIED;
        let all = vec![
            eni("eni-primary", 0, 0, &[]),
            eni("eni-weft", 0, 1, &ours),
            efa,
            trunk,
            v6,
            // Device index 0 of another card is not the primary ENI.
            eni("eni-card1", 1, 0, &ours),
            eni(
                "eni-nomanage",
                0,
                5,
                &[(TAG_INSTANCE_ID, "i-1"), (TAG_NO_MANAGE, "true")],
            ),
            eni("eni-other-node", 0, 6, &[(TAG_INSTANCE_ID, "i-2")]),
            eni("eni-foreign", 0, 7, &[]),
        ];
        let (managed, unmanaged) = classify(all, &node());
        let ids: Vec<&str> = managed.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["eni-primary", "eni-weft"]);
        let why = |id: &str| {
            unmanaged
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.reason.clone())
                .unwrap_or_default()
        };
        assert!(why("eni-efa").contains("Elastic Fabric Adapter"));
        assert!(why("eni-trunk").contains("trunk"));
        assert!(why("eni-v6").contains("no private IPv4"));
        assert!(why("eni-card1").contains("network card 1"));
        assert!(why("eni-nomanage").contains("no_manage"));
        assert!(why("eni-other-node").contains("i-2"));
        assert!(why("eni-foreign").contains("not created by Weft"));
        assert_eq!(on_default_card(&unmanaged), 6);
    }
}
