//! {{name}}: a security-groups policy for Weft ({{contract}}).
//!
//! Gives the pods of listed namespaces their own security groups, and every
//! other pod the node's.

use std::collections::BTreeMap;
use weft_policy_sdk::SecurityGroups;
use weft_policy_sdk::security::Request;
use weft_policy_sdk::settings::parse_settings;

/// Settings, from the agent's configuration (JSON keys in kebab-case).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    /// Security groups by namespace, e.g. `{"payments": ["sg-0123456789abcdef0"]}`.
    #[serde(default)]
    namespaces: BTreeMap<String, Vec<String>>,
}

/// The policy.
#[derive(Debug)]
pub struct {{type}} {
    settings: Settings,
}

impl SecurityGroups for {{type}} {
    fn configure(settings: &str) -> Result<Self, String> {
        let settings: Settings = parse_settings(settings)?;
        if let Some((namespace, _)) = settings
            .namespaces
            .iter()
            .find(|(_, groups)| groups.is_empty() || groups.len() > 5)
        {
            return Err(format!(
                "invalid settings: namespaces.{namespace} needs 1 to 5 security groups"
            ));
        }
        Ok({{type}} { settings })
    }

    fn select_security_groups(&self, request: &Request) -> Result<Vec<String>, String> {
        let pod = &request.pod;
        if let Some(groups) = self.settings.namespaces.get(&pod.namespace) {
            return Ok(groups.clone());
        }
        if request.node_security_groups.is_empty() {
            return Err(format!(
                "pod {}/{}: the node has no security groups to default to",
                pod.namespace, pod.name
            ));
        }
        Ok(request.node_security_groups.clone())
    }
}

weft_policy_sdk::export_security_groups!({{type}});
