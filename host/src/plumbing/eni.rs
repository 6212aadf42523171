//! Secondary ENIs on the node: link, address, route table and rule.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};

use super::error::{Failures, PlumbingError};
use super::links::{self, LinkView};
use super::routes::{self, MAIN_TABLE};
use super::rules::{self, ENI_PRIORITY, Selector};
use super::{Plumbing, config, netns, nl, sysctl};
use crate::mac::MacAddr;

/// The route table of the ENI at `device_index`: device index + 1, as the
/// Amazon VPC CNI. The one place this rule is written.
pub fn eni_route_table(device_index: u32) -> u32 {
    device_index.saturating_add(1)
}

/// A secondary ENI attached to the node, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLink {
    /// The ENI's MAC address (how its interface is found on the node).
    pub mac: MacAddr,
    /// Attachment device index; 0 is the primary ENI, which is not managed here.
    pub device_index: u32,
    /// The ENI's subnet.
    pub subnet: Ipv4Net,
    /// The ENI's primary private IP.
    pub primary_ip: Ipv4Addr,
    /// Interface MTU (9001 on EC2).
    pub mtu: u32,
}

impl EniLink {
    /// The ENI's route table (see [`eni_route_table`]).
    pub fn route_table(&self) -> u32 {
        eni_route_table(self.device_index)
    }

    /// The subnet gateway: the first host address of the subnet (the VPC router).
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()).saturating_add(1))
    }

    /// Checks the values, with a message saying which one to fix.
    pub fn validate(&self) -> Result<(), PlumbingError> {
        let invalid = |msg: String| Err(PlumbingError::InvalidInput(msg));
        if self.device_index == 0 {
            return invalid(
                "device index 0 is the primary ENI, which the node's own network setup manages"
                    .into(),
            );
        }
        if self.route_table() >= 253 {
            return invalid(format!(
                "device index {} gives route table {}, which is reserved",
                self.device_index,
                self.route_table()
            ));
        }
        if self.subnet.prefix_len() > 30 {
            return invalid(format!(
                "subnet {} is too small for a VPC subnet (at most /28 on EC2)",
                self.subnet
            ));
        }
        if !self.subnet.contains(&self.primary_ip) || self.primary_ip == self.gateway() {
            return invalid(format!(
                "primary IP {} is not a host address of subnet {}",
                self.primary_ip, self.subnet
            ));
        }
        config::validate_mtu(self.mtu)
    }
}

