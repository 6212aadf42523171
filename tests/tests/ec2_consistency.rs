//! The pool service on `Ec2Cloud` against moto behind the fault proxy playing EC2's eventual
//! consistency (moto-backed, real wire): `DescribeNetworkInterfaces` answers what it answered
//! before for two seconds after every changing call, the pool compares itself with EC2 every
//! second, and answers of `Assign`/`UnassignPrivateIpAddresses` get lost after they took
//! effect.

use aws_sdk_ec2::types::Filter;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use weft_host::cloud::{AddressRequest, Cloud, CreateEni, Ec2Cloud};
use weft_host::ipam::SgSet;
use weft_host::metrics::Metrics;
use weft_host::reconcile::{Pool, PoolConfig};
use weft_tests::support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use weft_tests::support::pool::{self, key, pod};
use weft_tests::support::{moto, vpc};

/// Reads lag writes by this much.
const STALE: Duration = Duration::from_secs(2);

async fn start(cloud: Arc<Ec2Cloud>, dir: &Path) -> Arc<Pool> {
    let config = PoolConfig {
        resync_seconds: 1,
        inventory_resync_seconds: 0,
        stale_read_grace_seconds: 4,
        stale_read_confirmations: 3,
        ..pool::config(30_000)
    };
    let settings = r#"{"warm-ip-target": 2, "min-eni-age-seconds": 0}"#;
    pool::start(cloud, dir, Arc::new(Metrics::new()), settings, config).await
}

/// The node's secondary addresses and the ENIs holding each, as moto holds them (read straight
/// from moto, not through the proxy). moto may hand an address already on one ENI to another
/// (it only avoids repeats within an ENI), so an address can have two ENIs here; EC2 never
/// does that.
async fn truth(
    client: &aws_sdk_ec2::Client,
    vpc_id: &str,
    instance: &str,
) -> BTreeMap<Ipv4Addr, BTreeSet<String>> {
    let mut out: BTreeMap<Ipv4Addr, BTreeSet<String>> = BTreeMap::new();
    for eni in vpc::all_enis(client, vpc_id).await {
        if eni.attachment().and_then(|a| a.instance_id()) != Some(instance) {
            continue;
        }
        let id = eni.network_interface_id().unwrap_or_default().to_owned();
        for address in eni.private_ip_addresses() {
            if address.primary() == Some(false)
                && let Some(ip) = address.private_ip_address().and_then(|a| a.parse().ok())
            {
                out.entry(ip).or_default().insert(id.clone());
            }
        }
    }
    out
}

/// The pool's free addresses.
fn free(pool: &Pool) -> BTreeSet<Ipv4Addr> {
    pool.snapshot()
        .addresses()
        .filter(|a| a.state == "free")
        .map(|a| a.ip)
        .collect()
}

/// No address held twice, every pod's address on the node, no free address one EC2 took
/// back. The reconciler keeps running meanwhile, so the pool is looked at before and after
/// moto: an address counts as free only if it was free both times (one an assign added just
/// after moto was read is not yet in moto's answer; one given back just before was in it).
async fn check(pool: &Pool, client: &aws_sdk_ec2::Client, test: &vpc::TestVpc) {
    let assignments = pool.assignments();
    let free_before = free(pool);
    let truth = truth(client, &test.node.vpc_id, &test.node.instance_id).await;
    let mut held = BTreeSet::new();
    for a in assignments {
        assert!(held.insert(a.ip), "{} held by two pods", a.ip);
        assert!(
            truth.contains_key(&a.ip),
            "pod {} holds {}, which EC2 does not have",
            a.pod,
            a.ip
        );
    }
    for ip in free_before.intersection(&free(pool)) {
        assert!(
            truth.contains_key(ip),
            "{ip} is free but EC2 took it back; EC2 has {truth:?}"
        );
    }
}

/// Pods come and go against the proxy's plan; every step is checked against moto.
/// What a churn leaves for the test to look at (dropped at its end).
struct Churned {
    pool: Arc<Pool>,
    moto: moto::MotoSession,
    test: vpc::TestVpc,
    proxy: FaultProxy,
    _state: tempfile::TempDir,
}

