//! One pod's network: setup and teardown (checking lives in `check`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressHeaderFlags;
use rtnetlink::packet_route::neighbour::NeighbourState;

use super::error::PlumbingError;
use super::links::{self, LinkRef, LinkRemoval, LinkView, VethEnd};
use super::netns::{self, Netns};
use super::routes::{self, MAIN_TABLE, host_prefix};
use super::rules::{self, FROM_POD_PRIORITY, Selector, TO_POD_PRIORITY};
use super::{Plumbing, config, names, nl, sysctl};
use crate::mac::MacAddr;

/// The pod's next hop: a link-local address answered by the host veth
/// through a permanent neighbour entry (never configured on any interface).
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// An IPv6 pod's next hop, as [`POD_GATEWAY`] (the VPC CNI's `fe80::1`).
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The next hop of a pod with address `ip`.
pub fn pod_gateway(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(POD_GATEWAY),
        IpAddr::V6(_) => IpAddr::V6(POD_GATEWAY_V6),
    }
}

/// Route tables a secondary ENI may not use: unspecified, default, main, local.
const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];

/// What to wire for one pod (one CNI attachment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The pod's network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The interface name inside the pod (`CNI_IFNAME`, usually `eth0`).
    pub ifname: String,
    /// Kubernetes namespace of the pod (names the host veth).
    pub pod_namespace: String,
    /// Kubernetes name of the pod (names the host veth).
    pub pod_name: String,
    /// The pod's address: IPv4 (a VPC address of one of the node's ENIs)
    /// or IPv6 (of the primary ENI's prefix, in IPv6 mode).
    pub ip: IpAddr,
    /// Route table of the secondary ENI that owns `ip`; `None` for an IP of
    /// the primary ENI (no `from` rule, traffic follows the main table) and
    /// for every IPv6 address.
    pub eni_table: Option<u32>,
    /// MTU of both veth ends; `None` uses [`super::PlumbingConfig::mtu`].
    pub mtu: Option<u32>,
    /// An IPv6 pod's node-local IPv4 address (IPv4 egress), wired as an
    /// IPv4 pod's address is, without rules.
    pub egress_ipv4: Option<Ipv4Addr>,
}

impl PodNetwork {
    /// The pod's addresses: its own, then its IPv4 egress address.
    pub(crate) fn addresses(&self) -> impl Iterator<Item = IpAddr> {
        std::iter::once(self.ip).chain(self.egress_ipv4.map(IpAddr::V4))
    }

    /// Checks the values, with a message saying which one to fix.
    pub fn validate(&self) -> Result<(), PlumbingError> {
        let invalid = PlumbingError::InvalidInput;
        names::validate_ifname(&self.ifname).map_err(invalid)?;
        // The namespace is empty for a container that is not a Kubernetes
        // pod; its name (the container id) then names the host veth.
        if self.pod_name.is_empty() {
            return Err(invalid(
                "the pod name must not be empty (it names the host veth)".into(),
            ));
        }
        let unicast = match self.ip {
            IpAddr::V4(ip) => {
                !(ip.is_unspecified()
                    || ip.is_broadcast()
                    || ip.is_multicast()
                    || ip.is_loopback()
                    || ip.is_link_local())
            }
            IpAddr::V6(ip) => {
                !(ip.is_unspecified()
                    || ip.is_multicast()
                    || ip.is_loopback()
                    || ip.is_unicast_link_local())
            }
        };
        if !unicast {
            return Err(invalid(format!(
                "pod IP {} is not a unicast VPC address",
                self.ip
            )));
        }
        if let Some(ipv4) = self.egress_ipv4 {
            if self.ip.is_ipv4() {
                return Err(invalid(format!(
                    "IPv4 pod {} has an IPv4 egress address {ipv4}: only IPv6 pods have one",
                    self.ip
                )));
            }
            let usable = !(ipv4.is_unspecified()
                || ipv4.is_broadcast()
                || ipv4.is_multicast()
                || ipv4.is_loopback()
                || ipv4 == POD_GATEWAY);
            if !usable {
                return Err(invalid(format!(
                    "IPv4 egress address {ipv4} is not a usable unicast address"
                )));
            }
        }
        if self.ip.is_ipv6() && self.eni_table.is_some() {
            return Err(invalid(format!(
                "IPv6 pod {} has an ENI route table: IPv6 pods live on the primary ENI",
                self.ip
            )));
        }
        if let Some(table) = self.eni_table.filter(|t| RESERVED_TABLES.contains(t)) {
            return Err(invalid(format!(
                "ENI route table {table} is reserved (0, 253, 254 and 255 are the kernel's)"
            )));
        }
        self.mtu.map_or(Ok(()), config::validate_mtu)
    }
}

