//! One role's policy: the state in force, swapped whole (a decision in
//! flight keeps the state it started with, so a reload never interrupts
//! it), the state of the main configuration to return to when the policy
//! directory has no module for the role, the shadow, and the role's last
//! refusal.

use super::config::{OnFailure, PolicyConfig};
use super::engine::PolicyEngine;
use super::error::{Decision, FailureKind, PolicyError, SetupError};
use super::module::{CompiledPolicy, PolicyModule};
use super::sandbox::CallLimits;
use super::shadow::Shadow;
use super::view::{Percentiles, Refusal};
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// Latency samples kept per module in force, for its percentiles.
const LATENCY_SAMPLES: usize = 1024;

/// Where the module in force comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// No module: the built-in default runs natively.
    Builtin,
    /// `[policies.<role>]` of the main configuration.
    Config,
    /// A file of the policy directory, as read when it was loaded.
    Directory(DirFile),
}

/// A drop-in file as it was loaded: a file whose content and settings are
/// unchanged is not loaded again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirFile {
    /// The `NAME.wasm` path.
    pub wasm: PathBuf,
    /// sha256 of its content.
    pub sha256: String,
    /// The text of `NAME.toml`, if any.
    pub toml: Option<String>,
}

/// One role: what is in force and what it returns to.
pub(crate) struct Slot<N> {
    state: RwLock<Arc<SlotState<N>>>,
    /// The main configuration's state, in force when the directory has no
    /// module for this role.
    base: RwLock<Arc<SlotState<N>>>,
    shadow: RwLock<Option<Arc<Shadow>>>,
    last_refusal: Mutex<Option<Refusal>>,
}

/// A configuration, its module (if any) and the native default.
pub(crate) struct SlotState<N> {
    pub decision: Decision,
    pub builtin: &'static str,
    pub name: String,
    pub config: PolicyConfig,
    pub on_failure: OnFailure,
    pub module: Option<Result<Arc<PolicyModule>, PolicyError>>,
    pub native: Arc<N>,
    pub origin: Origin,
    pub loaded_at: SystemTime,
    pub stats: Stats,
}

impl<N> SlotState<N> {
    /// The module, or why it is missing; `None` when none is configured.
    pub(super) fn wasm_or_failure(&self) -> Option<Result<&PolicyModule, &PolicyError>> {
        self.module.as_ref().map(|m| m.as_ref().map(|m| &**m))
    }

    pub(super) fn wasm(&self) -> Option<&PolicyModule> {
        self.wasm_or_failure().and_then(|m| m.ok())
    }

    pub(super) fn invalid_output(&self, message: String) -> PolicyError {
        PolicyError::new(
            &self.name,
            Some(self.decision),
            FailureKind::InvalidOutput,
            message,
        )
    }

    /// The same policy, in force again from now on with fresh statistics.
    fn again(&self) -> Self {
        SlotState {
            decision: self.decision,
            builtin: self.builtin,
            name: self.name.clone(),
            config: self.config.clone(),
            on_failure: self.on_failure,
            module: self.module.clone(),
            native: self.native.clone(),
            origin: self.origin.clone(),
            loaded_at: SystemTime::now(),
            stats: Stats::default(),
        }
    }

    /// Loads `config` (module from its path, native default) for the main
    /// configuration. A module that fails to load is logged and counted
    /// and kept as the error; only the native default's settings being
    /// refused is an error.
    pub(super) fn load(
        engine: &PolicyEngine,
        metrics: &Metrics,
        decision: Decision,
        config: PolicyConfig,
        configure: fn(&str) -> Result<N, String>,
    ) -> Result<Self, SetupError> {
        let name = config.display_name(builtin_name(decision));
        let module = config.module.as_ref().map(|path| {
            let loaded = CompiledPolicy::from_file(
                engine,
                path,
                &name,
                Some(decision),
                config.sha256.as_deref(),
            )
            .and_then(|compiled| configure_module(&compiled, &config))
            .map(Arc::new);
            match &loaded {
                Ok(module) => {
                    let r = module.report();
                    tracing::info!(
                        policy = %name, %decision, sha256 = %r.sha256, from_cache = r.from_cache,
                        compile_ms = r.compile_time.as_secs_f64() * 1e3, "policy loaded"
                    );
                }
                Err(e) => {
                    tracing::error!(policy = %name, %decision, "{e}");
                    metrics.policy(&name, decision.as_str(), FailureKind::Load.as_str());
                }
            }
            loaded
        });
        let origin = if module.is_some() {
            Origin::Config
        } else {
            Origin::Builtin
        };
        Self::assemble(decision, config, module, origin, configure)
    }

