//! The pool service on `SimCloud`: ADD waiting and its bounded failure,
//! shared scale-ups, prefix fallback, scale-down without fights, restart.

use crate::support::reconcile as common;

use common::*;
use std::net::Ipv4Addr;
use std::sync::Arc;
use weft_host::cloud::{Cloud, Ec2Action, SimCloud, sim::Fault};
use weft_host::ipam::SgSet;
use weft_host::metrics::Metrics;
use weft_host::reconcile::{BlockedKind, Pool, PoolConfig, PoolError};

fn counted(metrics: &Metrics, line: &str) -> bool {
    metrics.encode().lines().any(|l| l == line)
}

/// Pool-sizing settings: one free address, ENIs releasable at once.
const WARM_ONE_IP: &str = r#"{"warm-ip-target": 1, "min-eni-age-seconds": 0}"#;

/// [`config`] with an ADD that gives up after 300 ms.
fn short_wait() -> PoolConfig {
    PoolConfig {
        add_wait_ms: 300,
        ..config()
    }
}

/// A pool capped at five pods, all five placed (and its state directory).
async fn full_at_five_max_pods() -> (Arc<SimCloud>, Arc<Pool>, tempfile::TempDir) {
    let sim = sim("m5.large", 3);
    let config = PoolConfig {
        max_pods: Some(5),
        ..short_wait()
    };
    let (_cloud, pool, state) = counted_pool(&sim, "{}", config).await;
    fill(&pool, &default_group(&sim), 0..5).await;
    (sim, pool, state)
}

