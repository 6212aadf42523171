//! The pool service on `Ec2Cloud` against the moto EC2 emulator (moto-backed): ADD waiting for a
//! scale-up, a second ENI, scale-down back to the primary ENI, restart, and start-up recovery of
//! an ENI whose create was interrupted. Prefixes and limits, which moto does not model, are
//! covered on `SimCloud` in `weft-host`'s `reconcile_*` tests.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use weft_host::cloud::{Cloud, Ec2Cloud};
use weft_host::ipam::SgSet;
use weft_host::metrics::Metrics;
use weft_host::reconcile::{Pool, TAG_OPERATION};
use weft_host::state::{Operation, StateDir};
use weft_tests::support::pool::{self, key, pod, release_all, rounds};
use weft_tests::support::vpc;

const SETTINGS: &str = r#"{"warm-ip-target": 2, "min-eni-age-seconds": 0}"#;

async fn start(cloud: Arc<Ec2Cloud>, dir: &Path) -> Arc<Pool> {
    pool::start(
        cloud,
        dir,
        Arc::new(Metrics::new()),
        SETTINGS,
        pool::config(30_000),
    )
    .await
}

/// Secondary addresses of every ENI attached to the node, as EC2 reports them.
async fn ec2_addresses(cloud: &Ec2Cloud) -> BTreeSet<Ipv4Addr> {
    cloud
        .list_enis()
        .await
        .expect("list")
        .iter()
        .flat_map(|e| e.secondary_ips.clone())
        .collect()
}

/// moto-backed: ADDs on an empty node wait for the reconciler, which fills the primary ENI and
/// creates a second one (tagged with its journal operation); every assigned address is on the
/// node in EC2; after every pod is gone the second ENI is deleted and the free addresses are
/// given back down to the warm target; a restart keeps the assignments.
#[tokio::test]
async fn pods_come_and_go_and_the_pool_follows_on_ec2() {
    let (moto, client, test) = vpc::in_moto("m5.large").await;
    let cloud = Arc::new(vpc::default_cloud(&moto.url(), &test.node).await);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("state");
    let group = SgSet::new(test.node.security_groups.clone());

    let pool = start(cloud.clone(), &dir).await;
    let mut ips = BTreeSet::new();
    for n in 0..12 {
        let placed = pool.assign(key(n), &group, pod(n)).await.expect("address");
        assert!(ips.insert(placed.ip), "{} handed out twice", placed.ip);
    }
    let on_ec2 = ec2_addresses(&cloud).await;
    assert!(ips.is_subset(&on_ec2), "{ips:?} not all on {on_ec2:?}");
    let enis = cloud.list_enis().await.expect("list");
    // moto draws each ENI's addresses at random in the subnet and, rarely
    // in the test's /17, gives a new ENI an address another ENI holds (EC2
    // never does); Weft then leaves that address unused and may need a
    // third ENI.
    let mut seen = BTreeSet::new();
    let moto_duplicated = enis
        .iter()
        .flat_map(|e| e.secondary_ips.iter())
        .any(|ip| !seen.insert(*ip));
    if !moto_duplicated {
        assert_eq!(enis.len(), 2, "the primary ENI has 9 slots: a second ENI");
    }
    assert!(
        enis[1].tags.contains_key(TAG_OPERATION),
        "{:?}",
        enis[1].tags
    );

    // Restart: same assignments, nothing to do.
    pool.shutdown().await;
    drop(pool);
    let pool = start(cloud.clone(), &dir).await;
    let held: BTreeSet<Ipv4Addr> = pool.assignments().iter().map(|a| a.ip).collect();
    assert_eq!(held, ips);

    release_all(&pool, 0..12);
    rounds(&pool, 4).await;
    let enis = cloud.list_enis().await.expect("list");
    assert_eq!(enis.len(), 1, "the second ENI was released");
    assert_eq!(enis[0].id, test.node.primary_eni_id);
    assert_eq!(ec2_addresses(&cloud).await.len(), 2, "warm-ip-target 2");
    assert_eq!(
        vpc::all_enis(&client, &test.node.vpc_id).await.len(),
        1,
        "no ENI left behind in the VPC"
    );
    let report = pool.reconcile().await.expect("round");
    assert_eq!(report.cloud_changes, 0, "{report:?}");
}

/// moto-backed: a journaled create whose ENI exists but was never attached (the agent died
/// between create and attach) is found by its operation tag at start and deleted.
#[tokio::test]
async fn an_interrupted_create_is_undone_at_start() {
    let (moto, client, test) = vpc::in_moto("m5.large").await;
    let cloud = Arc::new(vpc::default_cloud(&moto.url(), &test.node).await);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("state");

    let orphan = {
        let state = StateDir::open(&dir).expect("state directory");
        let (mut journal, _) = state.open_journal().expect("journal");
        let intent = journal
            .begin(
                Operation::CreateEni {
                    subnet_id: test.node.subnet_id.clone(),
                    security_groups: SgSet::new(test.node.security_groups.clone()),
                    ips: 2,
                    prefixes: 0,
                },
                SystemTime::now(),
            )
            .expect("journal");
        client
            .create_network_interface()
            .subnet_id(&test.node.subnet_id)
            .set_groups(Some(test.node.security_groups.clone()))
            .secondary_private_ip_address_count(2)
            .tag_specifications(vpc::eni_tags([(TAG_OPERATION, intent.id.as_str())]))
            .send()
            .await
            .expect("CreateNetworkInterface")
            .network_interface()
            .and_then(|e| e.network_interface_id())
            .expect("id")
            .to_owned()
    };
    assert_eq!(vpc::all_enis(&client, &test.node.vpc_id).await.len(), 2);

    let pool = start(cloud.clone(), &dir).await;
    let left: Vec<String> = vpc::all_enis(&client, &test.node.vpc_id)
        .await
        .iter()
        .filter_map(|e| e.network_interface_id().map(str::to_owned))
        .collect();
    assert!(!left.contains(&orphan), "{orphan} still exists: {left:?}");
    pool.shutdown().await;
    drop(pool);
    let state = StateDir::open(&dir).expect("state directory");
    assert!(state.open_journal().expect("journal").1.is_empty());
}

