//! Decision latency per world with a fresh sandboxed instance per call
//! (deadline and memory limits on), beside the same call to the native
//! implementation. Each Wasm case runs three ways: `wasm` as the agent does
//! (from the configured image, on the calling thread under the watchdog),
//! `worker` the same from inside a current-thread runtime (where decisions
//! are handed to a policy worker thread: the difference is the hand-over),
//! and `no-image` with `configure` in every decision (the engine's capture
//! budget set to zero). Prints p50/p99 of the caller's time and the p50 of
//! the parts of `CallStats`: the sandbox's whole time, of which a fresh
//! store and instantiation, `configure` and the call; the caller's time
//! beyond the sandbox's is input/output conversion and validation, the
//! watch and any hand-over.
//!
//! `cargo bench -p weft-host --bench policy` (release); numbers from a
//! debug build (`--profile dev`) only show that it runs.

use std::hint::black_box;
use std::time::{Duration, Instant};
use weft_host::policy::{
    CallLimits, CallStats, CompiledPolicy, Decision, PolicyEngine, PolicyModule,
};
use weft_policy_sdk::{PoolSizing, SecurityGroups, SubnetSelection, Tag, pool, security, subnet};

const WARMUP: usize = 200;
const SAMPLES: usize = 3_000;

/// The engines and runtime every Wasm case runs on.
struct Bench {
    engine: PolicyEngine,
    /// Takes no image: every decision configures its instance.
    no_image: PolicyEngine,
    /// Decisions asked from inside it run on a policy worker thread.
    current_thread: tokio::runtime::Runtime,
}

impl Bench {
    /// Times `decide` on the default policy at `path` the three ways.
    fn wasm(
        &self,
        case: &str,
        path: &str,
        decision: Decision,
        decide: impl Fn(&PolicyModule) -> CallStats,
    ) {
        let image = load(&self.engine, path, decision);
        assert!(image.starts_from_image(), "{path}: no configured image");
        let configured = load(&self.no_image, path, decision);
        assert!(!configured.starts_from_image(), "{path}: an image");
        report(case, "wasm", || Some(decide(&image)));
        self.current_thread
            .block_on(async { report(case, "worker", || Some(decide(&image))) });
        report(case, "no-image", || Some(decide(&configured)));
    }
}

fn load(engine: &PolicyEngine, path: &str, decision: Decision) -> PolicyModule {
    // Deadline checks cost the same whatever the deadline; a generous one
    // keeps a descheduled sample on a busy machine from failing the run.
    let limits = CallLimits {
        deadline: Duration::from_millis(200),
        memory_bytes: 32 << 20,
    };
    CompiledPolicy::from_file(engine, path.as_ref(), "bench", Some(decision), None)
        .and_then(|c| c.configure("{}", limits))
        .expect("default policy loads")
}

fn main() {
    let mut no_image = PolicyEngine::new(None).expect("policy engine");
    no_image.set_image_capture_budget(Duration::ZERO);
    let bench = Bench {
        engine: PolicyEngine::new(None).expect("policy engine"),
        no_image,
        current_thread: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime"),
    };

    let request = sg_request();
    let case = "security-groups, typical pod";
    bench.wasm(
        case,
        weft_test_artifacts::SG_SELECTOR,
        Decision::SecurityGroups,
        |m| {
            let (answer, stats) = m.select_security_groups(&request).expect("decides");
            black_box(answer).expect("groups");
            stats
        },
    );
    let sg_native = sg_selector::SgSelector::configure("{}").expect("native");
    report(case, "native", || {
        let _ = black_box(sg_native.select_security_groups(&request));
        None
    });

    let state = pool_state(15, 50);
    let case = "pool-sizing, 15 ENIs x 50 IPs";
    bench.wasm(
        case,
        weft_test_artifacts::WARM_POOL,
        Decision::PoolSizing,
        |m| m.size_pool(&state).expect("decides").1,
    );
    let pool_native = warm_pool::WarmPool::configure("{}").expect("native");
    report(case, "native", || {
        black_box(pool_native.size_pool(&state));
        None
    });

    let (eni, candidates) = subnet_input(20);
    let case = "subnet-selection, 20 candidates";
    bench.wasm(
        case,
        weft_test_artifacts::SUBNET_MOST_FREE,
        Decision::SubnetSelection,
        |m| m.select_subnet(&eni, &candidates).expect("decides").1,
    );
    let subnet_native = subnet_most_free::SubnetMostFree::configure("{}").expect("native");
    report(case, "native", || {
        black_box(subnet_native.select_subnet(&eni, &candidates));
        None
    });
}

/// Times `f` and prints p50/p99 in microseconds, and the p50 of the parts
/// of the sandbox's time `f` reports, if it does.
fn report(case: &str, how: &str, mut f: impl FnMut() -> Option<CallStats>) {
    for _ in 0..WARMUP {
        f();
    }
    let (mut samples, stats): (Vec<Duration>, Vec<Option<CallStats>>) = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let stats = f();
            (start.elapsed(), stats)
        })
        .unzip();
    let p50 = |mut parts: Vec<Duration>| pct(&mut parts, 50);
    let parts = match stats.into_iter().collect::<Option<Vec<_>>>() {
        Some(stats) => format!(
            "   sandbox {:>6.2}: instantiate {:>6.2}, configure {:>6.2}, call {:>6.2}",
            p50(stats.iter().map(|s| s.elapsed).collect()),
            p50(stats.iter().map(|s| s.instantiate).collect()),
            p50(stats.iter().map(|s| s.configure).collect()),
            p50(stats
                .iter()
                .map(|s| s.elapsed - s.instantiate - s.configure)
                .collect()),
        ),
        None => String::new(),
    };
    println!(
        "{case:<32} {how:<8} p50 {:>7.2} µs  p99 {:>8.2} µs{parts}",
        pct(&mut samples, 50),
        pct(&mut samples, 99)
    );
}

/// The `p`th percentile of `samples`, in microseconds.
fn pct(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)].as_secs_f64() * 1e6
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
