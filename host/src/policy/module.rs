//! Loading a policy component (read, verify, compile or fetch from the
//! cache, check imports and world, pre-instantiate, configure into an
//! image, see [`super::image`]) and running one decision in a fresh
//! sandboxed instance.

use super::bindings::{
    self, pool_sizing, pool_sizing_history, pool_sizing_timed, security_groups, subnet_selection,
    subnet_selection_node,
};
use super::cache::ArtifactCache;
use super::engine::PolicyEngine;
use super::error::{Decision, FailureKind, PolicyError};
use super::image::{self, Captured};
use super::sandbox::{CallLimits, LogBudget, SandboxState};
use super::text::{MAX_POLICY_TEXT_BYTES, sanitize};
use super::timer::{EPOCH_TICK, SANDBOXES, Timer};
use super::{wasi, watchdog};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};
use weft_policy_sdk::{pool, security, subnet};

/// The contract's interfaces a policy may import (any 0.1.x version):
/// `log`, and the type-only interfaces its world uses. Of WASI, only what
/// [`wasi::is_granted`] says.
const CONTRACT_INTERFACES: [&str; 8] = [
    "log",
    "types",
    "pool",
    "pool-history",
    "pool-timing",
    "subnet",
    "kubernetes",
    "security",
];
/// The worlds that extend another with more input, told apart by their
/// decision function: its export name, the decision, and the world. The
/// newest first: a component exports one decision function.
const EXTENDED_WORLDS: [(&str, Decision, WorldKind); 3] = [
    // The group's churn per minute, timed.
    (
        "size-pool-timed",
        Decision::PoolSizing,
        WorldKind::PoolSizingTimed,
    ),
    // The group's churn per minute.
    (
        "size-pool-with-history",
        Decision::PoolSizing,
        WorldKind::PoolSizingHistory,
    ),
    // The node's Kubernetes metadata.
    (
        "select-subnet-for-node",
        Decision::SubnetSelection,
        WorldKind::SubnetSelectionNode,
    ),
];
/// The least deadline of the `configure` call at load.
pub(super) const LOAD_DEADLINE_FLOOR: Duration = Duration::from_secs(1);
/// Core module binary header: magic and version 1.
const CORE_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";
/// Component binary header: magic and the component layer's version word.
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\0\x01\0";

/// What loading a module found out; printed by `weftd policy check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The decision the component makes.
    pub decision: Decision,
    /// The world it implements (its WIT name): of a decision's worlds, what
    /// input it gets.
    pub world: &'static str,
    /// sha256 of the module file, hex.
    pub sha256: String,
    /// Size of the module file in bytes.
    pub size: usize,
    /// The component's imports (WIT interface names).
    pub imports: Vec<String>,
    /// Time spent compiling, or loading the cached artifact.
    pub compile_time: Duration,
    /// Whether the compiled artifact came from the on-disk cache.
    pub from_cache: bool,
}

/// Resource use of one decision; printed by `weftd policy eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    /// Wall-clock time of instantiation (and `configure`, for a policy
    /// without an image) and the call.
    pub elapsed: Duration,
    /// Of which: a fresh store and the instantiation.
    pub instantiate: Duration,
    /// Of which: `configure` (zero when the decision started from an
    /// image). The call is the rest.
    pub configure: Duration,
    /// Peak linear memory of the instance, in bytes.
    pub peak_memory: usize,
}

/// The pre-instantiated component of one of the worlds, with its world's
/// export indices looked up once.
#[derive(Clone)]
pub(super) struct WorldPre {
    pre: InstancePre<SandboxState>,
    indices: WorldIndices,
}

#[derive(Clone)]
enum WorldIndices {
    PoolSizing(pool_sizing::PoolSizingIndices),
    PoolSizingHistory(pool_sizing_history::PoolSizingHistoryIndices),
    PoolSizingTimed(pool_sizing_timed::PoolSizingTimedIndices),
    SubnetSelection(subnet_selection::SubnetSelectionIndices),
    SubnetSelectionNode(subnet_selection_node::SubnetSelectionNodeIndices),
    SecurityGroups(security_groups::SecurityGroupsIndices),
}

