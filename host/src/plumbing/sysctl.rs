//! Kernel parameters under `/proc/sys`.
//!
//! The `net` subtree of `/proc/sys` resolves against the network namespace
//! of the thread that looks a file up, so these functions are called on a
//! thread that has entered the right namespace (see [`super::netns::run_in`]).

use std::fs::OpenOptions;
use std::io::{self, Write};

use super::error::PlumbingError;

/// `net.ipv4.ip_forward`: the node routes between pods and ENIs.
pub(crate) const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// `net.ipv6.conf.all.forwarding`: the node routes between IPv6 pods.
pub(crate) const IPV6_FORWARD: &str = "net/ipv6/conf/all/forwarding";

/// IPv6 on and duplicate address detection off, for both ends of an IPv6
/// pod's veth (VPC CNI: `accept_dad = 0`): the pod's address is the VPC's
/// and unique, and a tentative link-local address on the host end would
/// leave the node unable to resolve the pod's address for a second.
const IPV6_NO_DAD: [(&str, &str); 2] = [("disable_ipv6", "0"), ("accept_dad", "0")];

/// Settings of a pod's host-side veth, as the Amazon VPC CNI sets them: no
/// IPv6 router advertisements or forwarding on it, ICMPv6 redirects accepted.
const HOST_VETH: [(&str, &str); 3] = [
    ("accept_ra", "0"),
    ("accept_redirects", "1"),
    ("forwarding", "0"),
];

/// Loose reverse-path filtering for a secondary ENI, and for the primary
/// ENI when egress marks are in use: replies to traffic that arrived on
/// another interface may leave through it (policy routing makes paths
/// asymmetric).
const ENI_RP_FILTER: &str = "2";

/// Writes `value` to `/proc/sys/<key>`.
pub(crate) fn write(key: &str, value: &str) -> Result<(), PlumbingError> {
    write_raw(key, value).map_err(|e| error(key, value, e))
}

fn error(key: &str, value: &str, source: io::Error) -> PlumbingError {
    PlumbingError::io(
        format!("set sysctl {} = {value}", key.replace('/', ".")),
        source,
    )
}

fn write_raw(key: &str, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(format!("/proc/sys/{key}"))?
        .write_all(value.as_bytes())
}

/// Applies the host-side settings of a pod veth. Missing IPv6 keys (a kernel
/// booted with IPv6 disabled) are not an error.
pub(crate) fn configure_host_veth(ifname: &str) -> Result<(), PlumbingError> {
    for (name, value) in HOST_VETH {
        let key = format!("net/ipv6/conf/{ifname}/{name}");
        match write_raw(&key, value) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(error(&key, value, e)),
            _ => {}
        }
    }
    Ok(())
}

/// [`IPV6_NO_DAD`] on `ifname`, for an IPv6 pod (either end of its veth);
/// a kernel without IPv6 is an error here.
pub(crate) fn configure_ipv6_veth(ifname: &str) -> Result<(), PlumbingError> {
    for (name, value) in IPV6_NO_DAD {
        write(&format!("net/ipv6/conf/{ifname}/{name}"), value)?;
    }
    Ok(())
}

/// Applies the settings of a secondary ENI's interface.
pub(crate) fn configure_eni(ifname: &str) -> Result<(), PlumbingError> {
    loosen_rp_filter(ifname)
}

/// Loose reverse-path filtering on `ifname` (the kernel applies the larger of
/// `all` and the interface's value, so this wins over a strict `all`).
pub(crate) fn loosen_rp_filter(ifname: &str) -> Result<(), PlumbingError> {
    write(&format!("net/ipv4/conf/{ifname}/rp_filter"), ENI_RP_FILTER)
}
