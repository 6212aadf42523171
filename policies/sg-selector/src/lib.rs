//! # sg-selector: Weft's default security-groups policy
//!
//! Chooses a pod's security groups from ordered rules; the first rule whose
//! selectors all match the pod wins, and a pod no rule matches gets the
//! security groups of the node's primary ENI (as every pod does under the
//! Amazon VPC CNI without security groups for pods).
//!
//! ## Settings
//!
//! ```json
//! {
//!   "rules": [
//!     {
//!       "namespaces": ["payments"],
//!       "match-labels": {"app": "api"},
//!       "service-accounts": ["payments/api", "deployer"],
//!       "security-groups": ["sg-0123456789abcdef0"]
//!     }
//!   ]
//! }
//! ```
//!
//! | rule field | matches when |
//! | --- | --- |
//! | `namespaces` | the pod's namespace is listed |
//! | `match-labels` | the pod has every listed label with that exact value |
//! | `service-accounts` | the pod's service account is listed, as `name` (any namespace) or `namespace/name` |
//! | `security-groups` | (required) what a matching pod gets: 1 to 5 `sg-` ids |
//!
//! An absent or empty selector matches every pod; a rule with no selector
//! is a catch-all. The settings are checked at load: every security group
//! id must be well formed (`sg-` and 8 or 17 lowercase hex digits), each
//! rule needs 1 to 5 of them, without duplicates. A pod no rule matches on
//! a node without security groups fails its ADD with a message saying so.
//!
//! ```
//! use sg_selector::SgSelector;
//! use weft_policy_sdk::{SecurityGroups, Tag};
//! use weft_policy_sdk::security::{Pod, Request};
//!
//! let policy = SgSelector::configure(
//!     r#"{"rules": [{"namespaces": ["payments"], "security-groups": ["sg-0123456789abcdef0"]}]}"#,
//! ).unwrap();
//! let mut request = Request {
//!     pod: Pod { namespace: "payments".into(), name: "api-0".into(), ..Default::default() },
//!     node_security_groups: vec!["sg-0aaaaaaaaaaaaaaaa".into()],
//! };
//! assert_eq!(policy.select_security_groups(&request), Ok(vec!["sg-0123456789abcdef0".into()]));
//! request.pod.namespace = "default".into();
//! assert_eq!(policy.select_security_groups(&request), Ok(vec!["sg-0aaaaaaaaaaaaaaaa".into()]));
//! ```

mod rules;

pub use rules::{Rule, Settings};

use weft_policy_sdk::SecurityGroups;
use weft_policy_sdk::security::Request;
use weft_policy_sdk::settings::parse_settings;

/// The sg-selector policy (see the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SgSelector {
    settings: Settings,
}

impl SgSelector {
    /// The policy with already-parsed settings, validated.
    pub fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        Ok(SgSelector { settings })
    }
}

impl SecurityGroups for SgSelector {
    fn configure(settings: &str) -> Result<Self, String> {
        SgSelector::new(parse_settings(settings)?)
    }

    fn select_security_groups(&self, request: &Request) -> Result<Vec<String>, String> {
        let pod = &request.pod;
        if let Some(rule) = self.settings.rules.iter().find(|r| r.matches(pod)) {
            return Ok(rule.security_groups.clone());
        }
        if request.node_security_groups.is_empty() {
            return Err(format!(
                "no rule matches pod {}/{} and the node has no security groups to default to",
                pod.namespace, pod.name
            ));
        }
        Ok(request.node_security_groups.clone())
    }
}

weft_policy_sdk::export_security_groups!(SgSelector);