    /// A state running `module`, with the native default configured from
    /// `config` as its fallback.
    pub(super) fn assemble(
        decision: Decision,
        config: PolicyConfig,
        module: Option<Result<Arc<PolicyModule>, PolicyError>>,
        origin: Origin,
        configure: fn(&str) -> Result<N, String>,
    ) -> Result<Self, SetupError> {
        let builtin = builtin_name(decision);
        let native_settings = match (&config.module, &config.fallback_settings) {
            (None, _) => config.settings.to_string(),
            (Some(_), Some(fallback)) => fallback.to_string(),
            (Some(_), None) => "{}".to_owned(),
        };
        let native = configure(&native_settings).map_err(|m| {
            SetupError::Config(format!(
                "[policies.{decision}]: the built-in {builtin} rejected its settings: {m}"
            ))
        })?;
        Ok(SlotState {
            decision,
            builtin,
            on_failure: config.on_failure(decision),
            name: config.display_name(builtin),
            config,
            module,
            native: Arc::new(native),
            origin,
            loaded_at: SystemTime::now(),
            stats: Stats::default(),
        })
    }
}

/// Configures a compiled module with its entry's settings and limits.
pub(crate) fn configure_module(
    compiled: &CompiledPolicy,
    config: &PolicyConfig,
) -> std::result::Result<PolicyModule, PolicyError> {
    let limits = CallLimits {
        deadline: Duration::from_millis(config.deadline_ms),
        memory_bytes: config.memory_mib as usize * 1024 * 1024,
    };
    compiled.configure(&config.settings.to_string(), limits)
}

impl<N> Slot<N> {
    pub(super) fn new(base: SlotState<N>) -> Self {
        let base = Arc::new(base);
        Slot {
            state: RwLock::new(base.clone()),
            base: RwLock::new(base),
            shadow: RwLock::new(None),
            last_refusal: Mutex::new(None),
        }
    }

    /// The state in force.
    pub(super) fn current(&self) -> Arc<SlotState<N>> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `next` in force; decisions already running finish on the state
    /// they started with.
    pub(super) fn replace(&self, next: SlotState<N>) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }

    /// Puts the main configuration's policy back in force.
    pub(super) fn restore_base(&self) {
        let base = self
            .base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.replace(base.again());
    }

    /// The main configuration's state.
    pub(super) fn base(&self) -> Arc<SlotState<N>> {
        self.base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the main configuration's state; it is put in force unless a
    /// module of the policy directory is.
    pub(super) fn replace_base(&self, next: SlotState<N>) {
        let next = Arc::new(next);
        *self.base.write().unwrap_or_else(PoisonError::into_inner) = next.clone();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !matches!(state.origin, Origin::Directory(_)) {
            *state = next;
        }
    }

    /// The shadow, if one runs.
    pub(super) fn shadow(&self) -> Option<Arc<Shadow>> {
        self.shadow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn set_shadow(&self, shadow: Option<Shadow>) {
        *self.shadow.write().unwrap_or_else(PoisonError::into_inner) = shadow.map(Arc::new);
    }

    pub(super) fn last_refusal(&self) -> Option<Refusal> {
        self.last_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn refused(&self, refusal: Refusal) {
        *self
            .last_refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(refusal);
    }
}

/// What the module in force has done since it was put in force.
#[derive(Default)]
pub(crate) struct Stats {
    decisions: AtomicU64,
    failures: AtomicU64,
    fallbacks: AtomicU64,
    latency: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    nanos: Vec<u64>,
    next: usize,
}

impl Stats {
    /// One decision, answered in `elapsed`.
    pub(super) fn decided(&self, elapsed: Duration) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let mut ring = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.nanos.len() < LATENCY_SAMPLES {
            ring.nanos.push(nanos);
        } else {
            let at = ring.next;
            ring.nanos[at] = nanos;
        }
        ring.next = (ring.next + 1) % LATENCY_SAMPLES;
    }

    /// One failure; `fell_back` when the built-in default answered.
    pub(super) fn failed(&self, fell_back: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if fell_back {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions, failures, fallbacks.
    pub(super) fn counts(&self) -> (u64, u64, u64) {
        (
            self.decisions.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.fallbacks.load(Ordering::Relaxed),
        )
    }

    /// Latency percentiles of the last decisions; `None` before the first.
    pub(super) fn percentiles(&self) -> Option<Percentiles> {
        let mut samples = self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .nanos
            .clone();
        Percentiles::of(&mut samples)
    }
}

/// The built-in default policy's name for `decision`.
pub(crate) fn builtin_name(decision: Decision) -> &'static str {
    match decision {
        Decision::PoolSizing => "warm-pool",
        Decision::SubnetSelection => "subnet-most-free",
        Decision::SecurityGroups => "sg-selector",
    }
}
