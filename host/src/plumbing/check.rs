//! CNI CHECK: observe one pod's wiring and compare it with what
//! [`Plumbing::setup_pod`] creates. Observation has side effects (netlink
//! dumps); the comparison is pure.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteScope;

use super::Plumbing;
use super::error::PlumbingError;
use super::links::{self, LinkView};
use super::netns::{self, Netns};
use super::pod::{POD_GATEWAY, PodNetwork};
use super::routes::{self, MAIN_TABLE, RouteView};
use super::rules::{self, FROM_POD_PRIORITY, RuleView, TO_POD_PRIORITY};
use crate::mac::MacAddr;

/// The gateway neighbour entry as found in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Neighbour {
    /// Link-layer address, if resolved.
    pub mac: Option<MacAddr>,
    /// Entry state.
    pub state: NeighbourState,
}

/// The pod namespace side as found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodSide {
    /// The pod interface.
    pub link: Option<LinkView>,
    /// Its IPv4 addresses with prefix lengths.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// IPv4 routes of the pod's main table.
    pub routes: Vec<RouteView>,
    /// The neighbour entry of [`POD_GATEWAY`] on the pod interface.
    pub gateway: Option<Neighbour>,
}

/// Everything [`diff`] compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The pod side, or why its namespace could not be entered.
    pub pod: Result<PodSide, String>,
    /// The host veth.
    pub host_link: Option<LinkView>,
    /// Node routes of the main table.
    pub host_routes: Vec<RouteView>,
    /// Node rules.
    pub rules: Vec<RuleView>,
}

/// What the pod should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected<'a> {
    /// The attachment.
    pub pod: &'a PodNetwork,
    /// Its (IPv4) address.
    pub ip: Ipv4Addr,
    /// Host veth name.
    pub host_veth: &'a str,
    /// MTU of both ends.
    pub mtu: u32,
}

impl Plumbing {
    /// Compares `pod`'s wiring with what [`Plumbing::setup_pod`] creates and
    /// returns one human-readable line per difference (empty when all is
    /// well): pod interface, address, routes, gateway neighbour, host veth,
    /// host route and rules. An unreachable pod namespace is a difference;
    /// failing netlink requests are errors.
    pub async fn check_pod(&self, pod: &PodNetwork) -> Result<Vec<String>, PlumbingError> {
        pod.validate()?;
        let IpAddr::V4(ip) = pod.ip else {
            return Err(PlumbingError::InvalidInput(format!(
                "CHECK of IPv6 pods ({}) is not implemented yet; weftd checks IPv4 pods only",
                pod.ip
            )));
        };
        let host_veth = self.host_veth_name(&pod.pod_namespace, &pod.pod_name, &pod.ifname);
        let host = async {
            let link = links::by_name(&self.host, &host_veth).await?;
            let rules = rules::dump(&self.host).await?;
            let routes = routes::dump(&self.host).await?;
            Ok::<_, rtnetlink::Error>((link, rules, routes))
        };
        let (pod_side, host) = tokio::join!(observe_pod(pod), host);
        let (host_link, rules, routes) =
            host.map_err(|e| PlumbingError::netlink("read node links, routes and rules", e))?;
        let observed = Observed {
            pod: pod_side?,
            host_link,
            host_routes: routes
                .into_iter()
                .filter(|r| r.table == MAIN_TABLE)
                .collect(),
            rules,
        };
        let expected = Expected {
            pod,
            ip,
            host_veth: &host_veth,
            mtu: pod.mtu.unwrap_or(self.config.pod_mtu()),
        };
        Ok(diff(&expected, &observed))
    }
}

