//! Shared harness of the `reconcile_*` tests: a pool on `SimCloud` in a temporary state
//! directory, a cloud wrapper that counts calls and can "crash" at a chosen
//! call, recording ENI hooks, and the pool invariants.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use weft_host::cloud::{
    Cloud, CloudFuture, CreateEni, Eni, InstanceLimits, NodeIdentity, SimCloud, Subnet,
};
use weft_host::ipam::{AssignmentKey, PodMeta, SgSet};
use weft_host::metrics::Metrics;
use weft_host::policy::{PoliciesConfig, PolicyConfig, PolicySet};
use weft_host::reconcile::{EniHooks, HookError, HookFuture, Pool, PoolConfig, PoolDeps};
use weft_host::state::StateDir;

/// Where a crash strikes, relative to the chosen changing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crash {
    /// The call is never sent.
    Before,
    /// EC2 carries the call out; the answer never arrives.
    After,
    /// Only for a create: the ENI is created but the attach never happens.
    CreatedNotAttached,
}

/// A changing cloud call, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Call {
    CreateEni,
    AssignIps,
    AssignPrefixes,
    UnassignIps,
    UnassignPrefixes,
    DeleteEni,
}

/// `SimCloud` with call counters and an optional crash at the `n`-th
/// changing call (counted from 1): the call's future then never completes,
/// as if the process died there.
pub(crate) struct TestCloud {
    pub sim: Arc<SimCloud>,
    calls: Mutex<Vec<Call>>,
    /// The ENI every changing call targeted (creates excluded).
    targets: Mutex<Vec<(Call, String)>>,
    crash_at: Option<(u32, Crash)>,
    changing: AtomicU32,
    struck: tokio::sync::watch::Sender<bool>,
    /// Creates wait until this barrier's number of them are in flight.
    creates_meet: Option<tokio::sync::Barrier>,
}

impl TestCloud {
    pub(crate) fn new(sim: Arc<SimCloud>) -> Self {
        TestCloud {
            sim,
            calls: Mutex::new(Vec::new()),
            targets: Mutex::new(Vec::new()),
            crash_at: None,
            changing: AtomicU32::new(0),
            struck: tokio::sync::watch::channel(false).0,
            creates_meet: None,
        }
    }

    /// A cloud whose creates each wait until `n` creates are in flight:
    /// creates sent one after the other never get past the first.
    pub(crate) fn creating_together(sim: Arc<SimCloud>, n: usize) -> Self {
        TestCloud {
            creates_meet: Some(tokio::sync::Barrier::new(n)),
            ..TestCloud::new(sim)
        }
    }

    pub(crate) fn crashing(sim: Arc<SimCloud>, at: u32, how: Crash) -> Self {
        TestCloud {
            crash_at: Some((at, how)),
            ..TestCloud::new(sim)
        }
    }

    /// Changing calls so far, in order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The ENIs changing calls targeted.
    pub(crate) fn targets(&self) -> Vec<(Call, String)> {
        self.targets.lock().unwrap().clone()
    }

    fn target(&self, call: Call, eni_id: &str) {
        self.targets.lock().unwrap().push((call, eni_id.to_owned()));
    }

    pub(crate) fn count(&self, call: Call) -> usize {
        self.calls().iter().filter(|c| **c == call).count()
    }

    /// Changing calls made so far, those a crash kept from being sent
    /// included.
    pub(crate) fn calls_made(&self) -> u32 {
        self.changing.load(Ordering::SeqCst)
    }

    /// Whether the crash has struck.
    pub(crate) fn crashed(&self) -> bool {
        self.crash_at
            .is_some_and(|(n, _)| self.changing.load(Ordering::SeqCst) >= n)
    }

    /// Runs `work` until it ends or the crash strikes (`None`).
    pub(crate) async fn until_crash<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        tokio::select! {
            out = work => Some(out),
            () = async {
                let mut rx = self.struck.subscribe();
                let _ = rx.wait_for(|struck| *struck).await;
            } => None,
        }
    }

    /// Records a changing call; returns the crash to apply to it, if any.
    fn record(&self, call: Call) -> Option<Crash> {
        let n = self.changing.fetch_add(1, Ordering::SeqCst) + 1;
        match self.crash_at {
            Some((at, _)) if n > at => Some(Crash::Before),
            Some((at, how)) if n == at => {
                self.calls.lock().unwrap().push(call);
                self.struck.send_replace(true);
                Some(how)
            }
            _ => {
                self.calls.lock().unwrap().push(call);
                None
            }
        }
    }
}

