//! [`PolicySet`]: the three configured policies, what the reconciler and the
//! API call. Every answer is validated; a failing policy is logged, counted
//! and handled by its failure mode. Calls are synchronous and take
//! microseconds (bounded by each policy's deadline).
//!
//! Threads: calls may come from any thread. On a tokio worker thread the
//! guest runs inside `block_in_place` (WASI's blocking host functions need
//! it), which hands the worker's queue to another thread; callers on a hot
//! path should call from `spawn_blocking` or a plain thread instead. On a
//! current-thread runtime it runs on a policy worker thread (see
//! [`super::watchdog`]).

use super::ArtifactCache;
use super::config::{OnFailure, PoliciesConfig, PolicyConfig};
use super::engine::PolicyEngine;
use super::error::{Decision, FailureKind, PolicyError, SetupError};
use super::module::LoadReport;
use super::shadow;
use super::slot::{Origin, Slot, SlotState};
use super::validate;
use super::view::{LivePool, LiveSecurityGroups, LiveSubnet, PoliciesView, Refusal, RoleView};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
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
    pub(super) engine: Arc<PolicyEngine>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) pool: Slot<P>,
    pub(super) subnet: Slot<S>,
    pub(super) security: Slot<G>,
    /// The policy directory, when one is configured.
    pub(super) dir: Option<PathBuf>,
    /// Files of the directory refused at its last scan.
    pub(super) refused: Mutex<Vec<Refusal>>,
}

/// Whether a decision acts (is counted, timed and shadowed) or only
/// previews what the active policy would answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Act,
    Preview,
}