/// Creates an ENI outside Weft with two secondary addresses and `tags`, attached to the node at
/// `device_index`; returns its id and addresses.
async fn foreign_eni(
    client: &aws_sdk_ec2::Client,
    node: &weft_host::cloud::NodeIdentity,
    device_index: i32,
    tags: &[(&str, &str)],
) -> (String, BTreeSet<Ipv4Addr>) {
    let created = client
        .create_network_interface()
        .subnet_id(&node.subnet_id)
        // The pods' own security groups: only ownership keeps Weft away.
        .set_groups(Some(node.security_groups.clone()))
        .secondary_private_ip_address_count(2)
        .tag_specifications(vpc::eni_tags(tags.iter().copied()))
        .send()
        .await
        .expect("CreateNetworkInterface");
    let eni = created.network_interface().expect("interface");
    let id = eni.network_interface_id().expect("id").to_owned();
    let ips = vpc::secondary_ips(eni);
    client
        .attach_network_interface()
        .network_interface_id(&id)
        .instance_id(&node.instance_id)
        .device_index(device_index)
        .send()
        .await
        .expect("AttachNetworkInterface");
    (id, ips)
}

/// moto-backed: ENIs attached to the node by someone else (one tagged
/// `node.k8s.amazonaws.com/no_manage=true`, one untagged) are listed as unmanaged with the
/// reason; over rounds of pods coming and going none of their addresses reaches a pod and they
/// keep their addresses and attachment.
#[tokio::test]
async fn foreign_enis_on_ec2_are_listed_and_never_touched() {
    let (moto, client, test) = vpc::in_moto("m5.xlarge").await;
    let node = &test.node;
    let no_manage = foreign_eni(
        &client,
        node,
        1,
        &[(weft_host::reconcile::TAG_NO_MANAGE, "true")],
    )
    .await;
    let untagged = foreign_eni(&client, node, 2, &[("Name", "someone else's")]).await;
    let cloud = Arc::new(vpc::default_cloud(&moto.url(), node).await);
    let tmp = tempfile::tempdir().expect("temp dir");
    let pool = start(cloud.clone(), &tmp.path().join("state")).await;
    let unmanaged = pool.snapshot().unmanaged;
    let listed: BTreeSet<&str> = unmanaged.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(
        listed,
        BTreeSet::from([no_manage.0.as_str(), untagged.0.as_str()]),
        "{unmanaged:#?}"
    );
    let foreign_ips: BTreeSet<Ipv4Addr> = no_manage.1.union(&untagged.1).copied().collect();
    let group = SgSet::new(node.security_groups.clone());
    for n in 0..24 {
        let placed = pool.assign(key(n), &group, pod(n)).await.expect("address");
        assert!(
            placed.eni_id != no_manage.0 && placed.eni_id != untagged.0,
            "{} comes from foreign ENI {}",
            placed.ip,
            placed.eni_id
        );
        // moto draws each ENI's secondary addresses at random and can give
        // one of Weft's ENIs an address a foreign ENI holds (EC2 never
        // does): such an address is Weft's to hand out.
        if foreign_ips.contains(&placed.ip) {
            let own = vpc::all_enis(&client, &node.vpc_id)
                .await
                .into_iter()
                .find(|e| e.network_interface_id() == Some(placed.eni_id.as_str()))
                .is_some_and(|e| {
                    e.private_ip_addresses()
                        .iter()
                        .any(|a| a.private_ip_address() == Some(placed.ip.to_string().as_str()))
                });
            assert!(own, "{} is foreign", placed.ip);
        }
        if n % 2 == 1 {
            pool.release(&key(n - 1)).expect("release");
            pool.reconcile().await.expect("round");
        }
    }
    release_all(&pool, 0..24);
    rounds(&pool, 3).await;
    for (id, ips) in [&no_manage, &untagged] {
        let now = vpc::all_enis(&client, &node.vpc_id)
            .await
            .into_iter()
            .find(|e| e.network_interface_id() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} was deleted"));
        assert_eq!(
            now.attachment().and_then(|a| a.instance_id()),
            Some(node.instance_id.as_str()),
            "{id} was detached"
        );
        assert_eq!(
            &vpc::secondary_ips(&now),
            ips,
            "{id} lost or gained addresses"
        );
    }
    pool.shutdown().await;
}
