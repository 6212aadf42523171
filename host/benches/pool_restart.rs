//! How long the pool service of a node with 250 pods takes to serve again
//! after an agent restart: `Pool::start` (node identity, limits and ENI
//! inventory from the cloud, journal replay, checkpoint load, datastore
//! rebuild, ENI hooks) until a repeated ADD of a running pod and the ADD of
//! a new pod are answered. The cloud is `SimCloud` on a c5.18xlarge, once
//! answering at once and once with 50 ms per describe call (closer to EC2).
//!
//! Run: `cargo bench -p weft-host --bench pool_restart` (add
//! `--profile dev` for an unoptimised build).

use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_host::cloud::{Ec2Action, SimCloud};
use weft_host::ipam::{AssignmentKey, PodMeta, SgSet};
use weft_host::metrics::Metrics;
use weft_host::policy::{PoliciesConfig, PolicySet};
use weft_host::reconcile::{NoHooks, Pool, PoolConfig, PoolDeps};
use weft_host::state::StateDir;

const PODS: u32 = 250;
const ROUNDS: usize = 20;

fn key(n: u32) -> AssignmentKey {
    AssignmentKey::new("weft", format!("{n:064x}"), "eth0")
}

fn pod(n: u32) -> PodMeta {
    PodMeta {
        namespace: "bench".into(),
        name: format!("pod-{n}"),
        uid: format!("0b4c6a1e-0000-4000-8000-{n:012}"),
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn start(
    cloud: Arc<SimCloud>,
    policies: &Arc<PolicySet>,
    dir: &std::path::Path,
) -> Arc<Pool> {
    Pool::start(PoolDeps {
        cloud,
        policies: policies.clone(),
        state: StateDir::open(dir).expect("state directory"),
        metrics: Arc::new(Metrics::new()),
        hooks: Arc::new(NoHooks),
        config: PoolConfig {
            cooldown_seconds: 0,
            ..PoolConfig::default()
        },
    })
    .await
    .expect("pool starts")
}

async fn run(describe_latency: Duration) {
    let sim = Arc::new(
        SimCloud::builder()
            .instance_type("c5.18xlarge")
            .subnet("10.0.0.0/20")
            .latency(Ec2Action::DescribeInstances, describe_latency)
            .latency(Ec2Action::DescribeInstanceTypes, describe_latency)
            .latency(Ec2Action::DescribeNetworkInterfaces, describe_latency)
            .build()
            .expect("simulator"),
    );
    let policies = Arc::new(
        PolicySet::from_config(&PoliciesConfig::default(), Arc::new(Metrics::new()))
            .expect("policies"),
    );
    let tmp = tempfile::tempdir().expect("temporary directory");
    let base = std::env::var_os("WEFT_BENCH_DIR").map_or_else(|| tmp.path().to_owned(), Into::into);
    let dir = base.join("weft-bench-pool");

    let pool = start(sim.clone(), &policies, &dir).await;
    let group: SgSet = pool.default_group();
    for n in 0..PODS {
        pool.assign(key(n), &group, pod(n))
            .await
            .expect("room for every pod");
    }
    pool.reconcile().await.expect("round");
    pool.shutdown().await;
    drop(pool);

    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let started = Instant::now();
        let pool = start(sim.clone(), &policies, &dir).await;
        let again = pool
            .assign(key(7), &group, pod(7))
            .await
            .expect("running pod");
        let extra = key(PODS + 1);
        let new = pool
            .assign(extra.clone(), &group, pod(PODS + 1))
            .await
            .expect("warm address");
        samples.push(started.elapsed());
        assert!(!again.fresh && new.fresh);
        assert_eq!(pool.assignments().len(), PODS as usize + 1, "round {round}");
        pool.release(&extra).expect("release");
        pool.shutdown().await;
    }
    println!(
        "{PODS} pods, describe latency {describe_latency:?}: restart until serving median {:?}, max {:?} ({} build)",
        median(samples.clone()),
        samples.iter().max().copied().unwrap_or_default(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimised"
        }
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(Duration::ZERO));
    runtime.block_on(run(Duration::from_millis(50)));
}
