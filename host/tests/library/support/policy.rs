//! Shared inputs and helpers of the `policy_*` tests.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_host::metrics::Metrics;
use weft_host::policy::{
    CallLimits, CompiledPolicy, PoliciesConfig, PolicyEngine, PolicyError, PolicyModule, PolicySet,
};
use weft_policy_sdk::{Tag, pool, security, subnet};

/// A fresh engine without an artifact cache.
pub(crate) fn engine() -> PolicyEngine {
    PolicyEngine::new(None).expect("policy engine")
}

/// Call limits.
pub(crate) fn limits(deadline_ms: u64, memory_mib: usize) -> CallLimits {
    CallLimits {
        deadline: Duration::from_millis(deadline_ms),
        memory_bytes: memory_mib * 1024 * 1024,
    }
}

/// A deadline no healthy decision misses, even in a debug build on a
/// loaded machine (the deadline is wall-clock time).
pub(crate) const GENEROUS_DEADLINE_MS: u64 = 2_000;

/// The deadline of tests that expect it to fire (an endless loop). Not the
/// 10 ms default: the deadline also covers the fresh instance's
/// instantiation and `configure`, which a loaded machine running a debug
/// build can stretch past 10 ms.
pub(crate) const SHORT_DEADLINE_MS: u64 = 100;

/// Loads and configures `path` with the default memory cap and a generous
/// deadline; tests of the deadline itself use [`load_with`].
pub(crate) fn load(
    engine: &PolicyEngine,
    path: &str,
    settings: &str,
) -> Result<PolicyModule, PolicyError> {
    load_with(engine, path, settings, limits(GENEROUS_DEADLINE_MS, 32))
}

/// Loads and configures `path` with `limits`.
pub(crate) fn load_with(
    engine: &PolicyEngine,
    path: &str,
    settings: &str,
    limits: CallLimits,
) -> Result<PolicyModule, PolicyError> {
    CompiledPolicy::from_file(engine, path.as_ref(), "chaos", None, None)?
        .configure(settings, limits)
}

/// A policy set of `config` and the metrics it counts in.
pub(crate) fn set(config: PoliciesConfig) -> (PolicySet, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let set = PolicySet::from_config(&config, metrics.clone()).expect("valid configuration");
    (set, metrics)
}

/// The `weft_policy_decisions_total` count of one decision and outcome.
pub(crate) fn counted(metrics: &Metrics, decision: &str, outcome: &str) -> u64 {
    let text = metrics.encode();
    text.lines()
        .filter(|l| l.starts_with("weft_policy_decisions_total{"))
        .filter(|l| {
            l.contains(&format!("decision=\"{decision}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Chaos settings for `mode`.
pub(crate) fn chaos(mode: &str) -> String {
    format!(r#"{{"mode": "{mode}"}}"#)
}

/// An m5.large-like node: primary ENI with 9 IPs (4 assigned) and an idle
/// secondary ENI.
pub(crate) fn pool_state() -> pool::PoolState {
    let eni = |id: &str, device_index, assigned| pool::Eni {
        id: id.into(),
        device_index,
        subnet_id: "subnet-0a".into(),
        ips: 9,
        prefixes: 0,
        assigned,
        cooling: 0,
        age_seconds: 3600,
    };
    pool::PoolState {
        group: vec!["sg-0123abcd".into()],
        default_group: true,
        enis: vec![eni("eni-primary", 0, 4), eni("eni-second", 1, 0)],
        node_enis: 2,
        node_addresses: 18,
        node_assigned: 4,
        limits: pool::InstanceLimits {
            max_enis: 3,
            ipv4_per_eni: 10,
            prefix_delegation: false,
            max_pods: 29,
        },
        pending_adds: 0,
        activity: Default::default(),
    }
}

/// A subnet request with two candidates in the node's AZ.
pub(crate) fn subnet_input() -> (subnet::EniRequest, Vec<subnet::Candidate>) {
    let candidate = |id: &str, free_ips| subnet::Candidate {
        id: id.into(),
        availability_zone: "us-west-2a".into(),
        cidr: "10.0.0.0/24".into(),
        free_ips,
        tags: vec![Tag::new("kubernetes.io/role/cni", "1")],
    };
    (
        subnet::EniRequest {
            security_groups: vec!["sg-0123abcd".into()],
            purpose: subnet::Purpose::PodAddresses,
            ips: 9,
            prefixes: 0,
            availability_zone: "us-west-2a".into(),
            node_subnet_id: "subnet-0a".into(),
            node: Default::default(),
        },
        vec![candidate("subnet-0a", 100), candidate("subnet-0b", 200)],
    )
}

/// A typical pod's security-group request.
pub(crate) fn sg_request() -> security::Request {
    security::Request {
        pod: security::Pod {
            namespace: "shop".into(),
            name: "cart-7d9f".into(),
            uid: "0b9e0c2e-1111-2222-3333-444455556666".into(),
            labels: vec![Tag::new("app", "cart"), Tag::new("tier", "web")],
            annotations: vec![],
            service_account: "cart".into(),
        },
        node_security_groups: vec!["sg-0123abcd".into(), "sg-0123456789abcdef0".into()],
    }
}

/// A `tracing` writer collecting everything in memory.
#[derive(Clone, Default)]
pub(crate) struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// A subscriber writing lines up to `level` here, without colours.
    pub(crate) fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
