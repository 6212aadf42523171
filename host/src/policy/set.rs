//! [`PolicySet`]: the three configured policies, what the reconciler and the
//! API call. Every answer is validated; a failing policy is logged, counted
//! and handled by its failure mode. Calls are synchronous and take
//! microseconds (bounded by each policy's deadline).
//!
//! Threads: calls may come from any thread. On a tokio worker thread the
//! guest runs inside `block_in_place` (WASI's blocking host functions need
//! it), which hands the worker's queue to another thread; callers on a hot
//! path should call from `spawn_blocking` or a plain thread instead.

use super::ArtifactCache;
use super::config::{OnFailure, PoliciesConfig, PolicyConfig};
use super::engine::PolicyEngine;
use super::error::{Decision, FailureKind, PolicyError};
use super::module::{CompiledPolicy, LoadReport, PolicyModule};
use super::sandbox::CallLimits;
use super::validate;
use crate::metrics::Metrics;
use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use weft_policy_sdk::{PoolSizing, SecurityGroups, SubnetSelection, pool, security, subnet};

/// The metrics outcome of a pool decision that was used after clamping.
const CLAMPED: &str = "clamped";
/// The metrics outcome of a decision that was used as is.
const OK: &str = "ok";

/// The configured policies with their built-in defaults.
///
/// The type parameters are the native defaults (one implementation each,
/// shared with the Wasm builds): they run where no module is configured and
/// as the fallback of a failing module.
pub struct PolicySet<
    P = warm_pool::WarmPool,
    S = subnet_most_free::SubnetMostFree,
    G = sg_selector::SgSelector,
> {
    engine: Arc<PolicyEngine>,
    metrics: Arc<Metrics>,
    pool: Slot<P>,
    subnet: Slot<S>,
    security: Slot<G>,
}

/// The state of one decision's policy, as reported by [`PolicySet::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    /// The decision.
    pub decision: Decision,
    /// The policy's name.
    pub name: String,
    /// The configured module, if any.
    pub module: Option<PathBuf>,
    /// The running module's load report; `None` when the built-in default
    /// runs (no module, or it never loaded).
    pub loaded: Option<LoadReport>,
    /// Why the configured module is not running, if it is not.
    pub load_error: Option<String>,
    /// What happens when the policy fails.
    pub on_failure: OnFailure,
}

impl PolicySet {
    /// Creates the engine (with the configured artifact cache) and loads
    /// every policy. A module that fails to load is logged and counted and
    /// its decision uses its failure mode; only an invalid configuration is
    /// an error.
    pub fn from_config(config: &PoliciesConfig, metrics: Arc<Metrics>) -> Result<Self> {
        let engine = PolicyEngine::new(config.cache_dir.clone().map(ArtifactCache::new))
            .map_err(|e| Error::Config(format!("cannot create the policy engine: {e:#}")))?;
        Self::new(Arc::new(engine), config, metrics)
    }
}

