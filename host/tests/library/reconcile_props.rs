//! Property test: random sequences of ADD, DEL, reconcile rounds and agent
//! restarts on `SimCloud` keep the pool invariants (see
//! `check_invariants`): no address assigned twice, no assigned address
//! given back to EC2, every address EC2 reports held by the pool, never
//! more addresses than max pods, no leaked ENI; and a restart keeps every
//! answered assignment. Runs with and without a (1 s) cooldown, so that
//! scale-down meets cooling addresses.

use crate::support::reconcile as common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use weft_host::ipam::AssignmentKey;
use weft_host::reconcile::{BlockedKind, Pool, PoolConfig, PoolError};

/// t3.medium: 3 ENIs x 5 slots, max pods 17.
const MAX_PODS: usize = 17;

#[derive(Debug, Clone)]
enum Op {
    Assign(u32),
    Release(u32),
    Reconcile,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..20u32).prop_map(Op::Assign),
        3 => (0..20u32).prop_map(Op::Release),
        2 => Just(Op::Reconcile),
        1 => Just(Op::Restart),
    ]
}

const SETTINGS: [&str; 3] = [
    "{}",
    r#"{"warm-ip-target": 2, "min-eni-age-seconds": 0}"#,
    r#"{"warm-ip-target": 1, "minimum-ip-target": 4, "min-eni-age-seconds": 0}"#,
];

fn held_by(pool: &Pool) -> BTreeMap<AssignmentKey, Ipv4Addr> {
    pool.assignments()
        .into_iter()
        .map(|a| (a.key, a.ip))
        .collect()
}

async fn case(seed: u64, settings: &str, cooldown_seconds: u64, ops: Vec<Op>) {
    let sim = sim("t3.medium", seed);
    let (_tmp, dir) = state_dir();
    let group = default_group(&sim);
    let config = PoolConfig {
        add_wait_ms: 300,
        cooldown_seconds,
        ..config()
    };
    let launch = || async {
        let cloud: Arc<TestCloud> = Arc::new(TestCloud::new(sim.clone()));
        start(cloud, &dir, settings, config.clone(), Default::default()).await
    };
    let mut pool = launch().await;
    let mut held: BTreeMap<AssignmentKey, Ipv4Addr> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Assign(n) => match pool.assign(key(n), &group, pod(n)).await {
                Ok(placed) => {
                    if let Some(ip) = held.get(&key(n)) {
                        assert_eq!(*ip, placed.ip, "a repeated ADD gets the same address");
                    }
                    held.insert(key(n), placed.ip);
                }
                Err(e) => {
                    assert!(!held.contains_key(&key(n)), "a repeated ADD failed: {e}");
                    let PoolError::TryAgain { reason, .. } = &e else {
                        panic!("{e}");
                    };
                    assert_ne!(reason.kind, BlockedKind::PolicyRefused, "{e}");
                }
            },
            Op::Release(n) => {
                let released = pool.release(&key(n)).expect("release");
                assert_eq!(released.map(|a| a.ip), held.remove(&key(n)));
            }
            Op::Reconcile => {
                pool.reconcile().await.expect("round");
            }
            Op::Restart => {
                // As a crash would: a round in flight is abandoned.
                pool.abort().await;
                drop(pool);
                pool = launch().await;
                assert_eq!(held_by(&pool), held, "a restart keeps every assignment");
            }
        }
        assert_eq!(held_by(&pool), held);
        check_invariants(&pool, &sim, MAX_PODS).await;
    }
    pool.reconcile().await.expect("round");
    check_invariants(&pool, &sim, MAX_PODS).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_adds_dels_rounds_and_restarts_keep_the_invariants(
        seed in 0..1_000u64,
        settings in 0..SETTINGS.len(),
        cooldown_seconds in 0..2u64,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(case(seed, SETTINGS[settings], cooldown_seconds, ops));
    }
}
