//! The CNI result of a plumbed pod: what the plugin prints and the next
//! plugin of a chain reads as `prevResult`.

use crate::plumbing::{POD_GATEWAY, PodLinks};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use weft_cni::cidr::IpCidr;
use weft_cni::result::{Interface, IpConfig, NetworkResult, Route};

/// Index of the pod interface in the result's `interfaces` (the host veth is 0).
const POD_INTERFACE: usize = 1;

/// The result for a pod with `ip` wired as `links` in `netns`: the host veth,
/// then the pod interface; the pod's `/32` with the link-local gateway; and
/// the default route through it.
pub(super) fn network_result(ip: Ipv4Addr, links: &PodLinks, netns: &Path) -> NetworkResult {
    let gateway = IpAddr::V4(POD_GATEWAY);
    NetworkResult {
        interfaces: vec![
            Interface {
                name: links.host_veth.clone(),
                mac: Some(links.host_mac.to_string()),
                mtu: Some(links.mtu),
                ..Interface::default()
            },
            Interface {
                name: links.pod_ifname.clone(),
                mac: Some(links.pod_mac.to_string()),
                mtu: Some(links.mtu),
                sandbox: Some(netns.display().to_string()),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig::new(
            host_cidr(IpAddr::V4(ip)),
            Some(gateway),
            Some(POD_INTERFACE),
        )],
        routes: vec![Route::new(default_route(), Some(gateway))],
        dns: Default::default(),
    }
}

fn host_cidr(ip: IpAddr) -> IpCidr {
    IpCidr::new(ip, 32).expect("32 fits IPv4")
}

fn default_route() -> IpCidr {
    IpCidr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("0 fits IPv4")
}
