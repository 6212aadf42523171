//! Prometheus counters shared by the agent's modules.
//!
//! One [`Metrics`] is created per agent and handed (as `Arc<Metrics>`) to the
//! policy runtime, the cloud clients and the pool; `weftd` serves
//! [`Metrics::encode`] on its metrics endpoint.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

/// Labels of a policy decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's configured name.
    pub policy: String,
    /// The decision: `pool-sizing`, `subnet-selection` or `security-groups`.
    pub decision: String,
    /// `ok`, `clamped` (a pool decision used after clamping to the instance's limits), or the
    /// failure kind (`load`, `trap`, `deadline`, `memory`, `invalid-output`, `refused`).
    pub outcome: String,
}

/// Labels of a policy latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLatencyLabels {
    /// The policy's name.
    pub policy: String,
    /// The decision (role).
    pub decision: String,
}

/// Labels of the shadow disagreement counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// The decision (role): `pool-sizing`, `subnet-selection`, `security-groups`.
    pub role: String,
    /// The shadow policy's name.
    pub policy: String,
}

/// Labels of the policy reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The decision (role), or `unknown` for a file refused before its
    /// world was known.
    pub role: String,
    /// `loaded`, `removed` or `refused`.
    pub outcome: String,
}

/// Labels of an EC2 call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudLabels {
    /// The EC2 API, e.g. `AssignPrivateIpAddresses`.
    pub api: String,
    /// `ok`, `throttled`, `limit`, `not-found`, `transient`, `fatal`, `timeout`.
    pub outcome: String,
}

/// Labels of a pool-service counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `add` (a pod ADD) or the journaled operation, e.g. `create-eni`.
    pub event: String,
    /// For `add`: `immediate`, `waited` or `try-again`; for operations: `ok`
    /// or the failure kind.
    pub outcome: String,
}

/// Labels of a CNI request histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CniLabels {
    /// `ADD`, `DEL`, `CHECK` or `GC`.
    pub command: String,
    /// `ok`, or the CNI error code answered (e.g. `11`).
    pub outcome: String,
}

/// Labels of a per-group pool gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The group's security groups, comma-separated.
    pub group: String,
}

/// Labels of the address gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    /// The group's security groups, comma-separated.
    pub group: String,
    /// `total`, `assigned`, `cooling` or `free`.
    pub state: String,
}

/// Bucket bounds of the CNI request histogram: 0.25 ms to about 16 s.
fn cni_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

/// Bucket bounds of the policy decision histogram: 2 µs to about 65 ms.
fn policy_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_002, 2.0, 16))
}

