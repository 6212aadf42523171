//! A serialisable view of the pool, for introspection.

use super::error::Blocked;
use super::ownership::UnmanagedEni;
use super::shared::Inner;
use crate::ipam::{AddressState, Datastore, SgSet};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::{Instant, UNIX_EPOCH};

/// The pool at one moment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PoolSnapshot {
    /// The most addresses the node holds.
    pub max_pods: u32,
    /// The node's ENIs, by id.
    pub enis: Vec<EniView>,
    /// Pod assignments, by key.
    pub assignments: Vec<AssignmentView>,
    /// Every group the pool serves or was asked for.
    pub groups: Vec<GroupView>,
    /// ENIs attached to the node that Weft leaves alone, with the reason.
    pub unmanaged: Vec<UnmanagedEni>,
    /// Addresses EC2 took away while a pod held them: not handed out while
    /// the node still routes them.
    pub quarantined: Vec<Ipv4Addr>,
}

/// One ENI.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EniView {
    /// ENI id.
    pub id: String,
    pub device_index: u32,
    pub subnet_id: String,
    /// Whether it is the primary ENI.
    pub primary: bool,
    pub security_groups: SgSet,
    /// Its pod addresses.
    pub addresses: Vec<AddressView>,
}

/// One pod address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AddressView {
    /// The address.
    pub ip: Ipv4Addr,
    /// Its prefix, when it comes from one.
    pub prefix: Option<Ipv4Net>,
    /// `free`, `assigned`, `cooling` or `releasing`.
    pub state: &'static str,
}

/// One assignment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssignmentView {
    /// `network/container/ifname`.
    pub key: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// `namespace/name` of the pod.
    pub pod: String,
}

/// One security-group set.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GroupView {
    /// The set.
    pub security_groups: SgSet,
    /// Addresses a pod could get now.
    pub free: u32,
    /// ADDs waiting.
    pub pending_adds: u32,
    /// The reconciler's last round for the group, seconds since the epoch.
    pub last_round_at: Option<u64>,
    /// What the policy said in that round.
    pub last_summary: Option<String>,
    /// Why the group could not grow, if it could not.
    pub blocked: Option<Blocked>,
}

fn state_name(state: &AddressState) -> &'static str {
    match state {
        AddressState::Free => "free",
        AddressState::Assigned(_) => "assigned",
        AddressState::Cooling { .. } => "cooling",
        AddressState::Releasing => "releasing",
    }
}

fn addresses(store: &Datastore, eni: &crate::ipam::Eni, now: Instant) -> Vec<AddressView> {
    let prefixed = eni.prefixes.iter().flat_map(prefix_addresses);
    eni.ips
        .iter()
        .copied()
        .chain(prefixed)
        .filter_map(|ip| {
            store.address(ip, now).map(|info| AddressView {
                ip,
                prefix: info.prefix,
                state: state_name(&info.state),
            })
        })
        .collect()
}

/// Every address of a prefix, network and broadcast included (EC2 hands
/// all 16 of a delegated /28 to pods).
fn prefix_addresses(prefix: &Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(prefix.network())..=u32::from(prefix.broadcast())).map(Ipv4Addr::from)
}

impl PoolSnapshot {
    /// The view of `inner`.
    pub(crate) fn of(inner: &Inner, max_pods: u32, now: Instant) -> Self {
        let store = inner.store.datastore();
        let enis = store
            .enis()
            .iter()
            .map(|e| EniView {
                id: e.id.clone(),
                device_index: e.device_index,
                subnet_id: e.subnet_id.clone(),
                primary: e.primary,
                security_groups: e.security_groups.clone(),
                addresses: addresses(store, e, now),
            })
            .collect();
        let mut assignments: Vec<AssignmentView> = store
            .assignments()
            .map(|a| AssignmentView {
                key: a.key.to_string(),
                ip: a.ip,
                pod: a.pod.to_string(),
            })
            .collect();
        assignments.sort_by(|a, b| a.key.cmp(&b.key));
        let mut names: Vec<SgSet> = store.groups();
        names.extend(inner.pending.groups().cloned());
        names.extend(inner.outcomes.keys().cloned());
        names.sort();
        names.dedup();
        let groups = names
            .into_iter()
            .map(|group| {
                let outcome = inner.outcomes.get(&group);
                GroupView {
                    free: store.free_count(&group, now),
                    pending_adds: inner.pending.count(&group),
                    last_round_at: outcome.map(|o| {
                        o.at.duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_secs()
                    }),
                    last_summary: outcome.map(|o| o.summary.clone()),
                    blocked: outcome.and_then(|o| o.blocked.clone()),
                    security_groups: group,
                }
            })
            .collect();
        PoolSnapshot {
            max_pods,
            enis,
            assignments,
            groups,
            unmanaged: inner.unmanaged.clone(),
            quarantined: store.quarantined(),
        }
    }

    /// Every address of every ENI, with its state.
    pub fn addresses(&self) -> impl Iterator<Item = &AddressView> {
        self.enis.iter().flat_map(|e| e.addresses.iter())
    }
}
