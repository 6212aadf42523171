//! Crash tests: the agent "dies" at every changing EC2 call of a scale-up /
//! scale-down scenario (before the call is sent, after EC2 carried it out
//! but before the answer arrived, and for creates between create and
//! attach); a new pool started from the same state directory and cloud
//! must keep every answered assignment, leak no ENI, hold every address EC2
//! reports, and finish the scenario.

use crate::support::reconcile as common;

use common::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use weft_host::cloud::{Cloud, TAG_CREATED_AT};
use weft_host::ipam::{AssignmentKey, SgSet};
use weft_host::reconcile::{Pool, TAG_OPERATION};
use weft_host::state::StateDir;

const SETTINGS: &str = r#"{"warm-ip-target": 2, "min-eni-age-seconds": 0}"#;
const SEED: u64 = 21;

#[derive(Debug, Clone, Copy)]
enum Step {
    Assign(u32),
    Release(u32),
    Reconcile,
}

/// Twelve pods (a second ENI is needed), then all gone (it is released).
fn script() -> Vec<Step> {
    let mut steps: Vec<Step> = (0..12).map(Step::Assign).collect();
    steps.push(Step::Reconcile);
    steps.extend((0..12).map(Step::Release));
    steps.extend([Step::Reconcile; 3]);
    steps
}

/// Runs steps from `from` until the crash strikes; returns the index of
/// the step the crash interrupted (or the length when it never struck).
async fn run(
    pool: &Pool,
    cloud: &TestCloud,
    group: &SgSet,
    steps: &[Step],
    from: usize,
    held: &mut BTreeMap<AssignmentKey, Ipv4Addr>,
) -> usize {
    for (i, step) in steps.iter().enumerate().skip(from) {
        match *step {
            Step::Assign(n) => match cloud.until_crash(pool.assign(key(n), group, pod(n))).await {
                None => return i,
                Some(Ok(placed)) => {
                    held.insert(key(n), placed.ip);
                }
                Some(Err(e)) => assert!(e.is_try_again(), "{e}"),
            },
            Step::Release(n) => {
                pool.release(&key(n)).expect("release");
                held.remove(&key(n));
            }
            Step::Reconcile => {
                if cloud.until_crash(pool.reconcile()).await.is_none() {
                    return i;
                }
            }
        }
    }
    steps.len()
}

fn held_by(pool: &Pool) -> BTreeMap<AssignmentKey, Ipv4Addr> {
    pool.assignments()
        .into_iter()
        .map(|a| (a.key, a.ip))
        .collect()
}

fn journal_is_empty(dir: &Path) {
    let state = StateDir::open(dir).expect("state directory");
    let (_journal, pending) = state.open_journal().expect("journal");
    assert!(pending.is_empty(), "unfinished operations: {pending:?}");
}

/// The changing calls of the scenario without a crash.
async fn baseline() -> Vec<Call> {
    let sim = sim("m5.large", SEED);
    let cloud = Arc::new(TestCloud::new(sim.clone()));
    let (_tmp, dir) = state_dir();
    let pool = start(cloud.clone(), &dir, SETTINGS, config(), Default::default()).await;
    let mut held = BTreeMap::new();
    let group = default_group(&sim);
    run(&pool, &cloud, &group, &script(), 0, &mut held).await;
    check_invariants(&pool, &sim, 29).await;
    assert!(held.is_empty());
    assert_eq!(sim.list_enis().await.unwrap().len(), 1, "scaled back down");
    cloud.calls()
}

async fn crash_case(at: u32, how: Crash) {
    let sim = sim("m5.large", SEED);
    let (_tmp, dir) = state_dir();
    let group = default_group(&sim);
    let steps = script();
    let mut held = BTreeMap::new();
    let crashed_at = {
        let cloud = Arc::new(TestCloud::crashing(sim.clone(), at, how));
        let pool = start(cloud.clone(), &dir, SETTINGS, config(), Default::default()).await;
        let stopped = run(&pool, &cloud, &group, &steps, 0, &mut held).await;
        assert!(cloud.crashed(), "call {at} was never made");
        pool.abort().await;
        stopped
    };
    let context = format!("crash {how:?} at call {at}, step {crashed_at}");

    let cloud = Arc::new(TestCloud::new(sim.clone()));
    let pool = start(cloud.clone(), &dir, SETTINGS, config(), Default::default()).await;
    assert_eq!(held_by(&pool), held, "{context}: answered assignments");
    pool.reconcile().await.expect("round");
    check_invariants(&pool, &sim, 29).await;

    // The interrupted step is retried, then the rest of the scenario.
    run(&pool, &cloud, &group, &steps, crashed_at, &mut held).await;
    check_invariants(&pool, &sim, 29).await;
    assert!(held_by(&pool).is_empty(), "{context}");
    assert_eq!(
        sim.all_enis().len(),
        1,
        "{context}: only the primary ENI is left"
    );
    pool.shutdown().await;
    drop(pool);
    journal_is_empty(&dir);
}

