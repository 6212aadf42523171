//! Decision latency per world with a fresh sandboxed instance per call
//! (deadline and memory limits on), beside the same call to the native
//! implementation. Prints p50/p99 per case.
//!
//! `cargo bench -p weft-host --bench policy` (release); numbers from a
//! debug build (`--profile dev`) only show that it runs.

use std::hint::black_box;
use std::time::{Duration, Instant};
use weft_host::policy::{CallLimits, CompiledPolicy, Decision, PolicyEngine, PolicyModule};
use weft_policy_sdk::{PoolSizing, SecurityGroups, SubnetSelection, Tag, pool, security, subnet};

const WARMUP: usize = 200;
const SAMPLES: usize = 3_000;

fn main() {
    let engine = PolicyEngine::new(None).expect("policy engine");
    // Deadline checks cost the same whatever the deadline; a generous one
    // keeps a descheduled sample on a busy machine from failing the run.
    let limits = CallLimits {
        deadline: Duration::from_millis(200),
        memory_bytes: 32 << 20,
    };
    let load = |path: &str, decision| -> PolicyModule {
        CompiledPolicy::from_file(&engine, path.as_ref(), "bench", Some(decision), None)
            .and_then(|c| c.configure("{}", limits))
            .expect("default policy loads")
    };

    let request = sg_request();
    let sg_wasm = load(weft_test_artifacts::SG_SELECTOR, Decision::SecurityGroups);
    let sg_native = sg_selector::SgSelector::configure("{}").expect("native");
    report("security-groups, typical pod", "wasm", || {
        let (answer, _) = sg_wasm.select_security_groups(&request).expect("decides");
        black_box(answer).expect("groups");
    });
    report("security-groups, typical pod", "native", || {
        let _ = black_box(sg_native.select_security_groups(&request));
    });

    let state = pool_state(15, 50);
    let pool_wasm = load(weft_test_artifacts::WARM_POOL, Decision::PoolSizing);
    let pool_native = warm_pool::WarmPool::configure("{}").expect("native");
    report("pool-sizing, 15 ENIs x 50 IPs", "wasm", || {
        pool_wasm.size_pool(&state).expect("decides");
    });
    report("pool-sizing, 15 ENIs x 50 IPs", "native", || {
        black_box(pool_native.size_pool(&state));
    });

    let (eni, candidates) = subnet_input(20);
    let subnet_wasm = load(
        weft_test_artifacts::SUBNET_MOST_FREE,
        Decision::SubnetSelection,
    );
    let subnet_native = subnet_most_free::SubnetMostFree::configure("{}").expect("native");
    report("subnet-selection, 20 candidates", "wasm", || {
        subnet_wasm
            .select_subnet(&eni, &candidates)
            .expect("decides");
    });
    report("subnet-selection, 20 candidates", "native", || {
        black_box(subnet_native.select_subnet(&eni, &candidates));
    });
}

/// Times `f` and prints p50/p99 in microseconds.
fn report(case: &str, how: &str, mut f: impl FnMut()) {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    let pct =
        |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "{case:<34} {how:<6} p50 {:>9.2} µs   p99 {:>9.2} µs",
        pct(50),
        pct(99)
    );
}

fn pool_state(enis: u32, ips: u32) -> pool::PoolState {
    pool::PoolState {
        group: vec!["sg-0123abcd".into()],
        default_group: true,
        enis: (0..enis)
            .map(|i| pool::Eni {
                id: format!("eni-{i:017x}"),
                device_index: i,
                subnet_id: "subnet-0a".into(),
                ips: ips - 1,
                prefixes: 0,
                assigned: (ips - 1) / 2,
                cooling: 1,
                age_seconds: 3600,
            })
            .collect(),
        node_enis: enis,
        node_addresses: enis * (ips - 1),
        node_assigned: enis * ((ips - 1) / 2),
        limits: pool::InstanceLimits {
            max_enis: enis,
            ipv4_per_eni: ips,
            prefix_delegation: false,
            max_pods: 737,
        },
        pending_adds: 0,
        activity: Default::default(),
    }
}

fn subnet_input(n: u64) -> (subnet::EniRequest, Vec<subnet::Candidate>) {
    let candidates = (0..n)
        .map(|i| subnet::Candidate {
            id: format!("subnet-{i:017x}"),
            availability_zone: if i % 2 == 0 {
                "us-west-2a"
            } else {
                "us-west-2b"
            }
            .into(),
            cidr: format!("10.0.{i}.0/24"),
            free_ips: 100 + i * 7,
            tags: vec![Tag::new("kubernetes.io/role/cni", "1")],
        })
        .collect();
    let request = subnet::EniRequest {
        security_groups: vec!["sg-0123abcd".into()],
        purpose: subnet::Purpose::PodAddresses,
        ips: 9,
        prefixes: 0,
        availability_zone: "us-west-2a".into(),
        node_subnet_id: format!("subnet-{:017x}", 0),
        node: Default::default(),
    };
    (request, candidates)
}

fn sg_request() -> security::Request {
    security::Request {
        pod: security::Pod {
            namespace: "shop".into(),
            name: "cart-7d9f8b6c5-x2x9z".into(),
            uid: "0b9e0c2e-1111-2222-3333-444455556666".into(),
            labels: vec![
                Tag::new("app", "cart"),
                Tag::new("tier", "web"),
                Tag::new("pod-template-hash", "7d9f8b6c5"),
            ],
            annotations: vec![Tag::new("kubernetes.io/psp", "restricted")],
            service_account: "cart".into(),
        },
        node_security_groups: vec!["sg-0123abcd".into()],
    }
}