/// What [`Plumbing::setup_pod`] created, for the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLinks {
    /// Host-side veth name.
    pub host_veth: String,
    /// Host-side veth MAC (the pod's gateway MAC).
    pub host_mac: MacAddr,
    /// Pod-side interface name.
    pub pod_ifname: String,
    /// Pod-side interface MAC.
    pub pod_mac: MacAddr,
    /// MTU of both ends.
    pub mtu: u32,
}

impl Plumbing {
    /// Wires `pod`: creates the veth pair inside the pod namespace with its
    /// peer directly in the node namespace (one request), configures the pod
    /// side (address, routes, gateway neighbour) and the node side (sysctls,
    /// `/32` route, rules).
    ///
    /// Idempotent: links left by an earlier ADD of the same pod (a repeated
    /// ADD, or a namespace that outlived its DEL) are replaced. A failure
    /// half-way removes what this call created before returning the error.
    pub async fn setup_pod(&self, pod: &PodNetwork) -> Result<PodLinks, PlumbingError> {
        pod.validate()?;
        let links = PodLinks {
            host_veth: self.host_veth_name(&pod.pod_namespace, &pod.pod_name, &pod.ifname),
            host_mac: MacAddr::random_local(),
            pod_ifname: pod.ifname.clone(),
            pod_mac: MacAddr::random_local(),
            mtu: pod.mtu.unwrap_or(self.config.pod_mtu()),
        };
        let pod_ns = Netns::open_untrusted(&pod.netns).await?;
        let pod_nl = netns::connect(&pod_ns).await?;
        self.create_veth(&pod_nl, &pod_ns, &links).await?;
        if let Err(err) = self.configure(&pod_nl, &pod_ns, pod, &links).await {
            if let Err(undo) = self.undo_setup(pod.ip, &links.host_veth).await {
                tracing::warn!(pod = %pod.pod_name, error = %undo, "could not undo a failed pod setup; GC will remove the leftovers");
            }
            return Err(err);
        }
        Ok(links)
    }

    /// Unwires `pod` on the node: deletes its rules and its `/32` route now
    /// (so the IP can be handed out again safely) and starts removing its
    /// veth, which the kernel takes tens of milliseconds to destroy. Await
    /// the returned [`LinkRemoval`] to wait for that, or drop it.
    ///
    /// Never enters the pod namespace, so it works when that is gone.
    /// Idempotent. A host veth of the same name that routes a different IP
    /// belongs to a newer sandbox of the same pod and is left alone.
    pub async fn teardown_pod(&self, pod: &PodNetwork) -> Result<LinkRemoval, PlumbingError> {
        let host_veth = self.host_veth_name(&pod.pod_namespace, &pod.pod_name, &pod.ifname);
        let link = links::by_name(&self.host, &host_veth)
            .await
            .map_err(|e| PlumbingError::netlink(format!("look up host veth {host_veth}"), e))?;
        let owned = match &link {
            Some(link) => self.release_route(link, pod).await?,
            None => false,
        };
        self.delete_rules(pod.ip).await?;
        match link {
            Some(link) if owned => {
                self.refused(&link.name)?;
                links::spawn_remove(&self.host_ns, LinkRef::Index(link.index))
            }
            _ => Ok(LinkRemoval::nothing()),
        }
    }