impl<P, S, G> PolicySet<P, S, G>
where
    P: PoolSizing + Send + Sync,
    S: SubnetSelection + Send + Sync,
    G: SecurityGroups + Send + Sync,
{
    /// Loads every policy on `engine` with the native defaults `P`, `S`,
    /// `G`; see [`PolicySet::from_config`].
    pub fn new(
        engine: Arc<PolicyEngine>,
        config: &PoliciesConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        let entry = |d: Decision| config.get(d).cloned().unwrap_or_default();
        let set = PolicySet {
            pool: Slot::new(
                &engine,
                &metrics,
                Decision::PoolSizing,
                entry(Decision::PoolSizing),
                P::configure,
            )?,
            subnet: Slot::new(
                &engine,
                &metrics,
                Decision::SubnetSelection,
                entry(Decision::SubnetSelection),
                S::configure,
            )?,
            security: Slot::new(
                &engine,
                &metrics,
                Decision::SecurityGroups,
                entry(Decision::SecurityGroups),
                G::configure,
            )?,
            engine,
            metrics,
        };
        Ok(set)
    }

    /// Reloads `decision`'s policy from `config` (or from its current
    /// configuration, e.g. after the module file changed). When the new
    /// module fails to load or configure, the last good one keeps running
    /// and the error is returned.
    pub fn reload(
        &self,
        decision: Decision,
        config: Option<PolicyConfig>,
    ) -> Result<Option<LoadReport>> {
        match decision {
            Decision::PoolSizing => {
                self.pool
                    .reload(&self.engine, &self.metrics, config, P::configure)
            }
            Decision::SubnetSelection => {
                self.subnet
                    .reload(&self.engine, &self.metrics, config, S::configure)
            }
            Decision::SecurityGroups => {
                self.security
                    .reload(&self.engine, &self.metrics, config, G::configure)
            }
        }
    }

    /// The state of every policy.
    pub fn status(&self) -> Vec<PolicyStatus> {
        vec![
            self.pool.status(),
            self.subnet.status(),
            self.security.status(),
        ]
    }

    /// Sizes one group's pool. The decision is clamped to the instance's
    /// limits; a failing policy gets its failure mode (by default the
    /// built-in `warm-pool`; `fail-closed` leaves the pool as it is).
    pub fn size_pool(&self, state: &pool::PoolState) -> pool::PoolDecision {
        let slot = self.pool.current();
        // `None`: the answer came from a failing policy's failure mode,
        // already counted.
        let (decision, answered) = match slot.wasm_or_failure() {
            None => (slot.native.size_pool(state), true),
            Some(Ok(module)) => match module.size_pool(state) {
                Ok((decision, _)) => (decision, true),
                Err(e) => (self.pool_failure(&slot, &e, state), false),
            },
            Some(Err(e)) => (self.pool_failure(&slot, e, state), false),
        };
        let clamped = validate::pool_decision(decision, state);
        if !clamped.adjustments.is_empty() {
            tracing::warn!(
                policy = %slot.name,
                adjustments = ?clamped.adjustments,
                "pool-sizing decision clamped to the instance's limits"
            );
        }
        if answered {
            let outcome = if clamped.adjustments.is_empty() {
                OK
            } else {
                CLAMPED
            };
            self.count(&slot.name, Decision::PoolSizing, outcome);
        }
        clamped.decision
    }

    /// Chooses the subnet of a new ENI. A choice outside `candidates` is an
    /// invalid output; a failing policy gets its failure mode (by default
    /// the built-in `subnet-most-free`; `fail-closed` refuses).
    pub fn select_subnet(
        &self,
        request: &subnet::EniRequest,
        candidates: &[subnet::Candidate],
    ) -> subnet::Choice {
        let slot = self.subnet.current();
        let failure = match slot.wasm_or_failure() {
            None => None,
            Some(Ok(module)) => {
                let answer = module
                    .select_subnet(request, candidates)
                    .and_then(|(choice, _)| {
                        validate::subnet_choice(choice, candidates)
                            .map_err(|m| slot.invalid_output(m))
                    });
                match answer {
                    Ok(choice) => {
                        self.count(&slot.name, Decision::SubnetSelection, OK);
                        return choice;
                    }
                    Err(e) => Some(e),
                }
            }
            Some(Err(e)) => Some(e.clone()),
        };
        if let Some(e) = &failure {
            self.failed(&slot, e);
            if slot.on_failure == OnFailure::FailClosed {
                return subnet::Choice::Refuse(e.to_string());
            }
        }
        let choice = slot.native.select_subnet(request, candidates);
        match validate::subnet_choice(choice, candidates) {
            Ok(choice) => {
                if failure.is_none() {
                    self.count(&slot.name, Decision::SubnetSelection, OK);
                }
                choice
            }
            Err(m) => {
                let e = PolicyError::new(
                    slot.builtin,
                    Some(Decision::SubnetSelection),
                    FailureKind::InvalidOutput,
                    m,
                );
                tracing::error!(policy = slot.builtin, "{e}; refusing to create the ENI");
                if failure.is_none() {
                    self.count(&slot.name, Decision::SubnetSelection, e.kind.as_str());
                }
                subnet::Choice::Refuse(e.to_string())
            }
        }
    }

    /// The pod's security groups: validated (well-formed, at most 5,
    /// de-duplicated, within `allowed-security-groups`). A policy's own
    /// refusal is returned as a [`FailureKind::Refused`] error. A failing
    /// policy fails closed by default (the error names the policy); with
    /// `on-failure = "fallback"` the built-in `sg-selector` answers.
    pub fn select_security_groups(
        &self,
        request: &security::Request,
    ) -> Result<Vec<String>, PolicyError> {
        let slot = self.security.current();
        let allowed = slot.config.allowed_security_groups.as_deref();
        let answer = match slot.wasm_or_failure() {
            None => None,
            Some(Ok(module)) => Some(
                module
                    .select_security_groups(request)
                    .map(|(answer, _)| answer),
            ),
            Some(Err(e)) => Some(Err(e.clone())),
        };
        let failure = match answer {
            None => None,
            Some(Ok(Err(refusal))) => {
                let e = PolicyError::new(
                    &slot.name,
                    Some(Decision::SecurityGroups),
                    FailureKind::Refused,
                    validate::refusal(&refusal),
                );
                self.count(&slot.name, Decision::SecurityGroups, e.kind.as_str());
                return Err(e);
            }
            Some(Ok(Ok(groups))) => match validate::security_groups(groups, allowed) {
                Ok(groups) => {
                    self.count(&slot.name, Decision::SecurityGroups, OK);
                    return Ok(groups);
                }
                Err(m) => Some(slot.invalid_output(m)),
            },
            Some(Err(e)) => Some(e),
        };
        if let Some(e) = &failure {
            self.failed(&slot, e);
            if slot.on_failure == OnFailure::FailClosed {
                return Err(e.clone());
            }
        }
        let native_name = slot.builtin;
        let result = slot
            .native
            .select_security_groups(request)
            .map_err(|m| {
                PolicyError::new(
                    native_name,
                    Some(Decision::SecurityGroups),
                    FailureKind::Refused,
                    m,
                )
            })
            .and_then(|groups| {
                validate::security_groups(groups, allowed).map_err(|m| {
                    PolicyError::new(
                        native_name,
                        Some(Decision::SecurityGroups),
                        FailureKind::InvalidOutput,
                        m,
                    )
                })
            });
        if failure.is_none() {
            let outcome = result.as_ref().map_or_else(|e| e.kind.as_str(), |_| OK);
            self.count(&slot.name, Decision::SecurityGroups, outcome);
        }
        result
    }

    fn pool_failure(
        &self,
        slot: &SlotState<P>,
        e: &PolicyError,
        state: &pool::PoolState,
    ) -> pool::PoolDecision {
        self.failed(slot, e);
        match slot.on_failure {
            OnFailure::Fallback => slot.native.size_pool(state),
            OnFailure::FailClosed => pool::PoolDecision {
                reason: format!("pool left as it is: {e}"),
                ..Default::default()
            },
        }
    }

    /// Logs and counts a failure.
    fn failed<N>(&self, slot: &SlotState<N>, e: &PolicyError) {
        let action = match slot.on_failure {
            OnFailure::Fallback => format!("falling back to the built-in {}", slot.builtin),
            OnFailure::FailClosed => "failing closed".to_owned(),
        };
        tracing::warn!(policy = %slot.name, decision = %slot.decision, outcome = e.kind.as_str(), "{e}; {action}");
        self.count(&slot.name, slot.decision, e.kind.as_str());
    }

    fn count(&self, policy: &str, decision: Decision, outcome: &str) {
        self.metrics.policy(policy, decision.as_str(), outcome);
    }
}