/// Which world's bindings a [`WorldPre`] uses.
#[derive(Clone, Copy)]
enum WorldKind {
    PoolSizing,
    PoolSizingHistory,
    PoolSizingTimed,
    SubnetSelection,
    SubnetSelectionNode,
    SecurityGroups,
}

impl WorldKind {
    /// The world's name in `wit/policy.wit`.
    fn name(self) -> &'static str {
        match self {
            WorldKind::PoolSizing => "pool-sizing",
            WorldKind::PoolSizingHistory => "pool-sizing-history",
            WorldKind::PoolSizingTimed => "pool-sizing-timed",
            WorldKind::SubnetSelection => "subnet-selection",
            WorldKind::SubnetSelectionNode => "subnet-selection-node",
            WorldKind::SecurityGroups => "security-groups",
        }
    }
}

impl WorldPre {
    /// `pre` as a `kind` world: fails when its component does not export
    /// that world.
    fn new(kind: WorldKind, pre: InstancePre<SandboxState>) -> wasmtime::Result<Self> {
        let indices = match kind {
            WorldKind::PoolSizing => {
                WorldIndices::PoolSizing(pool_sizing::PoolSizingIndices::new(&pre)?)
            }
            WorldKind::PoolSizingHistory => WorldIndices::PoolSizingHistory(
                pool_sizing_history::PoolSizingHistoryIndices::new(&pre)?,
            ),
            WorldKind::PoolSizingTimed => {
                WorldIndices::PoolSizingTimed(pool_sizing_timed::PoolSizingTimedIndices::new(&pre)?)
            }
            WorldKind::SubnetSelection => {
                WorldIndices::SubnetSelection(subnet_selection::SubnetSelectionIndices::new(&pre)?)
            }
            WorldKind::SubnetSelectionNode => WorldIndices::SubnetSelectionNode(
                subnet_selection_node::SubnetSelectionNodeIndices::new(&pre)?,
            ),
            WorldKind::SecurityGroups => {
                WorldIndices::SecurityGroups(security_groups::SecurityGroupsIndices::new(&pre)?)
            }
        };
        Ok(WorldPre { pre, indices })
    }

    /// `pre` as the same world as `self`.
    pub(super) fn same_world(&self, pre: InstancePre<SandboxState>) -> wasmtime::Result<Self> {
        let kind = match self.indices {
            WorldIndices::PoolSizing(_) => WorldKind::PoolSizing,
            WorldIndices::PoolSizingHistory(_) => WorldKind::PoolSizingHistory,
            WorldIndices::PoolSizingTimed(_) => WorldKind::PoolSizingTimed,
            WorldIndices::SubnetSelection(_) => WorldKind::SubnetSelection,
            WorldIndices::SubnetSelectionNode(_) => WorldKind::SubnetSelectionNode,
            WorldIndices::SecurityGroups(_) => WorldKind::SecurityGroups,
        };
        Self::new(kind, pre)
    }

    fn instantiate(&self, store: &mut Store<SandboxState>) -> wasmtime::Result<Instance> {
        let raw = self.pre.instantiate(&mut *store)?;
        let world = match &self.indices {
            WorldIndices::PoolSizing(i) => World::PoolSizing(i.load(&mut *store, &raw)?),
            WorldIndices::PoolSizingHistory(i) => {
                World::PoolSizingHistory(i.load(&mut *store, &raw)?)
            }
            WorldIndices::PoolSizingTimed(i) => World::PoolSizingTimed(i.load(&mut *store, &raw)?),
            WorldIndices::SubnetSelection(i) => World::SubnetSelection(i.load(&mut *store, &raw)?),
            WorldIndices::SubnetSelectionNode(i) => {
                World::SubnetSelectionNode(i.load(&mut *store, &raw)?)
            }
            WorldIndices::SecurityGroups(i) => World::SecurityGroups(i.load(&mut *store, &raw)?),
        };
        Ok(Instance { raw, world })
    }
}