impl PolicySet {
    /// Creates the engine (with the configured artifact cache) and loads
    /// every policy. A module that fails to load is logged and counted and
    /// its decision uses its failure mode; only an invalid configuration is
    /// an error. The policy directory is read by
    /// [`apply_directory`](Self::apply_directory).
    pub fn from_config(config: &PoliciesConfig, metrics: Arc<Metrics>) -> Result<Self, SetupError> {
        let engine = PolicyEngine::new(config.cache_dir.clone().map(ArtifactCache::new))
            .map_err(|e| SetupError::Config(format!("cannot create the policy engine: {e:#}")))?;
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
    pub(crate) fn new(
        engine: Arc<PolicyEngine>,
        config: &PoliciesConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        config
            .validate()
            .map_err(|(decision, e)| SetupError::Config(format!("[policies.{decision}]: {e}")))?;
        let entry = |d: Decision| config.get(d).cloned().unwrap_or_default();
        let set = PolicySet {
            pool: Slot::new(SlotState::load(
                &engine,
                &metrics,
                Decision::PoolSizing,
                entry(Decision::PoolSizing),
                P::configure,
            )?),
            subnet: Slot::new(SlotState::load(
                &engine,
                &metrics,
                Decision::SubnetSelection,
                entry(Decision::SubnetSelection),
                S::configure,
            )?),
            security: Slot::new(SlotState::load(
                &engine,
                &metrics,
                Decision::SecurityGroups,
                entry(Decision::SecurityGroups),
                G::configure,
            )?),
            engine,
            metrics,
            dir: config.dir.clone(),
            refused: Mutex::new(Vec::new()),
        };
        Ok(set)
    }

    /// Reloads `decision`'s policy of the main configuration from `config`
    /// (or from its current configuration, e.g. after the module file
    /// changed). When the new module fails to load or configure, the last
    /// good one keeps running and the error is returned. A module of the
    /// policy directory stays in force over it.
    pub fn reload(
        &self,
        decision: Decision,
        config: Option<PolicyConfig>,
    ) -> Result<Option<LoadReport>, SetupError> {
        match decision {
            Decision::PoolSizing => self.reload_base(&self.pool, config, P::configure),
            Decision::SubnetSelection => self.reload_base(&self.subnet, config, S::configure),
            Decision::SecurityGroups => self.reload_base(&self.security, config, G::configure),
        }
    }

    fn reload_base<N>(
        &self,
        slot: &Slot<N>,
        config: Option<PolicyConfig>,
        configure: fn(&str) -> Result<N, String>,
    ) -> Result<Option<LoadReport>, SetupError> {
        let current = slot.base();
        let config = config.unwrap_or_else(|| current.config.clone());
        config
            .validate(current.decision)
            .map_err(|e| SetupError::Config(format!("[policies.{}]: {e}", current.decision)))?;
        let next = SlotState::load(
            &self.engine,
            &self.metrics,
            current.decision,
            config,
            configure,
        )?;
        if let Some(Err(e)) = &next.module {
            match current.wasm() {
                Some(last) => tracing::warn!(
                    policy = %current.name,
                    sha256 = %last.report().sha256,
                    "reload failed, keeping the last good module: {e}"
                ),
                None => tracing::warn!(policy = %current.name, "reload failed: {e}"),
            }
            return Err(SetupError::Policy(e.clone()));
        }
        let report = next.wasm().map(|m| m.report().clone());
        tracing::info!(policy = %next.name, decision = %next.decision, sha256 = ?report.as_ref().map(|r| &r.sha256), "policy reloaded");
        slot.replace_base(next);
        Ok(report)
    }

    /// Reloads every role's module of the main configuration from its file
    /// (on SIGHUP, after an operator replaced it). A module that no longer
    /// loads, configures or matches its pin is refused as a file of the
    /// policy directory would be, and the last good one keeps running.
    pub(crate) fn reload_config_modules(&self) {
        for decision in Decision::ALL {
            if let Err(e) = self.reload(decision, None) {
                let module = match decision {
                    Decision::PoolSizing => self.pool.base().config.module.clone(),
                    Decision::SubnetSelection => self.subnet.base().config.module.clone(),
                    Decision::SecurityGroups => self.security.base().config.module.clone(),
                };
                let message = format!(
                    "[policies.{decision}] reload refused: {e}; the last good module stays in force"
                );
                self.refuse(
                    Some(decision),
                    &Refusal::now(module.into_iter().collect(), message),
                );
            }
        }
    }

    /// Every role's policy, its shadow, refusals and statistics, as
    /// `GET /v1/policies` serves it.
    pub fn view(&self) -> PoliciesView {
        PoliciesView {
            dir: self.dir.clone(),
            refused: self.refused_files(),
            roles: vec![
                role_view(&self.pool),
                role_view(&self.subnet),
                role_view(&self.security),
            ],
        }
    }

    /// Files of the policy directory refused at its last scan.
    pub fn refused_files(&self) -> Vec<Refusal> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sizes one group's pool. The decision is clamped to the instance's
    /// limits; a failing policy gets its failure mode (by default the
    /// built-in `warm-pool`; `fail-closed` leaves the pool as it is).
    pub fn size_pool(&self, state: &pool::PoolState) -> pool::PoolDecision {
        let started = Instant::now();
        let slot = self.pool.current();
        let decision = self.decide_pool(&slot, state, Mode::Act);
        slot.stats.decided(started.elapsed());
        self.metrics
            .policy_latency(&slot.name, Decision::PoolSizing.as_str(), started.elapsed());
        if let Some(shadow) = self.pool.shadow() {
            let answer = match shadow.module.size_pool(state) {
                Ok((d, _)) => to_json(&validate::pool_decision(d, state).decision),
                Err(e) => shadow::failed(e),
            };
            shadow.compare(
                &self.metrics,
                Decision::PoolSizing,
                || format!("group {}", state.group.join(",")),
                to_json(&decision),
                answer,
            );
        }
        decision
    }

    /// Chooses the subnet of a new ENI. A choice outside `candidates` is an
    /// invalid output; a failing policy gets its failure mode (by default
    /// the built-in `subnet-most-free`; `fail-closed` refuses).
    pub fn select_subnet(
        &self,
        request: &subnet::EniRequest,
        candidates: &[subnet::Candidate],
    ) -> subnet::Choice {
        let started = Instant::now();
        let slot = self.subnet.current();
        let choice = self.decide_subnet(&slot, request, candidates, Mode::Act);
        slot.stats.decided(started.elapsed());
        self.metrics.policy_latency(
            &slot.name,
            Decision::SubnetSelection.as_str(),
            started.elapsed(),
        );
        if let Some(shadow) = self.subnet.shadow() {
            let answer = match shadow.module.select_subnet(request, candidates) {
                Ok((c, _)) => match validate::subnet_choice(c, candidates) {
                    Ok(c) => to_json(&c),
                    Err(m) => shadow::failed(m),
                },
                Err(e) => shadow::failed(e),
            };
            shadow.compare(
                &self.metrics,
                Decision::SubnetSelection,
                || {
                    format!(
                        "new ENI for {} among {} subnets",
                        request.security_groups.join(","),
                        candidates.len()
                    )
                },
                to_json(&choice),
                answer,
            );
        }
        choice
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
        let started = Instant::now();
        let slot = self.security.current();
        let answer = self.decide_security_groups(&slot, request, Mode::Act);
        slot.stats.decided(started.elapsed());
        self.metrics.policy_latency(
            &slot.name,
            Decision::SecurityGroups.as_str(),
            started.elapsed(),
        );
        if let Some(shadow) = self.security.shadow() {
            let theirs = match shadow.module.select_security_groups(request) {
                Ok((Ok(groups), _)) => {
                    match validate::security_groups(
                        groups,
                        shadow.allowed_security_groups.as_deref(),
                    ) {
                        Ok(groups) => json!({ "ok": groups }),
                        Err(m) => shadow::failed(m),
                    }
                }
                Ok((Err(refusal), _)) => json!({ "err": refusal }),
                Err(e) => shadow::failed(e),
            };
            shadow.compare(
                &self.metrics,
                Decision::SecurityGroups,
                || format!("pod {}/{}", request.pod.namespace, request.pod.name),
                groups_json(&answer),
                theirs,
            );
        }
        answer
    }

    /// What the active policies answer for each of `pools`, `subnets` and
    /// `pods`, without acting: nothing is counted, timed or shadowed.
    pub(crate) fn preview(
        &self,
        pools: Vec<pool::PoolState>,
        subnets: Vec<(subnet::EniRequest, Vec<subnet::Candidate>)>,
        pods: Vec<security::Request>,
    ) -> super::view::LiveInputs {
        let (p, s, g) = (
            self.pool.current(),
            self.subnet.current(),
            self.security.current(),
        );
        super::view::LiveInputs {
            pool_sizing: pools
                .into_iter()
                .map(|input| LivePool {
                    active: self.decide_pool(&p, &input, Mode::Preview),
                    input,
                })
                .collect(),
            subnet_selection: subnets
                .into_iter()
                .map(|(request, candidates)| LiveSubnet {
                    active: self.decide_subnet(&s, &request, &candidates, Mode::Preview),
                    request,
                    candidates,
                })
                .collect(),
            security_groups: pods
                .into_iter()
                .map(|input| LiveSecurityGroups {
                    active: groups_json(&self.decide_security_groups(&g, &input, Mode::Preview)),
                    input,
                })
                .collect(),
        }
    }

    fn decide_pool(
        &self,
        slot: &SlotState<P>,
        state: &pool::PoolState,
        mode: Mode,
    ) -> pool::PoolDecision {
        // `None`: the answer came from a failing policy's failure mode,
        // already counted.
        let (decision, answered) = match slot.wasm_or_failure() {
            None => (slot.native.size_pool(state), true),
            Some(Ok(module)) => match module.size_pool(state) {
                Ok((decision, _)) => (decision, true),
                Err(e) => (self.pool_failure(slot, &e, state, mode), false),
            },
            Some(Err(e)) => (self.pool_failure(slot, e, state, mode), false),
        };
        let clamped = validate::pool_decision(decision, state);
        if mode == Mode::Preview {
            return clamped.decision;
        }
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
            self.count(&slot.name, Decision::PoolSizing, outcome, mode);
        }
        clamped.decision
    }

