//! Security-group sets, the key the pool is grouped by.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A normalised set of security-group ids: sorted and de-duplicated, so two
/// sets with the same members compare equal whatever order they were given
/// in. Pods are placed only on ENIs whose set equals theirs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct SgSet(Vec<String>);

impl SgSet {
    /// The set of the given ids; order and duplicates do not matter.
    pub fn new<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ids: Vec<String> = ids.into_iter().map(Into::into).collect();
        ids.sort_unstable();
        ids.dedup();
        SgSet(ids)
    }

    /// The ids, sorted.
    pub(crate) fn ids(&self) -> &[String] {
        &self.0
    }
}

impl From<Vec<String>> for SgSet {
    fn from(ids: Vec<String>) -> Self {
        SgSet::new(ids)
    }
}

impl From<SgSet> for Vec<String> {
    fn from(set: SgSet) -> Self {
        set.0
    }
}

impl fmt::Display for SgSet {
    /// Comma-separated ids, `[]` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("[]")
        } else {
            f.write_str(&self.0.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let a = SgSet::new(["sg-2", "sg-1", "sg-2"]);
        let b = SgSet::new(["sg-1", "sg-2"]);
        assert_eq!(a, b);
        assert_eq!(a.ids(), ["sg-1", "sg-2"]);
        assert_eq!(a.to_string(), "sg-1,sg-2");
    }

    #[test]
    fn serde_normalises() {
        let set: SgSet = serde_json::from_str(r#"["sg-b","sg-a","sg-b"]"#).unwrap();
        assert_eq!(set, SgSet::new(["sg-a", "sg-b"]));
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["sg-a","sg-b"]"#);
    }

    #[test]
    fn empty_displays_brackets() {
        assert!(SgSet::new(Vec::<String>::new()).ids().is_empty());
        assert_eq!(SgSet::new(Vec::<String>::new()).to_string(), "[]");
    }
}