impl Plumbing {
    /// Sets up a secondary ENI: finds its interface by MAC, sets the MTU and
    /// brings it up, loosens its reverse-path filter, gives it its primary
    /// IP, moves its subnet route out of the main table into the ENI's own
    /// table (device index + 1) next to a default route via the subnet
    /// gateway, and adds `from <primary IP> lookup <table>`. Idempotent.
    pub async fn setup_eni(&self, eni: &EniLink) -> Result<(), PlumbingError> {
        eni.validate()?;
        let link = self
            .eni_link(eni.mac)
            .await?
            .ok_or(PlumbingError::EniLinkNotFound { mac: eni.mac })?;
        let (name, index, table, ip) = (
            link.name.as_str(),
            link.index,
            eni.route_table(),
            eni.primary_ip,
        );
        let gateway = eni.gateway();
        let subnet = eni.subnet.trunc();
        let ctx = |what: String| {
            move |e| PlumbingError::netlink(format!("ENI {} ({name}): {what}", eni.mac), e)
        };

        links::set_mtu_up(&self.host, index, eni.mtu)
            .await
            .map_err(ctx(format!("set MTU {} and up", eni.mtu)))?;
        let ifname = link.name.clone();
        netns::run_in(&self.host_ns, move || sysctl::configure_eni(&ifname)).await?;
        self.host
            .address()
            .add(index, IpAddr::V4(ip), subnet.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(ctx(format!("add address {ip}/{}", subnet.prefix_len())))?;
        // The kernel adds the subnet route to the main table with the address;
        // traffic to the subnet must not leave through this ENI by default.
        routes::delete(
            &self.host,
            routes::link_route(subnet.network(), subnet.prefix_len(), index, MAIN_TABLE),
        )
        .await
        .map_err(ctx(format!("delete route {subnet} from the main table")))?;
        routes::replace(
            &self.host,
            routes::link_route(subnet.network(), subnet.prefix_len(), index, table),
        )
        .await
        .map_err(ctx(format!("add route {subnet} table {table}")))?;
        routes::replace(&self.host, routes::default_route(gateway, index, table))
            .await
            .map_err(ctx(format!(
                "add default route via {gateway} table {table}"
            )))?;
        rules::delete_all(&self.host, ENI_PRIORITY, Selector::From(ip))
            .await
            .map_err(ctx(format!("delete stale rules from {ip}")))?;
        rules::add(&self.host, ENI_PRIORITY, Selector::From(ip), table)
            .await
            .map_err(ctx(format!("add rule from {ip} lookup {table}")))
    }

    /// Undoes [`Plumbing::setup_eni`] for an ENI being released: deletes its
    /// rule, the routes of its table and its address. The interface itself
    /// disappears when EC2 detaches the ENI. Idempotent; an interface that
    /// is already gone is fine. A step that fails does not stop the others:
    /// every failure is reported at the end.
    pub async fn teardown_eni(&self, eni: &EniLink) -> Result<(), PlumbingError> {
        eni.validate()?;
        let (ip, table) = (eni.primary_ip, eni.route_table());
        let ctx =
            |what: String| move |e| PlumbingError::netlink(format!("ENI {}: {what}", eni.mac), e);
        let mut failures = Failures::default();
        failures.keep(
            rules::delete_all(&self.host, ENI_PRIORITY, Selector::From(ip))
                .await
                .map_err(ctx(format!("delete rule from {ip}"))),
        );
        let all = failures
            .keep(
                routes::dump(&self.host)
                    .await
                    .map_err(ctx("list routes".into())),
            )
            .unwrap_or_default();
        for route in all.iter().filter(|r| r.table == table) {
            let msg = match route.gateway {
                Some(gw) => routes::default_route(gw, route.oif.unwrap_or(0), table),
                None => routes::link_route(route.dst, route.prefix, route.oif.unwrap_or(0), table),
            };
            failures.keep(routes::delete(&self.host, msg).await.map_err(ctx(format!(
                "delete route {}/{} table {table}",
                route.dst, route.prefix
            ))));
        }
        if let Some(link) = failures.keep(self.eni_link(eni.mac).await).flatten() {
            let addresses: Vec<AddressMessage> = failures
                .keep(
                    self.host
                        .address()
                        .get()
                        .set_link_index_filter(link.index)
                        .execute()
                        .try_collect()
                        .await
                        .map_err(ctx("list addresses".into())),
                )
                .unwrap_or_default();
            let ours = addresses.into_iter().filter(|a| {
                a.header.index == link.index
                    && a.header.family == AddressFamily::Inet
                    && a.attributes.iter().any(
                        |attr| matches!(attr, AddressAttribute::Local(IpAddr::V4(a)) if *a == ip),
                    )
            });
            for address in ours {
                let result = self.host.address().del(address).execute().await;
                failures.keep(
                    nl::absent_ok(result, &[libc::EADDRNOTAVAIL, libc::ENODEV])
                        .map_err(ctx(format!("delete address {ip}"))),
                );
            }
        }
        failures.finish()
    }

    /// Which of `ips` the node routes to a pod: a `/32` route in the main
    /// table (what pod plumbing adds on the host side of each veth).
    pub(crate) async fn routed(&self, ips: &[Ipv4Addr]) -> Result<Vec<Ipv4Addr>, PlumbingError> {
        let all = routes::dump(&self.host)
            .await
            .map_err(|e| PlumbingError::netlink("list routes to find pod addresses", e))?;
        Ok(ips
            .iter()
            .filter(|ip| {
                all.iter()
                    .any(|r| r.table == MAIN_TABLE && r.is_host_route_to(IpAddr::V4(**ip)))
            })
            .copied()
            .collect())
    }

    /// The node interface with MAC `mac`, if any.
    pub(super) async fn eni_link(&self, mac: MacAddr) -> Result<Option<LinkView>, PlumbingError> {
        let all = links::dump(&self.host)
            .await
            .map_err(|e| PlumbingError::netlink(format!("list node links to find ENI {mac}"), e))?;
        Ok(all.into_iter().find(|link| link.mac == Some(mac)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eni() -> EniLink {
        EniLink {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            device_index: 1,
            subnet: "10.0.1.0/24".parse().unwrap(),
            primary_ip: Ipv4Addr::new(10, 0, 1, 10),
            mtu: 9001,
        }
    }

    #[test]
    fn table_and_gateway() {
        assert_eq!(eni().route_table(), 2);
        assert_eq!(eni().gateway(), Ipv4Addr::new(10, 0, 1, 1));
        let odd = EniLink {
            subnet: "10.0.1.64/26".parse().unwrap(),
            primary_ip: Ipv4Addr::new(10, 0, 1, 70),
            ..eni()
        };
        assert_eq!(odd.gateway(), Ipv4Addr::new(10, 0, 1, 65));
        assert!(eni().validate().is_ok());
    }

    #[test]
    fn invalid_enis_say_what_is_wrong() {
        let cases = [
            (
                EniLink {
                    device_index: 0,
                    ..eni()
                },
                "primary ENI",
            ),
            (
                EniLink {
                    device_index: 252,
                    ..eni()
                },
                "reserved",
            ),
            (
                EniLink {
                    primary_ip: Ipv4Addr::new(10, 0, 2, 10),
                    ..eni()
                },
                "not a host address",
            ),
            (
                EniLink {
                    primary_ip: Ipv4Addr::new(10, 0, 1, 1),
                    ..eni()
                },
                "not a host address",
            ),
            (EniLink { mtu: 0, ..eni() }, "MTU"),
        ];
        for (eni, needle) in cases {
            let msg = eni.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
    }
}
