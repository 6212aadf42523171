//! `Ec2Cloud` through a fault-injecting proxy in front of moto (moto-backed, real wire):
//! throttling answers, HTTP 500/503 and answers lost after the call took effect.

use std::collections::BTreeSet;
use std::sync::Arc;
use weft_host::cloud::{AddressRequest, Cloud, CreateEni};
use weft_host::metrics::Metrics;
use weft_tests::support::fault_proxy::{FaultPlan, FaultProxy};
use weft_tests::support::vpc;

/// With 30% of calls failing, a warm-up to 3 ENIs (on a type that allows 4) converges, and
/// afterwards every Weft ENI in the VPC is attached and tracked: none is left behind by a
/// retried create, a lost answer or an undone attach. Several fault sequences (seeds) are run,
/// so each failure mode hits each step of the create somewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_converges_under_30_percent_faults_without_leaks() {
    for seed in [1, 2, 3, 0x5eed] {
        warm_up(seed).await;
    }
}

async fn warm_up(seed: u64) {
    let (moto, clean, test) = vpc::in_moto("m5.xlarge").await;
    let node = &test.node;
    let proxy = FaultProxy::start(moto.addr(), FaultPlan::every_kind(0.3, seed)).await;
    let metrics = Arc::new(Metrics::new());
    let cloud = vpc::ec2_cloud(&proxy.url(), node, metrics.clone(), vpc::quick_retries(10)).await;

    let request = CreateEni {
        subnet_id: node.subnet_id.clone(),
        security_groups: node.security_groups.clone(),
        addresses: AddressRequest::Ips(4),
        tags: Default::default(),
    };
    let mut tracked = BTreeSet::new();
    let mut rounds = 0;
    while tracked.len() < 3 {
        rounds += 1;
        assert!(
            rounds <= 20,
            "seed {seed}: warm-up did not converge; tracked {tracked:?}"
        );
        match cloud.create_eni(&request).await {
            Ok(eni) => {
                assert!(tracked.insert(eni.id.clone()), "{} returned twice", eni.id);
            }
            // What a reconciler does: try again on its next round.
            Err(error) if error.is_retryable() => {}
            Err(error) => panic!("non-retryable failure under injected faults: {error}"),
        }
    }

    let stats = proxy.stats();
    let injected = stats.throttled + stats.internal + stats.unavailable + stats.delayed;
    assert!(
        injected >= 3,
        "the proxy must actually inject faults: {stats:?}"
    );

    // Checked through a clean client straight to moto, not through Weft.
    let weft_enis: Vec<_> = vpc::all_enis(&clean, &node.vpc_id)
        .await
        .into_iter()
        .filter(|n| n.network_interface_id() != Some(node.primary_eni_id.as_str()))
        .collect();
    for eni in &weft_enis {
        let id = eni.network_interface_id().unwrap_or_default();
        let attached_here =
            eni.attachment().and_then(|a| a.instance_id()) == Some(node.instance_id.as_str());
        assert!(
            tracked.contains(id) && attached_here,
            "seed {seed}: {id} is neither attached-and-tracked nor deleted (tracked {tracked:?}, {stats:?})"
        );
    }
    assert_eq!(weft_enis.len(), 3, "{stats:?}");
    let listed: BTreeSet<String> = cloud
        .list_enis()
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.id)
        .filter(|id| *id != node.primary_eni_id)
        .collect();
    assert_eq!(listed, tracked);
    let encoded = metrics.encode();
    let failures_counted = encoded
        .lines()
        .any(|l| l.starts_with("weft_cloud_calls_total") && !l.contains(r#"outcome="ok""#));
    assert!(failures_counted, "failed calls must be counted: {encoded}");
}
