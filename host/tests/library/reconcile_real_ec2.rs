//! The pool service on `SimCloud` behaving as real EC2 does rather than as
//! an instant, consistent emulator: reads that lag writes, answers lost
//! after the call took effect, ENIs attached by others, deletes that fail,
//! and a fleet of nodes sharing one account's request budget.

use crate::support::reconcile as common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use weft_host::cloud::sim::{Fault, ForeignEni};
use weft_host::cloud::{Cloud, Ec2Action, RateLimiter, RateLimits, SimCloud, SystemClock};
use weft_host::ipam::SgSet;
use weft_host::metrics::Metrics;
use weft_host::reconcile::{Pool, PoolConfig};

/// Reads lag writes by this much in the simulator.
const STALE: Duration = Duration::from_millis(1500);

/// A simulator whose reads lag its writes.
fn stale_sim(seed: u64) -> Arc<SimCloud> {
    stale_sim_of("m5.large", seed)
}

/// [`stale_sim`] of another instance type.
fn stale_sim_of(instance_type: &str, seed: u64) -> Arc<SimCloud> {
    stale_sim_lagging(instance_type, seed, STALE)
}

/// A simulator whose reads lag its writes by `lag`.
fn stale_sim_lagging(instance_type: &str, seed: u64, lag: Duration) -> Arc<SimCloud> {
    Arc::new(
        SimCloud::builder()
            .seed(seed)
            .instance_type(instance_type)
            .subnet("10.0.0.0/24")
            .stale_reads(lag)
            .build()
            .expect("simulator"),
    )
}

/// Every round compares with EC2; what a read lacks leaves only after three
/// reads over two seconds (longer than reads lag).
fn resyncing() -> PoolConfig {
    PoolConfig {
        inventory_resync_seconds: 0,
        stale_read_grace_seconds: 2,
        stale_read_confirmations: 3,
        add_wait_ms: 10_000,
        ..config()
    }
}

/// The truth of the simulated VPC (not a possibly stale read): every
/// secondary address on an ENI attached to the node, by ENI.
fn truth(sim: &SimCloud) -> BTreeMap<Ipv4Addr, String> {
    let node = sim
        .all_enis()
        .into_iter()
        .find(|e| e.device_index() == Some(0))
        .and_then(|e| e.attachment)
        .expect("primary ENI")
        .instance_id;
    sim.all_enis()
        .into_iter()
        .filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == node))
        .flat_map(|e| {
            let id = e.id.clone();
            e.secondary_ips.into_iter().map(move |ip| (ip, id.clone()))
        })
        .collect()
}

/// The id of the instance's primary ENI.
fn primary_eni(sim: &SimCloud) -> String {
    sim.all_enis()
        .into_iter()
        .find(|e| e.device_index() == Some(0))
        .expect("primary ENI")
        .id
}

/// The pool's free addresses.
fn free(pool: &Pool) -> BTreeSet<Ipv4Addr> {
    pool.snapshot()
        .addresses()
        .filter(|a| a.state == "free")
        .map(|a| a.ip)
        .collect()
}

/// No address held twice; every pod's address really is on the node; no
/// address the pool would hand out is one EC2 took back. The reconciler may
/// run meanwhile, so the pool is looked at before and after the simulator:
/// an address counts as free only if it was free both times.
fn check_against_truth(pool: &Pool, sim: &SimCloud) {
    let assignments = pool.assignments();
    let free_before = free(pool);
    let truth = truth(sim);
    let mut held = BTreeSet::new();
    for a in assignments {
        assert!(held.insert(a.ip), "{} held by two pods", a.ip);
        assert!(
            truth.contains_key(&a.ip),
            "pod {} holds {} which EC2 does not have on the node",
            a.pod,
            a.ip
        );
    }
    for ip in free_before.intersection(&free(pool)) {
        assert!(
            truth.contains_key(ip),
            "{ip} is free in the pool but EC2 took it back"
        );
    }
}

/// `n` rounds, each followed by `pause`.
async fn paced_rounds(pool: &Pool, n: usize, pause: Duration) {
    for _ in 0..n {
        pool.reconcile().await.expect("round");
        tokio::time::sleep(pause).await;
    }
}

