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
}

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
    /// Refuses malformed ids, empty tag keys, and both fields at once.
    pub fn validate(&self) -> Result<(), String> {
        if !self.subnet_ids.is_empty() && !self.tags.is_empty() {
            return Err("invalid settings: set `subnet-ids` or `tags`, not both".into());
        }
        if let Some(bad) = self.subnet_ids.iter().find(|id| !is_subnet_id(id)) {
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
        assert!(both.validate().unwrap_err().contains("not both"));
        let empty_key: Settings = parse_settings(r#"{"tags": {"": "b"}}"#).unwrap();
        assert!(empty_key.validate().is_err());
        assert!(parse_settings::<Settings>(r#"{"subnets": []}"#).is_err());
    }
}