/// One decision's policy; swapped whole on a successful reload.
struct Slot<N> {
    state: RwLock<Arc<SlotState<N>>>,
}

/// A configuration, its module (if any) and the configured native default.
struct SlotState<N> {
    decision: Decision,
    builtin: &'static str,
    name: String,
    config: PolicyConfig,
    on_failure: OnFailure,
    module: Option<Result<Arc<PolicyModule>, PolicyError>>,
    native: N,
}

impl<N> SlotState<N> {
    /// The module, or why it is missing; `None` when none is configured.
    fn wasm_or_failure(&self) -> Option<Result<&PolicyModule, &PolicyError>> {
        self.module.as_ref().map(|m| m.as_ref().map(|m| &**m))
    }

    fn wasm(&self) -> Option<&PolicyModule> {
        self.wasm_or_failure().and_then(|m| m.ok())
    }

    fn invalid_output(&self, message: String) -> PolicyError {
        PolicyError::new(
            &self.name,
            Some(self.decision),
            FailureKind::InvalidOutput,
            message,
        )
    }
}

impl<N> Slot<N> {
    fn new(
        engine: &PolicyEngine,
        metrics: &Metrics,
        decision: Decision,
        config: PolicyConfig,
        configure: fn(&str) -> Result<N, String>,
    ) -> Result<Self> {
        let state = SlotState::load(engine, metrics, decision, config, configure)?;
        Ok(Slot {
            state: RwLock::new(Arc::new(state)),
        })
    }