/// A compiled, linked policy that has not been configured yet. Cloning is
/// cheap (the compiled code and the module's bytes are shared).
#[derive(Clone)]
pub struct CompiledPolicy {
    pub(super) name: Arc<str>,
    pub(super) engine: Engine,
    pub(super) linker: Arc<Linker<SandboxState>>,
    pub(super) cache: Option<ArtifactCache>,
    timer: Arc<Timer>,
    /// The module as loaded.
    pub(super) bytes: Arc<[u8]>,
    /// Why `pre` is the module itself rather than its instrumented copy
    /// (`super::image`), if it is.
    pub(super) uninstrumented: Option<Arc<str>>,
    pub(super) pre: WorldPre,
    /// See [`PolicyEngine::set_image_capture_budget`].
    pub(super) image_capture_budget: Duration,
    report: LoadReport,
    log_budget: Arc<LogBudget>,
}

impl CompiledPolicy {
    /// Loads the module at `path`. `expected` refuses a component of
    /// another world; `sha256` refuses a module with another hash.
    pub fn from_file(
        engine: &PolicyEngine,
        path: &Path,
        name: &str,
        expected: Option<Decision>,
        sha256: Option<&str>,
    ) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|e| {
            load_error(
                name,
                expected,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_bytes(engine, &bytes, name, expected, sha256)
    }

    /// Loads a module (component binary or WAT text) from memory.
    pub fn from_bytes(
        engine: &PolicyEngine,
        bytes: &[u8],
        name: &str,
        expected: Option<Decision>,
        sha256: Option<&str>,
    ) -> Result<Self, PolicyError> {
        let fail = |message: String| load_error(name, expected, message);
        let digest = hex::encode(Sha256::digest(bytes));
        if let Some(pin) = sha256
            && !pin.eq_ignore_ascii_case(&digest)
        {
            return Err(fail(format!(
                "sha256 mismatch: the module's sha256 is {digest}, the configuration pins {pin}"
            )));
        }
        check_format(bytes).map_err(&fail)?;

        let started = Instant::now();
        // The instrumented copy stands in for the module: it behaves as the
        // module does, and its configured state can be read back into an
        // image (`super::image`). A module wizer does not take is compiled
        // as it is, and has no image.
        let (wasm, uninstrumented) = match image::instrument(bytes) {
            Ok(instrumented) => (instrumented, None),
            Err(why) => (bytes.to_vec(), Some(Arc::from(why))),
        };
        let (component, from_cache) =
            compile(&engine.engine, engine.cache.as_ref(), name, &wasm, &digest)
                .map_err(|e| fail(format!("not a valid WebAssembly component: {e:#}")))?;
        let compile_time = started.elapsed();

        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&engine.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        if let Some(foreign) = imports.iter().find(|i| !is_allowed_import(i)) {
            return Err(fail(format!(
                "imports `{foreign}`; a policy may import only `weft:policy/log@0.1.0` and the WASI interfaces of a plain wasm32-wasip2 program (stdio, clocks, random, an empty filesystem), never sockets or other worlds"
            )));
        }
        let exports: Vec<String> = ty
            .exports(&engine.engine)
            .map(|(n, _)| n.to_owned())
            .filter(|n| n != image::ACCESSORS)
            .collect();
        let decision = world_of(&exports).ok_or_else(|| {
            fail(format!(
                "implements none of the weft:policy@0.1.0 worlds (it exports: {})",
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                }
            ))
        })?;
        if let Some(expected) = expected
            && expected != decision
        {
            return Err(fail(format!(
                "implements the `{decision}` world but is configured for `{expected}`"
            )));
        }

        let instance_pre = engine
            .linker
            .instantiate_pre(&component)
            .map_err(|e| fail(format!("cannot be linked: {e:#}")))?;
        let mismatch = |e: wasmtime::Error| {
            load_error(
                name,
                Some(decision),
                format!("does not match the `{decision}` world of weft:policy@0.1.0: {e:#}"),
            )
        };
        let kind = extended_world(&exports)
            .filter(|(d, _)| *d == decision)
            .map_or(
                match decision {
                    Decision::PoolSizing => WorldKind::PoolSizing,
                    Decision::SubnetSelection => WorldKind::SubnetSelection,
                    Decision::SecurityGroups => WorldKind::SecurityGroups,
                },
                |(_, kind)| kind,
            );
        let pre = WorldPre::new(kind, instance_pre).map_err(mismatch)?;
        Ok(CompiledPolicy {
            name: name.into(),
            engine: engine.engine.clone(),
            linker: engine.linker.clone(),
            cache: engine.cache.clone(),
            timer: engine.timer.clone(),
            bytes: bytes.into(),
            uninstrumented,
            pre,
            image_capture_budget: engine.image_capture_budget,
            log_budget: Arc::new(LogBudget::new()),
            report: LoadReport {
                decision,
                world: kind.name(),
                sha256: digest,
                size: bytes.len(),
                imports,
                compile_time,
                from_cache,
            },
        })
    }