/// `n` rounds, each followed by [`check_against_truth`] and `pause`.
async fn checked_rounds(pool: &Pool, sim: &SimCloud, n: usize, pause: Duration) {
    for _ in 0..n {
        pool.reconcile().await.expect("round");
        check_against_truth(pool, sim);
        tokio::time::sleep(pause).await;
    }
}

/// Every pod in `live` still holds the address it was given.
fn check_pods_keep(pool: &Pool, live: &BTreeMap<u32, Ipv4Addr>) {
    for (n, ip) in live {
        let held = pool.assignment(&key(*n)).map(|a| a.ip);
        assert_eq!(held, Some(*ip), "pod {n} lost its address");
    }
}

/// Every address in the pool, whatever its state.
fn pooled(pool: &Pool) -> BTreeSet<Ipv4Addr> {
    pool.snapshot().addresses().map(|a| a.ip).collect()
}

/// Every secondary address EC2 truly has on the node.
fn ec2_addresses(sim: &SimCloud) -> BTreeSet<Ipv4Addr> {
    truth(sim).into_keys().collect()
}

/// Pool-sizing settings: one free address and no spare ENI, ENIs
/// releasable at once.
const WARM_ONE_IP_NO_SPARE_ENI: &str =
    r#"{"warm-eni-target": 0, "warm-ip-target": 1, "min-eni-age-seconds": 0}"#;

/// A pool on `sim` that compares itself with EC2 in every round.
async fn resyncing_pool(
    sim: &Arc<SimCloud>,
    settings: &str,
) -> (Arc<TestCloud>, Arc<Pool>, tempfile::TempDir) {
    counted_pool(sim, settings, resyncing()).await
}

/// Places pods `0..pods`, runs a round, then releases pods `0..6` with the
/// unassign that gives their addresses back meeting `fault`.
async fn give_back_six_meeting(pool: &Pool, sim: &SimCloud, pods: u32, fault: Fault) {
    fill(pool, &default_group(sim), 0..pods).await;
    paced_rounds(pool, 1, Duration::ZERO).await;
    sim.fail_next(Ec2Action::UnassignPrivateIpAddresses, [fault]);
    release(pool, 0..6);
}

/// A resyncing pool on `sim` with pods `0..pods` placed, whose unassign of
/// pods `0..6`'s addresses took effect but lost its answer. The round after
/// reports it as open: the pool is not at rest until reads after the grace
/// period have settled it.
async fn pool_after_a_lost_unassign(
    sim: &Arc<SimCloud>,
    pods: u32,
) -> (Arc<TestCloud>, Arc<Pool>, tempfile::TempDir) {
    let (cloud, pool, state) = resyncing_pool(sim, WARM_ONE_IP_NO_SPARE_ENI).await;
    give_back_six_meeting(&pool, sim, pods, Fault::LostAnswer).await;
    let report = pool.reconcile().await.expect("round");
    assert_eq!(report.unsettled, 1, "{report:?}");
    assert!(!report.is_settled(), "{report:?}");
    assert!(cloud.count(Call::UnassignIps) >= 1, "{:?}", cloud.calls());
    (cloud, pool, state)
}

/// After convergence the pool holds exactly the addresses EC2 has on the node.
fn assert_pool_is_ec2(pool: &Pool, sim: &SimCloud) {
    assert_eq!(
        pooled(pool),
        ec2_addresses(sim),
        "EC2 and the pool disagree after convergence"
    );
}

