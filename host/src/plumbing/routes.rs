//! Routes: the messages the plumbing installs (IPv4 and IPv6), and a view
//! of dumped ones.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::nl;

/// The main routing table.
pub(crate) const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// The prefix length of a host route or address: 32 or 128.
pub(crate) fn host_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// A route message of `ip`'s family.
fn builder(ip: IpAddr) -> RouteMessageBuilder<IpAddr> {
    let mut builder = RouteMessageBuilder::<IpAddr>::new();
    builder.get_mut().header.address_family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    builder
}

/// `dst/prefix dev <oif> scope link table <table>`, of either family;
/// `prefix` must fit the family (32 or 128 at most).
pub(crate) fn link_route(dst: impl Into<IpAddr>, prefix: u8, oif: u32, table: u32) -> RouteMessage {
    let dst = dst.into();
    builder(dst)
        .destination_prefix(dst, prefix)
        .expect("callers pass a prefix length that fits the address family")
        .output_interface(oif)
        .scope(RouteScope::Link)
        .table_id(table)
        .build()
}

/// `default via <gateway> dev <oif> table <table>`, of either family.
pub(crate) fn default_route(gateway: impl Into<IpAddr>, oif: u32, table: u32) -> RouteMessage {
    let gateway = gateway.into();
    builder(gateway)
        .gateway(gateway)
        .expect("the message has the gateway's family")
        .output_interface(oif)
        .table_id(table)
        .build()
}

/// Adds `route`, replacing one with the same destination.
pub(crate) async fn replace(handle: &Handle, route: RouteMessage) -> Result<(), rtnetlink::Error> {
    handle.route().add(route).replace().execute().await
}

/// Deletes `route`, matching any protocol, scope and type; `Ok(false)` if
/// there was no such route.
pub(crate) async fn delete(
    handle: &Handle,
    mut route: RouteMessage,
) -> Result<bool, rtnetlink::Error> {
    route.header.scope = RouteScope::NoWhere;
    route.header.protocol = RouteProtocol::Unspec;
    route.header.kind = RouteType::Unspec;
    nl::absent_ok(
        handle.route().del(route).execute().await,
        &[libc::ESRCH, libc::ENOENT],
    )
}

/// What the plumbing needs to know about a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteView {
    /// Destination address (`0.0.0.0` or `::` for the default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix: u8,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface, if any.
    pub oif: Option<u32>,
    /// Routing table.
    pub table: u32,
    pub scope: RouteScope,
}

impl RouteView {
    /// Extracts the fields of an IPv4 or IPv6 route message; `None` for
    /// other families.
    pub(crate) fn from_message(msg: &RouteMessage) -> Option<Self> {
        let dst = match msg.header.address_family {
            AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        };
        let mut view = Self {
            dst,
            prefix: msg.header.destination_prefix_length,
            gateway: None,
            oif: None,
            table: u32::from(msg.header.table),
            scope: msg.header.scope,
        };
        let address = |a: &RouteAddress| match a {
            RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
            RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
            _ => None,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(dst) => view.dst = address(dst).unwrap_or(view.dst),
                RouteAttribute::Gateway(gw) => view.gateway = address(gw),
                RouteAttribute::Oif(oif) => view.oif = Some(*oif),
                RouteAttribute::Table(table) => view.table = *table,
                _ => {}
            }
        }
        Some(view)
    }

    /// Whether this is a host route (`/32` or `/128`) to `ip`.
    pub(crate) fn is_host_route_to(&self, ip: IpAddr) -> bool {
        self.prefix == host_prefix(ip) && self.dst == ip
    }
}

/// Whether any route of either family, in any table, goes out through
/// link `oif`.
pub(crate) async fn any_through(handle: &Handle, oif: u32) -> Result<bool, rtnetlink::Error> {
    let through = |messages: Vec<RouteMessage>| {
        messages.iter().any(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(o) if *o == oif))
        })
    };
    let v4: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    if through(v4) {
        return Ok(true);
    }
    let v6: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await?;
    Ok(through(v6))
}

/// All IPv4 routes of all tables in the namespace `handle` is bound to.
pub(crate) async fn dump(handle: &Handle) -> Result<Vec<RouteView>, rtnetlink::Error> {
    dump_of(handle, RouteMessageBuilder::<Ipv4Addr>::new().build()).await
}

/// All IPv4 and IPv6 routes of all tables.
pub(crate) async fn dump_all(handle: &Handle) -> Result<Vec<RouteView>, rtnetlink::Error> {
    let mut all = dump(handle).await?;
    all.extend(dump_of(handle, RouteMessageBuilder::<Ipv6Addr>::new().build()).await?);
    Ok(all)
}

async fn dump_of(
    handle: &Handle,
    request: RouteMessage,
) -> Result<Vec<RouteView>, rtnetlink::Error> {
    let messages: Vec<RouteMessage> = handle.route().get(request).execute().try_collect().await?;
    Ok(messages
        .iter()
        .filter_map(RouteView::from_message)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_round_trips_built_routes() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 7));
        let view = RouteView::from_message(&link_route(ip, 32, 9, MAIN_TABLE)).unwrap();
        assert_eq!(
            view,
            RouteView {
                dst: ip,
                prefix: 32,
                gateway: None,
                oif: Some(9),
                table: MAIN_TABLE,
                scope: RouteScope::Link
            }
        );
        assert!(view.is_host_route_to(ip));

        let gw = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));
        let view = RouteView::from_message(&default_route(gw, 3, 1000)).unwrap();
        assert_eq!(
            (view.dst, view.prefix, view.gateway, view.table),
            (Ipv4Addr::UNSPECIFIED.into(), 0, Some(gw), 1000)
        );
        assert_eq!(view.scope, RouteScope::Universe);

        let ip6 = IpAddr::V6("2001:db8::1:0:0:1".parse().unwrap());
        let view = RouteView::from_message(&link_route(ip6, 128, 9, MAIN_TABLE)).unwrap();
        assert!(view.is_host_route_to(ip6) && !view.is_host_route_to(ip));
        let gw6 = IpAddr::V6("fe80::1".parse().unwrap());
        let view = RouteView::from_message(&default_route(gw6, 3, MAIN_TABLE)).unwrap();
        assert_eq!(
            (view.dst, view.prefix, view.gateway),
            (Ipv6Addr::UNSPECIFIED.into(), 0, Some(gw6))
        );
    }
}