    /// Creates the veth pair; on `EEXIST` removes the leftovers of an earlier
    /// life of this pod and tries once more.
    async fn create_veth(
        &self,
        pod_nl: &Handle,
        pod_ns: &std::sync::Arc<Netns>,
        links: &PodLinks,
    ) -> Result<(), PlumbingError> {
        let pod_end = VethEnd {
            name: &links.pod_ifname,
            mac: links.pod_mac,
        };
        let host_end = VethEnd {
            name: &links.host_veth,
            mac: links.host_mac,
        };
        let context = || {
            format!(
                "create veth {} in {} with peer {} in the node namespace",
                links.pod_ifname,
                pod_ns.path().display(),
                links.host_veth
            )
        };
        match links::create_veth(pod_nl, &pod_end, &host_end, &self.host_ns, links.mtu).await {
            Err(err) if nl::errno(&err) == Some(libc::EEXIST) => {
                links::remove(&self.host_ns, LinkRef::Name(links.host_veth.clone())).await?;
                links::remove(pod_ns, LinkRef::Name(links.pod_ifname.clone())).await?;
                links::create_veth(pod_nl, &pod_end, &host_end, &self.host_ns, links.mtu)
                    .await
                    .map_err(|e| PlumbingError::netlink(context(), e))
            }
            result => result.map_err(|e| PlumbingError::netlink(context(), e)),
        }
    }

    /// Configures both sides of a freshly created veth pair concurrently.
    async fn configure(
        &self,
        pod_nl: &Handle,
        pod_ns: &std::sync::Arc<Netns>,
        pod: &PodNetwork,
        links: &PodLinks,
    ) -> Result<(), PlumbingError> {
        let (pod_if, host_if) = tokio::try_join!(
            require_link(pod_nl, &links.pod_ifname, pod_ns),
            require_link(&self.host, &links.host_veth, &self.host_ns),
        )?;
        tokio::try_join!(
            configure_pod_side(pod_nl, pod_ns, pod_if.index, pod, links),
            self.configure_host_side(host_if.index, pod, &links.host_veth),
        )?;
        Ok(())
    }

    /// Node side: veth sysctls, veth up, `IP/32 dev <veth>`, `to IP lookup
    /// main` and, for a secondary-ENI IP, `from IP lookup <table>`. An IPv6
    /// pod gets `IP/128 dev <veth>` (and `IPV4/32 dev <veth>` for its IPv4
    /// egress address) and no rules; its veth's sysctls (DAD off) are set
    /// before the veth comes up.
    async fn configure_host_side(
        &self,
        index: u32,
        pod: &PodNetwork,
        host_veth: &str,
    ) -> Result<(), PlumbingError> {
        let veth = host_veth.to_owned();
        let ip = pod.ip;
        let sysctls = netns::run_in(&self.host_ns, move || {
            sysctl::configure_host_veth(&veth)?;
            match ip {
                IpAddr::V4(_) => Ok(()),
                IpAddr::V6(_) => sysctl::configure_ipv6_veth(&veth),
            }
        });
        let alias = names::link_alias(&pod.pod_namespace, &pod.pod_name, &pod.ifname);
        let routing = async {
            links::set_alias_up(&self.host, index, &alias)
                .await
                .map_err(|e| {
                    PlumbingError::netlink(
                        format!("mark {host_veth} as {alias:?} and bring it up"),
                        e,
                    )
                })?;
            for ip in pod.addresses() {
                let prefix = host_prefix(ip);
                routes::replace(
                    &self.host,
                    routes::link_route(ip, prefix, index, MAIN_TABLE),
                )
                .await
                .map_err(|e| {
                    PlumbingError::netlink(format!("add route {ip}/{prefix} dev {host_veth}"), e)
                })?;
            }
            let IpAddr::V4(ip) = ip else {
                return Ok(());
            };
            rules::add(&self.host, TO_POD_PRIORITY, Selector::To(ip), MAIN_TABLE)
                .await
                .map_err(|e| PlumbingError::netlink(format!("add rule to {ip} lookup main"), e))?;
            // A from-rule left by an earlier life of this IP may name another table.
            rules::delete_all(&self.host, FROM_POD_PRIORITY, Selector::From(ip))
                .await
                .map_err(|e| PlumbingError::netlink(format!("delete stale rules from {ip}"), e))?;
            if let Some(table) = pod.eni_table {
                rules::add(&self.host, FROM_POD_PRIORITY, Selector::From(ip), table)
                    .await
                    .map_err(|e| {
                        PlumbingError::netlink(format!("add rule from {ip} lookup {table}"), e)
                    })?;
            }
            Ok(())
        };
        if ip.is_ipv6() {
            sysctls.await?;
            routing.await
        } else {
            tokio::try_join!(sysctls, routing)?;
            Ok(())
        }
    }

