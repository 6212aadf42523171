//! What `GET /v1/policies` serves and `weftd status` prints: per role the
//! module in force, where it came from, its shadow, its last refusal and
//! what it has done. Also the inputs `weftd policy eval --live` asks for.

use super::config::OnFailure;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use weft_policy_sdk::{pool, security, subnet};

/// Every role's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PoliciesView {
    /// The watched policy directory, if any.
    pub dir: Option<PathBuf>,
    /// Files of the directory refused at its last scan.
    pub refused: Vec<Refusal>,
    /// One entry per role, in the order pool-sizing, subnet-selection,
    /// security-groups.
    pub roles: Vec<RoleView>,
}

/// One role's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RoleView {
    /// The world: `pool-sizing`, `subnet-selection` or `security-groups`.
    pub role: String,
    /// The policy's name.
    pub policy: String,
    /// `builtin`, `config` (`[policies.<role>]`) or `directory`.
    pub source: String,
    /// The module's path; `None` for the built-in.
    pub module: Option<PathBuf>,
    /// sha256 of the module.
    pub sha256: Option<String>,
    /// The world the module implements.
    pub world: Option<String>,
    /// Whether its decisions start from the image taken after `configure`
    /// (`false`: `configure` runs in every decision); `None` without a
    /// module.
    #[serde(default)]
    pub from_image: Option<bool>,
    /// Why they do not, when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_image: Option<String>,
    /// When it was put in force, seconds since the Unix epoch.
    pub loaded_at: u64,
    /// Why the configured module is not running, if it is not.
    pub load_error: Option<String>,
    /// What happens when the policy fails.
    pub on_failure: OnFailure,
    /// Decisions since it was put in force.
    pub decisions: u64,
    /// Of which failed (trap, deadline, memory, invalid output, load).
    pub failures: u64,
    /// Of the failures, those the built-in default answered.
    pub fallbacks: u64,
    /// Latency of the last decisions, whole decision (sandbox, validation).
    pub latency_us: Option<Percentiles>,
    /// The last file refused for this role.
    pub last_refusal: Option<Refusal>,
    /// The shadow policy, if one runs.
    pub shadow: Option<ShadowView>,
}

/// A shadow policy: runs on every decision of its role, never acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShadowView {
    pub policy: String,
    pub module: PathBuf,
    pub sha256: String,
    pub loaded_at: u64,
    /// Decisions it was asked.
    pub decisions: u64,
    /// Decisions where its answer differed from the active policy's.
    pub disagreements: u64,
    /// The last disagreements, newest last.
    pub recent: Vec<Disagreement>,
}

/// One decision where the shadow differed from the active policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Disagreement {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// What was decided, e.g. `pod e2e/web-1`.
    pub input: String,
    /// The active policy's answer.
    pub active: Value,
    /// The shadow's answer, or `{"failed": message}`.
    pub shadow: Value,
}

/// A file of the policy directory that was not put in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Refusal {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// The file(s) refused.
    pub files: Vec<PathBuf>,
    /// Why, and what stays in force.
    pub message: String,
}

impl Refusal {
    pub(crate) fn now(files: Vec<PathBuf>, message: String) -> Self {
        Refusal {
            at: unix_seconds(SystemTime::now()),
            files,
            message,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `nanos` (sorted in place); `None` when empty.
    pub(crate) fn of(nanos: &mut [u64]) -> Option<Self> {
        if nanos.is_empty() {
            return None;
        }
        nanos.sort_unstable();
        let at = |p: usize| nanos[(nanos.len() * p / 100).min(nanos.len() - 1)] as f64 / 1e3;
        Some(Percentiles {
            p50: at(50),
            p90: at(90),
            p99: at(99),
        })
    }
}

/// Whether two answers (as JSON) are the same decision. Texts meant for
/// people do not count: a pool decision's `reason`, the message of a
/// refusal (`err`, `refuse`) or of a failure (`failed`).
pub fn same_answer(a: &Value, b: &Value) -> bool {
    comparable(a) == comparable(b)
}

fn comparable(answer: &Value) -> Value {
    let Value::Object(fields) = answer else {
        return answer.clone();
    };
    let mut out = fields.clone();
    out.remove("reason");
    for key in ["err", "refuse", "failed"] {
        if let Some(v) = out.get_mut(key) {
            *v = Value::Null;
        }
    }
    Value::Object(out)
}

pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The node's current decision inputs with the active policies' answers,
/// as `GET /v1/policies/inputs` serves them for `weftd policy eval --live`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LiveInputs {
    /// Each security-group set's pool.
    pub pool_sizing: Vec<LivePool>,
    /// A new ENI for each group, with the VPC's subnets as candidates.
    pub subnet_selection: Vec<LiveSubnet>,
    /// Each pod on the node.
    pub security_groups: Vec<LiveSecurityGroups>,
}

/// One pool-sizing input and the active decision (clamped, as acted on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LivePool {
    pub input: pool::PoolState,
    pub active: pool::PoolDecision,
}

/// One subnet-selection input and the active choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LiveSubnet {
    pub request: subnet::EniRequest,
    pub candidates: Vec<subnet::Candidate>,
    pub active: subnet::Choice,
}

/// One security-groups input and the active answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LiveSecurityGroups {
    pub input: security::Request,
    /// `{"ok": [...]}` or `{"err": message}`.
    pub active: Value,
}
