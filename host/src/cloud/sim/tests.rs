//! Simulator-backed tests: limits, address uniqueness, prefix alignment and fragmentation,
//! throttling, injected failures, leaks and determinism.

use super::*;
use crate::cloud::action::ActionClass;
use crate::cloud::ratelimit::{BucketSpec, ManualClock};
use crate::cloud::{CloudError, LimitKind};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn sim(instance_type: &str, cidr: &str) -> SimCloud {
    SimCloud::builder()
        .seed(1)
        .instance_type(instance_type)
        .subnet(cidr)
        .build()
        .expect("valid simulator")
}

async fn create(sim: &SimCloud, addresses: AddressRequest) -> Result<Eni, CloudError> {
    let node = sim.identity().await?;
    sim.create_eni(&CreateEni {
        subnet_id: node.subnet_id,
        security_groups: node.security_groups,
        addresses,
        tags: BTreeMap::new(),
    })
    .await
}

#[tokio::test]
async fn eni_limit_of_the_instance_type_is_enforced_without_leaking() {
    let sim = sim("m5.large", "10.0.0.0/24");
    let first = create(&sim, AddressRequest::Ips(9)).await.expect("eni 1");
    let second = create(&sim, AddressRequest::Ips(9)).await.expect("eni 2");
    assert_eq!(first.device_index(), Some(1));
    assert_eq!(second.device_index(), Some(2));
    let error = create(&sim, AddressRequest::Ips(1))
        .await
        .expect_err("3 ENIs max");
    assert!(
        matches!(
            error,
            CloudError::LimitExceeded {
                what: LimitKind::Enis,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(sim.all_enis().len(), 3, "the unattachable ENI was deleted");
    assert_eq!(sim.list_enis().await.expect("list").len(), 3);
    let enis = sim.list_enis().await.expect("list");
    assert!(enis.iter().all(|e| {
        e.attachment
            .as_ref()
            .is_some_and(|a| a.delete_on_termination)
    }));
    assert_eq!(enis[1].tags[TAG_CLUSTER], "weft-sim");
    assert!(enis[1].description.starts_with("weft-i-"));
}

#[tokio::test]
async fn addresses_per_eni_are_enforced_for_ips_and_prefixes_together() {
    let sim = sim("m5.large", "10.0.0.0/22");
    let error = create(&sim, AddressRequest::Ips(10))
        .await
        .expect_err("9 max");
    assert!(matches!(
        error,
        CloudError::LimitExceeded {
            what: LimitKind::IpsPerEni,
            ..
        }
    ));
    let eni = create(&sim, AddressRequest::Ips(7)).await.expect("7 fit");
    let prefixes = sim.assign_prefixes(&eni.id, 2).await.expect("2 more slots");
    assert_eq!(prefixes.len(), 2);
    let error = sim.assign_ips(&eni.id, 1).await.expect_err("full");
    assert!(matches!(
        error,
        CloudError::LimitExceeded {
            what: LimitKind::IpsPerEni,
            ..
        }
    ));
    sim.unassign_ips(&eni.id, &eni.secondary_ips[..1])
        .await
        .expect("unassign");
    assert_eq!(
        sim.assign_ips(&eni.id, 1)
            .await
            .expect("a slot is free")
            .len(),
        1
    );
}

#[tokio::test]
async fn prefixes_need_a_nitro_instance() {
    let sim = sim("m4.large", "10.0.0.0/24");
    let error = create(&sim, AddressRequest::Prefixes(1))
        .await
        .expect_err("Xen");
    assert!(error.to_string().contains("Nitro"), "{error}");
    assert_eq!(sim.all_enis().len(), 1);
}

#[tokio::test]
async fn a_fragmented_subnet_refuses_prefixes_but_still_gives_ips() {
    // In a /26 only the blocks .16/28 and .32/28 can be prefixes (.0/28 holds reserved
    // addresses, .48/28 the broadcast address). One foreign address in each fragments it.
    let sim = sim("m5.large", "10.0.0.0/26");
    assert!(sim.occupy("10.0.0.20".parse().expect("ip")));
    assert!(sim.occupy("10.0.0.40".parse().expect("ip")));
    let error = create(&sim, AddressRequest::Prefixes(1))
        .await
        .expect_err("fragmented");
    assert!(
        matches!(error, CloudError::InsufficientCidrBlocks { .. }),
        "{error}"
    );
    let eni = create(&sim, AddressRequest::Ips(4))
        .await
        .expect("single IPs are free");
    let error = sim
        .assign_prefixes(&eni.id, 1)
        .await
        .expect_err("still fragmented");
    assert!(matches!(error, CloudError::InsufficientCidrBlocks { .. }));
    let subnets = sim.list_subnets().await.expect("subnets");
    assert_eq!(subnets[0].free_ips, 64 - 5 - 2 - 1 - 5);
}

#[tokio::test]
async fn prefixes_are_aligned_28s_inside_the_subnet() {
    let sim = sim("c5.18xlarge", "10.1.0.0/24");
    let eni = create(&sim, AddressRequest::Prefixes(10))
        .await
        .expect("10 of 15 blocks");
    for prefix in &eni.prefixes {
        assert_eq!(prefix.prefix_len(), 28);
        assert_eq!(u32::from(prefix.network()) % 16, 0);
        assert!(prefix.network() > "10.1.0.15".parse::<Ipv4Addr>().expect("ip"));
        assert!(prefix.broadcast() < "10.1.0.255".parse::<Ipv4Addr>().expect("ip"));
    }
}

#[tokio::test]
async fn an_exhausted_subnet_fails_with_insufficient_addresses_and_keeps_its_count() {
    let sim = sim("c5.18xlarge", "10.0.0.0/28");
    let free = sim.list_subnets().await.expect("subnets")[0].free_ips;
    assert_eq!(free, 16 - 5 - 1);
    let error = create(&sim, AddressRequest::Ips(10))
        .await
        .expect_err("primary + 10 > 10");
    assert!(
        matches!(error, CloudError::InsufficientAddresses { .. }),
        "{error}"
    );
    assert_eq!(sim.list_subnets().await.expect("subnets")[0].free_ips, free);
}

#[tokio::test]
async fn token_buckets_throttle_bursts_and_refill() {
    let clock = Arc::new(ManualClock::default());
    let limits = RateLimits::aws().with(
        ActionClass::AddressAssignment,
        BucketSpec {
            capacity: 2,
            refill_per_sec: 1.0,
        },
    );
    let sim = SimCloud::builder()
        .instance_type("c5.18xlarge")
        .subnet("10.0.0.0/24")
        .throttle(limits)
        .clock(clock.clone())
        .build()
        .expect("sim");
    let eni = create(&sim, AddressRequest::Ips(1)).await.expect("eni");
    sim.assign_ips(&eni.id, 1).await.expect("token 1");
    sim.assign_ips(&eni.id, 1).await.expect("token 2");
    let error = sim.assign_ips(&eni.id, 1).await.expect_err("bucket empty");
    assert!(matches!(error, CloudError::Throttled { .. }));
    assert!(error.is_retryable());
    sim.list_enis().await.expect("describe has its own bucket");
    clock.advance(Duration::from_secs(1));
    sim.assign_ips(&eni.id, 1).await.expect("refilled");
}

#[tokio::test]
async fn a_failed_attach_deletes_the_created_eni_and_frees_its_addresses() {
    let sim = sim("m5.large", "10.0.0.0/24");
    let free = sim.list_subnets().await.expect("subnets")[0].free_ips;
    sim.fail_next(Ec2Action::AttachNetworkInterface, [Fault::Fatal]);
    let error = create(&sim, AddressRequest::Ips(5))
        .await
        .expect_err("attach fails");
    assert!(matches!(error, CloudError::Fatal { .. }));
    assert_eq!(sim.all_enis().len(), 1, "only the primary ENI is left");
    assert_eq!(sim.list_subnets().await.expect("subnets")[0].free_ips, free);
    create(&sim, AddressRequest::Ips(5))
        .await
        .expect("the next create works");
}

#[tokio::test]
async fn scripted_faults_surface_as_typed_errors() {
    let sim = sim("m5.large", "10.0.0.0/24");
    sim.fail_next(
        Ec2Action::DescribeNetworkInterfaces,
        [Fault::Throttled, Fault::Timeout],
    );
    assert!(matches!(
        sim.list_enis().await,
        Err(CloudError::Throttled { .. })
    ));
    assert!(matches!(
        sim.list_enis().await,
        Err(CloudError::Timeout { .. })
    ));
    assert!(sim.list_enis().await.is_ok());
}

#[tokio::test]
async fn leaked_enis_are_found_and_deleted_but_attached_ones_are_not() {
    let sim = SimCloud::builder()
        .subnet("10.0.0.0/24")
        .leak_min_age(Duration::ZERO)
        .build()
        .expect("sim");
    let kept = create(&sim, AddressRequest::Ips(2)).await.expect("eni");
    let leaked = create(&sim, AddressRequest::Ips(2)).await.expect("eni");
    sim.orphan_eni(&leaked.id).expect("detach only");
    let found = sim.list_leaked_enis().await.expect("leaks");
    assert_eq!(
        found.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&leaked.id]
    );
    assert_eq!(
        sim.delete_leaked_enis().await.expect("collect"),
        vec![leaked.id.clone()]
    );
    let ids: Vec<String> = sim.all_enis().into_iter().map(|e| e.id).collect();
    assert!(ids.contains(&kept.id) && !ids.contains(&leaked.id));
    sim.delete_eni(&leaked.id)
        .await
        .expect("deleting a deleted ENI is fine");
}

#[tokio::test]
async fn detached_enis_become_leaked_after_five_minutes_on_the_sim_clock() {
    let clock = Arc::new(ManualClock::default());
    let sim = SimCloud::builder()
        .subnet("10.0.0.0/24")
        .clock(clock.clone())
        .build()
        .expect("sim");
    let eni = create(&sim, AddressRequest::Ips(1)).await.expect("eni");
    sim.orphan_eni(&eni.id).expect("detach only");
    clock.advance(Duration::from_secs(299));
    assert!(
        sim.list_leaked_enis().await.expect("leaks").is_empty(),
        "too young"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(sim.list_leaked_enis().await.expect("leaks").len(), 1);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_vpc() {
    async fn run() -> Vec<Eni> {
        let sim = SimCloud::builder()
            .seed(1)
            .instance_type("m5.xlarge")
            .subnet("10.0.0.0/24")
            .clock(Arc::new(ManualClock::default()))
            .start_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
            .build()
            .expect("sim");
        let eni = create(&sim, AddressRequest::Ips(3)).await.expect("eni");
        sim.assign_prefixes(&eni.id, 2).await.expect("prefixes");
        create(&sim, AddressRequest::Prefixes(1))
            .await
            .expect("eni");
        sim.all_enis()
    }
    let (a, b) = (run().await, run().await);
    assert_eq!(a, b);
}

#[test]
fn the_builder_rejects_unknown_types_and_bad_subnets() {
    let error = SimCloud::builder()
        .instance_type("x1.tiny")
        .subnet("10.0.0.0/24")
        .build();
    assert!(
        error
            .err()
            .expect("unknown")
            .to_string()
            .contains("m5.large")
    );
    assert!(SimCloud::builder().build().is_err(), "no subnet");
    assert!(SimCloud::builder().subnet("10.0.0.0/30").build().is_err());
    assert!(
        SimCloud::builder()
            .subnet("10.0.0.0/24")
            .subnet("10.0.0.128/25")
            .build()
            .is_err()
    );
}

/// One step of a random workload.
#[derive(Debug, Clone)]
enum Op {
    Create { prefixes: bool, count: u32 },
    AssignIps { eni: usize, count: u32 },
    AssignPrefixes { eni: usize, count: u32 },
    UnassignIps { eni: usize, count: usize },
    UnassignPrefixes { eni: usize, count: usize },
    Delete { eni: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<bool>(), 0u32..12).prop_map(|(prefixes, count)| Op::Create { prefixes, count }),
        (0usize..8, 1u32..20).prop_map(|(eni, count)| Op::AssignIps { eni, count }),
        (0usize..8, 1u32..6).prop_map(|(eni, count)| Op::AssignPrefixes { eni, count }),
        (0usize..8, 1usize..10).prop_map(|(eni, count)| Op::UnassignIps { eni, count }),
        (0usize..8, 1usize..4).prop_map(|(eni, count)| Op::UnassignPrefixes { eni, count }),
        (0usize..8).prop_map(|eni| Op::Delete { eni }),
    ]
}

/// Checks the VPC-wide invariants after every step.
fn check_invariants(sim: &SimCloud, limits: &InstanceLimits, net: Ipv4Net) {
    let held = sim.held_addresses();
    let unique: BTreeSet<Ipv4Addr> = held.iter().copied().collect();
    assert_eq!(unique.len(), held.len(), "an address is held twice");
    let pool = AddressPool::new(net);
    for ip in &held {
        assert!(
            net.contains(ip) && !pool.is_reserved(*ip),
            "{ip} is not usable"
        );
    }
    let enis = sim.all_enis();
    assert!(enis.iter().filter(|e| e.attachment.is_some()).count() <= limits.max_enis as usize);
    for eni in &enis {
        assert!(eni.used_slots() <= limits.slots_per_eni());
        for prefix in &eni.prefixes {
            assert_eq!(prefix.prefix_len(), 28);
            assert_eq!(u32::from(prefix.network()) % 16, 0, "{prefix} unaligned");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Simulator-backed: whatever the workload, no address is ever handed out twice while
    /// held, every address is usable, prefixes are aligned and limits hold.
    #[test]
    fn random_workloads_keep_every_invariant(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let net: Ipv4Net = "10.0.0.0/25".parse().expect("cidr");
            let sim = SimCloud::builder().seed(seed).instance_type("m5.xlarge").subnet(net.to_string()).build().expect("sim");
            let limits = sim.instance_limits().await.expect("limits");
            for op in ops {
                let before: BTreeSet<Ipv4Addr> = sim.held_addresses().into_iter().collect();
                let enis = sim.list_enis().await.expect("list");
                let pick = |i: usize| enis[i % enis.len()].clone();
                let mut new: Vec<Ipv4Addr> = Vec::new();
                match op {
                    Op::Create { prefixes, count } => {
                        let request = if prefixes { AddressRequest::Prefixes(count) } else { AddressRequest::Ips(count) };
                        if let Ok(eni) = create(&sim, request).await {
                            new.push(eni.primary_ip);
                            new.extend(&eni.secondary_ips);
                            new.extend(eni.prefixes.iter().flat_map(|p| addresses::prefix_addresses(*p)));
                        }
                    }
                    Op::AssignIps { eni, count } => {
                        new.extend(sim.assign_ips(&pick(eni).id, count).await.unwrap_or_default());
                    }
                    Op::AssignPrefixes { eni, count } => {
                        let prefixes = sim.assign_prefixes(&pick(eni).id, count).await.unwrap_or_default();
                        new.extend(prefixes.iter().flat_map(|p| addresses::prefix_addresses(*p)));
                    }
                    Op::UnassignIps { eni, count } => {
                        let eni = pick(eni);
                        let ips: Vec<_> = eni.secondary_ips.iter().copied().take(count).collect();
                        sim.unassign_ips(&eni.id, &ips).await.expect("own IPs");
                    }
                    Op::UnassignPrefixes { eni, count } => {
                        let eni = pick(eni);
                        let prefixes: Vec<_> = eni.prefixes.iter().copied().take(count).collect();
                        sim.unassign_prefixes(&eni.id, &prefixes).await.expect("own prefixes");
                    }
                    Op::Delete { eni } => {
                        let eni = pick(eni);
                        if eni.device_index() != Some(0) {
                            sim.delete_eni(&eni.id).await.expect("delete");
                        }
                    }
                }
                for ip in &new {
                    assert!(!before.contains(ip), "{ip} handed out while held");
                }
                check_invariants(&sim, &limits, net);
            }
            let handed: BTreeSet<Ipv4Addr> = sim.handed_out_ips().into_iter().collect();
            let held: BTreeSet<Ipv4Addr> = sim.held_addresses().into_iter().collect();
            let prefix_held: BTreeSet<Ipv4Addr> = sim.all_enis().iter().flat_map(|e| e.prefixes.clone()).flat_map(addresses::prefix_addresses).collect();
            assert!(held.difference(&prefix_held).all(|ip| handed.contains(ip)), "every held IP was handed out");
        });
    }
}

#[tokio::test]
async fn a_simulator_with_a_state_file_finds_its_vpc_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vpc.json");
    let build = || {
        SimCloud::builder()
            .seed(3)
            .instance_type("m5.large")
            .subnet("10.0.0.0/26")
            .state_file(&file)
            .build()
            .expect("valid simulator")
    };
    let first = build();
    let node = first.identity().await.unwrap();
    let eni = create(&first, AddressRequest::Ips(4)).await.unwrap();
    first.assign_ips(&node.primary_eni_id, 3).await.unwrap();
    let before = first.list_enis().await.unwrap();
    drop(first);

    let second = build();
    assert_eq!(second.identity().await.unwrap(), node, "same node");
    assert_eq!(
        second.list_enis().await.unwrap(),
        before,
        "same ENIs and addresses"
    );
    // New ids and addresses never repeat the kept ones.
    let another = create(&second, AddressRequest::Ips(4)).await.unwrap();
    assert_ne!(another.id, eni.id);
    let held = second.held_addresses();
    assert_eq!(
        held.len(),
        held.iter().collect::<BTreeSet<_>>().len(),
        "no address held twice: {held:?}"
    );
    // Without the file, the same seed is a new VPC.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        build().list_enis().await.unwrap().len(),
        1,
        "only the primary ENI"
    );
}
