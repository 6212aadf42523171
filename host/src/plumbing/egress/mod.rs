//! Pod traffic beyond the node: egress SNAT and the NodePort return path,
//! in Weft's own nftables table (`table ip weft`), as the Amazon VPC CNI
//! sets them up with iptables (see [`ruleset`] for the translation).
//!
//! * Pod traffic to destinations outside the VPC's CIDRs (and the excluded
//!   ones) is SNATed to the node's primary private IP, unless SNAT is done
//!   outside the node (a NAT gateway: `AWS_VPC_K8S_CNI_EXTERNALSNAT`).
//! * IPv6 pods' IPv4 traffic (from their node-local addresses, see
//!   [`EgressSpec::ipv4_egress`]) is SNATed to the primary IP whenever it
//!   leaves the node: those addresses mean nothing beyond it.
//! * Connections that arrive through the primary ENI for the node (NodePort,
//!   load balancers in instance mode) and are DNATed to a pod, and pod
//!   connections leaving the VPC, are marked; marked packets use the main
//!   table (`fwmark` rule, priority [`MARKED_PRIORITY`]) and so leave
//!   through the primary ENI, and the primary ENI's reverse-path filter is
//!   loose (its replies' reverse path is the pod's secondary ENI).
//!
//! Only Weft's table and its `fwmark` rule are ever written or removed: one
//! `nft` transaction replaces the table, so applying the same spec twice
//! leaves the same rules.

mod config;
mod nft;
mod ruleset;

pub use config::EgressConfig;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::error::PlumbingError;
use super::routes::MAIN_TABLE;
use super::rules::{self, MARKED_PRIORITY, Selector};
use super::{Plumbing, netns, sysctl};
use crate::mac::MacAddr;

/// How SNAT picks source ports, as `AWS_VPC_K8S_CNI_RANDOMIZESNAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnatRandom {
    /// Ports kept where possible (`none`).
    None,
    /// `random`: a hash-based random port (`hashrandom`).
    #[serde(rename = "hashrandom")]
    HashRandom,
    /// `fully-random`: a PRNG port for every connection (`prng`, the default).
    Prng,
}

/// Everything the node's egress rules are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EgressSpec {
    /// The node's primary private IP: the SNAT source.
    pub primary_ip: Ipv4Addr,
    /// The primary ENI's interface; without it there is no NodePort mark.
    pub primary_link: Option<String>,
    /// The VPC's IPv4 CIDR blocks.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// Further destinations that are never SNATed.
    pub excluded_cidrs: Vec<Ipv4Net>,
    /// SNAT on the node, and how; `None` when SNAT happens outside the node.
    pub snat: Option<SnatRandom>,
    /// Mark connections that come in through the primary ENI.
    pub node_port: bool,
    /// The connection mark bit(s) (VPC CNI: `0x80`).
    pub connmark: u32,
    /// Prefix of pod host veths (`eni`): where pod traffic comes from.
    pub pod_veth_prefix: String,
    /// IPv6 pods' node-local IPv4 range, always SNATed to the primary IP
    /// when it leaves the node (whatever the destination and `snat`), and
    /// how; `None` without IPv6 pods or with IPv4 egress off.
    pub ipv4_egress: Option<(Ipv4Net, SnatRandom)>,
}

impl Plumbing {
    /// Makes the node's egress rules those of `spec`: replaces Weft's table
    /// in one transaction (or removes it when nothing is needed), adds the
    /// `fwmark` rule and loosens the primary ENI's reverse-path filter.
    /// Idempotent.
    pub(crate) async fn apply_egress(&self, spec: &EgressSpec) -> Result<(), PlumbingError> {
        if !ruleset::needed(spec) {
            return self.remove_egress(spec.connmark).await;
        }
        nft::apply(&self.host_ns, &ruleset::replace(spec)).await?;
        rules::add(
            &self.host,
            MARKED_PRIORITY,
            Selector::FwMark(spec.connmark),
            MAIN_TABLE,
        )
        .await
        .map_err(|e| {
            PlumbingError::netlink(
                format!(
                    "add rule fwmark {:#x} lookup main at {MARKED_PRIORITY}",
                    spec.connmark
                ),
                e,
            )
        })?;
        if let Some(link) = spec.primary_link.clone() {
            netns::run_in(&self.host_ns, move || sysctl::loosen_rp_filter(&link)).await?;
        }
        Ok(())
    }

    /// Removes Weft's table and its `fwmark` rule (uninstall); absent ones
    /// are fine.
    pub async fn remove_egress(&self, connmark: u32) -> Result<(), PlumbingError> {
        nft::apply(&self.host_ns, &ruleset::remove()).await?;
        rules::delete_all(&self.host, MARKED_PRIORITY, Selector::FwMark(connmark))
            .await
            .map_err(|e| {
                PlumbingError::netlink(format!("delete rule fwmark {connmark:#x} lookup main"), e)
            })?;
        Ok(())
    }

    /// The name of the node interface with MAC `mac` (the primary ENI's).
    pub(crate) async fn link_name(&self, mac: MacAddr) -> Result<Option<String>, PlumbingError> {
        Ok(self.eni_link(mac).await?.map(|link| link.name))
    }
}
