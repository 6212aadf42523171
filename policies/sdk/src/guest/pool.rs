//! Glue of the `pool-sizing-timed` world: WIT <-> SDK conversions and the
//! decision.

use super::bindings::weft::policy::pool as wit;
use super::bindings::weft::policy::pool_timing as wit_timing;
use super::{Slot, with_policy};
use crate::PoolSizing;
use crate::pool;

impl From<wit::InstanceLimits> for pool::InstanceLimits {
    fn from(l: wit::InstanceLimits) -> Self {
        pool::InstanceLimits {
            max_enis: l.max_enis,
            ipv4_per_eni: l.ipv4_per_eni,
            prefix_delegation: l.prefix_delegation,
            max_pods: l.max_pods,
        }
    }
}

impl From<wit::Eni> for pool::Eni {
    fn from(e: wit::Eni) -> Self {
        pool::Eni {
            id: e.id,
            device_index: e.device_index,
            subnet_id: e.subnet_id,
            ips: e.ips,
            prefixes: e.prefixes,
            assigned: e.assigned,
            cooling: e.cooling,
            age_seconds: e.age_seconds,
        }
    }
}

impl From<wit::Activity> for pool::Activity {
    fn from(a: wit::Activity) -> Self {
        pool::Activity {
            adds_last_minute: a.adds_last_minute,
            removes_last_minute: a.removes_last_minute,
            seconds_since_last_add: a.seconds_since_last_add,
            history: Vec::new(),
        }
    }
}

impl From<wit::PoolState> for pool::PoolState {
    fn from(s: wit::PoolState) -> Self {
        pool::PoolState {
            group: s.group,
            default_group: s.default_group,
            enis: s.enis.into_iter().map(pool::Eni::from).collect(),
            node_enis: s.node_enis,
            node_addresses: s.node_addresses,
            node_assigned: s.node_assigned,
            limits: s.limits.into(),
            pending_adds: s.pending_adds,
            activity: s.activity.into(),
        }
    }
}

impl From<pool::PoolDecision> for wit::PoolDecision {
    fn from(d: pool::PoolDecision) -> Self {
        wit::PoolDecision {
            changes: d
                .changes
                .into_iter()
                .map(|c| wit::EniChange {
                    eni_id: c.eni_id,
                    add_ips: c.add_ips,
                    add_prefixes: c.add_prefixes,
                    release_ips: c.release_ips,
                    release_prefixes: c.release_prefixes,
                })
                .collect(),
            create: d
                .create
                .into_iter()
                .map(|n| wit::NewEni {
                    ips: n.ips,
                    prefixes: n.prefixes,
                })
                .collect(),
            release: d.release,
            reason: d.reason,
        }
    }
}

impl From<wit_timing::Minute> for pool::Minute {
    fn from(m: wit_timing::Minute) -> Self {
        pool::Minute {
            adds: m.adds,
            removes: m.removes,
            median_add_age: m.median_add_age,
        }
    }
}

/// `size-pool-timed`: converts the state (the history into
/// `activity.history`), asks the configured policy, converts the decision
/// back. Unconfigured, it leaves the pool as it is.
pub fn size_pool<P: PoolSizing + 'static>(
    slot: &'static Slot<P>,
    state: wit::PoolState,
    history: Vec<wit_timing::Minute>,
) -> wit::PoolDecision {
    let mut state = pool::PoolState::from(state);
    state.activity.history = history.into_iter().map(pool::Minute::from).collect();
    with_policy(
        slot,
        |message| pool::PoolDecision {
            reason: message.to_owned(),
            ..Default::default()
        },
        |policy| policy.size_pool(&state),
    )
    .into()
}
