//! The CNI result of a plumbed pod: what the plugin prints and the next
//! plugin of a chain reads as `prevResult`.

use crate::plumbing::{PodLinks, PodNetwork, pod_gateway};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use weft_cni::cidr::IpCidr;
use weft_cni::result::{Interface, IpConfig, NetworkResult, Route};

/// Index of the pod interface in the result's `interfaces` (the host veth is 0).
const POD_INTERFACE: usize = 1;

/// The result for `pod` wired as `links` in `netns`: the host veth, then
/// the pod interface; each of the pod's addresses (its own, then an IPv6
/// pod's IPv4 egress address, as the VPC CNI's `egress-cni` appends it) as
/// `/32` or `/128` with the link-local gateway of its family; and the
/// default route of each family through that gateway.
pub(super) fn network_result(pod: &PodNetwork, links: &PodLinks, netns: &Path) -> NetworkResult {
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
        ips: pod
            .addresses()
            .map(|ip| IpConfig::new(host_cidr(ip), Some(pod_gateway(ip)), Some(POD_INTERFACE)))
            .collect(),
        routes: pod
            .addresses()
            .map(|ip| Route::new(default_route(ip), Some(pod_gateway(ip))))
            .collect(),
        dns: Default::default(),
    }
}

fn host_cidr(ip: IpAddr) -> IpCidr {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    IpCidr::new(ip, prefix).expect("32 fits IPv4 and 128 IPv6")
}

/// `0.0.0.0/0` or `::/0`, as `ip`'s family.
fn default_route(ip: IpAddr) -> IpCidr {
    let any = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    IpCidr::new(any, 0).expect("0 fits either family")
}
