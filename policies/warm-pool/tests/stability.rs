//! Scale-up and scale-down never fight: whatever the state and settings, a
//! decision applied (as the host would) and asked again is a no-op.

use proptest::prelude::*;
use warm_pool::{Settings, WarmPool};
use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{Activity, Eni, InstanceLimits, PoolDecision, PoolState};
use weft_policy_sdk::testing::apply_pool_decision;

/// One ENI of a generated state, consistent with `slots` slots per ENI.
fn eni(index: u32, slots: u32, prefix: bool) -> impl Strategy<Value = Eni> {
    (0..=slots, 0..=100u32, 0..=100u32, 0..=600u64).prop_map(
        move |(units, assigned_pct, cooling_pct, age_seconds)| {
            let (ips, prefixes) = if prefix { (0, units) } else { (units, 0) };
            let addresses = ips + 16 * prefixes;
            let assigned = addresses * assigned_pct / 100;
            let cooling = (addresses - assigned) * cooling_pct / 200;
            Eni {
                id: format!("eni-{index:017x}"),
                device_index: index,
                subnet_id: "subnet-0a1b2c3d".into(),
                ips,
                prefixes,
                assigned,
                cooling,
                age_seconds,
            }
        },
    )
}

fn limits() -> impl Strategy<Value = InstanceLimits> {
    (1..=8u32, 2..=16u32, any::<bool>(), 1..=300u32).prop_map(
        |(max_enis, ipv4_per_eni, prefix_delegation, max_pods)| InstanceLimits {
            max_enis,
            ipv4_per_eni,
            prefix_delegation,
            max_pods,
        },
    )
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        0..=3u32,
        prop::option::of(0..=40u32),
        prop::option::of(0..=60u32),
        prop::option::of(1..=3u32),
        any::<bool>(),
        prop::sample::select(vec![0u64, 60, 300]),
    )
        .prop_map(
            |(warm_eni, warm_ip, minimum_ip, warm_prefix, prefix, min_age)| Settings {
                warm_eni_target: warm_eni,
                warm_ip_target: warm_ip,
                minimum_ip_target: minimum_ip,
                warm_prefix_target: warm_prefix,
                prefix_delegation: prefix,
                min_eni_age_seconds: min_age,
            },
        )
}

fn state() -> impl Strategy<Value = (PoolState, Settings)> {
    (limits(), settings(), any::<bool>()).prop_flat_map(|(limits, settings, default_group)| {
        let slots = limits.ipv4_per_eni - 1;
        let prefix = settings.prefix_delegation && limits.prefix_delegation;
        let count = if default_group {
            1..=limits.max_enis as usize
        } else {
            0..=(limits.max_enis - 1) as usize
        };
        let first = u32::from(!default_group);
        let enis = count.prop_flat_map(move |n| {
            (0..n as u32)
                .map(|i| eni(first + i, slots, prefix))
                .collect::<Vec<_>>()
        });
        (enis, 0..=5u32, 0..=40u32).prop_map(move |(enis, pending_adds, others)| {
            let held: u32 = enis.iter().map(Eni::addresses).sum();
            let assigned: u32 = enis.iter().map(|e| e.assigned).sum();
            let node_enis = enis.len() as u32 + first;
            let state = PoolState {
                group: vec!["sg-0123456789abcdef0".into()],
                default_group,
                enis,
                node_enis,
                node_addresses: held + others,
                node_assigned: assigned,
                limits: limits.clone(),
                pending_adds,
                activity: Activity::default(),
            };
            (state, settings.clone())
        })
    })
}

/// The decision stays within the instance's limits.
fn check_limits(state: &PoolState, next: &PoolState, decision: &PoolDecision) {
    let slots = state.limits.ipv4_per_eni - 1;
    for eni in &next.enis {
        let before = state.enis.iter().find(|e| e.id == eni.id);
        let held_before = before.map_or(0, |e| e.ips + e.prefixes);
        assert!(
            eni.ips + eni.prefixes <= slots.max(held_before),
            "ENI over its slots: {eni:?}"
        );
    }
    if !decision.create.is_empty() {
        assert!(next.node_enis <= state.limits.max_enis, "too many ENIs");
    }
    assert!(
        !decision.release.iter().any(|id| state
            .enis
            .iter()
            .any(|e| &e.id == id && e.device_index == 0)),
        "released the primary ENI"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn applied_decision_is_stable((state, settings) in state()) {
        prop_assume!(settings.validate().is_ok());
        let policy = WarmPool::new(settings).unwrap();
        let first = policy.size_pool(&state);
        let next = apply_pool_decision(&state, &first);
        check_limits(&state, &next, &first);
        let second = policy.size_pool(&next);
        prop_assert!(
            second.is_noop(),
            "first: {first:?}\nthen: {second:?}\nstate: {state:?}\nnext: {next:?}"
        );
    }
}

fn any_eni() -> impl Strategy<Value = Eni> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(device_index, ips, prefixes, assigned, cooling, age_seconds)| Eni {
                id: format!("eni-{device_index:x}"),
                device_index,
                subnet_id: "subnet-0a1b2c3d".into(),
                ips,
                prefixes,
                assigned,
                cooling,
                age_seconds,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Inconsistent or absurd input (counts near `u32::MAX`, more assigned
    /// than held) never panics and never asks beyond the slots of an ENI.
    #[test]
    fn arbitrary_input_never_panics(
        enis in prop::collection::vec(any_eni(), 0..6),
        counts in any::<(u32, u32, u32, u32)>(),
        limits in any::<(u32, u32, bool, u32)>(),
        targets in any::<(u32, Option<u32>, Option<u32>, Option<u32>, bool)>(),
    ) {
        let (node_enis, node_addresses, node_assigned, pending_adds) = counts;
        let (max_enis, ipv4_per_eni, prefix_delegation, max_pods) = limits;
        let (warm_eni, warm_ip, minimum_ip, warm_prefix, prefix) = targets;
        let state = PoolState {
            group: vec![],
            default_group: true,
            enis,
            node_enis,
            node_addresses,
            node_assigned,
            limits: InstanceLimits { max_enis, ipv4_per_eni, prefix_delegation, max_pods },
            pending_adds,
            activity: Activity::default(),
        };
        let settings = Settings {
            warm_eni_target: warm_eni,
            warm_ip_target: warm_ip,
            minimum_ip_target: minimum_ip,
            warm_prefix_target: warm_prefix,
            prefix_delegation: prefix,
            min_eni_age_seconds: 60,
        };
        if let Ok(policy) = WarmPool::new(settings) {
            let decision = policy.size_pool(&state);
            let slots = ipv4_per_eni.saturating_sub(1);
            for new in &decision.create {
                prop_assert!(new.ips.saturating_add(new.prefixes) <= slots);
            }
        }
    }
}
