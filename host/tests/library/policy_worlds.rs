//! Each pool-sizing world gets what its contract promises: components of
//! `pool-sizing-timed` (the SDK's) the history with each minute's median
//! ADD age, and those built before it (`pool-sizing-history`) still load
//! and get the history without it.

use crate::support::policy as common;

use common::*;
use weft_host::policy::{CompiledPolicy, Decision};
use weft_policy_sdk::pool::{self, Minute};
use weft_test_artifacts::{CHAOS_HISTORY_WORLD, CHAOS_POOL};

/// The fixture's pool state with three minutes of history: a burst of 7
/// whose median ADD came 85 s ago, and 2 ADDs in the last minute.
fn state_with_history() -> pool::PoolState {
    let mut state = pool_state();
    state.activity.adds_last_minute = 2;
    state.activity.history = vec![
        Minute {
            adds: 2,
            removes: 1,
            median_add_age: Some(31),
        },
        Minute {
            adds: 7,
            removes: 0,
            median_add_age: Some(85),
        },
        Minute::default(),
    ];
    state
}

#[test]
fn an_sdk_policy_sees_when_each_minutes_adds_came() {
    let module = load(&engine(), CHAOS_POOL, &chaos("echo-history")).expect("loads");
    assert_eq!(module.report().world, "pool-sizing-timed");
    let (decision, _) = module.size_pool(&state_with_history()).expect("decides");
    let seen: Vec<Minute> = serde_json::from_str(&decision.reason).expect("the history as JSON");
    assert_eq!(seen, state_with_history().activity.history);
}

#[test]
fn a_component_of_the_history_world_still_runs_without_the_timing() {
    let compiled =
        CompiledPolicy::from_file(&engine(), CHAOS_HISTORY_WORLD.as_ref(), "old", None, None)
            .expect("a pool-sizing-history component loads");
    assert_eq!(compiled.report().decision, Decision::PoolSizing);
    assert_eq!(compiled.report().world, "pool-sizing-history");
    let module = load(&engine(), CHAOS_HISTORY_WORLD, "{}").expect("configures");
    let (decision, _) = module.size_pool(&state_with_history()).expect("decides");
    assert_eq!(
        decision.reason,
        "history: 3 minutes, 9 ADDs, 2 in the last minute"
    );
}