    /// What loading found out.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Calls the policy's `configure` with `settings` once, under `limits`
    /// but with a deadline of at least [`LOAD_DEADLINE_FLOOR`] (a one-off
    /// load must not fail for good because the node was busy); an error
    /// fails the load with the policy's own message. The configured state
    /// becomes the image every decision starts from ([`super::image`]);
    /// a policy that cannot be captured is configured again in every
    /// decision. Every decision of the returned module runs under `limits`.
    pub fn configure(
        &self,
        settings: &str,
        limits: CallLimits,
    ) -> Result<PolicyModule, PolicyError> {
        let settings: Arc<str> = settings.into();
        let load_limits = CallLimits {
            deadline: limits.deadline.max(LOAD_DEADLINE_FLOOR),
            ..limits
        };
        let configure_failed = |e: PolicyError| PolicyError {
            kind: FailureKind::Load,
            message: format!("configure failed: {}", e.message),
            ..e
        };
        let decision = self.report.decision;
        let image = match image::capture(self, &settings, load_limits).map_err(configure_failed)? {
            Captured::Image(pre) => Ok(pre),
            Captured::Unsupported(why) => {
                tracing::info!(
                    policy = %self.name,
                    "every decision configures its own instance: no image of the configured policy ({why})"
                );
                // `call` configures the fresh instance before calling `f`.
                self.call(
                    self.pre.clone(),
                    Some(settings.clone()),
                    load_limits,
                    Watch::Decision,
                    |_, _| Ok(()),
                )
                .map_err(configure_failed)?;
                Err(Arc::from(why))
            }
        };
        tracing::debug!(policy = %self.name, %decision, image = image.is_ok(), "policy configured");
        Ok(PolicyModule {
            compiled: self.clone(),
            settings,
            limits,
            image,
        })
    }

    /// Runs `f` on a fresh instance of `pre` (configured with `configure`
    /// first, when given) in a fresh store with `limits`' deadline and
    /// memory cap set, under the watchdog as `watch` says, and classifies
    /// any failure.
    pub(super) fn call<R: Send + 'static>(
        &self,
        pre: WorldPre,
        configure: Option<Arc<str>>,
        limits: CallLimits,
        watch: Watch,
        f: impl FnOnce(&mut Store<SandboxState>, &Instance) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<(R, CallStats), PolicyError> {
        let overtime = match watch {
            Watch::Decision => watchdog::GRACE,
            Watch::Capture(budget) => budget.saturating_add(watchdog::GRACE),
        };
        let limit = limits.deadline.saturating_add(overtime);
        let call = Call {
            name: self.name.clone(),
            decision: self.report.decision,
            engine: self.engine.clone(),
            timer: self.timer.clone(),
            pre,
            configure,
            limits,
            limit,
            log_budget: self.log_budget.clone(),
        };
        let job = move || call.run(f);
        let answer = match watch {
            Watch::Decision => watchdog::run(limit, job),
            Watch::Capture(_) => watchdog::run_on_worker(limit, job),
        };
        answer.flatten().unwrap_or_else(|| {
            Err(PolicyError::new(
                &self.name,
                Some(self.report.decision),
                FailureKind::Deadline,
                format!(
                    "did not return within {} ms of its {} ms deadline (stuck in host code); the watchdog gave up on it",
                    overtime.as_millis(),
                    limits.deadline.as_millis()
                ),
            ))
        })
    }
}

