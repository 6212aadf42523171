//! Glue of the `security-groups` world: WIT -> SDK conversions and the decision.

use super::bindings::weft::policy::security as wit;
use super::{Slot, tags, with_policy};
use crate::SecurityGroups;
use crate::security;

impl From<wit::Pod> for security::Pod {
    fn from(p: wit::Pod) -> Self {
        security::Pod {
            namespace: p.namespace,
            name: p.name,
            uid: p.uid,
            labels: tags::convert(p.labels),
            annotations: tags::convert(p.annotations),
            service_account: p.service_account,
        }
    }
}

impl From<wit::Request> for security::Request {
    fn from(r: wit::Request) -> Self {
        security::Request {
            pod: r.pod.into(),
            node_security_groups: r.node_security_groups,
        }
    }
}

/// `select-security-groups`: converts the request and asks the configured
/// policy. Unconfigured, it fails (the host then applies its failure mode).
pub fn select_security_groups<G: SecurityGroups + 'static>(
    slot: &'static Slot<G>,
    request: wit::Request,
) -> Result<Vec<String>, String> {
    let request = security::Request::from(request);
    with_policy(
        slot,
        |message| Err(message.to_owned()),
        |policy| policy.select_security_groups(&request),
    )
}
