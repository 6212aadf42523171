//! Shadow policies: a module of the policy directory that runs beside the
//! active policy of its role on every decision, with the same input and
//! under the same sandbox, and never acts. Each decision where the two
//! differ is logged, counted
//! (`weft_policy_shadow_disagreements_total{role,policy}`) and kept among
//! the last [`RECENT_DISAGREEMENTS`].

use super::error::Decision;
use super::module::PolicyModule;
use super::slot::DirFile;
use super::view::{Disagreement, ShadowView, same_answer, unix_seconds};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Disagreements kept per shadow for `/v1/policies`.
pub(super) const RECENT_DISAGREEMENTS: usize = 20;

/// A loaded shadow policy and what it found.
pub(crate) struct Shadow {
    pub name: String,
    pub module: Arc<PolicyModule>,
    pub file: DirFile,
    /// Security groups only: the allowlist its answers are checked against.
    pub allowed_security_groups: Option<Vec<String>>,
    loaded_at: SystemTime,
    decisions: AtomicU64,
    disagreements: AtomicU64,
    recent: Mutex<VecDeque<Disagreement>>,
}

impl Shadow {
    pub(super) fn new(
        name: String,
        module: Arc<PolicyModule>,
        file: DirFile,
        allowed_security_groups: Option<Vec<String>>,
    ) -> Self {
        Shadow {
            name,
            module,
            file,
            allowed_security_groups,
            loaded_at: SystemTime::now(),
            decisions: AtomicU64::new(0),
            disagreements: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Compares the shadow's answer with the active one; both are the
    /// answers as the host would act on them (validated, clamped), as JSON.
    /// Texts meant for people (a pool decision's reason, a refusal's
    /// message) do not count as a difference.
    pub(super) fn compare(
        &self,
        metrics: &Metrics,
        role: Decision,
        input: impl FnOnce() -> String,
        active: Value,
        shadow: Value,
    ) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        if same_answer(&active, &shadow) {
            return;
        }
        self.disagreements.fetch_add(1, Ordering::Relaxed);
        metrics.shadow_disagreement(role.as_str(), &self.name);
        let input = input();
        tracing::info!(
            %role, shadow = %self.name, %input, %active, %shadow,
            "shadow policy disagrees with the active policy"
        );
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_DISAGREEMENTS {
            recent.pop_front();
        }
        recent.push_back(Disagreement {
            at: unix_seconds(SystemTime::now()),
            input,
            active,
            shadow,
        });
    }

    pub(super) fn view(&self) -> ShadowView {
        ShadowView {
            policy: self.name.clone(),
            module: self.file.wasm.clone(),
            sha256: self.file.sha256.clone(),
            loaded_at: unix_seconds(self.loaded_at),
            decisions: self.decisions.load(Ordering::Relaxed),
            disagreements: self.disagreements.load(Ordering::Relaxed),
            recent: self
                .recent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// A shadow's failure, as its answer.
pub(crate) fn failed(message: impl std::fmt::Display) -> Value {
    json!({ "failed": message.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_for_people_do_not_count_as_differences() {
        let a = json!({"changes": [], "create": [{"ips": 3}], "release": [], "reason": "a"});
        let b = json!({"changes": [], "create": [{"ips": 3}], "release": [], "reason": "b"});
        assert!(same_answer(&a, &b));
        assert!(same_answer(&json!({"err": "x"}), &json!({"err": "y"})));
        assert!(!same_answer(
            &json!({"ok": ["sg-0123abcd"]}),
            &json!({"ok": ["sg-0123abce"]})
        ));
        assert!(!same_answer(
            &json!({"use-subnet": "subnet-1"}),
            &json!({"refuse": "full"})
        ));
    }
}