/// Pods come and go for many rounds while every read lags the last write by
/// 1.5 s and the pool compares itself with such a read in every round:
/// every pod keeps its address, no address is held twice or handed out
/// after EC2 took it back. (Without the confirming reads a read taken right
/// after an assign drops the new addresses, and one taken right after an
/// unassign brings the released addresses back as free.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_never_drop_a_pod_nor_free_a_released_address() {
    let sim = stale_sim(21);
    let (cloud, pool, _state) =
        resyncing_pool(&sim, r#"{"warm-ip-target": 2, "min-eni-age-seconds": 0}"#).await;
    let group = default_group(&sim);
    let mut live: BTreeMap<u32, Ipv4Addr> = BTreeMap::new();
    for n in 0..30u32 {
        let placed = pool.assign(key(n), &group, pod(n)).await.expect("address");
        live.insert(n, placed.ip);
        if n % 3 == 2 {
            let gone = n - 2;
            pool.release(&key(gone)).expect("release");
            live.remove(&gone);
        }
        pool.reconcile().await.expect("round");
        check_against_truth(&pool, &sim);
        check_pods_keep(&pool, &live);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Whether the churn gave back single addresses or whole ENIs depends on
    // timing; a burst of releases on the primary ENI (never given back
    // whole) makes its surplus go back by unassign, read stale right after.
    let ec2 = truth(&sim);
    let primary = primary_eni(&sim);
    let burst: Vec<u32> = live
        .iter()
        .filter(|(_, ip)| ec2.get(ip) == Some(&primary))
        .map(|(n, _)| *n)
        .take(4)
        .collect();
    assert_eq!(burst.len(), 4, "pods on the primary ENI: {live:?}");
    for n in &burst {
        pool.release(&key(*n)).expect("release");
        live.remove(n);
    }
    for _ in 0..10 {
        pool.reconcile().await.expect("round");
        check_against_truth(&pool, &sim);
        check_pods_keep(&pool, &live);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cloud.count(Call::UnassignIps) > 0,
        "scale-down must have run for the test to mean anything: {:?}",
        cloud.calls()
    );
    // Once reads catch up, EC2 and the pool agree.
    paced_rounds(&pool, 8, Duration::from_millis(500)).await;
    check_invariants(&pool, &sim, 29).await;
}

/// `AssignPrivateIpAddresses` takes effect but its answer is lost, and the
/// reads right after it are stale: the pool does not assign again, takes
/// the addresses in once reads show them, and never has to give surplus
/// addresses back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_assign_answer_is_settled_from_reads_not_sent_again() {
    let sim = stale_sim(22);
    sim.fail_next(Ec2Action::AssignPrivateIpAddresses, [Fault::LostAnswer]);
    let (cloud, pool, _state) = resyncing_pool(
        &sim,
        r#"{"warm-eni-target": 0, "warm-ip-target": 4, "min-eni-age-seconds": 0}"#,
    )
    .await;
    paced_rounds(&pool, 16, Duration::from_millis(300)).await;
    assert_eq!(
        cloud.count(Call::AssignIps),
        1,
        "the lost assign was sent again: {:?}",
        cloud.calls()
    );
    assert_eq!(cloud.count(Call::UnassignIps), 0, "{:?}", cloud.calls());
    assert_eq!(truth(&sim).len(), 4);
    check_invariants(&pool, &sim, 29).await;
    let free = pool
        .snapshot()
        .addresses()
        .filter(|a| a.state == "free")
        .count();
    assert_eq!(free, 4);
}

/// `UnassignPrivateIpAddresses` takes effect but its answer is lost: the
/// addresses are not put back into the pool, so pods added right after
/// never get an address EC2 took back; after convergence EC2's view of the
/// ENI equals the pool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_unassign_answer_never_hands_out_an_address_ec2_took_back() {
    let sim = stale_sim(23);
    let (_cloud, pool, _state) = pool_after_a_lost_unassign(&sim, 6).await;
    // New pods at once: none may get an address EC2 no longer has.
    let group = default_group(&sim);
    for n in 10..14 {
        pool.assign(key(n), &group, pod(n)).await.expect("address");
        check_against_truth(&pool, &sim);
    }
    paced_rounds(&pool, 16, Duration::from_millis(400)).await;
    check_against_truth(&pool, &sim);
    check_invariants(&pool, &sim, 29).await;
    let report = pool.reconcile().await.expect("round");
    assert_eq!(
        report.unsettled, 0,
        "settled after the grace period: {report:?}"
    );
    assert_pool_is_ec2(&pool, &sim);
}

/// The pool gives free addresses back and the agent restarts at once, while
/// reads still show them (they lag by 4 s; the grace period is 6 s): the
/// restarted pool takes them back as free neither from its start-up read nor
/// from the reads after it, and agrees with EC2 once the grace has passed.
/// (Before the checkpoint kept what was given back, the start-up read put
/// them back into the pool as free.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_inside_the_grace_period_still_withholds_what_was_given_back() {
    restart_after_giving_back(false).await;
}

/// As above, but the agent dies right after EC2 carried out the unassign,
/// before its answer: the journal still has the unassign, whose replay EC2
/// refuses (the addresses are gone although the stale read shows them), and
/// the restarted pool withholds them all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_an_unassign_still_withholds_its_addresses() {
    restart_after_giving_back(true).await;
}

