//! One trace through one pool-sizing policy: the agent's real pool service
//! (datastore, reconciler, policy runtime) on the embedded EC2 simulator,
//! in virtual time.
//!
//! The seam is time, not a copy of the reconciler. The pool reads a
//! [`ManualClock`] and sleeps on it through [`PoolClock`] (`timers`); every
//! EC2 request sleeps its latency in virtual time too; the player below
//! moves the clock to whatever comes next: a trace line, a sleep's end (an
//! EC2 answer, the reconciler's resync or backoff, a waiting ADD's
//! re-check) or a sampling tick, and lets every task woken by it run (the
//! runtime is single-threaded). The real reconciler task wakes on ADDs,
//! DELs and its own timer as in the agent. An hour of trace takes seconds;
//! the policy runs in the real sandbox on real time.
//!
//! An ADD waits until it gets an address; every `add-wait` + `retry-after`
//! it spends waiting counts one failed ADD (the runtime's "try again later"
//! and its retry).

use super::ec2::{self, CallCounts, Latencies};
use super::error::SimulateError;
use super::report::{Report, Sample};
use super::timers::{Timers, run_woken};
use super::trace::{Op, Trace};
use crate::cloud::{Clock, ManualClock, RateLimits};
use crate::ipam::{AssignmentKey, PodMeta, SgSet};
use crate::metrics::Metrics;
use crate::policy::{PoliciesConfig, PolicyConfig, PolicySet};
use crate::reconcile::{NoHooks, Pool, PoolClock, PoolConfig, PoolDeps};
use crate::state::StateDir;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;
use weft_policy_sdk::pool::Eni;

/// The simulated node and how the runtime behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// EC2 instance type (one the simulator knows).
    pub instance_type: String,
    /// Seed of the simulator's random choices.
    pub seed: u64,
    /// EC2 latency per API.
    pub latencies: Latencies,
    /// EC2's token buckets.
    pub throttle: RateLimits,
    /// The pool service's settings.
    pub pool: PoolConfig,
    /// How long the runtime waits before it retries a failed ADD (kubelet
    /// recreates the sandbox).
    pub retry_after: Duration,
    /// How often the pool is sampled for the report and the plot.
    pub sample_every: Duration,
    /// How long the agent runs before the trace's first event: kubelet
    /// schedules pods on a node only once it is Ready, which a CNI's pool
    /// start-up precedes. The pool's first rounds run meanwhile. Cold
    /// starts, idle addresses and the plot count from the trace's first
    /// second; EC2 calls from the agent's start.
    pub warm_up: Duration,
    /// How long the run goes on after the last event.
    pub tail: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            instance_type: "m5.2xlarge".into(),
            seed: 0,
            latencies: Latencies::default(),
            throttle: RateLimits::aws(),
            pool: PoolConfig::default(),
            retry_after: Duration::from_secs(2),
            sample_every: Duration::from_secs(1),
            warm_up: Duration::from_secs(60),
            tail: Duration::from_secs(60),
        }
    }
}

/// A pool-sizing policy to simulate.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// Name in the report.
    pub name: String,
    /// Its `[policies.pool-sizing]` entry (module and settings); `None` runs
    /// the built-in `warm-pool` with its defaults.
    pub config: Option<PolicyConfig>,
}

/// The wall-clock time the simulated node starts at (fixed, so runs are
/// reproducible).
const START: Duration = Duration::from_secs(1_800_000_000);

/// What the ADDs saw.
#[derive(Debug, Default)]
struct AddStats {
    adds: u32,
    cold_waits: Vec<Duration>,
    cold_at: Vec<f64>,
    errors: Vec<String>,
}

/// What happens next in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    /// Line `n` of the trace.
    Line(usize),
    /// Sample the pool.
    Sample,
}

