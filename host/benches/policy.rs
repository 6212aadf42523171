//! Decision latency per world with a fresh sandboxed instance per call
//! (deadline and memory limits on), beside the same call to the native
//! implementation. Prints p50/p99 per case and, for Wasm, the p50 of the
//! time on the policy worker (fresh store, instantiation from the configured
//! image, the call: `CallStats::elapsed`); the rest is the hand-over to and
//! from the worker thread under the watchdog and the conversion of input
//! and output.
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
        let module =
            CompiledPolicy::from_file(&engine, path.as_ref(), "bench", Some(decision), None)
                .and_then(|c| c.configure("{}", limits))
                .expect("default policy loads");
        assert!(module.starts_from_image(), "{path}: no configured image");
        module
    };

    let request = sg_request();
    let sg_wasm = load(weft_test_artifacts::SG_SELECTOR, Decision::SecurityGroups);
    let sg_native = sg_selector::SgSelector::configure("{}").expect("native");
    report("security-groups, typical pod", "wasm", || {
        let (answer, stats) = sg_wasm.select_security_groups(&request).expect("decides");
        black_box(answer).expect("groups");
        Some(stats.elapsed)
    });
    report("security-groups, typical pod", "native", || {
        let _ = black_box(sg_native.select_security_groups(&request));
        None
    });

    let state = pool_state(15, 50);
    let pool_wasm = load(weft_test_artifacts::WARM_POOL, Decision::PoolSizing);
    let pool_native = warm_pool::WarmPool::configure("{}").expect("native");
    report("pool-sizing, 15 ENIs x 50 IPs", "wasm", || {
        Some(pool_wasm.size_pool(&state).expect("decides").1.elapsed)
    });
    report("pool-sizing, 15 ENIs x 50 IPs", "native", || {
        black_box(pool_native.size_pool(&state));
        None
    });

    let (eni, candidates) = subnet_input(20);
    let subnet_wasm = load(
        weft_test_artifacts::SUBNET_MOST_FREE,
        Decision::SubnetSelection,
    );
    let subnet_native = subnet_most_free::SubnetMostFree::configure("{}").expect("native");
    report("subnet-selection, 20 candidates", "wasm", || {
        let (_, stats) = subnet_wasm
            .select_subnet(&eni, &candidates)
            .expect("decides");
        Some(stats.elapsed)
    });
    report("subnet-selection, 20 candidates", "native", || {
        black_box(subnet_native.select_subnet(&eni, &candidates));
        None
    });
}

/// Times `f` and prints p50/p99 in microseconds, and the p50 of the times
/// `f` reports spending on the policy worker, if it does.
fn report(case: &str, how: &str, mut f: impl FnMut() -> Option<Duration>) {
    for _ in 0..WARMUP {
        f();
    }
    let (mut samples, mut worker): (Vec<Duration>, Vec<Duration>) = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let on_worker = f();
            (start.elapsed(), on_worker.unwrap_or_default())
        })
        .unzip();
    let pct = |samples: &mut Vec<Duration>, p: usize| {
        samples.sort();
        samples[(samples.len() * p / 100).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    let on_worker = match pct(&mut worker, 50) {
        0.0 => String::new(),
        p50 => format!("   on the worker p50 {p50:>7.2} µs"),
    };
    println!(
        "{case:<34} {how:<6} p50 {:>9.2} µs   p99 {:>9.2} µs{on_worker}",
        pct(&mut samples, 50),
        pct(&mut samples, 99)
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
