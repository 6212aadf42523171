//! The warm-pool settings and the sizing rule they select.

use serde::Deserialize;

/// Settings of the warm-pool policy (JSON keys in kebab-case; unknown keys
/// are refused). Each target mirrors the Amazon VPC CNI variable of the same
/// name; a target of 0 is the same as leaving it unset, as there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// `WARM_ENI_TARGET`: keep this many ENIs' worth of free addresses
    /// (secondary-IP mode, when neither IP target is set). Default 1.
    #[serde(default = "default_warm_eni_target")]
    pub warm_eni_target: u32,
    /// `WARM_IP_TARGET`: keep this many free addresses.
    #[serde(default)]
    pub warm_ip_target: Option<u32>,
    /// `MINIMUM_IP_TARGET`: hold at least this many addresses in total.
    #[serde(default)]
    pub minimum_ip_target: Option<u32>,
    /// `WARM_PREFIX_TARGET`: in prefix mode, keep this many /28 prefixes'
    /// worth of free addresses. Default 1 when unset.
    #[serde(default)]
    pub warm_prefix_target: Option<u32>,
    /// `ENABLE_PREFIX_DELEGATION`: grow the pool by /28 prefixes instead of
    /// secondary IPs, where the instance supports it.
    #[serde(default)]
    pub prefix_delegation: bool,
    /// An unused ENI is released only once it is at least this old
    /// (seconds), so a freshly attached ENI is not torn down at once.
    /// Default 60, as VPC CNI.
    #[serde(default = "default_min_eni_age_seconds")]
    pub min_eni_age_seconds: u64,
}

fn default_warm_eni_target() -> u32 {
    1
}

fn default_min_eni_age_seconds() -> u64 {
    60
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warm_eni_target: default_warm_eni_target(),
            warm_ip_target: None,
            minimum_ip_target: None,
            warm_prefix_target: None,
            prefix_delegation: false,
            min_eni_age_seconds: default_min_eni_age_seconds(),
        }
    }
}

/// Set and non-zero.
fn defined(target: Option<u32>) -> Option<u32> {
    target.filter(|&t| t > 0)
}

/// The sizing rule in force for one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `WARM_IP_TARGET` / `MINIMUM_IP_TARGET`, in addresses; scales down.
    Ips {
        /// Free addresses to keep.
        warm: u32,
        /// Addresses to hold at least.
        minimum: u32,
    },
    /// `WARM_ENI_TARGET`: whole ENIs of free secondary IPs; never scales
    /// down.
    Enis {
        /// ENIs' worth of free addresses to keep.
        warm: u32,
    },
    /// `WARM_PREFIX_TARGET`: whole prefixes of free addresses; scales down
    /// only when the target was set explicitly.
    Prefixes {
        /// Prefixes' worth of free addresses to keep.
        warm: u32,
        /// Whether `warm-prefix-target` was given.
        scale_down: bool,
    },
}

impl Settings {
    /// Checks combinations VPC CNI refuses, with a message naming the
    /// settings involved.
    pub fn validate(&self) -> Result<(), String> {
        let ip_targets =
            defined(self.warm_ip_target).is_some() || defined(self.minimum_ip_target).is_some();
        if self.prefix_delegation && !ip_targets && self.warm_prefix_target == Some(0) {
            return Err(
                "invalid settings: with prefix-delegation, warm-prefix-target must be \
                 at least 1, or warm-ip-target / minimum-ip-target must be set (a pool with \
                 no warm prefix makes every pod wait for EC2)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The rule for an instance that does (`prefix_mode`) or does not grow
    /// by prefixes. IP targets override the ENI and prefix targets.
    pub(crate) fn rule(&self, prefix_mode: bool) -> Rule {
        let warm_ip = defined(self.warm_ip_target);
        let minimum_ip = defined(self.minimum_ip_target);
        if warm_ip.is_some() || minimum_ip.is_some() {
            Rule::Ips {
                warm: warm_ip.unwrap_or(0),
                minimum: minimum_ip.unwrap_or(0),
            }
        } else if prefix_mode {
            Rule::Prefixes {
                warm: self.warm_prefix_target.unwrap_or(1),
                scale_down: self.warm_prefix_target.is_some(),
            }
        } else {
            Rule::Enis {
                warm: self.warm_eni_target,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy_sdk::settings::parse_settings;

    #[test]
    fn defaults_are_vpc_cni_defaults() {
        let s: Settings = parse_settings("{}").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.rule(false), Rule::Enis { warm: 1 });
        assert_eq!(
            s.rule(true),
            Rule::Prefixes {
                warm: 1,
                scale_down: false
            }
        );
    }

    #[test]
    fn ip_targets_override_and_zero_means_unset() {
        let s: Settings = parse_settings(r#"{"minimum-ip-target": 10}"#).unwrap();
        assert_eq!(
            s.rule(true),
            Rule::Ips {
                warm: 0,
                minimum: 10
            }
        );
        let s: Settings = parse_settings(r#"{"warm-ip-target": 0, "warm-eni-target": 2}"#).unwrap();
        assert_eq!(s.rule(false), Rule::Enis { warm: 2 });
    }

    #[test]
    fn refuses_what_vpc_cni_refuses() {
        let s: Settings =
            parse_settings(r#"{"prefix-delegation": true, "warm-prefix-target": 0}"#).unwrap();
        let err = s.validate().unwrap_err();
        assert!(err.contains("warm-prefix-target"), "{err}");
        let s: Settings = parse_settings(
            r#"{"prefix-delegation": true, "warm-prefix-target": 0, "warm-ip-target": 3}"#,
        )
        .unwrap();
        assert!(s.validate().is_ok());
    }

    #[test]
    fn typos_fail() {
        let err = parse_settings::<Settings>(r#"{"warm-ip-targte": 1}"#).unwrap_err();
        assert!(err.contains("warm-ip-targte"), "{err}");
    }
}