/// Runs `op` unless a crash says otherwise; a crashed call never returns.
async fn guarded<T, F>(crash: Option<Crash>, op: F) -> Result<T, weft_host::cloud::CloudError>
where
    F: std::future::Future<Output = Result<T, weft_host::cloud::CloudError>>,
{
    match crash {
        None => op.await,
        Some(Crash::Before) => std::future::pending().await,
        Some(Crash::After | Crash::CreatedNotAttached) => {
            let _ = op.await;
            std::future::pending().await
        }
    }
}

impl Cloud for TestCloud {
    fn identity(&self) -> CloudFuture<'_, NodeIdentity> {
        self.sim.identity()
    }
    fn instance_limits(&self) -> CloudFuture<'_, InstanceLimits> {
        self.sim.instance_limits()
    }
    fn list_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        self.sim.list_enis()
    }
    fn list_subnets(&self) -> CloudFuture<'_, Vec<Subnet>> {
        self.sim.list_subnets()
    }
    fn create_eni<'a>(&'a self, request: &'a CreateEni) -> CloudFuture<'a, Eni> {
        let crash = self.record(Call::CreateEni);
        Box::pin(async move {
            if let Some(barrier) = &self.creates_meet {
                barrier.wait().await;
            }
            if crash == Some(Crash::CreatedNotAttached) {
                if let Ok(eni) = self.sim.create_eni(request).await {
                    self.sim.orphan_eni(&eni.id).expect("detach");
                }
                return std::future::pending().await;
            }
            guarded(crash, self.sim.create_eni(request)).await
        })
    }
    fn assign_ips<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Addr>> {
        let crash = self.record(Call::AssignIps);
        self.target(Call::AssignIps, eni_id);
        Box::pin(guarded(crash, self.sim.assign_ips(eni_id, count)))
    }
    fn assign_prefixes<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Net>> {
        let crash = self.record(Call::AssignPrefixes);
        self.target(Call::AssignPrefixes, eni_id);
        Box::pin(guarded(crash, self.sim.assign_prefixes(eni_id, count)))
    }
    fn unassign_ips<'a>(&'a self, eni_id: &'a str, ips: &'a [Ipv4Addr]) -> CloudFuture<'a, ()> {
        let crash = self.record(Call::UnassignIps);
        self.target(Call::UnassignIps, eni_id);
        Box::pin(guarded(crash, self.sim.unassign_ips(eni_id, ips)))
    }
    fn unassign_prefixes<'a>(
        &'a self,
        eni_id: &'a str,
        prefixes: &'a [Ipv4Net],
    ) -> CloudFuture<'a, ()> {
        let crash = self.record(Call::UnassignPrefixes);
        self.target(Call::UnassignPrefixes, eni_id);
        Box::pin(guarded(crash, self.sim.unassign_prefixes(eni_id, prefixes)))
    }
    fn delete_eni<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, ()> {
        let crash = self.record(Call::DeleteEni);
        self.target(Call::DeleteEni, eni_id);
        Box::pin(guarded(crash, self.sim.delete_eni(eni_id)))
    }
    fn find_enis_by_tag<'a>(&'a self, key: &'a str, value: &'a str) -> CloudFuture<'a, Vec<Eni>> {
        self.sim.find_enis_by_tag(key, value)
    }
    fn list_leaked_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        self.sim.list_leaked_enis()
    }
}

/// ENI hooks that record what they were told; set-up fails while
/// `fail_attach` is set.
#[derive(Default)]
pub(crate) struct RecordingHooks {
    pub attached: Mutex<Vec<String>>,
    pub released: Mutex<Vec<String>>,
    pub fail_attach: std::sync::atomic::AtomicBool,
    /// Addresses the "node" still routes to a pod.
    pub routed: Mutex<BTreeSet<Ipv4Addr>>,
}