/// How [`CompiledPolicy::call`] is watched.
#[derive(Clone, Copy)]
pub(super) enum Watch {
    /// A decision (or `configure`): on the calling thread where it can,
    /// given up [`watchdog::GRACE`] past its deadline.
    Decision,
    /// `configure` and taking its image, whose host code (wizer, the
    /// compiler) no deadline stops: on a worker thread, given up this
    /// budget and [`watchdog::GRACE`] past the deadline, so that a slow
    /// capture cannot hold the load.
    Capture(Duration),
}

/// Compiles `bytes` (sha256 `digest`), or loads the compiled artifact from
/// `cache` and stores it there when it was not; `true` when it came from the
/// cache.
pub(super) fn compile(
    engine: &Engine,
    cache: Option<&ArtifactCache>,
    name: &str,
    bytes: &[u8],
    digest: &str,
) -> wasmtime::Result<(Component, bool)> {
    if let Some(component) = cache.and_then(|cache| cache.load(engine, digest)) {
        return Ok((component, true));
    }
    let component = Component::new(engine, bytes)?;
    if let Some(cache) = cache
        && let Err(e) = cache.store(engine, digest, &component)
    {
        tracing::warn!(
            policy = name,
            dir = %cache.dir().display(),
            "cannot cache the compiled policy: {e}"
        );
    }
    Ok((component, false))
}

/// A loaded, configured policy: every decision runs in a fresh instance of
/// the image taken right after `configure` or, for a policy without one, a
/// fresh instance configured with the same settings; then it is asked.
pub struct PolicyModule {
    compiled: CompiledPolicy,
    settings: Arc<str>,
    limits: CallLimits,
    /// The configured image, or why the policy has none.
    image: Result<WorldPre, Arc<str>>,
}