async fn churn(plan: FaultPlan, pods: u32) -> Churned {
    let (moto, client, test) = vpc::in_moto("m5.large").await;
    let proxy = FaultProxy::start(moto.addr(), plan).await;
    let cloud = Arc::new(
        vpc::ec2_cloud(
            &proxy.url(),
            &test.node,
            Arc::new(Metrics::new()),
            vpc::quick_retries(6),
        )
        .await,
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let pool = start(cloud, &tmp.path().join("state")).await;
    let group = SgSet::new(test.node.security_groups.clone());
    let mut live = BTreeMap::new();
    for n in 0..pods {
        let placed = pool.assign(key(n), &group, pod(n)).await.expect("address");
        live.insert(n, placed.ip);
        if n % 3 == 2 {
            pool.release(&key(n - 2)).expect("release");
            live.remove(&(n - 2));
        }
        check(&pool, &client, &test).await;
        for (n, ip) in &live {
            assert_eq!(
                pool.assignment(&key(*n)).map(|a| a.ip),
                Some(*ip),
                "pod {n} lost its address"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Churned {
        pool,
        moto,
        test,
        proxy,
        _state: tmp,
    }
}

/// moto-backed: with every read lagging the last write by two seconds and the pool resyncing
/// every second, pods keep their addresses, no address is held twice and a released address
/// never comes back as free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_on_the_wire_never_drop_a_pod_nor_free_a_released_address() {
    let churned = churn(
        FaultPlan {
            stale_reads: Some(STALE),
            ..FaultPlan::default()
        },
        18,
    )
    .await;
    let stats = churned.proxy.stats();
    assert!(
        stats.stale > 0,
        "the proxy must replay stale reads: {stats:?}"
    );
    churned.pool.shutdown().await;
}

/// Half of the `Assign`/`UnassignPrivateIpAddresses` answers (drawn from `seed`) come after
/// the call timeout, lost after the call took effect, and reads are stale (and alternate
/// between the current and the lagging answer with `alternating_reads`).
fn lost_answers_and_stale_reads(seed: u64, alternating_reads: bool) -> FaultPlan {
    FaultPlan {
        fault_rate: 0.5,
        seed,
        faults: vec![Fault::Delay],
        delay: Duration::from_millis(1500),
        actions: vec!["AssignPrivateIpAddresses", "UnassignPrivateIpAddresses"],
        stale_reads: Some(STALE),
        alternating_reads,
    }
}

/// moto-backed: half of the `Assign`/`UnassignPrivateIpAddresses` answers are lost after the
/// call took effect, and reads are stale: no address is held twice or handed out after EC2
/// took it, and after convergence EC2's view of each ENI's addresses equals the pool's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_with_stale_reads_converge_to_ec2s_view() {
    let churned = churn(lost_answers_and_stale_reads(7, false), 15).await;
    converges_to_ec2s_view(churned).await;
}

/// moto-backed: as above, and reads inside a window alternate between EC2's current answer and
/// the lagging one, so a read can be older than the read before it (after a lost assign answer,
/// such a read shows addresses Weft has just given back as if the assign had added them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_with_reads_going_back_in_time_converge_to_ec2s_view() {
    let churned = churn(lost_answers_and_stale_reads(11, true), 15).await;
    converges_to_ec2s_view(churned).await;
}

/// After a churn with lost answers: the pool, left alone, settles, and then holds exactly the
/// addresses EC2 holds, each on its ENI.
async fn converges_to_ec2s_view(churned: Churned) {
    let Churned {
        pool,
        moto,
        test,
        proxy,
        _state,
    } = churned;
    assert!(proxy.stats().delayed > 0, "{:?}", proxy.stats());
    // Quiet: the lost answers settle (twice the grace period plus reads).
    for _ in 0..14 {
        pool.reconcile().await.expect("round");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let client = vpc::client(&moto.url()).await;
    check(&pool, &client, &test).await;
    let ec2 = truth(&client, &test.node.vpc_id, &test.node.instance_id).await;
    let pooled: BTreeMap<Ipv4Addr, String> = pool
        .snapshot()
        .enis
        .iter()
        .flat_map(|e| e.addresses.iter().map(move |a| (a.ip, e.id.clone())))
        .collect();
    assert_eq!(
        pooled.keys().collect::<Vec<_>>(),
        ec2.keys().collect::<Vec<_>>(),
        "EC2 and the pool disagree after convergence: pool {pooled:?}, EC2 {ec2:?}"
    );
    for (ip, eni) in &pooled {
        // An address moto put on two ENIs is on one of them in the pool.
        assert!(
            ec2[ip].contains(eni),
            "{ip} is on {eni} in the pool but on {:?} in EC2",
            ec2[ip]
        );
    }
    pool.shutdown().await;
}

/// moto-backed: after a lost `AssignPrivateIpAddresses` answer a read of the ENI can be older
/// than the read before the call (reads alternate between replicas) and still show an address
/// Weft has just given back, so the ENI looks grown by exactly that address. The assign reports
/// its answer lost instead of taking that read for it (it used to answer the given-back address
/// as added, and the pool took it as free although EC2 no longer had it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_read_after_a_lost_assign_answer_is_not_taken_for_the_answer() {
    // Long enough that the lagging read is still young when the assign's answer is given up on.
    const WINDOW: Duration = Duration::from_secs(5);
    let (moto, client, test) = vpc::in_moto("m5.large").await;
    let proxy = FaultProxy::start(
        moto.addr(),
        FaultPlan {
            fault_rate: 1.0,
            faults: vec![Fault::Delay],
            delay: Duration::from_millis(1500),
            actions: vec!["AssignPrivateIpAddresses"],
            stale_reads: Some(WINDOW),
            alternating_reads: true,
            ..FaultPlan::default()
        },
    )
    .await;
    let cloud = vpc::ec2_cloud(&proxy.url(), &test.node, Arc::new(Metrics::new()), |c| {
        c.call_timeout = Duration::from_millis(750);
    })
    .await;
    let eni = cloud
        .create_eni(&CreateEni {
            subnet_id: test.node.subnet_id.clone(),
            security_groups: test.node.security_groups.clone(),
            addresses: AddressRequest::Ips(2),
            tags: Default::default(),
        })
        .await
        .expect("ENI");
    let given_back = eni.secondary_ips[1];
    // Once the create's window has passed, a read of the ENI (the request the assign sends
    // before and after the call) is current and becomes the lagging answer of the next window.
    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;
    let through_proxy = vpc::client(&proxy.url()).await;
    let read = || async {
        let answer = through_proxy
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("network-interface-id")
                    .values(&eni.id)
                    .build(),
            )
            .send()
            .await
            .expect("read through the proxy");
        answer.network_interfaces()[0]
            .private_ip_addresses()
            .iter()
            .filter_map(|a| a.private_ip_address()?.parse().ok())
            .collect::<BTreeSet<Ipv4Addr>>()
    };
    assert!(read().await.contains(&given_back));
    cloud
        .unassign_ips(&eni.id, &[given_back])
        .await
        .expect("unassign");
    let assigned = cloud.assign_ips(&eni.id, 1).await;
    let ec2 = truth(&client, &test.node.vpc_id, &test.node.instance_id).await;
    assert!(
        !ec2.contains_key(&given_back),
        "{given_back} is gone: {ec2:?}"
    );
    match assigned {
        Err(error) => assert!(error.is_ambiguous(), "{error}"),
        Ok(added) => panic!(
            "a read was taken for the lost answer: {added:?} added, EC2 has {:?}",
            ec2.keys()
        ),
    }
    // The read the assign would have taken after the call: older than the one before it.
    assert!(
        read().await.contains(&given_back),
        "the proxy must answer the lagging read: {:?}",
        proxy.stats()
    );
}
