//! Host bindings of the policy worlds of `wit/policy.wit`, and
//! conversions between the generated types and the SDK types
//! ([`weft_policy_sdk`]) the rest of the agent uses.
//!
//! The worlds share interfaces: each is generated once and reused by the
//! other worlds through `with`.

use weft_policy_sdk::{Tag, pool, security, subnet};

/// Bindings of the `pool-sizing` world (and of the shared `log` interface).
pub(crate) mod pool_sizing {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "pool-sizing",
    });
}

/// Bindings of the `pool-sizing-history` world (and of `pool-history`).
pub(crate) mod pool_sizing_history {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "pool-sizing-history",
        with: {
            "weft:policy/log": crate::policy::bindings::pool_sizing::weft::policy::log,
            "weft:policy/pool": crate::policy::bindings::pool_sizing::weft::policy::pool,
        },
    });
}

/// Bindings of the `pool-sizing-timed` world (and of `pool-timing`).
pub(crate) mod pool_sizing_timed {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "pool-sizing-timed",
        with: {
            "weft:policy/log": crate::policy::bindings::pool_sizing::weft::policy::log,
            "weft:policy/pool": crate::policy::bindings::pool_sizing::weft::policy::pool,
        },
    });
}

/// Bindings of the `subnet-selection` world (and of the shared `types`).
pub(crate) mod subnet_selection {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "subnet-selection",
        with: {
            "weft:policy/log": crate::policy::bindings::pool_sizing::weft::policy::log,
        },
    });
}

/// Bindings of the `subnet-selection-node` world (and of `kubernetes`).
pub(crate) mod subnet_selection_node {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "subnet-selection-node",
        with: {
            "weft:policy/log": crate::policy::bindings::pool_sizing::weft::policy::log,
            "weft:policy/types": crate::policy::bindings::subnet_selection::weft::policy::types,
            "weft:policy/subnet": crate::policy::bindings::subnet_selection::weft::policy::subnet,
        },
    });
}

/// Bindings of the `security-groups` world.
pub(crate) mod security_groups {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "security-groups",
        with: {
            "weft:policy/log": crate::policy::bindings::pool_sizing::weft::policy::log,
            "weft:policy/types": crate::policy::bindings::subnet_selection::weft::policy::types,
        },
    });
}

pub(crate) use pool_sizing::weft::policy::log;
use pool_sizing::weft::policy::pool as wit_pool;
use pool_sizing_history::weft::policy::pool_history as wit_history;
use pool_sizing_timed::weft::policy::pool_timing as wit_timing;
use security_groups::weft::policy::security as wit_security;
use subnet_selection::weft::policy::subnet as wit_subnet;
use subnet_selection::weft::policy::types as wit_types;
use subnet_selection_node::weft::policy::kubernetes as wit_kubernetes;

fn tags(tags: &[Tag]) -> Vec<wit_types::Tag> {
    tags.iter()
        .map(|t| wit_types::Tag {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
}

/// SDK pool state → WIT pool state.
pub(crate) fn pool_state(s: &pool::PoolState) -> wit_pool::PoolState {
    wit_pool::PoolState {
        group: s.group.clone(),
        default_group: s.default_group,
        enis: s
            .enis
            .iter()
            .map(|e| wit_pool::Eni {
                id: e.id.clone(),
                device_index: e.device_index,
                subnet_id: e.subnet_id.clone(),
                ips: e.ips,
                prefixes: e.prefixes,
                assigned: e.assigned,
                cooling: e.cooling,
                age_seconds: e.age_seconds,
            })
            .collect(),
        node_enis: s.node_enis,
        node_addresses: s.node_addresses,
        node_assigned: s.node_assigned,
        limits: wit_pool::InstanceLimits {
            max_enis: s.limits.max_enis,
            ipv4_per_eni: s.limits.ipv4_per_eni,
            prefix_delegation: s.limits.prefix_delegation,
            max_pods: s.limits.max_pods,
        },
        pending_adds: s.pending_adds,
        activity: wit_pool::Activity {
            adds_last_minute: s.activity.adds_last_minute,
            removes_last_minute: s.activity.removes_last_minute,
            seconds_since_last_add: s.activity.seconds_since_last_add,
        },
    }
}

/// SDK churn history → WIT history (`pool-sizing-history`: untimed).
pub(crate) fn history(h: &[pool::Minute]) -> Vec<wit_history::Minute> {
    h.iter()
        .map(|m| wit_history::Minute {
            adds: m.adds,
            removes: m.removes,
        })
        .collect()
}

/// SDK churn history → WIT timed history (`pool-sizing-timed`).
pub(crate) fn timed_history(h: &[pool::Minute]) -> Vec<wit_timing::Minute> {
    h.iter()
        .map(|m| wit_timing::Minute {
            adds: m.adds,
            removes: m.removes,
            median_add_age: m.median_add_age,
        })
        .collect()
}

/// WIT pool decision → SDK pool decision.
pub(crate) fn pool_decision(d: wit_pool::PoolDecision) -> pool::PoolDecision {
    pool::PoolDecision {
        changes: d
            .changes
            .into_iter()
            .map(|c| pool::EniChange {
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
            .map(|n| pool::NewEni {
                ips: n.ips,
                prefixes: n.prefixes,
            })
            .collect(),
        release: d.release,
        reason: d.reason,
    }
}

/// SDK ENI request → WIT ENI request.
pub(crate) fn eni_request(r: &subnet::EniRequest) -> wit_subnet::EniRequest {
    wit_subnet::EniRequest {
        security_groups: r.security_groups.clone(),
        purpose: match r.purpose {
            subnet::Purpose::PodAddresses => wit_subnet::Purpose::PodAddresses,
        },
        ips: r.ips,
        prefixes: r.prefixes,
        availability_zone: r.availability_zone.clone(),
        node_subnet_id: r.node_subnet_id.clone(),
    }
}

/// SDK node metadata → WIT node.
pub(crate) fn node(n: &subnet::Node) -> wit_kubernetes::Node {
    wit_kubernetes::Node {
        name: n.name.clone(),
        labels: tags(&n.labels),
        annotations: tags(&n.annotations),
    }
}

/// SDK subnet candidates → WIT candidates.
pub(crate) fn candidates(c: &[subnet::Candidate]) -> Vec<wit_subnet::Candidate> {
    c.iter()
        .map(|c| wit_subnet::Candidate {
            id: c.id.clone(),
            availability_zone: c.availability_zone.clone(),
            cidr: c.cidr.clone(),
            free_ips: c.free_ips,
            tags: tags(&c.tags),
        })
        .collect()
}

/// WIT subnet choice → SDK choice.
pub(crate) fn choice(c: wit_subnet::Choice) -> subnet::Choice {
    match c {
        wit_subnet::Choice::UseSubnet(id) => subnet::Choice::UseSubnet(id),
        wit_subnet::Choice::Refuse(reason) => subnet::Choice::Refuse(reason),
    }
}

/// SDK security-group request → WIT request.
pub(crate) fn sg_request(r: &security::Request) -> wit_security::Request {
    wit_security::Request {
        pod: wit_security::Pod {
            namespace: r.pod.namespace.clone(),
            name: r.pod.name.clone(),
            uid: r.pod.uid.clone(),
            labels: tags(&r.pod.labels),
            annotations: tags(&r.pod.annotations),
            service_account: r.pod.service_account.clone(),
        },
        node_security_groups: r.node_security_groups.clone(),
    }
}