    /// Deletes the pod's host routes (its address's and its IPv4 egress
    /// address's) that go through veth `link`, and says whether the veth
    /// belongs to the pod: it routed the pod's IP, or it routes nothing at
    /// all (the orphan of an interrupted teardown).
    async fn release_route(
        &self,
        link: &LinkView,
        pod: &PodNetwork,
    ) -> Result<bool, PlumbingError> {
        let mut deleted = Vec::new();
        for ip in pod.addresses() {
            let prefix = host_prefix(ip);
            let route = routes::link_route(ip, prefix, link.index, MAIN_TABLE);
            deleted.push(routes::delete(&self.host, route).await.map_err(|e| {
                PlumbingError::netlink(format!("delete route {ip}/{prefix} dev {}", link.name), e)
            })?);
        }
        if deleted[0] {
            return Ok(true);
        }
        let routed = routes::any_through(&self.host, link.index)
            .await
            .map_err(|e| PlumbingError::netlink("list node routes", e))?;
        Ok(!routed)
    }

    /// Deletes the pod rules of `ip` (both directions, any table); an IPv6
    /// pod has none.
    async fn delete_rules(&self, ip: IpAddr) -> Result<(), PlumbingError> {
        let IpAddr::V4(ip) = ip else {
            return Ok(());
        };
        tokio::try_join!(
            rules::delete_all(&self.host, TO_POD_PRIORITY, Selector::To(ip)),
            rules::delete_all(&self.host, FROM_POD_PRIORITY, Selector::From(ip)),
        )
        .map_err(|e| PlumbingError::netlink(format!("delete rules of {ip}"), e))?;
        Ok(())
    }

    /// Removes what a failed [`Plumbing::setup_pod`] created (its route goes
    /// with the veth).
    async fn undo_setup(&self, ip: IpAddr, host_veth: &str) -> Result<(), PlumbingError> {
        self.delete_rules(ip).await?;
        links::remove(&self.host_ns, LinkRef::Name(host_veth.to_owned())).await
    }
}