impl PolicyModule {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.compiled.name
    }

    /// What loading found out.
    pub fn report(&self) -> &LoadReport {
        &self.compiled.report
    }

    /// Whether decisions start from the image taken after `configure`
    /// (rather than configuring a fresh instance each).
    pub fn starts_from_image(&self) -> bool {
        self.image.is_ok()
    }

    /// Why decisions do not start from an image, if they do not.
    pub fn no_image_reason(&self) -> Option<&str> {
        self.image.as_ref().err().map(|why| &**why)
    }

    /// Asks a pool-sizing policy. The decision is not validated yet.
    pub fn size_pool(
        &self,
        state: &pool::PoolState,
    ) -> Result<(pool::PoolDecision, CallStats), PolicyError> {
        let input = bindings::pool_state(state);
        // Converted for the world the component turns out to implement.
        let history = state.activity.history.clone();
        self.run(move |store, instance| match &instance.world {
            World::PoolSizing(world) => Ok(bindings::pool_decision(
                world.call_size_pool(store, &input)?,
            )),
            World::PoolSizingHistory(world) => Ok(bindings::pool_decision(
                world.call_size_pool_with_history(store, &input, &bindings::history(&history))?,
            )),
            World::PoolSizingTimed(world) => Ok(bindings::pool_decision(
                world.call_size_pool_timed(store, &input, &bindings::timed_history(&history))?,
            )),
            _ => Err(wrong_world(Decision::PoolSizing)),
        })
    }

    /// Asks a subnet-selection policy. The choice is not validated yet.
    pub fn select_subnet(
        &self,
        request: &subnet::EniRequest,
        candidates: &[subnet::Candidate],
    ) -> Result<(subnet::Choice, CallStats), PolicyError> {
        let node = bindings::node(&request.node);
        let request = bindings::eni_request(request);
        let candidates = bindings::candidates(candidates);
        self.run(move |store, instance| match &instance.world {
            World::SubnetSelection(world) => Ok(bindings::choice(world.call_select_subnet(
                store,
                &request,
                &candidates,
            )?)),
            World::SubnetSelectionNode(world) => Ok(bindings::choice(
                world.call_select_subnet_for_node(store, &request, &node, &candidates)?,
            )),
            _ => Err(wrong_world(Decision::SubnetSelection)),
        })
    }

    /// Asks a security-groups policy: `Ok(Err(message))` is the policy
    /// refusing the pod. The list is not validated yet.
    pub fn select_security_groups(
        &self,
        request: &security::Request,
    ) -> Result<(Result<Vec<String>, String>, CallStats), PolicyError> {
        let request = bindings::sg_request(request);
        self.run(move |store, instance| match &instance.world {
            World::SecurityGroups(world) => world.call_select_security_groups(store, &request),
            _ => Err(wrong_world(Decision::SecurityGroups)),
        })
    }

    /// Runs `f` on a fresh instance of the image, or of the compiled
    /// policy configured first (see [`CompiledPolicy::call`]).
    fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store<SandboxState>, &Instance) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<(R, CallStats), PolicyError> {
        let compiled = &self.compiled;
        match &self.image {
            Ok(image) => compiled.call(image.clone(), None, self.limits, Watch::Decision, f),
            Err(_) => compiled.call(
                compiled.pre.clone(),
                Some(self.settings.clone()),
                self.limits,
                Watch::Decision,
                f,
            ),
        }
    }
}

/// Bytes a policy may pass to the host in one call (a log message, a stream
/// write) or one answer, counted as wasmtime lifts them (a list element
/// counts its host size): beyond it the copy traps, so host memory spent on
/// a decision stays bounded whatever the policy's memory cap.
const HOSTCALL_FUEL: usize = 1 << 20;
/// How wasmtime says [`HOSTCALL_FUEL`] ran out (it has no error type for it).
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Everything one decision needs, moved to the thread that runs it.
struct Call {
    name: Arc<str>,
    decision: Decision,
    engine: Engine,
    timer: Arc<Timer>,
    pre: WorldPre,
    /// The settings to configure the fresh instance with first, if any.
    configure: Option<Arc<str>>,
    limits: CallLimits,
    /// How long the call may take before its answer is discarded.
    limit: Duration,
    log_budget: Arc<LogBudget>,
}

impl Call {
    /// Runs `f` in a sandbox, within the deadline from now also when it
    /// has to wait for one. `None`: it ran past its limit.
    fn run<R>(
        self,
        f: impl FnOnce(&mut Store<SandboxState>, &Instance) -> wasmtime::Result<R>,
    ) -> Option<Result<(R, CallStats), PolicyError>> {
        let arrived = Instant::now();
        let deadline = self.limits.deadline;
        let Some(sandbox) = self.timer.enter(&self.name, arrived, deadline, self.limit) else {
            return Some(Err(PolicyError::new(
                &self.name,
                Some(self.decision),
                FailureKind::Deadline,
                format!(
                    "found all {SANDBOXES} sandboxes busy with other decisions for its whole {} ms deadline: decisions are arriving faster than the policies answer them. Look for policies failing at their deadline (`weft_policy_decisions_total{{outcome=\"deadline\"}}`) and fix them or lower their deadline-ms, or raise this policy's deadline-ms so that it can wait longer",
                    deadline.as_millis()
                ),
            )));
        };
        let started = Instant::now();
        let mut store = Store::new(
            &self.engine,
            SandboxState::new(
                self.name.clone(),
                self.limits.memory_bytes,
                self.log_budget.clone(),
            ),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks(deadline.saturating_sub(arrived.elapsed())));
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        let mut instantiated = Duration::ZERO;
        let mut configured = Duration::ZERO;
        let result = self.pre.instantiate(&mut store).and_then(|instance| {
            instantiated = started.elapsed();
            if let Some(settings) = &self.configure {
                instance.configure(&mut store, settings)?;
                configured = started.elapsed() - instantiated;
            }
            f(&mut store, &instance)
        });
        let state = store.data();
        state.finish();
        let stats = CallStats {
            elapsed: started.elapsed(),
            instantiate: instantiated,
            configure: configured,
            peak_memory: state.limiter.peak,
        };
        let answer = result
            .map(|value| (value, stats))
            .map_err(|e| classify(&self.name, self.decision, &e, state));
        // The instance's pool slot is freed with the store.
        drop(store);
        (!sandbox.leave()).then_some(answer)
    }
}