async fn restart_after_giving_back(crash: bool) {
    let sim = stale_sim_lagging("m5.large", 29, Duration::from_secs(4));
    let config = PoolConfig {
        stale_read_grace_seconds: 6,
        ..resyncing()
    };
    let settings = WARM_ONE_IP_NO_SPARE_ENI;
    let (_tmp, dir) = state_dir();
    {
        let pool = start(
            Arc::new(TestCloud::new(sim.clone())),
            &dir,
            settings,
            config.clone(),
            Default::default(),
        )
        .await;
        fill(&pool, &default_group(&sim), 0..6).await;
        paced_rounds(&pool, 1, Duration::ZERO).await;
        pool.shutdown().await;
    }
    // Reads catch up with the growth, so the unassign's window starts from
    // a read that shows the addresses it gives back.
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let before = ec2_addresses(&sim);
    {
        let cloud = Arc::new(if crash {
            TestCloud::crashing(sim.clone(), 1, Crash::After)
        } else {
            TestCloud::new(sim.clone())
        });
        let pool = start(
            cloud.clone(),
            &dir,
            settings,
            config.clone(),
            Default::default(),
        )
        .await;
        release(&pool, 0..6);
        let round = cloud.until_crash(pool.reconcile()).await;
        assert_eq!(cloud.calls().first(), Some(&Call::UnassignIps));
        if crash {
            assert!(round.is_none() && cloud.crashed());
            pool.abort().await;
        } else {
            pool.shutdown().await;
        }
    }
    let after = ec2_addresses(&sim);
    let given_back: BTreeSet<Ipv4Addr> = before.difference(&after).copied().collect();
    assert!(!given_back.is_empty());
    let read: BTreeSet<Ipv4Addr> = sim
        .list_enis()
        .await
        .expect("read")
        .into_iter()
        .flat_map(|e| e.secondary_ips)
        .collect();
    assert!(
        given_back.is_subset(&read),
        "reads must still show what was given back: {given_back:?}, read {read:?}"
    );
    let pool = start(
        Arc::new(TestCloud::new(sim.clone())),
        &dir,
        settings,
        config,
        Default::default(),
    )
    .await;
    assert!(
        pooled(&pool).is_disjoint(&given_back),
        "the start-up read brought back {:?}",
        pooled(&pool).intersection(&given_back).collect::<Vec<_>>()
    );
    checked_rounds(&pool, &sim, 16, Duration::from_millis(500)).await;
    assert_eq!(
        pooled(&pool),
        ec2_addresses(&sim),
        "EC2 and the pool disagree after the grace"
    );
}

/// `UnassignPrivateIpAddresses` times out before EC2 saw it: the addresses
/// leave the pool as if given back, reads bring them back as free once the
/// grace period has passed, and the surplus is given back again; EC2 and the
/// pool agree at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unassign_ec2_never_saw_gives_its_addresses_back_after_the_grace() {
    let sim = stale_sim(27);
    let (cloud, pool, _state) = resyncing_pool(&sim, WARM_ONE_IP_NO_SPARE_ENI).await;
    give_back_six_meeting(&pool, &sim, 6, Fault::Timeout).await;
    checked_rounds(&pool, &sim, 16, Duration::from_millis(400)).await;
    // The timed-out call and the one that gave the surplus back.
    assert!(cloud.count(Call::UnassignIps) >= 2, "{:?}", cloud.calls());
    check_invariants(&pool, &sim, 29).await;
    assert_pool_is_ec2(&pool, &sim);
    let ec2 = ec2_addresses(&sim);
    assert_eq!(ec2.len(), 1, "the surplus was given back: {ec2:?}");
}