/// A pool with prefix delegation on, in its settings and its config.
async fn prefix_pool(sim: &Arc<SimCloud>) -> (Arc<TestCloud>, Arc<Pool>, tempfile::TempDir) {
    let config = PoolConfig {
        prefix_delegation: true,
        ..config()
    };
    counted_pool(sim, r#"{"prefix-delegation": true}"#, config).await
}

#[tokio::test]
async fn add_on_an_empty_pool_waits_for_the_reconciler_then_gets_an_address() {
    let sim = sim("m5.large", 1);
    let metrics = Arc::new(Metrics::new());
    let (cloud, pool, _state) =
        counted_pool_with(&sim, "{}", config(), Default::default(), metrics.clone()).await;
    let group = default_group(&sim);
    assert!(
        pool.snapshot().addresses().next().is_none(),
        "empty at start"
    );

    let placed = pool.assign(key(1), &group, pod(1)).await.expect("address");
    assert!(placed.fresh);
    assert!(
        placed.primary_eni,
        "warm-eni-target fills the primary ENI first"
    );
    assert!(counted(
        &metrics,
        r#"weft_pool_events_total{event="add",outcome="waited"} 1"#
    ));
    // WARM_ENI_TARGET=1 with one ADD waiting: the primary ENI's 9 slots
    // filled and a second ENI, so that an ENI's worth stays free, all in
    // the one round the ADD woke.
    assert_eq!(cloud.calls(), vec![Call::AssignIps, Call::CreateEni]);
    assert_eq!(cloud_addresses(&sim).await.len(), 18);

    // The next ADD is served from the warm pool without waiting.
    pool.assign(key(2), &group, pod(2)).await.expect("warm");
    assert!(counted(
        &metrics,
        r#"weft_pool_events_total{event="add",outcome="immediate"} 1"#
    ));
    // A repeated ADD gets the same address; DEL is idempotent.
    let again = pool.assign(key(1), &group, pod(1)).await.expect("same");
    assert_eq!((again.ip, again.fresh), (placed.ip, false));
    assert_eq!(
        pool.release(&key(1)).expect("release").map(|a| a.ip),
        Some(placed.ip)
    );
    assert_eq!(pool.release(&key(1)).expect("again"), None);
    pool.reconcile().await.expect("round");
    check_invariants(&pool, &sim, 29).await;
}

#[tokio::test]
async fn add_with_the_eni_limit_reached_fails_after_the_wait_naming_the_reason() {
    // m4.large: 2 ENIs x 9 slots = 18 addresses, max pods 20.
    let sim = sim("m4.large", 2);
    let (cloud, pool, _state) = counted_pool(&sim, "{}", short_wait()).await;
    let group = default_group(&sim);
    fill(&pool, &group, 0..18).await;
    assert_eq!(cloud.count(Call::CreateEni), 1);

    let err = pool.assign(key(99), &group, pod(99)).await.unwrap_err();
    assert!(err.is_try_again(), "{err}");
    let PoolError::TryAgain { reason, .. } = &err else {
        unreachable!()
    };
    assert_eq!(reason.kind, BlockedKind::EniLimit, "{err}");
    let message = err.to_string();
    assert!(message.contains("try again later"), "{message}");
    assert!(message.contains("ENI limit reached"), "{message}");
    assert!(pool.snapshot().groups.iter().all(|g| g.pending_adds == 0));
    check_invariants(&pool, &sim, 20).await;
}

#[tokio::test]
async fn max_pods_caps_the_pool_and_is_named_when_an_add_fails() {
    let (sim, pool, _state) = full_at_five_max_pods().await;
    let group = default_group(&sim);
    assert_eq!(
        cloud_addresses(&sim).await.len(),
        5,
        "warm-eni-target clamped to max pods"
    );
    let err = pool.assign(key(9), &group, pod(9)).await.unwrap_err();
    assert!(err.to_string().contains("max pods reached"), "{err}");
    check_invariants(&pool, &sim, 5).await;
}

/// An address that comes free goes to the ADD that waited for it, not to
/// an ADD that arrives just then (which would otherwise take it at once and
/// leave the older one to fail its wait); this also makes `weftd simulate`
/// deterministic, since which waiting task the runtime wakes first no
/// longer decides who is served.
#[tokio::test]
async fn waiting_adds_are_served_in_arrival_order() {
    let (sim, pool, _state) = full_at_five_max_pods().await;
    let group = default_group(&sim);
    let older = tokio::spawn({
        let (pool, group) = (pool.clone(), group.clone());
        async move { pool.assign(key(10), &group, pod(10)).await }
    });
    while pool.snapshot().groups.iter().all(|g| g.pending_adds == 0) {
        tokio::task::yield_now().await;
    }
    // Cooldown 0: the address is free at once.
    let freed = pool
        .release(&key(0))
        .expect("release")
        .expect("was assigned");
    let newer = pool.assign(key(11), &group, pod(11)).await;
    let older = older.await.expect("task");
    assert_eq!(older.map(|p| p.ip).ok(), Some(freed.ip), "the waiting ADD");
    let newer = newer.expect_err("max pods: nothing left for the newer ADD");
    assert!(newer.is_try_again(), "{newer}");
    check_invariants(&pool, &sim, 5).await;
}

#[tokio::test]
async fn concurrent_adds_share_one_scale_up() {
    let sim = sim("m5.large", 4);
    let (cloud, pool, _state) = counted_pool(&sim, r#"{"warm-ip-target": 1}"#, config()).await;
    let group = default_group(&sim);
    let (a, b, c, d, e) = tokio::join!(
        pool.assign(key(1), &group, pod(1)),
        pool.assign(key(2), &group, pod(2)),
        pool.assign(key(3), &group, pod(3)),
        pool.assign(key(4), &group, pod(4)),
        pool.assign(key(5), &group, pod(5)),
    );
    let ips: std::collections::BTreeSet<Ipv4Addr> = [a, b, c, d, e]
        .into_iter()
        .map(|r| r.expect("address").ip)
        .collect();
    assert_eq!(ips.len(), 5);
    // Five waiting ADDs plus a warm target of one: one call for six IPs.
    assert_eq!(cloud.calls(), vec![Call::AssignIps]);
    assert_eq!(cloud_addresses(&sim).await.len(), 6);
    pool.reconcile().await.expect("round");
    assert_eq!(cloud.calls().len(), 1, "nothing more to do");
}

/// A decision's new ENIs are created at the same time: a burst that needs
/// three waits for one create's latency, not three in a row.
#[tokio::test]
async fn a_decisions_new_enis_are_created_together() {
    let sim = sim("m5.2xlarge", 9);
    let cloud = Arc::new(TestCloud::creating_together(sim.clone(), 3));
    let (_tmp, dir) = state_dir();
    // 50 free: the primary ENI's 14, then three new ENIs (14, 14, 8).
    let settings = r#"{"warm-ip-target": 50}"#;
    let pool = start(cloud.clone(), &dir, settings, config(), Default::default()).await;
    tokio::time::timeout(std::time::Duration::from_secs(30), pool.reconcile())
        .await
        .expect("the three creates were sent one after the other: the first waits for the others")
        .expect("round");
    assert_eq!(cloud.count(Call::CreateEni), 3);
    let mut indexes: Vec<_> = sim
        .list_enis()
        .await
        .expect("list")
        .iter()
        .map(|e| e.device_index())
        .collect();
    indexes.sort();
    assert_eq!(indexes, vec![Some(0), Some(1), Some(2), Some(3)]);
    assert_eq!(pool.snapshot().addresses().count(), 50);
    check_invariants(&pool, &sim, 58).await;
}

#[tokio::test]
async fn prefixes_fall_back_to_secondary_ips_on_a_fragmented_subnet() {
    let sim = sim("m5.large", 5);
    // Another tenant holds one address in every /28: no prefix can be had.
    for block in 0..16u8 {
        sim.occupy(Ipv4Addr::new(10, 0, 0, block * 16 + 9));
    }
    let (cloud, pool, _state) = prefix_pool(&sim).await;
    let group = default_group(&sim);
    let placed = pool.assign(key(1), &group, pod(1)).await.expect("address");
    assert_eq!(placed.prefix, None, "a secondary IP, not a prefix address");
    assert!(sim.handed_out_prefixes().is_empty());
    assert_eq!(cloud.calls(), vec![Call::AssignPrefixes, Call::AssignIps]);
    // The fallback is remembered: more pods do not ask for prefixes again.
    fill(&pool, &group, 2..12).await;
    assert_eq!(cloud.count(Call::AssignPrefixes), 1, "{:?}", cloud.calls());
    check_invariants(&pool, &sim, 110).await;
}

#[tokio::test]
async fn prefixes_are_used_when_the_subnet_has_room() {
    let sim = sim("m5.large", 6);
    let (cloud, pool, _state) = prefix_pool(&sim).await;
    let placed = pool
        .assign(key(1), &default_group(&sim), pod(1))
        .await
        .expect("address");
    assert!(placed.prefix.is_some(), "{placed:?}");
    assert_eq!(cloud.calls(), vec![Call::AssignPrefixes]);
}

#[tokio::test]
async fn a_stable_pool_makes_no_cloud_calls() {
    let sim = sim("m5.large", 7);
    let (cloud, pool, _state) = counted_pool(
        &sim,
        r#"{"warm-ip-target": 2, "minimum-ip-target": 4}"#,
        config(),
    )
    .await;
    let group = default_group(&sim);
    fill(&pool, &group, 0..3).await;
    release(&pool, 0..1);
    rounds(&pool, 3).await;
    let settled = cloud.calls().len();
    for _ in 0..10 {
        let report = pool.reconcile().await.expect("round");
        assert_eq!(report.cloud_changes, 0, "{report:?}");
        assert!(report.blocked.is_empty(), "{report:?}");
    }
    assert_eq!(cloud.calls().len(), settled, "{:?}", cloud.calls());
    check_invariants(&pool, &sim, 29).await;
}

#[tokio::test]
async fn scale_down_gives_back_free_addresses_only_and_never_fights_scale_up() {
    let sim = sim("m5.large", 8);
    let hooks = Arc::new(RecordingHooks::default());
    let (cloud, pool, _state) = counted_pool_with(
        &sim,
        WARM_ONE_IP,
        config(),
        hooks.clone(),
        Arc::new(Metrics::new()),
    )
    .await;
    let group = default_group(&sim);
    // 12 pods need a second ENI (the primary has 9 slots).
    fill(&pool, &group, 0..12).await;
    assert_eq!(cloud.count(Call::CreateEni), 1);
    let second = hooks.attached.lock().unwrap().clone();
    assert_eq!(second.len(), 1);
    let grown = cloud.count(Call::AssignIps) + cloud.count(Call::CreateEni);
    let kept = pool.assignments()[0].clone();
    for n in 0..12 {
        if key(n) != kept.key {
            pool.release(&key(n)).expect("release");
        }
    }
    rounds(&pool, 5).await;
    // The kept pod's address is still on the node; the empty secondary ENI
    // is gone, the primary never is; nothing was added back.
    assert!(cloud_addresses(&sim).await.contains_key(&kept.ip));
    assert_eq!(*hooks.released.lock().unwrap(), second);
    assert!(
        sim.list_enis()
            .await
            .unwrap()
            .iter()
            .all(|e| e.id != second[0])
    );
    assert_eq!(
        cloud.count(Call::AssignIps) + cloud.count(Call::CreateEni),
        grown,
        "scale-up after scale-down: {:?}",
        cloud.calls()
    );
    let settled = cloud.calls().len();
    rounds(&pool, 5).await;
    assert_eq!(cloud.calls().len(), settled, "{:?}", cloud.calls());
    // Free addresses: warm target 1 (the kept pod holds one more).
    assert_eq!(cloud_addresses(&sim).await.len(), 2);
    check_invariants(&pool, &sim, 29).await;
}

#[tokio::test]
async fn a_young_eni_is_not_released() {
    let sim = sim("m5.large", 9);
    let config = PoolConfig {
        min_eni_age_seconds: 3_600,
        ..config()
    };
    let (cloud, pool, _state) = counted_pool(&sim, WARM_ONE_IP, config).await;
    let group = default_group(&sim);
    fill(&pool, &group, 0..12).await;
    release(&pool, 0..12);
    rounds(&pool, 3).await;
    assert_eq!(cloud.count(Call::DeleteEni), 0, "{:?}", cloud.calls());
    assert_eq!(sim.list_enis().await.unwrap().len(), 2);
    check_invariants(&pool, &sim, 29).await;
}

#[tokio::test]
async fn custom_networking_puts_pods_on_secondary_enis_with_their_groups() {
    // m5.xlarge: 4 ENIs, 14 slots each.
    let sim = sim("m5.xlarge", 10);
    let hooks = Arc::new(RecordingHooks::default());
    let config = PoolConfig {
        primary_eni_serves_pods: false,
        security_groups: Some(vec!["sg-0000000000000000b".into()]),
        ..config()
    };
    let (_cloud, pool, _state) =
        counted_pool_with(&sim, "{}", config, hooks.clone(), Arc::new(Metrics::new())).await;
    let group = pool.default_group();
    assert_eq!(group, SgSet::new(["sg-0000000000000000b"]));
    let placed = pool.assign(key(1), &group, pod(1)).await.expect("address");
    assert!(!placed.primary_eni);
    assert!(hooks.attached.lock().unwrap().contains(&placed.eni_id));
    let eni = sim
        .list_enis()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == placed.eni_id)
        .expect("attached");
    assert_eq!(eni.security_groups, vec!["sg-0000000000000000b".to_owned()]);
    // A pod of another group gets an ENI of its own.
    let other = SgSet::new(["sg-0000000000000000c"]);
    let placed2 = pool.assign(key(2), &other, pod(2)).await.expect("address");
    assert_ne!(placed2.eni_id, placed.eni_id);
    check_invariants(&pool, &sim, 58).await;
    // All four ENIs are attached now; a third group gets the slot of an
    // ENI no pod uses (a warm one), and a fourth, with every ENI holding
    // a pod, is told why it waits.
    let third = SgSet::new(["sg-0000000000000000d"]);
    pool.assign(key(3), &third, pod(3)).await.expect("address");
    let fourth = SgSet::new(["sg-0000000000000000e"]);
    let err = pool.assign(key(4), &fourth, pod(4)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("none of them carries this group's security groups"),
        "{err}"
    );
}

/// With every ENI slot taken, a group whose ADD waits gets the slot of
/// another group's ENI that no pod uses any more.
#[tokio::test]
async fn a_waiting_group_gets_the_slot_of_another_groups_unused_eni() {
    // m5.large: 3 ENIs. The node's group on the primary, one ENI each for
    // groups c and d.
    let sim = sim("m5.large", 12);
    let (_cloud, pool, _state) = counted_pool(&sim, "{}", config()).await;
    let node = default_group(&sim);
    pool.assign(key(1), &node, pod(1)).await.expect("address");
    let c = SgSet::new(["sg-0000000000000000c"]);
    let d = SgSet::new(["sg-0000000000000000d"]);
    pool.assign(key(2), &c, pod(2)).await.expect("address");
    let on_d = pool.assign(key(3), &d, pod(3)).await.expect("address");
    assert_eq!(sim.list_enis().await.unwrap().len(), 3);
    // d's pod goes; its ENI stays (warm) until group e needs the slot.
    release(&pool, 3..4);
    let e = SgSet::new(["sg-0000000000000000e"]);
    let placed = pool
        .assign(key(4), &e, pod(4))
        .await
        .expect("d's unused ENI gave its slot to e");
    let enis = sim.list_enis().await.unwrap();
    assert_eq!(enis.len(), 3);
    assert!(
        enis.iter().all(|eni| eni.id != on_d.eni_id),
        "d's ENI released"
    );
    let on_e = enis
        .iter()
        .find(|eni| eni.id == placed.eni_id)
        .expect("e's ENI");
    assert_eq!(
        on_e.security_groups,
        vec!["sg-0000000000000000e".to_owned()]
    );
    check_invariants(&pool, &sim, 29).await;
}

#[tokio::test]
async fn throttling_backs_off_and_is_named_when_an_add_gives_up() {
    let sim = sim("m5.large", 11);
    // The waiting ADD and the warm ENI's worth are an assign to the primary
    // ENI and a new ENI, sent together: both are throttled.
    sim.fail_next(Ec2Action::AssignPrivateIpAddresses, [Fault::Throttled; 3]);
    sim.fail_next(Ec2Action::CreateNetworkInterface, [Fault::Throttled; 3]);
    let config = PoolConfig {
        add_wait_ms: 200,
        ..config()
    };
    let (cloud, pool, _state) = counted_pool(&sim, "{}", config).await;
    let group = default_group(&sim);
    let err = pool.assign(key(1), &group, pod(1)).await.unwrap_err();
    assert!(err.to_string().contains("EC2 throttled"), "{err}");
    // The reconciler retries on its own once the backoff ends, without any
    // further event, until the throttling stops.
    loop {
        let snapshot = pool.snapshot();
        if snapshot.addresses().next().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pool.assign(key(1), &group, pod(1)).await.expect("address");
    assert_eq!(
        cloud.count(Call::AssignIps),
        4,
        "three throttled, one through"
    );
}

/// A pool (warm one IP) whose first assign's answer was lost after EC2
/// carried it out, and two pods placed: the read after the lost call
/// brought its two addresses in, for the first ADD and the warm one. The
/// next ADD needs another assign to the same ENI.
async fn after_a_lost_assign(
    config: PoolConfig,
) -> (
    Arc<SimCloud>,
    Arc<TestCloud>,
    Arc<Pool>,
    tempfile::TempDir,
    SgSet,
) {
    let sim = sim("m5.large", 17);
    sim.fail_next(Ec2Action::AssignPrivateIpAddresses, [Fault::LostAnswer]);
    let (cloud, pool, state) = counted_pool(&sim, WARM_ONE_IP, config).await;
    let group = default_group(&sim);
    pool.assign(key(1), &group, pod(1)).await.expect("address");
    pool.assign(key(2), &group, pod(2)).await.expect("address");
    assert_eq!(cloud.count(Call::AssignIps), 1);
    (sim, cloud, pool, state, group)
}

/// An assign whose answer was lost holds back further assigns to its ENI
/// until reads settle it; the round that may settle it comes when its
/// grace period ends, not at the next event or resync period, so an ADD
/// waiting for that ENI is served within its wait.
#[tokio::test]
async fn a_lost_answer_is_settled_when_its_grace_ends_without_another_event() {
    let config = PoolConfig {
        add_wait_ms: 5_000,
        stale_read_grace_seconds: 1,
        stale_read_confirmations: 1,
        ..config()
    };
    let (sim, cloud, pool, _state, group) = after_a_lost_assign(config).await;
    // The third waits for the lost answer to be settled, and nothing else
    // wakes the reconciler.
    pool.assign(key(3), &group, pod(3))
        .await
        .expect("served once the lost answer was settled, within the ADD's wait");
    assert_eq!(cloud.count(Call::AssignIps), 2);
    check_invariants(&pool, &sim, 29).await;
}

/// An ADD that gives up while a lost answer holds its ENI back says so.
#[tokio::test]
async fn an_add_held_back_by_a_lost_answer_names_it() {
    let config = PoolConfig {
        add_wait_ms: 300,
        stale_read_grace_seconds: 30,
        ..config()
    };
    let (_sim, _cloud, pool, _state, group) = after_a_lost_assign(config).await;
    let err = pool.assign(key(3), &group, pod(3)).await.unwrap_err();
    let message = err.to_string();
    assert!(err.is_try_again(), "{message}");
    assert!(message.contains("answer to an earlier assign"), "{message}");
    assert!(message.contains("after 30 s"), "{message}");
}

#[tokio::test]
async fn a_restart_keeps_assignments_and_sets_up_secondary_enis_again() {
    let sim = sim("m5.large", 12);
    let (_tmp, dir) = state_dir();
    let group = default_group(&sim);
    let before = {
        let hooks = Arc::new(RecordingHooks::default());
        let pool = start(
            Arc::new(TestCloud::new(sim.clone())),
            &dir,
            "{}",
            config(),
            hooks,
        )
        .await;
        fill(&pool, &group, 0..12).await;
        pool.release(&key(3)).expect("release");
        let before = pool.assignments();
        pool.shutdown().await;
        before
    };
    let hooks = Arc::new(RecordingHooks::default());
    let cloud = Arc::new(TestCloud::new(sim.clone()));
    let pool = start(cloud.clone(), &dir, "{}", config(), hooks.clone()).await;
    let held = |all: Vec<weft_host::ipam::Assignment>| {
        all.into_iter()
            .map(|a| (a.key, a.ip, a.pod))
            .collect::<Vec<_>>()
    };
    assert_eq!(held(pool.assignments()), held(before));
    let secondary: Vec<String> = sim
        .list_enis()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.device_index() != Some(0))
        .map(|e| e.id)
        .collect();
    assert!(!secondary.is_empty());
    assert_eq!(
        *hooks.attached.lock().unwrap(),
        secondary,
        "every secondary ENI is set up again at start"
    );
    pool.reconcile().await.expect("round");
    check_invariants(&pool, &sim, 29).await;
    let snapshot = serde_json::to_value(pool.snapshot()).expect("serialisable");
    assert_eq!(snapshot["assignments"].as_array().map(Vec::len), Some(11));
}

#[tokio::test]
async fn a_second_pool_on_the_same_state_directory_is_refused() {
    let sim: Arc<SimCloud> = sim("m5.large", 13);
    let (_tmp, dir) = state_dir();
    let _pool = start(
        Arc::new(TestCloud::new(sim.clone())),
        &dir,
        "{}",
        config(),
        Default::default(),
    )
    .await;
    let err = weft_host::state::StateDir::open(&dir).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
}

#[tokio::test]
async fn a_full_subnet_is_named_when_an_add_gives_up() {
    // A /28: 11 usable addresses, one of them the primary ENI's own.
    let sim = Arc::new(
        SimCloud::builder()
            .seed(14)
            .instance_type("m5.large")
            .subnet("10.0.0.0/28")
            .build()
            .expect("simulator"),
    );
    let (cloud, pool, _state) = counted_pool(&sim, "{}", short_wait()).await;
    let group = default_group(&sim);
    fill(&pool, &group, 0..9).await;
    let err = pool.assign(key(9), &group, pod(9)).await.unwrap_err();
    let PoolError::TryAgain { reason, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        matches!(reason.kind, BlockedKind::SubnetFull | BlockedKind::NoSubnet),
        "{err}"
    );
    assert!(err.to_string().contains("subnet"), "{err}");
    // The group does not ask EC2 again on every ADD.
    let asked = cloud.calls().len();
    let again = pool.assign(key(10), &group, pod(10)).await.unwrap_err();
    assert!(again.to_string().contains("subnet"), "{again}");
    assert_eq!(cloud.calls().len(), asked, "{:?}", cloud.calls());
    check_invariants(&pool, &sim, 29).await;
}

#[tokio::test]
async fn an_eni_the_node_cannot_set_up_is_given_back() {
    let sim = sim("m5.large", 15);
    let hooks = Arc::new(RecordingHooks::default());
    hooks
        .fail_attach
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let config = PoolConfig {
        primary_eni_serves_pods: false,
        ..short_wait()
    };
    let (cloud, pool, _state) =
        counted_pool_with(&sim, "{}", config, hooks.clone(), Arc::new(Metrics::new())).await;
    let group = pool.default_group();
    let err = pool.assign(key(1), &group, pod(1)).await.unwrap_err();
    assert!(err.to_string().contains("cannot set the MTU"), "{err}");
    assert!(cloud.count(Call::CreateEni) >= 1);
    assert_eq!(cloud.count(Call::CreateEni), cloud.count(Call::DeleteEni));
    assert_eq!(
        *hooks.released.lock().unwrap(),
        *hooks.attached.lock().unwrap()
    );
    check_invariants(&pool, &sim, 29).await;
    // Once the node can set ENIs up, pods get addresses.
    hooks
        .fail_attach
        .store(false, std::sync::atomic::Ordering::SeqCst);
    pool.assign(key(1), &group, pod(1)).await.expect("address");
}

#[tokio::test]
async fn an_eni_deleted_behind_the_agents_back_leaves_the_pool_at_the_next_resync() {
    let sim = sim("m5.large", 16);
    // Reads here are never stale: one read that lacks the ENI is the truth.
    let config = PoolConfig {
        inventory_resync_seconds: 0,
        stale_read_grace_seconds: 0,
        stale_read_confirmations: 1,
        ..config()
    };
    let (_cloud, pool, state) = counted_pool(&sim, "{}", config).await;
    let group = default_group(&sim);
    fill(&pool, &group, 0..12).await;
    let victim = pool
        .assignments()
        .into_iter()
        .find_map(|a| {
            let placed = pool.snapshot();
            placed
                .enis
                .iter()
                .find(|e| !e.primary && e.addresses.iter().any(|x| x.ip == a.ip))
                .map(|e| (e.id.clone(), a.key))
        })
        .expect("a pod on a secondary ENI");
    sim.delete_eni(&victim.0)
        .await
        .expect("someone deletes the ENI");

    pool.reconcile().await.expect("round");
    let snapshot = pool.snapshot();
    assert!(snapshot.enis.iter().all(|e| e.id != victim.0));
    assert!(pool.assignments().iter().all(|a| a.key != victim.1));
    check_invariants(&pool, &sim, 29).await;
    // The dropped assignments are gone from the checkpoint too.
    pool.shutdown().await;
    drop(pool);
    let state = weft_host::state::StateDir::open(state_path(&state)).expect("state");
    let checkpoint = state.load_checkpoint().expect("checkpoint");
    assert!(checkpoint.allocations.iter().all(|a| a.key != victim.1));
}

/// ENI hooks whose set-up panics: a bug in the reconciler's path.
struct PanickingHooks;

impl weft_host::reconcile::EniHooks for PanickingHooks {
    fn on_attached<'a>(
        &'a self,
        _eni: &'a weft_host::cloud::Eni,
    ) -> weft_host::reconcile::HookFuture<'a> {
        Box::pin(async { panic!("a bug in the ENI set-up") })
    }
    fn on_released<'a>(
        &'a self,
        _eni: &'a weft_host::cloud::Eni,
    ) -> weft_host::reconcile::HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }
    fn routed<'a>(
        &'a self,
        _ips: &'a [Ipv4Addr],
    ) -> weft_host::reconcile::HookFuture<'a, Vec<Ipv4Addr>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[tokio::test]
async fn a_panicked_reconciler_makes_the_pool_not_ready() {
    let sim = sim("m5.large", 1);
    let (_tmp, dir) = state_dir();
    let pool = weft_host::reconcile::Pool::start(weft_host::reconcile::PoolDeps {
        cloud: Arc::new(TestCloud::new(sim.clone())),
        policies: policies("{}"),
        state: weft_host::state::StateDir::open(&dir).expect("state directory"),
        metrics: Arc::new(Metrics::new()),
        hooks: Arc::new(PanickingHooks),
        config: config(),
    })
    .await
    .expect("pool starts");
    assert_eq!(pool.not_ready_reason(), None, "ready at start");
    // With a pod added, warm-eni-target 1 wants a secondary ENI, whose
    // set-up panics.
    let group = default_group(&sim);
    let _ = pool.assign(key(1), &group, pod(1)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let reason = loop {
        if let Some(reason) = pool.not_ready_reason() {
            break reason;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "STATUS still says ready after the reconciler panicked"
        );
        let _ = pool.reconcile().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(reason.contains("panicked"), "{reason}");
}