/// An instance of one of the worlds: the component instance and its
/// world's bindings.
pub(super) struct Instance {
    pub(super) raw: wasmtime::component::Instance,
    world: World,
}

/// The bindings of one of the worlds.
enum World {
    PoolSizing(pool_sizing::PoolSizing),
    PoolSizingHistory(pool_sizing_history::PoolSizingHistory),
    PoolSizingTimed(pool_sizing_timed::PoolSizingTimed),
    SubnetSelection(subnet_selection::SubnetSelection),
    SubnetSelectionNode(subnet_selection_node::SubnetSelectionNode),
    SecurityGroups(security_groups::SecurityGroups),
}

impl Instance {
    fn configure(&self, store: &mut Store<SandboxState>, settings: &str) -> wasmtime::Result<()> {
        let result = match &self.world {
            World::PoolSizing(w) => w.call_configure(store, settings)?,
            World::PoolSizingHistory(w) => w.call_configure(store, settings)?,
            World::PoolSizingTimed(w) => w.call_configure(store, settings)?,
            World::SubnetSelection(w) => w.call_configure(store, settings)?,
            World::SubnetSelectionNode(w) => w.call_configure(store, settings)?,
            World::SecurityGroups(w) => w.call_configure(store, settings)?,
        };
        result.map_err(|message| {
            wasmtime::Error::new(ConfigureRejected(sanitize(&message, MAX_POLICY_TEXT_BYTES)))
        })
    }
}

/// `configure` returned an error.
#[derive(Debug, thiserror::Error)]
#[error("configure rejected the settings: {0}")]
struct ConfigureRejected(String);

/// A module of one world was asked another world's decision (a host bug).
#[derive(Debug, thiserror::Error)]
#[error("the module implements another world than `{0}`")]
struct WrongWorld(Decision);

fn wrong_world(asked: Decision) -> wasmtime::Error {
    wasmtime::Error::new(WrongWorld(asked))
}

/// Epoch ticks for `deadline`: rounded up, plus one because the current
/// tick may be about to end.
pub(super) fn deadline_ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(deadline.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
}

/// Turns a failed call into a [`PolicyError`] of the right kind.
fn classify(
    name: &str,
    decision: Decision,
    error: &wasmtime::Error,
    state: &SandboxState,
) -> PolicyError {
    let output = state.captured_output();
    let with_output = |message: String| {
        if output.is_empty() {
            message
        } else {
            format!("{message} ({output})")
        }
    };
    let (kind, message) = if let Some(rejected) = error.downcast_ref::<ConfigureRejected>() {
        (FailureKind::Load, rejected.to_string())
    } else if let Some(wrong) = error.downcast_ref::<WrongWorld>() {
        (FailureKind::InvalidOutput, wrong.to_string())
    } else if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        (
            FailureKind::Deadline,
            "interrupted at its deadline".to_owned(),
        )
    } else if let Some(blocked) = error.downcast_ref::<wasi::WouldBlock>() {
        (FailureKind::Deadline, blocked.to_string())
    } else if root(error).contains(HOSTCALL_FUEL_EXHAUSTED) {
        (
            FailureKind::Memory,
            format!(
                "passed more than {} KiB to the host in one call or answer (host-call fuel exhausted)",
                HOSTCALL_FUEL >> 10
            ),
        )
    } else if state.limiter.refused {
        (
            FailureKind::Memory,
            with_output(format!(
                "memory growth refused at the cap, then: {}",
                root(error)
            )),
        )
    } else {
        (FailureKind::Trap, with_output(root(error)))
    };
    PolicyError::new(name, Some(decision), kind, message)
}

