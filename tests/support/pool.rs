//! The pool service started in-process on a cloud (moto, usually behind the
//! fault proxy), with the built-in warm-pool policy and no node plumbing.

use std::path::Path;
use std::sync::Arc;
use weft_host::cloud::Cloud;
use weft_host::ipam::{AssignmentKey, PodMeta};
use weft_host::metrics::Metrics;
use weft_host::policy::{PoliciesConfig, PolicyConfig, PolicySet};
use weft_host::reconcile::{NoHooks, Pool, PoolConfig, PoolDeps};
use weft_host::state::StateDir;

/// The assignment key of pod `n`.
pub fn key(n: u32) -> AssignmentKey {
    AssignmentKey::new("weft", format!("c{n}"), "eth0")
}

/// The metadata of pod `n`.
pub fn pod(n: u32) -> PodMeta {
    PodMeta {
        namespace: "default".into(),
        name: format!("pod-{n}"),
        uid: format!("uid-{n}"),
    }
}

/// A pool config for tests: no cooldown, ENIs releasable at once, ADDs
/// waiting up to `add_wait_ms`, and a resync period long enough that only
/// events drive rounds.
pub fn config(add_wait_ms: u64) -> PoolConfig {
    PoolConfig {
        cooldown_seconds: 0,
        min_eni_age_seconds: 0,
        add_wait_ms,
        resync_seconds: 3_600,
        ..Default::default()
    }
}

/// Starts the pool on `cloud` with state in `dir`, warm-pool `settings`
/// (JSON) and `config`.
pub async fn start(
    cloud: Arc<dyn Cloud>,
    dir: &Path,
    metrics: Arc<Metrics>,
    settings: &str,
    config: PoolConfig,
) -> Arc<Pool> {
    super::log::capture();
    let policies = PoliciesConfig {
        pool_sizing: Some(PolicyConfig {
            settings: serde_json::from_str(settings).expect("settings are JSON"),
            ..Default::default()
        }),
        ..Default::default()
    };
    Pool::start(PoolDeps {
        cloud,
        policies: Arc::new(PolicySet::from_config(&policies, metrics.clone()).expect("policies")),
        state: StateDir::open(dir).expect("state directory"),
        metrics,
        hooks: Arc::new(NoHooks),
        config,
    })
    .await
    .expect("the pool starts")
}

/// Releases pods `range`; every release must succeed.
pub fn release_all(pool: &Pool, range: std::ops::Range<u32>) {
    for n in range {
        pool.release(&key(n)).expect("release");
    }
}

/// Runs `n` reconciler rounds back to back; every one must succeed.
pub async fn rounds(pool: &Pool, n: usize) {
    for _ in 0..n {
        pool.reconcile().await.expect("round");
    }
}