    fn current(&self) -> Arc<SlotState<N>> {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn reload(
        &self,
        engine: &PolicyEngine,
        metrics: &Metrics,
        config: Option<PolicyConfig>,
        configure: fn(&str) -> Result<N, String>,
    ) -> Result<Option<LoadReport>> {
        let current = self.current();
        let config = config.unwrap_or_else(|| current.config.clone());
        config
            .validate(current.decision)
            .map_err(|e| Error::Config(format!("[policies.{}]: {e}", current.decision)))?;
        let next = SlotState::load(engine, metrics, current.decision, config, configure)?;
        if let Some(Err(e)) = &next.module {
            match current.wasm() {
                Some(last) => tracing::warn!(
                    policy = %current.name,
                    sha256 = %last.report().sha256,
                    "reload failed, keeping the last good module: {e}"
                ),
                None => tracing::warn!(policy = %current.name, "reload failed: {e}"),
            }
            return Err(Error::Policy(e.clone()));
        }
        let report = next.wasm().map(|m| m.report().clone());
        tracing::info!(policy = %next.name, decision = %next.decision, sha256 = ?report.as_ref().map(|r| &r.sha256), "policy reloaded");
        let mut guard = match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(next);
        Ok(report)
    }

    fn status(&self) -> PolicyStatus {
        let state = self.current();
        PolicyStatus {
            decision: state.decision,
            name: state.name.clone(),
            module: state.config.module.clone(),
            loaded: state.wasm().map(|m| m.report().clone()),
            load_error: match &state.module {
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            },
            on_failure: state.on_failure,
        }
    }
}

impl<N> SlotState<N> {
    fn load(
        engine: &PolicyEngine,
        metrics: &Metrics,
        decision: Decision,
        config: PolicyConfig,
        configure: fn(&str) -> Result<N, String>,
    ) -> Result<Self> {
        let builtin = builtin_name(decision);
        let name = config.display_name(builtin);
        let native_settings = match (&config.module, &config.fallback_settings) {
            (None, _) => config.settings.to_string(),
            (Some(_), Some(fallback)) => fallback.to_string(),
            (Some(_), None) => "{}".to_owned(),
        };
        let native = configure(&native_settings).map_err(|m| {
            Error::Config(format!(
                "[policies.{decision}]: the built-in {builtin} rejected its settings: {m}"
            ))
        })?;
        let module = config.module.as_ref().map(|path| {
            let limits = CallLimits {
                deadline: Duration::from_millis(config.deadline_ms),
                memory_bytes: config.memory_mib as usize * 1024 * 1024,
            };
            let loaded = CompiledPolicy::from_file(
                engine,
                path,
                &name,
                Some(decision),
                config.sha256.as_deref(),
            )
            .and_then(|compiled| compiled.configure(&config.settings.to_string(), limits))
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
        Ok(SlotState {
            decision,
            builtin,
            on_failure: config.on_failure(decision),
            name,
            config,
            module,
            native,
        })
    }
}

/// The built-in default policy's name for `decision`.
fn builtin_name(decision: Decision) -> &'static str {
    match decision {
        Decision::PoolSizing => "warm-pool",
        Decision::SubnetSelection => "subnet-most-free",
        Decision::SecurityGroups => "sg-selector",
    }
}