/// Replays `trace` through `policy`; `progress` is told the virtual
/// seconds done, about once per simulated minute.
pub fn run(
    trace: &Trace,
    policy: &PolicySpec,
    config: &SimConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Report, SimulateError> {
    let node_error = |source: crate::Error| SimulateError::Node {
        policy: policy.name.clone(),
        source: Box::new(source),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|source| SimulateError::Io {
            what: "starting the simulation runtime",
            path: String::new(),
            source,
        })?;
    // The state directory is written on every ADD and DEL: keep it in
    // memory where the machine has a tmpfs.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("weft-simulate")
            .tempdir_in(shm)
    } else {
        tempfile::Builder::new().prefix("weft-simulate").tempdir()
    }
    .map_err(|source| SimulateError::Io {
        what: "creating a state directory for",
        path: policy.name.clone(),
        source,
    })?;
    runtime.block_on(async {
        let start_wall = SystemTime::UNIX_EPOCH + START;
        let clock = Arc::new(ManualClock::default());
        let sim = ec2::build(
            &config.instance_type,
            config.seed,
            config.throttle,
            clock.clone(),
            start_wall,
        )
        .map_err(|e| node_error(e.into()))?;
        let timers = Arc::new(Timers::new(clock.clone()));
        let cloud = Arc::new(ec2::Counting::new(
            sim,
            timers.clone(),
            config.latencies.clone(),
        ));
        let metrics = Arc::new(Metrics::new());
        let counters = metrics.clone();
        let policies = PoliciesConfig {
            pool_sizing: policy.config.clone(),
            ..PoliciesConfig::default()
        };
        let policies = Arc::new(
            PolicySet::from_config(&policies, metrics.clone()).map_err(|e| node_error(e.into()))?,
        );
        let state = StateDir::open(dir.path()).map_err(|e| node_error(e.into()))?;
        // An ADD waits (virtually) until it is served; the report counts
        // its "try again later" answers from the wait.
        let pool_config = PoolConfig {
            add_wait_ms: 30 * 24 * 3600 * 1000,
            ..config.pool.clone()
        };
        let starting = tokio::spawn(Pool::start_with_clock(
            PoolDeps {
                cloud: cloud.clone(),
                policies,
                state,
                metrics,
                hooks: Arc::new(NoHooks),
                config: pool_config,
            },
            PoolClock::following(timers.clone(), start_wall),
        ));
        // Start-up reads EC2 (in virtual time) and runs a first round.
        while !starting.is_finished() {
            run_woken().await;
            if !timers.advance() && !starting.is_finished() {
                run_woken().await;
            }
        }
        let pool = starting
            .await
            .map_err(|e| SimulateError::Usage(format!("the simulated pool did not start: {e}")))?
            .map_err(node_error)?;
        // `start` only spawns the reconciler: its first round (an EC2 read,
        // then the first decision and its calls) runs during the warm-up.
        let ready = clock.now() + config.warm_up;
        loop {
            run_woken().await;
            if timers.next().is_none_or(|t| t > ready) {
                break;
            }
            timers.advance();
        }
        clock.advance(ready.saturating_duration_since(clock.now()));

        let t0 = clock.now();
        let at = |seconds: f64| t0 + Duration::from_secs_f64(seconds);
        let mut agenda: BinaryHeap<Reverse<(Instant, Next)>> = BinaryHeap::new();
        if let Some(first) = trace.events.first() {
            agenda.push(Reverse((at(first.t), Next::Line(0))));
        }
        agenda.push(Reverse((t0, Next::Sample)));
        let end = at(trace.duration()) + config.tail;
        let stats = Arc::new(Mutex::new(AddStats::default()));
        let mut samples = Vec::new();
        let group = pool.default_group();
        let mut adds: HashMap<AssignmentKey, JoinHandle<()>> = HashMap::new();
        let mut reported = 0;
        while let Some(&Reverse((when, _))) = agenda.peek() {
            if when > end {
                break;
            }
            // An EC2 answer due before the next event comes first.
            if timers.next().is_some_and(|t| t <= when) {
                timers.advance();
                run_woken().await;
                continue;
            }
            let Some(Reverse((when, next))) = agenda.pop() else {
                break;
            };
            let now = clock.now();
            if when > now {
                clock.advance(when - now);
            }
            match next {
                Next::Sample => {
                    samples.push(sample(&pool, (clock.now() - t0).as_secs_f64()));
                    agenda.push(Reverse((when + config.sample_every, Next::Sample)));
                    continue;
                }
                Next::Line(n) => {
                    let event = &trace.events[n];
                    if let Some(following) = trace.events.get(n + 1) {
                        agenda.push(Reverse((at(following.t), Next::Line(n + 1))));
                    }
                    if event.t as u64 >= reported + 60 {
                        reported = event.t as u64;
                        progress(reported);
                    }
                    let key = AssignmentKey::new(
                        "weft",
                        format!("{}-{}", event.namespace, event.pod),
                        "eth0",
                    );
                    match event.op {
                        Op::Add => {
                            let meta = PodMeta {
                                namespace: event.namespace.clone(),
                                name: event.pod.clone(),
                                uid: format!("uid-{}-{}", event.namespace, event.pod),
                            };
                            let task = tokio::spawn(add(
                                pool.clone(),
                                key.clone(),
                                group.clone(),
                                meta,
                                (clock.clone(), t0, at(event.t)),
                                stats.clone(),
                            ));
                            adds.insert(key, task);
                        }
                        Op::Remove => {
                            // A pod deleted while its ADD still waits: the
                            // runtime gives up on the sandbox, then sends
                            // the DEL.
                            if let Some(task) = adds.remove(&key) {
                                task.abort();
                                let _ = task.await;
                            }
                            if let Err(error) = pool.release(&key) {
                                lock(&stats).errors.push(format!("DEL {key}: {error}"));
                            }
                        }
                    }
                }
            }
            run_woken().await;
        }
        progress(trace.duration() as u64 + config.tail.as_secs());
        // ADDs still waiting at the end count their wait so far.
        let waiting = adds.values().filter(|t| !t.is_finished()).count();
        for (_, task) in adds {
            task.abort();
        }
        pool.shutdown().await;
        let stats = std::mem::take(&mut *lock(&stats));
        if let Some(error) = stats.errors.first() {
            return Err(SimulateError::Usage(format!(
                "the pool failed during the simulation of {}: {error} ({} errors)",
                policy.name,
                stats.errors.len()
            )));
        }
        let mut report = report(policy, stats, samples, cloud.counts(), config);
        report.still_waiting = u32::try_from(waiting).unwrap_or(u32::MAX);
        report.policy_failures = policy_failures(&counters.encode());
        Ok(report)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One pod's ADD. It waits (in virtual time) until the pool serves it.
async fn add(
    pool: Arc<Pool>,
    key: AssignmentKey,
    group: SgSet,
    meta: PodMeta,
    (clock, t0, arrived): (Arc<ManualClock>, Instant, Instant),
    stats: Arc<Mutex<AddStats>>,
) {
    let asked = clock.now();
    match pool.assign(key.clone(), &group, meta).await {
        Ok(_) => {
            let served = clock.now();
            let mut stats = lock(&stats);
            stats.adds += 1;
            if served > asked {
                stats
                    .cold_waits
                    .push(served.saturating_duration_since(arrived));
                stats
                    .cold_at
                    .push(arrived.saturating_duration_since(t0).as_secs_f64());
            }
        }
        Err(error) => lock(&stats).errors.push(format!("ADD {key}: {error}")),
    }
}

fn sample(pool: &Pool, t: f64) -> Sample {
    let states = pool.pool_states();
    let enis = || states.iter().flat_map(|s| s.enis.iter());
    Sample {
        t,
        held: enis().map(Eni::addresses).sum(),
        free: enis().map(Eni::free).sum(),
        assigned: enis().map(|e| e.assigned).sum(),
        enis: states.first().map_or(0, |s| s.node_enis),
    }
}

/// Pool-sizing decisions the policy did not make itself (it trapped, ran
/// out of time or memory, or answered wrongly, and the built-in default
/// decided), from the agent's metrics.
fn policy_failures(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("policy_decisions"))
        .filter(|l| l.contains(r#"decision="pool-sizing""#) && !l.contains(r#"outcome="ok""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn report(
    policy: &PolicySpec,
    stats: AddStats,
    samples: Vec<Sample>,
    calls: CallCounts,
    config: &SimConfig,
) -> Report {
    let mut waits = stats.cold_waits;
    waits.sort();
    let percentile = |p: f64| {
        if waits.is_empty() {
            return 0;
        }
        let rank = ((p * waits.len() as f64).ceil() as usize).clamp(1, waits.len());
        u64::try_from(waits[rank - 1].as_millis()).unwrap_or(u64::MAX)
    };
    let minutes = config.sample_every.as_secs_f64() / 60.0;
    Report {
        policy: policy.name.clone(),
        adds: stats.adds,
        cold_starts: u32::try_from(waits.len()).unwrap_or(u32::MAX),
        cold_wait_p50_ms: percentile(0.50),
        cold_wait_p99_ms: percentile(0.99),
        failed_adds: {
            let cycle = (config.pool.add_wait() + config.retry_after).as_secs_f64();
            waits.iter().map(|w| (w.as_secs_f64() / cycle) as u32).sum()
        },
        still_waiting: 0,
        idle_address_minutes: samples
            .iter()
            .map(|s| f64::from(s.held - s.assigned) * minutes)
            .sum(),
        peak_held: samples.iter().map(|s| s.held).max().unwrap_or(0),
        calls,
        policy_failures: 0,
        samples,
        cold_start_times: stats.cold_at,
    }
}