/// All of the agent's counters.
pub struct Metrics {
    /// Policy decisions by policy, decision and outcome.
    pub policy_decisions: Family<PolicyLabels, Counter>,
    /// Policy decision latency by policy and decision, in seconds.
    pub policy_latency: Family<PolicyLatencyLabels, Histogram, fn() -> Histogram>,
    /// Decisions where a shadow policy differed from the active one.
    pub shadow_disagreements: Family<ShadowLabels, Counter>,
    /// Policy directory changes by role and outcome.
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// EC2 calls by API and outcome.
    pub cloud_calls: Family<CloudLabels, Counter>,
    /// Pool-service ADDs and reconciler operations by outcome.
    pub pool_events: Family<PoolLabels, Counter>,
    /// CNI requests served by the agent, by command and outcome, in seconds.
    pub cni_requests: Family<CniLabels, Histogram, fn() -> Histogram>,
    /// ENIs per group, read from the pool at each scrape.
    pub enis: Family<GroupLabels, Gauge>,
    /// Pod addresses per group and state.
    pub addresses: Family<AddressLabels, Gauge>,
    /// ADDs waiting for an address, per group.
    pub pending_adds: Family<GroupLabels, Gauge>,
    /// ENIs the node may have (instance limit or `max-enis`).
    pub max_enis: Gauge,
    /// Pod addresses the node's ENIs can hold at most.
    pub max_addresses: Gauge,
    /// Pods the node may hold (`max-pods`).
    pub max_pods: Gauge,
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the counters and registers them under the `weft` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("weft");
        let policy_decisions = Family::<PolicyLabels, Counter>::default();
        let policy_latency: Family<PolicyLatencyLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(policy_histogram);
        registry.register(
            "policy_decision_seconds",
            "Policy decisions (sandbox, validation, fallback) by policy and decision",
            policy_latency.clone(),
        );
        let shadow_disagreements = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "policy_shadow_disagreements",
            "Decisions where a shadow policy answered differently from the active policy",
            shadow_disagreements.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy directory changes by role and outcome (loaded, removed, refused)",
            policy_reloads.clone(),
        );
        let cloud_calls = Family::<CloudLabels, Counter>::default();
        let pool_events = Family::<PoolLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Policy decisions by policy, decision and outcome",
            policy_decisions.clone(),
        );
        registry.register(
            "cloud_calls",
            "EC2 API calls by API and outcome",
            cloud_calls.clone(),
        );
        registry.register(
            "pool_events",
            "Pod ADDs and reconciler operations by outcome",
            pool_events.clone(),
        );
        let cni_requests: Family<CniLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(cni_histogram);
        registry.register(
            "cni_request_seconds",
            "CNI requests served by the agent, by command and outcome",
            cni_requests.clone(),
        );
        let enis = Family::<GroupLabels, Gauge>::default();
        let addresses = Family::<AddressLabels, Gauge>::default();
        let pending_adds = Family::<GroupLabels, Gauge>::default();
        let (max_enis, max_addresses, max_pods) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "enis",
            "ENIs attached, per security-group set",
            enis.clone(),
        );
        registry.register(
            "addresses",
            "Pod addresses per security-group set: total, assigned, cooling, free",
            addresses.clone(),
        );
        registry.register(
            "pending_adds",
            "Pod ADDs waiting for an address, per security-group set",
            pending_adds.clone(),
        );
        registry.register("max_enis", "ENIs the node may have", max_enis.clone());
        registry.register(
            "max_addresses",
            "Pod addresses the node's ENIs can hold at most (secondary-IP mode)",
            max_addresses.clone(),
        );
        registry.register("max_pods", "Pods the node may hold", max_pods.clone());
        Metrics {
            policy_decisions,
            policy_latency,
            shadow_disagreements,
            policy_reloads,
            cloud_calls,
            pool_events,
            cni_requests,
            enis,
            addresses,
            pending_adds,
            max_enis,
            max_addresses,
            max_pods,
            registry: Mutex::new(registry),
        }
    }

    /// Counts one policy decision.
    pub(crate) fn policy(&self, policy: &str, decision: &str, outcome: &str) {
        self.policy_decisions
            .get_or_create(&PolicyLabels {
                policy: policy.to_owned(),
                decision: decision.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records how long one policy decision took.
    pub(crate) fn policy_latency(
        &self,
        policy: &str,
        decision: &str,
        elapsed: std::time::Duration,
    ) {
        self.policy_latency
            .get_or_create(&PolicyLatencyLabels {
                policy: policy.to_owned(),
                decision: decision.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one decision where shadow `policy` of `role` disagreed.
    pub(crate) fn shadow_disagreement(&self, role: &str, policy: &str) {
        self.shadow_disagreements
            .get_or_create(&ShadowLabels {
                role: role.to_owned(),
                policy: policy.to_owned(),
            })
            .inc();
    }

    /// Counts one change (or refused change) of the policy directory.
    pub(crate) fn policy_reload(&self, role: &str, outcome: &str) {
        self.policy_reloads
            .get_or_create(&ReloadLabels {
                role: role.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one cloud call.
    pub(crate) fn cloud(&self, api: &str, outcome: &str) {
        self.cloud_calls
            .get_or_create(&CloudLabels {
                api: api.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one pool-service event.
    pub(crate) fn pool(&self, event: &str, outcome: &str) {
        self.pool_events
            .get_or_create(&PoolLabels {
                event: event.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records one CNI request and how long the agent took to answer it.
    pub(crate) fn cni(&self, command: &str, outcome: &str, elapsed: std::time::Duration) {
        self.cni_requests
            .get_or_create(&CniLabels {
                command: command.to_owned(),
                outcome: outcome.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the pool gauges from the pool as the pool-sizing policy sees
    /// it, one state per group; groups that went away disappear.
    pub(crate) fn observe_pool(&self, groups: &[weft_policy_sdk::pool::PoolState]) {
        self.enis.clear();
        self.addresses.clear();
        self.pending_adds.clear();
        for state in groups {
            let group = state.group.join(",");
            let labels = GroupLabels {
                group: group.clone(),
            };
            let sum = |f: fn(&weft_policy_sdk::pool::Eni) -> u32| -> i64 {
                state.enis.iter().map(|e| i64::from(f(e))).sum()
            };
            self.enis
                .get_or_create(&labels)
                .set(state.enis.len() as i64);
            self.pending_adds
                .get_or_create(&labels)
                .set(i64::from(state.pending_adds));
            for (name, value) in [
                ("total", sum(|e| e.addresses())),
                ("assigned", sum(|e| e.assigned)),
                ("cooling", sum(|e| e.cooling)),
                ("free", sum(|e| e.free())),
            ] {
                self.addresses
                    .get_or_create(&AddressLabels {
                        group: group.clone(),
                        state: name.into(),
                    })
                    .set(value);
            }
            let limits = &state.limits;
            self.max_enis.set(i64::from(limits.max_enis));
            self.max_addresses
                .set(i64::from(limits.max_enis) * i64::from(limits.ipv4_per_eni.saturating_sub(1)));
            self.max_pods.set(i64::from(limits.max_pods));
        }
    }

    /// Renders every counter in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}
