//! Glue of the `subnet-selection-node` world: WIT <-> SDK conversions and
//! the decision.

use super::bindings::weft::policy::kubernetes as wit_kubernetes;
use super::bindings::weft::policy::subnet as wit;
use super::{Slot, tags, with_policy};
use crate::SubnetSelection;
use crate::subnet;

impl From<wit::Purpose> for subnet::Purpose {
    fn from(p: wit::Purpose) -> Self {
        match p {
            wit::Purpose::PodAddresses => subnet::Purpose::PodAddresses,
        }
    }
}

impl From<wit::EniRequest> for subnet::EniRequest {
    fn from(r: wit::EniRequest) -> Self {
        subnet::EniRequest {
            security_groups: r.security_groups,
            purpose: r.purpose.into(),
            ips: r.ips,
            prefixes: r.prefixes,
            availability_zone: r.availability_zone,
            node_subnet_id: r.node_subnet_id,
            node: Default::default(),
        }
    }
}

impl From<wit_kubernetes::Node> for subnet::Node {
    fn from(n: wit_kubernetes::Node) -> Self {
        subnet::Node {
            name: n.name,
            labels: tags::convert(n.labels),
            annotations: tags::convert(n.annotations),
        }
    }
}

impl From<wit::Candidate> for subnet::Candidate {
    fn from(c: wit::Candidate) -> Self {
        subnet::Candidate {
            id: c.id,
            availability_zone: c.availability_zone,
            cidr: c.cidr,
            free_ips: c.free_ips,
            tags: tags::convert(c.tags),
        }
    }
}

impl From<subnet::Choice> for wit::Choice {
    fn from(c: subnet::Choice) -> Self {
        match c {
            subnet::Choice::UseSubnet(id) => wit::Choice::UseSubnet(id),
            subnet::Choice::Refuse(reason) => wit::Choice::Refuse(reason),
        }
    }
}

/// `select-subnet-for-node`: converts the inputs (the node into
/// `EniRequest.node`), asks the configured policy, converts the choice back.
/// Unconfigured, it refuses.
pub fn select_subnet<S: SubnetSelection + 'static>(
    slot: &'static Slot<S>,
    request: wit::EniRequest,
    node: wit_kubernetes::Node,
    candidates: Vec<wit::Candidate>,
) -> wit::Choice {
    let request = subnet::EniRequest {
        node: node.into(),
        ..subnet::EniRequest::from(request)
    };
    let candidates: Vec<subnet::Candidate> = candidates.into_iter().map(Into::into).collect();
    with_policy(
        slot,
        |message| subnet::Choice::Refuse(message.to_owned()),
        |policy| policy.select_subnet(&request, &candidates),
    )
    .into()
}
