//! A decision is not undone by the next: whatever the state, history and
//! settings, a decision applied (as the host would) and asked again right
//! after does not give back what it asked for, nor ask for what it gave
//! back. Each reversal would be two EC2 calls for nothing.

use predictive_pool::{Settings, decide};
use proptest::prelude::*;
use weft_policy_sdk::pool::{Activity, Eni, InstanceLimits, Minute, PoolDecision, PoolState};
use weft_policy_sdk::testing::{apply_pool_decision, eni};

fn limits() -> impl Strategy<Value = InstanceLimits> {
    (1..=8u32, 3..=50u32, any::<bool>(), 4..=250u32).prop_map(
        |(max_enis, ipv4_per_eni, prefix_delegation, max_pods)| InstanceLimits {
            max_enis,
            ipv4_per_eni,
            prefix_delegation,
            max_pods,
        },
    )
}

/// One secondary-IP ENI with `slots` slots.
fn any_eni(index: u32, slots: u32) -> impl Strategy<Value = Eni> {
    (0..=slots, 0..=100u32, 0..=100u32, 0..=7200u64).prop_map(
        move |(ips, assigned_pct, cooling_pct, age_seconds)| {
            let assigned = ips * assigned_pct / 100;
            let cooling = (ips - assigned) * cooling_pct / 100;
            eni(index, ips, assigned, cooling, age_seconds)
        },
    )
}

fn minute() -> impl Strategy<Value = Minute> {
    (0..=40u32, 0..=40u32, prop::option::of(0..=59u32)).prop_map(|(adds, removes, within)| Minute {
        adds,
        removes,
        median_add_age: within.filter(|_| adds > 0),
    })
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        0..=8u32,
        prop::option::of(0..=60u32),
        1..=10u32,
        0..=120u32,
        prop::sample::select(vec![0u64, 60, 1800]),
        0..=2u32,
    )
        .prop_map(
            |(min_warm, start_warm, burst_adds, lead_seconds, hold_seconds, spare_enis)| Settings {
                min_warm,
                start_warm,
                burst_adds,
                lead_seconds,
                hold_seconds,
                spare_enis,
            },
        )
}

fn state() -> impl Strategy<Value = PoolState> {
    limits().prop_flat_map(|limits| {
        let slots = limits.ipv4_per_eni - 1;
        let enis = (1..=limits.max_enis as usize)
            .prop_flat_map(move |n| (0..n as u32).map(|i| any_eni(i, slots)).collect::<Vec<_>>());
        (
            enis,
            prop::collection::vec(minute(), 0..=60),
            0..=10u32,
            prop::option::of(0..=7200u64),
            any::<bool>(),
        )
            .prop_map(move |(enis, history, pending_adds, since, shared)| {
                // Minute k's median ADD came within its window.
                let history: Vec<Minute> = (0u32..)
                    .zip(history)
                    .map(|(k, m)| Minute {
                        median_add_age: m.median_add_age.map(|s| 60 * k + s),
                        ..m
                    })
                    .collect();
                // As the host sees it: the last ADD is the youngest in the
                // history, if any; the history starts with the first event.
                let since = match history.iter().position(|m| m.adds > 0) {
                    Some(k) => Some(u64::from(
                        history[k].median_add_age.unwrap_or(60 * k as u32),
                    )),
                    None if history.is_empty() => None,
                    None => since.map(|s| s + 60 * history.len() as u64),
                };
                let held: u32 = enis.iter().map(|e| e.ips).sum();
                let assigned: u32 = enis.iter().map(|e| e.assigned).sum();
                PoolState {
                    group: vec!["sg-1".into()],
                    default_group: true,
                    node_enis: enis.len() as u32 + u32::from(shared),
                    node_addresses: held,
                    node_assigned: assigned,
                    enis,
                    limits: limits.clone(),
                    pending_adds,
                    activity: Activity {
                        adds_last_minute: history.first().map_or(0, |m| m.adds),
                        removes_last_minute: history.first().map_or(0, |m| m.removes),
                        seconds_since_last_add: since,
                        history,
                    },
                }
            })
    })
}

fn adds(d: &PoolDecision) -> bool {
    d.changes.iter().any(|c| c.add_ips > 0) || d.create.iter().any(|n| n.ips > 0)
}

fn gives_back(d: &PoolDecision) -> bool {
    d.changes.iter().any(|c| c.release_ips > 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn a_decision_is_not_undone_by_the_next(state in state(), s in settings()) {
        let first = decide(&s, &state);
        let next = apply_pool_decision(&state, &first);
        let second = decide(&s, &next);
        prop_assert!(
            !(adds(&first) && gives_back(&second) || gives_back(&first) && adds(&second)),
            "first: {first:?}\nthen: {second:?}\nstate: {state:?}\nnext: {next:?}"
        );
        // Within the instance: no ENI beyond its slots, no more addresses
        // than max-pods (unless already held), never the primary ENI.
        let slots = state.limits.ipv4_per_eni - 1;
        prop_assert!(next.enis.iter().all(|e| e.ips <= slots), "{next:?}");
        prop_assert!(
            next.node_addresses <= state.node_addresses.max(state.limits.max_pods),
            "{first:?}"
        );
        prop_assert!(!first.release.iter().any(|id| id == "eni-0"), "{first:?}");
    }
}
