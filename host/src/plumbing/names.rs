//! Interface names: the host side of a pod's veth, and validation of names
//! that come from CNI input.

use sha2::{Digest, Sha256};

/// Default prefix of host-side veth names (as the Amazon VPC CNI).
pub(super) const DEFAULT_VETH_PREFIX: &str = "eni";

/// Hex characters of the hash that follow the prefix.
pub(super) const VETH_HASH_LEN: usize = 11;

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub(super) const MAX_IFNAME_LEN: usize = 15;

/// The pod interface whose host veth is named as the Amazon VPC CNI names it.
const PRIMARY_IFNAME: &str = "eth0";

/// How the alias (`IFLA_IFALIAS`) of every host veth Weft creates starts:
/// the mark that tells Weft's veths from others of the same name shape (the
/// VPC CNI's), so that GC removes only its own.
const LINK_ALIAS_PREFIX: &str = "weft:";

/// The host-side veth name of a pod interface: `prefix` followed by the
/// first [`VETH_HASH_LEN`] hex characters of SHA-256 over
/// `"<namespace>.<name>"` for `eth0` (as the VPC CNI), and over
/// `"<namespace>.<name>/<ifname>"` for the pod's other interfaces, so that
/// two attachments of one pod get two veths (`/` is in neither a Kubernetes
/// name nor an interface name, so the inputs cannot collide).
///
/// Stable across restarts and re-creations of a pod with the same name, so a
/// re-ADD finds (and replaces) the pod's previous veth.
pub(super) fn host_veth_name(
    prefix: &str,
    pod_namespace: &str,
    pod_name: &str,
    ifname: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(pod_namespace.as_bytes());
    hasher.update(b".");
    hasher.update(pod_name.as_bytes());
    if ifname != PRIMARY_IFNAME {
        hasher.update(b"/");
        hasher.update(ifname.as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    format!("{prefix}{}", &digest[..VETH_HASH_LEN])
}

/// The alias Weft gives the host veth of a pod interface.
pub(crate) fn link_alias(pod_namespace: &str, pod_name: &str, ifname: &str) -> String {
    format!("{LINK_ALIAS_PREFIX}{pod_namespace}/{pod_name}/{ifname}")
}

/// Whether a link's alias marks it as Weft's.
pub(crate) fn is_weft_alias(alias: Option<&str>) -> bool {
    alias.is_some_and(|a| a.starts_with(LINK_ALIAS_PREFIX))
}

/// Checks a veth prefix: it must leave room for the hash in an interface
/// name and contain only characters safe in interface names and sysctl paths.
pub(super) fn validate_veth_prefix(prefix: &str) -> Result<(), String> {
    let max = MAX_IFNAME_LEN - VETH_HASH_LEN;
    if prefix.is_empty() || prefix.len() > max {
        return Err(format!(
            "veth prefix {prefix:?} must be 1 to {max} characters long (interface names are at most \
             {MAX_IFNAME_LEN} characters and the hash takes {VETH_HASH_LEN})"
        ));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "veth prefix {prefix:?} may contain only ASCII letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// Checks an interface name from input (for example `CNI_IFNAME`) against
/// the kernel's rules, so a bad name fails with a clear message instead of a
/// netlink `EINVAL`.
pub(super) fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "interface name {name:?} must be 1 to {MAX_IFNAME_LEN} bytes long"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("interface name {name:?} is reserved"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name {name:?} must not contain '/', ':' or whitespace"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_name_is_prefix_and_eleven_hex() {
        let name = host_veth_name("eni", "default", "web-0", "eth0");
        assert_eq!(name.len(), 3 + VETH_HASH_LEN);
        assert!(name.starts_with("eni"));
        assert!(
            name[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(validate_ifname(&name).is_ok());
    }

    #[test]
    fn veth_name_is_stable_and_distinct() {
        assert_eq!(
            host_veth_name("eni", "default", "web-0", "eth0"),
            host_veth_name("eni", "default", "web-0", "eth0")
        );
        assert_ne!(
            host_veth_name("eni", "default", "web-0", "eth0"),
            host_veth_name("eni", "default", "web-1", "eth0")
        );
        // Different splits of the same characters give different names.
        assert_ne!(
            host_veth_name("eni", "ab", "c", "eth0"),
            host_veth_name("eni", "a", "bc", "eth0")
        );
        assert_ne!(
            host_veth_name("eni", "default", "web-0", "eth0"),
            host_veth_name("weft", "default", "web-0", "eth0")
        );
    }

    #[test]
    fn each_interface_of_a_pod_gets_its_own_veth() {
        let eth0 = host_veth_name("eni", "default", "web-0", "eth0");
        let net1 = host_veth_name("eni", "default", "web-0", "net1");
        assert_ne!(eth0, net1);
        assert!(validate_ifname(&net1).is_ok());
        // A pod whose name looks like another's interface does not collide
        // (a Kubernetes name may hold '.', never '/').
        assert_ne!(net1, host_veth_name("eni", "default", "web-0.net1", "eth0"));
    }

    #[test]
    fn aliases_mark_weft_links_only() {
        let alias = link_alias("default", "web-0", "eth0");
        assert_eq!(alias, "weft:default/web-0/eth0");
        assert!(is_weft_alias(Some(&alias)));
        assert!(!is_weft_alias(None));
        assert!(!is_weft_alias(Some("aws-node pod")));
    }

    #[test]
    fn veth_name_matches_known_digest() {
        // sha256("default.web-0") starts with these 11 hex characters.
        let digest = hex::encode(Sha256::digest(b"default.web-0"));
        assert_eq!(
            host_veth_name("eni", "default", "web-0", "eth0"),
            format!("eni{}", &digest[..11])
        );
    }

    #[test]
    fn prefix_validation() {
        assert!(validate_veth_prefix("eni").is_ok());
        assert!(validate_veth_prefix("weft").is_ok());
        assert!(validate_veth_prefix("").is_err());
        assert!(validate_veth_prefix("wefty").is_err());
        assert!(validate_veth_prefix("e/i").is_err());
    }

    #[test]
    fn ifname_validation() {
        assert!(validate_ifname("eth0").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "eth/0",
            "eth 0",
            "eth:0",
            "a-very-long-interface",
        ] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }
}