/// The trap message without wasmtime's backtrace context.
fn root(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    }
}

fn load_error(name: &str, decision: Option<Decision>, message: String) -> PolicyError {
    PolicyError::new(name, decision, FailureKind::Load, message)
}

/// Refuses core modules and non-Wasm files with a message saying what they
/// are; WAT text is left to the compiler.
fn check_format(bytes: &[u8]) -> Result<(), String> {
    if bytes.starts_with(&COMPONENT_HEADER) {
        return Ok(());
    }
    if bytes.starts_with(&CORE_HEADER) {
        return Err("is a core WebAssembly module, not a component: build the policy for wasm32-wasip2 (or wrap the module with `wasm-tools component new`)".to_owned());
    }
    if bytes.starts_with(b"\0asm") {
        return Err("is a WebAssembly binary of an unsupported version or layer".to_owned());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with('(') => Ok(()),
        _ => Err("is not a WebAssembly component (no `\\0asm` header)".to_owned()),
    }
}

/// Whether a policy may import `name`: the granted WASI interfaces or an
/// interface of the contract, `weft:policy@0.1.x`.
fn is_allowed_import(name: &str) -> bool {
    if name.starts_with("wasi:") {
        return wasi::is_granted(name);
    }
    name.strip_prefix("weft:policy/")
        .and_then(|rest| rest.split_once('@'))
        .is_some_and(|(interface, version)| {
            CONTRACT_INTERFACES.contains(&interface) && version.starts_with("0.1.")
        })
}

/// The extended world whose decision function the component exports, if
/// any, and its decision.
fn extended_world(exports: &[String]) -> Option<(Decision, WorldKind)> {
    EXTENDED_WORLDS
        .into_iter()
        .find(|(name, ..)| exports.iter().any(|e| e == name))
        .map(|(_, decision, kind)| (decision, kind))
}

/// The decision of the world whose decision function the component exports.
fn world_of(exports: &[String]) -> Option<Decision> {
    extended_world(exports)
        .map(|(decision, _)| decision)
        .or_else(|| {
            Decision::ALL
                .into_iter()
                .find(|d| exports.iter().any(|e| e == d.export_name()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        assert!(check_format(&COMPONENT_HEADER).is_ok());
        assert!(check_format(b"(component)").is_ok());
        assert!(
            check_format(&CORE_HEADER)
                .expect_err("core")
                .contains("core WebAssembly module")
        );
        assert!(
            check_format(&[0x13, 0x37, 0xfe, 0xed])
                .expect_err("random")
                .contains("no `\\0asm` header")
        );
        assert!(check_format(b"").is_err());
    }

    #[test]
    fn only_wasi_and_the_contract_may_be_imported() {
        for ok in [
            "wasi:cli/stderr@0.2.6",
            "wasi:io/poll@0.2.6",
            "weft:policy/log@0.1.0",
            "weft:policy/pool@0.1.3",
            "weft:policy/kubernetes@0.1.0",
        ] {
            assert!(is_allowed_import(ok), "{ok}");
        }
        for bad in [
            "evil:net/socket",
            "wasi:sockets/tcp@0.2.6",
            "weft:policy/log@0.2.0",
            "weft:policy/net@0.1.0",
            "weft:policy/log",
        ] {
            assert!(!is_allowed_import(bad), "{bad}");
        }
    }

    #[test]
    fn deadline_ticks_round_up() {
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 11);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 3);
        assert!(deadline_ticks(Duration::MAX) > 1);
    }
}