/// Pods of the lost unassign's group keep arriving, so Weft grows the same
/// ENI in every round: the addresses EC2 took never become free, however
/// long the growth goes on (each change of the ENI restarts the count of
/// reads that confirm an address gone, so a lost unassign settled by a timer
/// put them back as free while EC2 no longer had them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_unassign_stays_out_of_the_pool_while_weft_keeps_growing_its_eni() {
    // 49 secondary addresses on the primary ENI: all the growth lands there.
    let sim = stale_sim_of("c5.18xlarge", 26);
    let (cloud, pool, _state) = pool_after_a_lost_unassign(&sim, 8).await;
    let group = default_group(&sim);
    // Three times the grace period and more, one new pod (and one growth
    // of the primary ENI) at a time.
    for n in 10..26 {
        pool.assign(key(n), &group, pod(n)).await.expect("address");
        pool.reconcile().await.expect("round");
        check_against_truth(&pool, &sim);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let primary = primary_eni(&sim);
    let grew = cloud
        .targets()
        .iter()
        .filter(|(call, eni)| *call == Call::AssignIps && *eni == primary)
        .count();
    assert!(
        grew >= 16,
        "the primary ENI must grow while the unassign is unsettled: {grew}"
    );
    paced_rounds(&pool, 8, Duration::from_millis(400)).await;
    check_against_truth(&pool, &sim);
    check_invariants(&pool, &sim, 737).await;
    assert_pool_is_ec2(&pool, &sim);
}

/// ENIs attached by others (no IPv4, network card 1, EFA, trunk,
/// `no_manage`, untagged): start-up succeeds, they are listed as unmanaged
/// with the reason, and over many rounds of pods coming and going no call
/// targets them and none of their addresses reaches a pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_enis_are_listed_and_never_touched() {
    // 15 ENIs: room for the primary, five foreign ENIs on card 0 and Weft's.
    let sim = sim("c5.18xlarge", 24);
    let mut foreign = BTreeMap::new();
    for kind in [
        ForeignEni::NoIpv4,
        ForeignEni::OtherCard,
        ForeignEni::Efa,
        ForeignEni::Trunk,
        ForeignEni::NoManage,
        ForeignEni::Untagged,
    ] {
        let eni = sim.attach_foreign(kind).expect("attach");
        foreign.insert(eni.id.clone(), eni);
    }
    let (cloud, pool, _state) = counted_pool(
        &sim,
        r#"{"warm-ip-target": 3, "min-eni-age-seconds": 0}"#,
        PoolConfig {
            inventory_resync_seconds: 0,
            ..config()
        },
    )
    .await;
    let unmanaged = pool.snapshot().unmanaged;
    assert_eq!(unmanaged.len(), foreign.len(), "{unmanaged:#?}");
    for u in &unmanaged {
        assert!(foreign.contains_key(&u.id), "{u:?}");
        assert!(!u.reason.is_empty());
    }
    let foreign_ips: BTreeSet<Ipv4Addr> = foreign
        .values()
        .flat_map(|e| e.secondary_ips.clone())
        .collect();
    let group = default_group(&sim);
    for n in 0..60u32 {
        let placed = pool.assign(key(n), &group, pod(n)).await.expect("address");
        assert!(!foreign.contains_key(&placed.eni_id));
        assert!(
            !foreign_ips.contains(&placed.ip),
            "{} is foreign",
            placed.ip
        );
        if n % 2 == 1 {
            pool.release(&key(n - 1)).expect("release");
        }
        if n % 10 == 9 {
            pool.reconcile().await.expect("round");
        }
    }
    release(&pool, 0..60);
    paced_rounds(&pool, 4, Duration::ZERO).await;
    for (call, eni) in cloud.targets() {
        assert!(
            !foreign.contains_key(&eni),
            "{call:?} targeted foreign {eni}"
        );
    }
    assert!(cloud.count(Call::UnassignIps) + cloud.count(Call::DeleteEni) > 0);
    for eni in foreign.values() {
        let now = sim
            .all_enis()
            .into_iter()
            .find(|e| e.id == eni.id)
            .expect("still exists");
        assert_eq!(now.attachment, eni.attachment, "{} was detached", eni.id);
        assert_eq!(now.secondary_ips, eni.secondary_ips);
    }
}