/// The link `name` in `ns`, which must exist (it was just created).
async fn require_link(handle: &Handle, name: &str, ns: &Netns) -> Result<LinkView, PlumbingError> {
    let context = || format!("find link {name} in {}", ns.path().display());
    links::by_name(handle, name)
        .await
        .map_err(|e| PlumbingError::netlink(context(), e))?
        .ok_or_else(|| {
            PlumbingError::io(
                context(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
}

/// Pod side: `IP/32`, `169.254.1.1 dev <if> scope link`, `default via
/// 169.254.1.1`, and the permanent neighbour entry to the host veth's MAC.
/// An IPv6 pod: IPv6 on and DAD off on the interface, `IP/128 nodad`, and
/// the same routes and neighbour with `fe80::1`; then its IPv4 egress
/// address wired as an IPv4 pod's address.
async fn configure_pod_side(
    handle: &Handle,
    ns: &std::sync::Arc<Netns>,
    index: u32,
    pod: &PodNetwork,
    links: &PodLinks,
) -> Result<(), PlumbingError> {
    let ifname = &links.pod_ifname;
    let context =
        |what: String| move |e| PlumbingError::netlink(format!("{what} on {ifname} in the pod"), e);
    if pod.ip.is_ipv6() {
        let pod_if = ifname.clone();
        netns::run_in(ns, move || sysctl::configure_ipv6_veth(&pod_if)).await?;
    }
    for ip in pod.addresses() {
        let (gateway, prefix) = (pod_gateway(ip), host_prefix(ip));
        let mut address = handle.address().add(index, ip, prefix).replace();
        if ip.is_ipv6() {
            address.message_mut().header.flags = AddressHeaderFlags::Nodad;
        }
        address
            .execute()
            .await
            .map_err(context(format!("add address {ip}/{prefix}")))?;
        routes::replace(
            handle,
            routes::link_route(gateway, host_prefix(gateway), index, MAIN_TABLE),
        )
        .await
        .map_err(context(format!("add route {gateway} scope link")))?;
        routes::replace(handle, routes::default_route(gateway, index, MAIN_TABLE))
            .await
            .map_err(context(format!("add default route via {gateway}")))?;
        handle
            .neighbours()
            .add(index, gateway)
            .link_layer_address(&links.host_mac.0)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(context(format!(
                "add neighbour {gateway} lladdr {}",
                links.host_mac
            )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodNetwork {
        PodNetwork {
            netns: "/var/run/netns/x".into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            ip: Ipv4Addr::new(10, 0, 1, 20).into(),
            eni_table: Some(2),
            mtu: None,
            egress_ipv4: None,
        }
    }

    #[test]
    fn valid_pod_passes() {
        assert!(pod().validate().is_ok());
        // A container that is not a Kubernetes pod has no namespace.
        let container = PodNetwork {
            pod_namespace: String::new(),
            ..pod()
        };
        assert!(container.validate().is_ok());
    }

    #[test]
    fn invalid_pods_say_what_is_wrong() {
        let cases = [
            (
                PodNetwork {
                    ifname: "eth/0".into(),
                    ..pod()
                },
                "interface name",
            ),
            (
                PodNetwork {
                    pod_name: String::new(),
                    ..pod()
                },
                "pod name",
            ),
            (
                PodNetwork {
                    ip: Ipv4Addr::new(169, 254, 1, 1).into(),
                    ..pod()
                },
                "not a unicast",
            ),
            (
                PodNetwork {
                    ip: Ipv4Addr::UNSPECIFIED.into(),
                    ..pod()
                },
                "not a unicast",
            ),
            (
                PodNetwork {
                    ip: "fe80::5".parse().unwrap(),
                    eni_table: None,
                    ..pod()
                },
                "not a unicast",
            ),
            (
                PodNetwork {
                    ip: "2001:db8::1:0:0:5".parse().unwrap(),
                    ..pod()
                },
                "primary ENI",
            ),
            (
                PodNetwork {
                    egress_ipv4: Some(Ipv4Addr::new(169, 254, 172, 1)),
                    ..pod()
                },
                "only IPv6 pods",
            ),
            (
                PodNetwork {
                    ip: "2001:db8::1:0:0:5".parse().unwrap(),
                    eni_table: None,
                    egress_ipv4: Some(POD_GATEWAY),
                    ..pod()
                },
                "not a usable unicast",
            ),
            (
                PodNetwork {
                    eni_table: Some(254),
                    ..pod()
                },
                "reserved",
            ),
            (
                PodNetwork {
                    mtu: Some(10),
                    ..pod()
                },
                "MTU",
            ),
        ];
        for (pod, needle) in cases {
            let msg = pod.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
    }
}