/// Reads the pod side; the outer error is a netlink failure, the inner one
/// a namespace that cannot be entered (a difference, not an error).
async fn observe_pod(pod: &PodNetwork) -> Result<Result<PodSide, String>, PlumbingError> {
    let ns = match Netns::open_untrusted(&pod.netns).await {
        Ok(ns) => ns,
        Err(err) => return Ok(Err(err.to_string())),
    };
    let handle = match netns::connect(&ns).await {
        Ok(handle) => handle,
        Err(err @ PlumbingError::Netns { .. }) => return Ok(Err(err.to_string())),
        Err(err) => return Err(err),
    };
    read_pod_side(&handle, &pod.ifname)
        .await
        .map(Ok)
        .map_err(|e| {
            PlumbingError::netlink(format!("read {} in {}", pod.ifname, pod.netns.display()), e)
        })
}

async fn read_pod_side(handle: &Handle, ifname: &str) -> Result<PodSide, rtnetlink::Error> {
    let Some(link) = links::by_name(handle, ifname).await? else {
        return Ok(PodSide::default());
    };
    let addresses: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(link.index)
        .execute()
        .try_collect()
        .await?;
    let neighbours: Vec<NeighbourMessage> = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute()
        .try_collect()
        .await?;
    let routes = routes::dump(handle).await?;
    Ok(PodSide {
        addresses: addresses
            .iter()
            .filter(|a| a.header.index == link.index)
            .filter_map(ipv4_address)
            .collect(),
        routes: routes
            .into_iter()
            .filter(|r| r.table == MAIN_TABLE)
            .collect(),
        gateway: neighbours
            .iter()
            .filter(|n| n.header.ifindex == link.index)
            .find_map(gateway_neighbour),
        link: Some(link),
    })
}

fn ipv4_address(msg: &AddressMessage) -> Option<(Ipv4Addr, u8)> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    msg.attributes.iter().find_map(|attr| match attr {
        AddressAttribute::Address(IpAddr::V4(ip)) => Some((*ip, msg.header.prefix_len)),
        _ => None,
    })
}

fn gateway_neighbour(msg: &NeighbourMessage) -> Option<Neighbour> {
    let is_gateway = msg
        .attributes
        .iter()
        .any(|attr| matches!(attr, NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) if *ip == POD_GATEWAY));
    is_gateway.then(|| Neighbour {
        mac: msg.attributes.iter().find_map(|attr| match attr {
            NeighbourAttribute::LinkLayerAddress(mac) => MacAddr::from_slice(mac),
            _ => None,
        }),
        state: msg.header.state,
    })
}

/// The differences between `expected` and `observed`, one line each.
pub(crate) fn diff(expected: &Expected<'_>, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    let pod = expected.pod;
    let (ip, veth) = (expected.ip, expected.host_veth);

    match &observed.pod {
        Err(why) => out.push(format!("pod namespace cannot be entered: {why}")),
        Ok(side) => diff_pod_side(expected, side, observed.host_link.as_ref(), &mut out),
    }

    match &observed.host_link {
        None => out.push(format!("host veth {veth} is missing on the node")),
        Some(link) => {
            if !link.up {
                out.push(format!("host veth {veth} is down"));
            }
            if link.mtu.is_some_and(|mtu| mtu != expected.mtu) {
                out.push(format!(
                    "host veth {veth} has MTU {:?}, expected {}",
                    link.mtu, expected.mtu
                ));
            }
            let routed = observed
                .host_routes
                .iter()
                .any(|r| r.is_host_route_to(ip) && r.oif == Some(link.index));
            if !routed {
                out.push(format!("node route {ip}/32 dev {veth} is missing"));
            }
        }
    }

    let to_rule = observed
        .rules
        .iter()
        .any(|r| r.host_address(TO_POD_PRIORITY, false) == Some(ip) && r.table == MAIN_TABLE);
    if !to_rule {
        out.push(format!(
            "node rule {TO_POD_PRIORITY}: to {ip} lookup main is missing"
        ));
    }
    let from_tables: Vec<u32> = observed
        .rules
        .iter()
        .filter(|r| r.host_address(FROM_POD_PRIORITY, true) == Some(ip))
        .map(|r| r.table)
        .collect();
    match pod.eni_table {
        Some(table) if !from_tables.contains(&table) => {
            out.push(format!(
                "node rule {FROM_POD_PRIORITY}: from {ip} lookup {table} is missing"
            ));
        }
        _ => {}
    }
    for table in from_tables.iter().filter(|t| Some(**t) != pod.eni_table) {
        out.push(format!(
            "unexpected node rule {FROM_POD_PRIORITY}: from {ip} lookup {table}"
        ));
    }
    out
}

