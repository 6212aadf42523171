//! The pool service (the agent's reconciler, ADD waits and releases) on `Ec2Cloud` through the
//! fault proxy in front of moto (moto-backed, real wire): 30% of calls are throttled, answered
//! 500/503, or carried out with their answer lost, during warm-up and pod churn, with the pool
//! crashed (aborted mid-round) and restarted from its state directory. Afterwards it converges
//! and EC2, checked through a clean client straight to moto, equals the datastore: no stray ENI,
//! no address the pool does not know, no address held twice.
//!
//! The pool runs in the test process (not the `weftd` binary): moto's ENIs have no Linux links,
//! so the node-side ENI set-up is left out (`NoHooks`); the node side is covered on the
//! simulator in `node_crash_churn`. `WEFT_LONG=1` runs more rounds and crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weft_host::cloud::Ec2Cloud;
use weft_host::ipam::SgSet;
use weft_host::metrics::Metrics;
use weft_host::reconcile::{Pool, PoolConfig};
use weft_tests::support::churn::long;
use weft_tests::support::fault_proxy::{FaultPlan, FaultProxy};
use weft_tests::support::pool::{self, key, pod};
use weft_tests::support::vpc;

async fn start(cloud: Arc<Ec2Cloud>, dir: &Path, metrics: Arc<Metrics>) -> Arc<Pool> {
    let config = PoolConfig {
        inventory_resync_seconds: 0,
        stale_read_grace_seconds: 2,
        ..pool::config(15_000)
    };
    let settings = r#"{"warm-ip-target": 3, "min-eni-age-seconds": 0}"#;
    pool::start(cloud, dir, metrics, settings, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_and_churn_under_30_percent_faults_converge_without_leaks() {
    let (rounds, crashes_every) = if long() { (40, 5) } else { (12, 4) };
    let (moto, clean, test) = vpc::in_moto("m5.xlarge").await;
    let node = &test.node;
    let proxy = FaultProxy::start(moto.addr(), FaultPlan::every_kind(0.3, 0x9b)).await;
    let metrics = Arc::new(Metrics::new());
    let cloud =
        Arc::new(vpc::ec2_cloud(&proxy.url(), node, metrics.clone(), vpc::quick_retries(10)).await);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("state");
    let group = SgSet::new(node.security_groups.clone());

    let mut pool = start(cloud.clone(), &dir, metrics.clone()).await;
    let mut live: BTreeMap<u32, Ipv4Addr> = BTreeMap::new();
    let (mut next, mut adds, mut try_again, mut releases, mut crashes) = (0u32, 0, 0, 0, 0);
    for round in 0..rounds {
        // A burst of ADDs (concurrent, as pods start together), then some pods go.
        let burst: Vec<u32> = (next..next + 10).collect();
        next += 10;
        let results = futures_join(&pool, &group, &burst).await;
        for (n, result) in burst.iter().zip(results) {
            match result {
                Ok(ip) => {
                    adds += 1;
                    assert!(
                        !live.values().any(|held| *held == ip),
                        "{ip} handed out twice"
                    );
                    live.insert(*n, ip);
                }
                // The pool could not grow in time under faults: the runtime retries later.
                Err(e) if e.is_try_again() => try_again += 1,
                Err(e) => panic!("ADD of c{n} failed: {e}"),
            }
        }
        let going: Vec<u32> = live.keys().copied().step_by(2).collect();
        for n in going {
            pool.release(&key(n)).expect("release");
            live.remove(&n);
            releases += 1;
        }
        if round % crashes_every == crashes_every - 1 {
            // A crash: the reconciler is stopped wherever it is, EC2 calls in flight included.
            pool.abort().await;
            drop(pool);
            crashes += 1;
            pool = start(cloud.clone(), &dir, metrics.clone()).await;
            let held: BTreeMap<u32, Ipv4Addr> = pool
                .assignments()
                .iter()
                .map(|a| (a.key.container_id[1..].parse().expect("cN"), a.ip))
                .collect();
            assert_eq!(held, live, "every answered ADD survives the crash");
        }
    }
    for n in live.keys() {
        pool.release(&key(*n)).expect("release");
    }
    // Converge: rounds until one changes nothing in EC2 and every lost answer is settled (an
    // unassign answered 503 may not have happened: its addresses are withheld from the pool for
    // the grace period, then taken back from a read and given back again); the round after it
    // must be at rest too.
    let mut last = None;
    for _ in 0..120 {
        let report = pool.reconcile().await;
        let settled = report.as_ref().is_ok_and(|r| r.is_settled());
        last = Some(report);
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let next = pool.reconcile().await;
    assert!(
        next.as_ref().is_ok_and(|r| r.is_settled()),
        "the pool does not converge: a round gave {last:?}, the next {next:?}; {:?}",
        proxy.stats()
    );

    // EC2 as moto holds it, through a clean client, against the datastore.
    let snapshot = pool.snapshot();
    let pooled: BTreeMap<String, BTreeSet<Ipv4Addr>> = snapshot
        .enis
        .iter()
        .map(|e| (e.id.clone(), e.addresses.iter().map(|a| a.ip).collect()))
        .collect();
    let in_ec2 = vpc::node_addresses(&clean, node).await;
    assert_eq!(in_ec2, pooled, "EC2 = datastore");
    assert!(pool.assignments().is_empty());
    let stats = proxy.stats();
    eprintln!(
        "EC2 faults: {rounds} churn rounds, {adds} ADDs answered, {try_again} try-again, \
         {releases} releases, {crashes} crashes of the pool; proxy {stats:?}; \
         converged with {} ENIs, nothing leaked",
        in_ec2.len()
    );
    assert!(
        stats.throttled + stats.internal + stats.unavailable + stats.delayed >= 5,
        "faults were injected: {stats:?}"
    );
}

/// ADDs of `pods` started together; each answer is the address or the pool's error.
async fn futures_join(
    pool: &Arc<Pool>,
    group: &SgSet,
    pods: &[u32],
) -> Vec<Result<Ipv4Addr, weft_host::reconcile::PoolError>> {
    let tasks: Vec<_> = pods
        .iter()
        .map(|&n| {
            let (pool, group) = (pool.clone(), group.clone());
            tokio::spawn(async move { pool.assign(key(n), &group, pod(n)).await.map(|p| p.ip) })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("ADD task"));
    }
    out
}