#[tokio::test]
async fn a_crash_at_any_ec2_call_leaves_a_recoverable_state() {
    let calls = baseline().await;
    assert!(calls.contains(&Call::CreateEni), "{calls:?}");
    assert!(calls.contains(&Call::UnassignIps), "{calls:?}");
    assert!(calls.contains(&Call::DeleteEni), "{calls:?}");
    for (i, call) in calls.iter().enumerate() {
        let at = u32::try_from(i + 1).unwrap();
        crash_case(at, Crash::Before).await;
        crash_case(at, Crash::After).await;
        if *call == Call::CreateEni {
            crash_case(at, Crash::CreatedNotAttached).await;
        }
    }
}

#[tokio::test]
async fn an_eni_created_but_never_attached_is_found_by_its_tag_and_deleted() {
    let sim = sim("m5.large", 5);
    let (_tmp, dir) = state_dir();
    let group = default_group(&sim);
    {
        // Call 1 fills the primary ENI, call 2 creates the second ENI.
        let cloud = Arc::new(TestCloud::crashing(
            sim.clone(),
            2,
            Crash::CreatedNotAttached,
        ));
        let pool = start(cloud.clone(), &dir, "{}", config(), Default::default()).await;
        let placed = cloud.until_crash(pool.assign(key(1), &group, pod(1))).await;
        assert!(placed.is_none(), "the crash struck during the scale-up");
        assert_eq!(cloud.calls(), vec![Call::AssignIps, Call::CreateEni]);
        pool.abort().await;
    }
    let orphan = sim
        .all_enis()
        .into_iter()
        .find(|e| e.attachment.is_none())
        .expect("the orphan ENI");
    assert!(orphan.tags.contains_key(TAG_OPERATION), "{:?}", orphan.tags);
    assert!(orphan.tags.contains_key(TAG_CREATED_AT));

    let cloud = Arc::new(TestCloud::new(sim.clone()));
    let pool = start(cloud.clone(), &dir, "{}", config(), Default::default()).await;
    assert!(
        sim.all_enis().iter().all(|e| e.id != orphan.id),
        "deleted at start"
    );
    pool.assign(key(1), &group, pod(1)).await.expect("address");
    check_invariants(&pool, &sim, 29).await;
}

/// A decision's steps are sent together: a crash at one of them strikes
/// while the others are in flight or answered but not yet applied. The
/// restarted pool settles them all from the journal and EC2's inventory.
#[tokio::test]
async fn a_crash_while_a_decisions_steps_are_in_flight_leaves_a_recoverable_state() {
    // 50 free on an m5.2xlarge: the primary's 14 (call 1) and three new
    // ENIs (calls 2-4), sent at once.
    let settings = r#"{"warm-ip-target": 50}"#;
    for at in 1..=4 {
        let mut crashes = vec![Crash::Before, Crash::After];
        if at > 1 {
            crashes.push(Crash::CreatedNotAttached);
        }
        for how in crashes {
            let context = format!("crash {how:?} at call {at}");
            let sim = sim("m5.2xlarge", SEED);
            let (_tmp, dir) = state_dir();
            {
                let cloud = Arc::new(TestCloud::crashing(sim.clone(), at, how));
                let pool = start(cloud.clone(), &dir, settings, config(), Default::default()).await;
                let round = cloud.until_crash(pool.reconcile()).await;
                assert!(round.is_none(), "{context}: the round ended");
                assert_eq!(
                    cloud.calls_made(),
                    4,
                    "{context}: the decision's four steps were sent together"
                );
                pool.abort().await;
            }
            let cloud = Arc::new(TestCloud::new(sim.clone()));
            let pool = start(cloud, &dir, settings, config(), Default::default()).await;
            rounds(&pool, 2).await;
            check_invariants(&pool, &sim, 58).await;
            let held = pool.snapshot().addresses().count();
            assert!(held >= 50, "{context}: {held} addresses held");
            pool.shutdown().await;
            drop(pool);
            journal_is_empty(&dir);
        }
    }
}