/// A release whose delete keeps failing: the ENI is never used again, its
/// intent stays open and the delete is retried, and the collector of the
/// running agent removes it once it is old enough; each collection is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eni_whose_delete_fails_is_collected_by_the_running_agent() {
    let sim = Arc::new(
        SimCloud::builder()
            .seed(25)
            .instance_type("m5.large")
            .subnet("10.0.0.0/24")
            .leak_min_age(Duration::from_secs(1))
            .build()
            .expect("simulator"),
    );
    let metrics = Arc::new(Metrics::new());
    let (_cloud, pool, _state) = counted_pool_with(
        &sim,
        r#"{"warm-ip-target": 1, "min-eni-age-seconds": 0}"#,
        PoolConfig {
            leaked_eni_cleanup_seconds: 1,
            ..config()
        },
        Default::default(),
        metrics.clone(),
    )
    .await;
    fill(&pool, &default_group(&sim), 0..12).await;
    assert_eq!(sim.list_enis().await.expect("list").len(), 2);
    // Every delete fails after the detach went through.
    sim.set_failure_rate(Ec2Action::DeleteNetworkInterface, 1.0, Fault::Fatal);
    release(&pool, 0..12);
    paced_rounds(&pool, 2, Duration::ZERO).await;
    let secondary: Vec<_> = sim
        .all_enis()
        .into_iter()
        .filter(|e| e.device_index() != Some(0))
        .collect();
    assert_eq!(secondary.len(), 1, "the failed delete left the ENI behind");
    assert!(secondary[0].attachment.is_none(), "detached");
    let leaked = secondary[0].id.clone();
    // Its addresses are never handed out again.
    for e in pool.snapshot().enis.iter().filter(|e| e.id == leaked) {
        assert!(e.addresses.iter().all(|a| a.state == "releasing"), "{e:?}");
    }
    sim.set_failure_rate(Ec2Action::DeleteNetworkInterface, 0.0, Fault::Fatal);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    paced_rounds(&pool, 2, Duration::ZERO).await;
    assert!(
        sim.all_enis().iter().all(|e| e.id != leaked),
        "the leaked ENI was not collected"
    );
    assert!(pool.snapshot().enis.iter().all(|e| e.id != leaked));
    assert!(
        metrics
            .encode()
            .lines()
            .any(|l| l.contains(r#"event="collect-leaked-eni",outcome="ok""#)),
        "{}",
        metrics.encode()
    );
}

/// Ten nodes of one account warm up together, each comparing itself with EC2 in every round.
/// EC2 meters the account, not the node: with each node's client buckets at its share of the
/// account's, every node converges and the account's buckets never refuse a call (with a whole
/// account's buckets per node, the fleet's reads exceed the account's within the first rounds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_sharing_one_account_warm_up_without_exhausting_it() {
    const NODES: u32 = 10;
    let account_limits = RateLimits::aws();
    let account = Arc::new(RateLimiter::new(&account_limits, Arc::new(SystemClock)));
    let mut nodes = Vec::new();
    for n in 0..NODES {
        let sim = Arc::new(
            SimCloud::builder()
                .seed(100 + u64::from(n))
                .instance_type("m5.large")
                .subnet("10.0.0.0/24")
                .account_throttle(account.clone())
                .client_limits(account_limits.share(NODES))
                .build()
                .expect("simulator"),
        );
        nodes.push(sim);
    }
    let warm_ups = nodes.iter().map(|sim| {
        let sim = sim.clone();
        async move {
            let (_tmp, dir) = state_dir();
            let pool = start(
                sim.clone() as Arc<dyn Cloud>,
                &dir,
                r#"{"warm-ip-target": 3}"#,
                PoolConfig {
                    inventory_resync_seconds: 0,
                    ..config()
                },
                Default::default(),
            )
            .await;
            let group: SgSet = default_group(&sim);
            for _ in 0..20 {
                pool.reconcile().await.expect("round");
            }
            let placed = pool.assign(key(0), &group, pod(0)).await;
            pool.shutdown().await;
            placed.map(|p| p.ip)
        }
    });
    let results = futures::future::join_all(warm_ups).await;
    let mut refused = 0;
    for (n, sim) in nodes.iter().enumerate() {
        for api in [
            Ec2Action::DescribeInstances,
            Ec2Action::DescribeInstanceTypes,
            Ec2Action::DescribeNetworkInterfaces,
            Ec2Action::DescribeSubnets,
            Ec2Action::AssignPrivateIpAddresses,
            Ec2Action::CreateNetworkInterface,
            Ec2Action::AttachNetworkInterface,
        ] {
            refused += sim.calls(api).throttled;
        }
        assert!(
            results[n].is_ok(),
            "node {n} did not converge: {:?}",
            results[n]
        );
    }
    assert_eq!(refused, 0, "the fleet exhausted the account's buckets");
}