    fn decide_subnet(
        &self,
        slot: &SlotState<S>,
        request: &subnet::EniRequest,
        candidates: &[subnet::Candidate],
        mode: Mode,
    ) -> subnet::Choice {
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
                        self.count(&slot.name, Decision::SubnetSelection, OK, mode);
                        return choice;
                    }
                    Err(e) => Some(e),
                }
            }
            Some(Err(e)) => Some(e.clone()),
        };
        if let Some(e) = &failure {
            self.failed(slot, e, mode);
            if slot.on_failure == OnFailure::FailClosed {
                return subnet::Choice::Refuse(e.to_string());
            }
        }
        let choice = slot.native.select_subnet(request, candidates);
        match validate::subnet_choice(choice, candidates) {
            Ok(choice) => {
                if failure.is_none() {
                    self.count(&slot.name, Decision::SubnetSelection, OK, mode);
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
                if mode == Mode::Act {
                    tracing::error!(policy = slot.builtin, "{e}; refusing to create the ENI");
                }
                if failure.is_none() {
                    self.count(&slot.name, Decision::SubnetSelection, e.kind.as_str(), mode);
                }
                subnet::Choice::Refuse(e.to_string())
            }
        }
    }

    fn decide_security_groups(
        &self,
        slot: &SlotState<G>,
        request: &security::Request,
        mode: Mode,
    ) -> Result<Vec<String>, PolicyError> {
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
                self.count(&slot.name, Decision::SecurityGroups, e.kind.as_str(), mode);
                return Err(e);
            }
            Some(Ok(Ok(groups))) => match validate::security_groups(groups, allowed) {
                Ok(groups) => {
                    self.count(&slot.name, Decision::SecurityGroups, OK, mode);
                    return Ok(groups);
                }
                Err(m) => Some(slot.invalid_output(m)),
            },
            Some(Err(e)) => Some(e),
        };
        if let Some(e) = &failure {
            self.failed(slot, e, mode);
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
            self.count(&slot.name, Decision::SecurityGroups, outcome, mode);
        }
        result
    }

    fn pool_failure(
        &self,
        slot: &SlotState<P>,
        e: &PolicyError,
        state: &pool::PoolState,
        mode: Mode,
    ) -> pool::PoolDecision {
        self.failed(slot, e, mode);
        match slot.on_failure {
            OnFailure::Fallback => slot.native.size_pool(state),
            OnFailure::FailClosed => pool::PoolDecision {
                reason: format!("pool left as it is: {e}"),
                ..Default::default()
            },
        }
    }

    /// Logs and counts a failure of an acting decision.
    fn failed<N>(&self, slot: &SlotState<N>, e: &PolicyError, mode: Mode) {
        if mode == Mode::Preview {
            return;
        }
        let action = match slot.on_failure {
            OnFailure::Fallback => format!("falling back to the built-in {}", slot.builtin),
            OnFailure::FailClosed => "failing closed".to_owned(),
        };
        tracing::warn!(policy = %slot.name, decision = %slot.decision, outcome = e.kind.as_str(), "{e}; {action}");
        slot.stats.failed(slot.on_failure == OnFailure::Fallback);
        self.count(&slot.name, slot.decision, e.kind.as_str(), mode);
    }

    fn count(&self, policy: &str, decision: Decision, outcome: &str, mode: Mode) {
        if mode == Mode::Act {
            self.metrics.policy(policy, decision.as_str(), outcome);
        }
    }
}