impl EniHooks for RecordingHooks {
    fn on_attached<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        self.attached.lock().unwrap().push(eni.id.clone());
        let fail = self.fail_attach.load(Ordering::SeqCst);
        Box::pin(async move {
            if fail {
                Err(HookError::Eni(
                    "cannot set the MTU of the ENI's link".to_owned(),
                ))
            } else {
                Ok(())
            }
        })
    }
    fn on_released<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        self.released.lock().unwrap().push(eni.id.clone());
        Box::pin(async { Ok(()) })
    }
    fn routed<'a>(&'a self, ips: &'a [Ipv4Addr]) -> HookFuture<'a, Vec<Ipv4Addr>> {
        let routed = self.routed.lock().unwrap();
        let answer = ips
            .iter()
            .filter(|ip| routed.contains(ip))
            .copied()
            .collect();
        Box::pin(async move { Ok(answer) })
    }
}

/// The policies with the built-in warm-pool configured by `settings`
/// (JSON), one set per distinct setting for the whole test binary.
pub(crate) fn policies(settings: &str) -> Arc<PolicySet> {
    static SETS: OnceLock<Mutex<BTreeMap<String, Arc<PolicySet>>>> = OnceLock::new();
    let mut sets = SETS.get_or_init(Default::default).lock().unwrap();
    sets.entry(settings.to_owned())
        .or_insert_with(|| {
            let config = PoliciesConfig {
                pool_sizing: Some(PolicyConfig {
                    settings: serde_json::from_str(settings).expect("settings JSON"),
                    ..Default::default()
                }),
                ..Default::default()
            };
            Arc::new(PolicySet::from_config(&config, Arc::new(Metrics::new())).expect("policies"))
        })
        .clone()
}

/// A pool config for tests: no cooldown, short ADD wait, ENIs releasable
/// at once, a resync period long enough that only events drive rounds.
pub(crate) fn config() -> PoolConfig {
    PoolConfig {
        cooldown_seconds: 0,
        add_wait_ms: 2_000,
        resync_seconds: 3_600,
        min_eni_age_seconds: 0,
        ..Default::default()
    }
}

/// Starts a pool on `cloud` over the state directory `dir`.
pub(crate) async fn start(
    cloud: Arc<dyn Cloud>,
    dir: &Path,
    settings: &str,
    config: PoolConfig,
    hooks: Arc<RecordingHooks>,
) -> Arc<Pool> {
    start_with(
        cloud,
        dir,
        settings,
        config,
        hooks,
        Arc::new(Metrics::new()),
    )
    .await
}

/// [`start`] with the given metrics.
pub(crate) async fn start_with(
    cloud: Arc<dyn Cloud>,
    dir: &Path,
    settings: &str,
    config: PoolConfig,
    hooks: Arc<RecordingHooks>,
    metrics: Arc<Metrics>,
) -> Arc<Pool> {
    Pool::start(PoolDeps {
        cloud,
        policies: policies(settings),
        state: StateDir::open(dir).expect("state directory"),
        metrics,
        hooks,
        config,
    })
    .await
    .expect("pool starts")
}

/// A pool started on `sim` behind a counting [`TestCloud`], in a fresh
/// temporary state directory that lives as long as the returned guard.
pub(crate) async fn counted_pool(
    sim: &Arc<SimCloud>,
    settings: &str,
    config: PoolConfig,
) -> (Arc<TestCloud>, Arc<Pool>, tempfile::TempDir) {
    counted_pool_with(
        sim,
        settings,
        config,
        Default::default(),
        Arc::new(Metrics::new()),
    )
    .await
}

/// [`counted_pool`] with the given ENI hooks and metrics.
pub(crate) async fn counted_pool_with(
    sim: &Arc<SimCloud>,
    settings: &str,
    config: PoolConfig,
    hooks: Arc<RecordingHooks>,
    metrics: Arc<Metrics>,
) -> (Arc<TestCloud>, Arc<Pool>, tempfile::TempDir) {
    let cloud = Arc::new(TestCloud::new(sim.clone()));
    let (tmp, dir) = state_dir();
    let pool = start_with(cloud.clone(), &dir, settings, config, hooks, metrics).await;
    (cloud, pool, tmp)
}

/// Assigns pods `range` one by one; every one must succeed.
pub(crate) async fn fill(pool: &Pool, group: &SgSet, range: std::ops::Range<u32>) {
    for n in range {
        pool.assign(key(n), group, pod(n))
            .await
            .unwrap_or_else(|e| panic!("pod {n}: {e}"));
    }
}

/// Releases pods `range`; every release must succeed.
pub(crate) fn release(pool: &Pool, range: std::ops::Range<u32>) {
    for n in range {
        pool.release(&key(n)).expect("release");
    }
}

