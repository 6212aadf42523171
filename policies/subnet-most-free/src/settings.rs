//! Settings of the subnet-most-free policy.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Settings (JSON keys in kebab-case; unknown keys are refused). Empty
/// means VPC CNI subnet discovery; either field switches to custom
/// networking, where the node's subnet is not implied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Only these subnets are eligible.
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    /// Only subnets carrying all of these tags (key and exact value) are
    /// eligible.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Custom networking by node label (what an ENIConfig does, without the
    /// CRD): the node's value of this label picks its subnets from
    /// `node-subnets`. Default `k8s.amazonaws.com/eniConfig` when
    /// `node-subnets` is set.
    #[serde(default)]
    pub node_label: Option<String>,
    /// Label value -> the subnets the node's ENIs may use.
    #[serde(default)]
    pub node_subnets: BTreeMap<String, Vec<String>>,
}

/// The label VPC CNI's custom networking reads by default.
pub(crate) const DEFAULT_NODE_LABEL: &str = "k8s.amazonaws.com/eniConfig";

/// `subnet-` followed by 8 or 17 lowercase hex digits, as EC2 issues them.
fn is_subnet_id(id: &str) -> bool {
    id.strip_prefix("subnet-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Settings {
    /// The label that picks a node's subnets, when custom networking by
    /// node label is on.
    pub fn node_label(&self) -> Option<&str> {
        match (&self.node_label, self.node_subnets.is_empty()) {
            (Some(label), _) => Some(label),
            (None, false) => Some(DEFAULT_NODE_LABEL),
            (None, true) => None,
        }
    }

    /// Refuses malformed ids, empty tag keys, and more than one rule.
    pub fn validate(&self) -> Result<(), String> {
        let rules = [
            !self.subnet_ids.is_empty(),
            !self.tags.is_empty(),
            self.node_label().is_some(),
        ];
        if rules.iter().filter(|&&r| r).count() > 1 {
            return Err(
                "invalid settings: set one of `subnet-ids`, `tags` or `node-label`/`node-subnets`"
                    .into(),
            );
        }
        if self.node_label.is_some() && self.node_subnets.is_empty() {
            return Err(format!(
                "invalid settings: node-label {:?} needs `node-subnets` (label value -> subnet ids)",
                self.node_label.as_deref().unwrap_or_default()
            ));
        }
        let node_ids = self.node_subnets.values().flatten();
        if let Some(bad) = self
            .subnet_ids
            .iter()
            .chain(node_ids)
            .find(|id| !is_subnet_id(id))
        {
            return Err(format!(
                "invalid settings: subnet-ids: {bad:?} is not a subnet id \
                 (`subnet-` and 8 or 17 lowercase hex digits)"
            ));
        }
        if self.tags.keys().any(String::is_empty) {
            return Err("invalid settings: tags: a tag key is empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy_sdk::settings::parse_settings;

    #[test]
    fn validation() {
        let ok: Settings =
            parse_settings(r#"{"subnet-ids": ["subnet-0123456789abcdef0", "subnet-0a1b2c3d"]}"#)
                .unwrap();
        assert!(ok.validate().is_ok());
        let bad: Settings = parse_settings(r#"{"subnet-ids": ["subnet-XYZ"]}"#).unwrap();
        assert!(bad.validate().unwrap_err().contains("subnet-XYZ"));
        let both: Settings =
            parse_settings(r#"{"subnet-ids": ["subnet-0a1b2c3d"], "tags": {"a": "b"}}"#).unwrap();
        assert!(both.validate().unwrap_err().contains("one of"));
        let label_alone: Settings = parse_settings(r#"{"node-label": "zone"}"#).unwrap();
        assert!(
            label_alone
                .validate()
                .unwrap_err()
                .contains("needs `node-subnets`")
        );
        let by_node: Settings =
            parse_settings(r#"{"node-subnets": {"pods-a": ["subnet-0a1b2c3d"]}}"#).unwrap();
        assert_eq!(by_node.node_label(), Some(DEFAULT_NODE_LABEL));
        assert!(by_node.validate().is_ok());
        let empty_key: Settings = parse_settings(r#"{"tags": {"": "b"}}"#).unwrap();
        assert!(empty_key.validate().is_err());
        assert!(parse_settings::<Settings>(r#"{"subnets": []}"#).is_err());
    }
}