/// A decision as JSON, for comparisons and listings.
fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(shadow::failed)
}

/// A security-groups answer as `{"ok": [...]}` or `{"err": message}`.
fn groups_json(answer: &Result<Vec<String>, PolicyError>) -> Value {
    match answer {
        Ok(groups) => json!({ "ok": groups }),
        Err(e) => json!({ "err": e.to_string() }),
    }
}

fn role_view<N>(slot: &Slot<N>) -> RoleView {
    let state = slot.current();
    let module = state.wasm();
    let report = module.map(|m| m.report());
    let (decisions, failures, fallbacks) = state.stats.counts();
    RoleView {
        role: state.decision.as_str().to_owned(),
        policy: state.name.clone(),
        source: match state.origin {
            Origin::Builtin => "builtin",
            Origin::Config => "config",
            Origin::Directory(_) => "directory",
        }
        .to_owned(),
        module: state.config.module.clone(),
        sha256: report.map(|r| r.sha256.clone()),
        world: report.map(|r| r.decision.as_str().to_owned()),
        from_image: module.map(|m| m.starts_from_image()),
        no_image: module.and_then(|m| m.no_image_reason()).map(str::to_owned),
        loaded_at: super::view::unix_seconds(state.loaded_at),
        load_error: match &state.module {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        },
        on_failure: state.on_failure,
        decisions,
        failures,
        fallbacks,
        latency_us: state.stats.percentiles(),
        last_refusal: slot.last_refusal(),
        shadow: slot.shadow().map(|s| s.view()),
    }
}