fn diff_pod_side(
    expected: &Expected<'_>,
    side: &PodSide,
    host_link: Option<&LinkView>,
    out: &mut Vec<String>,
) {
    let pod = expected.pod;
    let ifname = pod.ifname.as_str();
    let Some(link) = &side.link else {
        out.push(format!("interface {ifname} is missing in the pod"));
        return;
    };
    if !link.up {
        out.push(format!("interface {ifname} is down in the pod"));
    }
    if link.mtu.is_some_and(|mtu| mtu != expected.mtu) {
        out.push(format!(
            "interface {ifname} has MTU {:?}, expected {}",
            link.mtu, expected.mtu
        ));
    }
    if side.addresses != [(expected.ip, 32)] {
        let found: Vec<String> = side
            .addresses
            .iter()
            .map(|(ip, len)| format!("{ip}/{len}"))
            .collect();
        out.push(format!(
            "interface {ifname} has IPv4 addresses [{}], expected [{}/32]",
            found.join(", "),
            expected.ip
        ));
    }
    let on_link = |r: &&RouteView| r.oif == Some(link.index);
    let gateway_route = side.routes.iter().filter(on_link).any(|r| {
        r.is_host_route_to(POD_GATEWAY) && r.gateway.is_none() && r.scope == RouteScope::Link
    });
    if !gateway_route {
        out.push(format!(
            "pod route {POD_GATEWAY} dev {ifname} scope link is missing"
        ));
    }
    let default_route = side
        .routes
        .iter()
        .filter(on_link)
        .any(|r| r.prefix == 0 && r.gateway == Some(POD_GATEWAY));
    if !default_route {
        out.push(format!(
            "pod route default via {POD_GATEWAY} dev {ifname} is missing"
        ));
    }
    match &side.gateway {
        None => out.push(format!(
            "pod neighbour {POD_GATEWAY} on {ifname} is missing"
        )),
        Some(neighbour) => {
            if neighbour.state != NeighbourState::Permanent {
                out.push(format!(
                    "pod neighbour {POD_GATEWAY} is {:?}, expected permanent",
                    neighbour.state
                ));
            }
            let host_mac = host_link.and_then(|l| l.mac);
            if host_mac.is_some() && neighbour.mac != host_mac {
                let shown =
                    |m: Option<MacAddr>| m.map_or_else(|| "none".to_owned(), |m| m.to_string());
                out.push(format!(
                    "pod neighbour {POD_GATEWAY} has lladdr {}, but the host veth's MAC is {}",
                    shown(neighbour.mac),
                    shown(host_mac)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::route::RouteScope;

    use super::*;

    const POD_IF: u32 = 2;
    const HOST_IF: u32 = 40;

    fn pod() -> PodNetwork {
        PodNetwork {
            netns: "/var/run/netns/p".into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            ip: Ipv4Addr::new(10, 0, 1, 20).into(),
            eni_table: Some(2),
            mtu: None,
        }
    }

    fn link(index: u32, name: &str, mac: MacAddr) -> LinkView {
        LinkView {
            index,
            name: name.into(),
            mac: Some(mac),
            mtu: Some(9001),
            up: true,
            veth: true,
            alias: None,
        }
    }

    fn route(
        dst: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        oif: u32,
        scope: RouteScope,
    ) -> RouteView {
        RouteView {
            dst,
            prefix,
            gateway,
            oif: Some(oif),
            table: MAIN_TABLE,
            scope,
        }
    }

    /// What a correct setup of `pod()` looks like.
    fn healthy() -> Observed {
        let host_mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let ip = Ipv4Addr::new(10, 0, 1, 20);
        Observed {
            pod: Ok(PodSide {
                link: Some(link(POD_IF, "eth0", MacAddr([2, 0, 0, 0, 0, 2]))),
                addresses: vec![(ip, 32)],
                routes: vec![
                    route(POD_GATEWAY, 32, None, POD_IF, RouteScope::Link),
                    route(
                        Ipv4Addr::UNSPECIFIED,
                        0,
                        Some(POD_GATEWAY),
                        POD_IF,
                        RouteScope::Universe,
                    ),
                ],
                gateway: Some(Neighbour {
                    mac: Some(host_mac),
                    state: NeighbourState::Permanent,
                }),
            }),
            host_link: Some(link(HOST_IF, "eniabc", host_mac)),
            host_routes: vec![route(ip, 32, None, HOST_IF, RouteScope::Link)],
            rules: vec![
                RuleView {
                    priority: TO_POD_PRIORITY,
                    src: None,
                    dst: Some((ip, 32)),
                    table: MAIN_TABLE,
                    protocol: rules::WEFT_RULE_PROTOCOL,
                },
                RuleView {
                    priority: FROM_POD_PRIORITY,
                    src: Some((ip, 32)),
                    dst: None,
                    table: 2,
                    protocol: rules::WEFT_RULE_PROTOCOL,
                },
            ],
        }
    }

    fn check(observed: &Observed) -> Vec<String> {
        let pod = pod();
        diff(
            &Expected {
                pod: &pod,
                ip: Ipv4Addr::new(10, 0, 1, 20),
                host_veth: "eniabc",
                mtu: 9001,
            },
            observed,
        )
    }

    fn side(observed: &mut Observed) -> &mut PodSide {
        observed.pod.as_mut().unwrap()
    }

    #[test]
    fn healthy_pod_has_no_differences() {
        assert_eq!(check(&healthy()), Vec::<String>::new());
    }

    #[test]
    fn each_missing_piece_is_reported() {
        type Break = fn(&mut Observed);
        let cases: [(Break, &str); 11] = [
            (
                |o| o.pod = Err("gone".into()),
                "pod namespace cannot be entered: gone",
            ),
            (|o| side(o).link = None, "interface eth0 is missing"),
            (
                |o| side(o).addresses.clear(),
                "has IPv4 addresses [], expected [10.0.1.20/32]",
            ),
            (
                |o| {
                    side(o).routes.remove(0);
                },
                "pod route 169.254.1.1 dev eth0 scope link is missing",
            ),
            (
                |o| {
                    side(o).routes.remove(1);
                },
                "pod route default via 169.254.1.1",
            ),
            (
                |o| side(o).gateway = None,
                "pod neighbour 169.254.1.1 on eth0 is missing",
            ),
            (
                |o| side(o).gateway.as_mut().unwrap().mac = Some(MacAddr([9; 6])),
                "but the host veth's MAC",
            ),
            (|o| o.host_link = None, "host veth eniabc is missing"),
            (
                |o| o.host_routes.clear(),
                "node route 10.0.1.20/32 dev eniabc is missing",
            ),
            (
                |o| {
                    o.rules.remove(0);
                },
                "to 10.0.1.20 lookup main is missing",
            ),
            (
                |o| o.rules[1].table = 3,
                "unexpected node rule 1536: from 10.0.1.20 lookup 3",
            ),
        ];
        for (break_it, needle) in cases {
            let mut observed = healthy();
            break_it(&mut observed);
            let found = check(&observed);
            assert!(
                found.iter().any(|line| line.contains(needle)),
                "{needle:?} not in {found:?}"
            );
        }
    }

    #[test]
    fn primary_eni_pod_must_not_have_a_from_rule() {
        let pod = PodNetwork {
            eni_table: None,
            ..pod()
        };
        let found = diff(
            &Expected {
                pod: &pod,
                ip: Ipv4Addr::new(10, 0, 1, 20),
                host_veth: "eniabc",
                mtu: 9001,
            },
            &healthy(),
        );
        assert_eq!(
            found,
            ["unexpected node rule 1536: from 10.0.1.20 lookup 2"]
        );
    }
}
