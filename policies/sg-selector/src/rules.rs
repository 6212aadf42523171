//! The rules and their validation.

use serde::Deserialize;
use std::collections::BTreeMap;
use weft_policy_sdk::security::Pod;

/// Most security groups EC2 allows on one ENI by default.
const MAX_GROUPS: usize = 5;

/// Settings (JSON keys in kebab-case; unknown keys are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Tried in order; the first rule that matches a pod decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule: selectors (all must match) and the groups they give.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rule {
    /// Namespaces the pod may be in; empty matches any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Labels the pod must carry with these exact values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Service accounts, as `name` or `namespace/name`; empty matches any.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// The security groups of a matching pod (1 to 5 `sg-` ids).
    pub security_groups: Vec<String>,
}

/// `sg-` followed by 8 or 17 lowercase hex digits, as EC2 issues them.
pub(crate) fn is_security_group_id(id: &str) -> bool {
    id.strip_prefix("sg-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Rule {
    /// Whether every selector of the rule matches the pod.
    pub fn matches(&self, pod: &Pod) -> bool {
        let namespace = self.namespaces.is_empty() || self.namespaces.contains(&pod.namespace);
        let labels = self.match_labels.iter().all(|(key, value)| {
            pod.labels
                .iter()
                .any(|label| &label.key == key && &label.value == value)
        });
        let account = self.service_accounts.is_empty()
            || self
                .service_accounts
                .iter()
                .any(|wanted| match wanted.split_once('/') {
                    Some((namespace, name)) => {
                        namespace == pod.namespace && name == pod.service_account
                    }
                    None => wanted == &pod.service_account,
                });
        namespace && labels && account
    }

    fn validate(&self) -> Result<(), String> {
        let groups = &self.security_groups;
        if groups.is_empty() || groups.len() > MAX_GROUPS {
            return Err(format!(
                "security-groups: {} given, 1 to {MAX_GROUPS} allowed",
                groups.len()
            ));
        }
        if let Some(bad) = groups.iter().find(|id| !is_security_group_id(id)) {
            return Err(format!(
                "security-groups: {bad:?} is not a security group id \
                 (`sg-` and 8 or 17 lowercase hex digits)"
            ));
        }
        if let Some((i, dup)) = groups
            .iter()
            .enumerate()
            .find(|(i, id)| groups[..*i].contains(id))
        {
            return Err(format!(
                "security-groups: {dup:?} is listed twice (entry {i})"
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Checks every rule; the error names the rule (`rules[i]`) and field.
    pub fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate()
                .map_err(|e| format!("invalid settings: rules[{i}].{e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy_sdk::settings::parse_settings;

    fn validate(json: &str) -> Result<(), String> {
        parse_settings::<Settings>(json)?.validate()
    }

    #[test]
    fn ids() {
        assert!(is_security_group_id("sg-0123456789abcdef0"));
        assert!(is_security_group_id("sg-0a1b2c3d"));
        assert!(!is_security_group_id("sg-0A1B2C3D"));
        assert!(!is_security_group_id("sg-0a1b2c3"));
        assert!(!is_security_group_id("subnet-0a1b2c3d"));
    }

    #[test]
    fn validation_names_the_rule_and_field() {
        assert!(validate(r#"{"rules": [{"security-groups": ["sg-0a1b2c3d"]}]}"#).is_ok());
        let err = validate(
            r#"{"rules": [{"security-groups": ["sg-0a1b2c3d"]}, {"security-groups": ["sg-bad"]}]}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("rules[1].security-groups") && err.contains("sg-bad"),
            "{err}"
        );
        let err = validate(r#"{"rules": [{"security-groups": []}]}"#).unwrap_err();
        assert!(err.contains("0 given"), "{err}");
        let six: Vec<String> = (0..6).map(|i| format!("\"sg-0000000{i}\"")).collect();
        let err = validate(&format!(
            r#"{{"rules": [{{"security-groups": [{}]}}]}}"#,
            six.join(",")
        ))
        .unwrap_err();
        assert!(err.contains("6 given"), "{err}");
        let err = validate(r#"{"rules": [{"security-groups": ["sg-0a1b2c3d", "sg-0a1b2c3d"]}]}"#)
            .unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err =
            validate(r#"{"rules": [{"namespace": ["x"], "security-groups": ["sg-0a1b2c3d"]}]}"#)
                .unwrap_err();
        assert!(err.contains("namespace"), "{err}");
        let err = validate(r#"{"rules": [{"namespaces": ["x"]}]}"#).unwrap_err();
        assert!(err.contains("security-groups"), "{err}");
    }
}