/// Runs `n` reconciler rounds back to back; every one must succeed.
pub(crate) async fn rounds(pool: &Pool, n: usize) {
    for _ in 0..n {
        pool.reconcile().await.expect("round");
    }
}

/// A simulator with one /24 subnet.
pub(crate) fn sim(instance_type: &str, seed: u64) -> Arc<SimCloud> {
    Arc::new(
        SimCloud::builder()
            .seed(seed)
            .instance_type(instance_type)
            .subnet("10.0.0.0/24")
            .build()
            .expect("simulator"),
    )
}

/// A temporary state directory path.
pub(crate) fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = state_path(&tmp);
    (tmp, path)
}

/// The state directory inside a temporary directory from [`state_dir`] or
/// [`counted_pool`].
pub(crate) fn state_path(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("state")
}

pub(crate) fn key(n: u32) -> AssignmentKey {
    AssignmentKey::new("weft", format!("c{n}"), "eth0")
}

pub(crate) fn pod(n: u32) -> PodMeta {
    PodMeta {
        namespace: "default".into(),
        name: format!("pod-{n}"),
        uid: format!("uid-{n}"),
    }
}

/// Every address EC2 reports on the node's ENIs (prefixes expanded,
/// primaries excluded), by ENI.
pub(crate) async fn cloud_addresses(sim: &SimCloud) -> BTreeMap<Ipv4Addr, String> {
    let mut out = BTreeMap::new();
    for eni in sim.list_enis().await.expect("list") {
        for ip in &eni.secondary_ips {
            out.insert(*ip, eni.id.clone());
        }
        for p in &eni.prefixes {
            for n in u32::from(p.network())..=u32::from(p.broadcast()) {
                out.insert(Ipv4Addr::from(n), eni.id.clone());
            }
        }
    }
    out
}

/// The pool invariants, checked against the simulator's truth:
/// * no address is assigned twice;
/// * every assigned address is on an ENI attached to the node (none was
///   given back to EC2);
/// * every address EC2 reports is in the pool (assigned, cooling, free, or
///   releasing while a call is in flight), on the same ENI;
/// * the node never holds more addresses than `max_pods`;
/// * no ENI leaked: every ENI in the VPC is attached to the node.
pub(crate) async fn check_invariants(pool: &Pool, sim: &SimCloud, max_pods: usize) {
    let snapshot = pool.snapshot();
    let cloud = cloud_addresses(sim).await;
    let mut seen = BTreeSet::new();
    for a in pool.assignments() {
        assert!(seen.insert(a.ip), "{} assigned twice", a.ip);
        assert!(
            cloud.contains_key(&a.ip),
            "{} is assigned to {} but EC2 does not have it on the node",
            a.ip,
            a.key
        );
    }
    let pooled: BTreeMap<Ipv4Addr, (&str, &str)> = snapshot
        .enis
        .iter()
        .flat_map(|e| {
            e.addresses
                .iter()
                .map(move |a| (a.ip, (e.id.as_str(), a.state)))
        })
        .collect();
    for (ip, eni) in &cloud {
        let Some((pool_eni, state)) = pooled.get(ip) else {
            panic!("EC2 reports {ip} on {eni} but the pool does not know it");
        };
        assert_eq!(pool_eni, eni, "{ip} is on {eni} in EC2");
        assert!(
            ["assigned", "cooling", "free", "releasing"].contains(state),
            "{ip} is {state}"
        );
    }
    assert!(
        cloud.len() <= max_pods,
        "the node holds {} addresses, max pods is {max_pods}",
        cloud.len()
    );
    let node = sim.identity().await.expect("identity");
    for eni in sim.all_enis() {
        let attached = eni
            .attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == node.instance_id);
        assert!(attached, "ENI {} leaked: {:?}", eni.id, eni.status);
        assert!(
            snapshot.enis.iter().any(|e| e.id == eni.id),
            "ENI {} is attached but not in the pool",
            eni.id
        );
    }
}

/// The node's default group.
pub(crate) fn default_group(sim: &SimCloud) -> SgSet {
    SgSet::new(
        sim.all_enis()
            .iter()
            .find(|e| e.device_index() == Some(0))
            .expect("primary ENI")
            .security_groups
            .clone(),
    )
}
