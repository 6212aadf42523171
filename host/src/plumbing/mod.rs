//! Pod and ENI networking on the node, through rtnetlink.
//!
//! Weft uses the routed model of the Amazon VPC CNI:
//!
//! * Each pod gets a veth pair. The pod side (`CNI_IFNAME`) carries the
//!   pod's `IP/32`, a link route to `169.254.1.1`, a default route via it and
//!   a permanent neighbour entry mapping `169.254.1.1` to the host side's MAC.
//!   The host side is named from a hash of the pod's namespace and name
//!   (and interface, for interfaces other than `eth0`;
//!   [`names::host_veth_name`]) and carries the alias `weft:<ns>/<name>/<if>`.
//! * On the node: `IP/32 dev <host veth>` in the main table, a rule
//!   `to IP lookup main` (priority [`rules::TO_POD_PRIORITY`]) and, for an IP
//!   of a secondary ENI, `from IP lookup <ENI table>`
//!   ([`rules::FROM_POD_PRIORITY`]). Every rule Weft adds carries protocol
//!   [`rules::WEFT_RULE_PROTOCOL`].
//! * An IPv6 pod (IPv6 mode) is wired the same way with `IP/128` (added
//!   without duplicate address detection, which is off on both veth ends),
//!   `fe80::1` for `169.254.1.1`, and on the node only `IP/128 dev <host
//!   veth>`: IPv6 pods live on the primary ENI, so there are no rules.
//! * GC removes only veths and rules with those marks: other CNIs (the VPC
//!   CNI on a node being migrated) use the same names and priorities.
//! * Each secondary ENI gets its own route table (device index + 1) with the
//!   subnet route and a default route via the subnet gateway
//!   ([`Plumbing::setup_eni`]).
//!
//! Everything happens through [`Plumbing`]. Netlink sockets are opened
//! inside the right namespace on short-lived threads (`setns` is per thread
//! and never runs on a tokio worker); nothing here blocks a tokio worker on
//! a slow kernel operation.
//!
//! DEL latency: the kernel takes tens of milliseconds to destroy a veth, so
//! [`Plumbing::teardown_pod`] removes the pod's rules and route (what makes
//! its IP safe to reuse) before it returns and leaves the veth removal to a
//! background thread ([`LinkRemoval`]). A re-ADD into a namespace that
//! outlived its DEL replaces whatever is left.

mod check;
mod config;
pub mod egress;
mod eni;
mod error;
mod gc;
pub(crate) mod links;
mod names;
pub(crate) mod netns;
mod nl;
mod pod;
mod routes;
mod rules;
pub mod sysctl;

use std::sync::Arc;

pub use crate::mac::{InvalidMac, MacAddr};
pub use config::{DEFAULT_MTU, PlumbingConfig};
pub use eni::{EniLink, eni_route_table};
pub use error::PlumbingError;
pub use gc::{LeftoverRule, Leftovers};
pub use links::LinkRemoval;
pub use pod::{POD_GATEWAY, POD_GATEWAY_V6, PodLinks, PodNetwork, pod_gateway};

use netns::Netns;

/// The node's plumbing: one netlink connection bound to the node namespace,
/// shared by all operations. Cheap to share behind an `Arc`; every method
/// takes `&self` and may run concurrently for different pods.
#[derive(Debug)]
pub struct Plumbing {
    config: PlumbingConfig,
    host_ns: Arc<Netns>,
    host: rtnetlink::Handle,
    /// Removals GC is made to fail ([`Plumbing::refuse_gc_removal`]).
    #[cfg(feature = "testing")]
    gc_refusals: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Plumbing {
    /// Validates `config`, opens the node namespace and its netlink
    /// connection, and enables IP forwarding there if configured.
    /// Must be called inside a tokio runtime.
    pub async fn new(config: PlumbingConfig) -> Result<Self, PlumbingError> {
        config.validate()?;
        let host_ns = Netns::open(config.node_netns.as_deref())?;
        let host = netns::connect(&host_ns).await?;
        if config.enable_ip_forward {
            netns::run_in(&host_ns, || sysctl::write(sysctl::IP_FORWARD, "1")).await?;
        }
        if config.enable_ipv6_forward {
            netns::run_in(&host_ns, || sysctl::write(sysctl::IPV6_FORWARD, "1")).await?;
        }
        Ok(Self {
            config,
            host_ns,
            host,
            #[cfg(feature = "testing")]
            gc_refusals: Default::default(),
        })
    }

    /// The configuration in use.
    pub(crate) fn config(&self) -> &PlumbingConfig {
        &self.config
    }

    /// The host-side veth name of interface `ifname` of pod
    /// `pod_namespace/pod_name`.
    pub fn host_veth_name(&self, pod_namespace: &str, pod_name: &str, ifname: &str) -> String {
        names::host_veth_name(&self.config.veth_prefix, pod_namespace, pod_name, ifname)
    }
}
