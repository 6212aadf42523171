//! The simulator's instance types: real EC2 types with their real network limits.

use crate::cloud::types::InstanceLimits;

/// (type, max ENIs, IPv4 per ENI, IPv6 per ENI, Nitro).
const TYPES: &[(&str, u32, u32, u32, bool)] = &[
    ("t2.medium", 3, 6, 6, false),
    ("m4.large", 2, 10, 10, false),
    ("t3.medium", 3, 6, 6, true),
    ("t3.large", 3, 12, 12, true),
    ("m5.large", 3, 10, 10, true),
    ("m5.xlarge", 4, 15, 15, true),
    ("m5.2xlarge", 4, 15, 15, true),
    ("c5.18xlarge", 15, 50, 50, true),
];

/// The limits of a known instance type.
pub(super) fn limits(instance_type: &str) -> Option<InstanceLimits> {
    TYPES.iter().find(|(name, ..)| *name == instance_type).map(
        |&(name, max_enis, ipv4, ipv6, nitro)| InstanceLimits {
            instance_type: name.to_owned(),
            max_enis,
            ipv4_per_eni: ipv4,
            ipv6_per_eni: ipv6,
            network_cards: 1,
            prefix_delegation: nitro,
        },
    )
}

/// Names of the known instance types (for error messages).
pub(super) fn known() -> Vec<&'static str> {
    TYPES.iter().map(|(name, ..)| *name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_limits_and_max_pods() {
        let m5 = limits("m5.large").expect("known");
        assert_eq!((m5.max_enis, m5.ipv4_per_eni), (3, 10));
        assert_eq!(m5.max_pods(), 29);
        assert_eq!(limits("t3.medium").expect("known").max_pods(), 17);
        assert_eq!(limits("c5.18xlarge").expect("known").max_pods(), 737);
        assert!(!limits("m4.large").expect("known").prefix_delegation);
        assert!(limits("x9.huge").is_none());
    }
}
