//! The records the datastore takes in and hands out.

use super::SgSet;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};
use weft_cni::boottime::BootInstant;

/// Pod addresses a delegated /28 prefix yields.
pub const ADDRESSES_PER_PREFIX: u32 = 16;

/// Settings of the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// How long a released address rests before it is handed out again, so
    /// that peers of the old pod stop sending to it (VPC CNI: 30 s).
    pub cooldown: Duration,
    /// Minimum time an ENI stays attached before it may be released, which
    /// stops scale-up and scale-down from fighting (VPC CNI: 1 min).
    pub min_eni_age: Duration,
    /// The node's security groups: the group the primary ENI serves and the
    /// default for pods whose policy chose nothing else.
    pub default_group: SgSet,
    /// Whether pods get addresses on the primary ENI. `false` for custom
    /// networking, where pods live only on secondary ENIs.
    pub primary_eni_serves_pods: bool,
    /// EC2 reads lag its writes by seconds: an address or ENI the cloud no
    /// longer reports leaves the pool only once it has been missing from
    /// this many reads in a row ...
    pub confirm_reads: u32,
    /// ... spanning at least this long, and Weft did not change its ENI
    /// during that time. An address Weft gave back (or an ENI it deleted)
    /// is not taken back from a read for as long.
    pub stale_read_grace: Duration,
}

impl IpamConfig {
    /// VPC CNI's defaults (30 s cooldown, 1 min ENI age, primary ENI serves
    /// pods) for a node whose primary ENI carries `default_group`.
    pub fn new(default_group: SgSet) -> Self {
        IpamConfig {
            cooldown: Duration::from_secs(30),
            min_eni_age: Duration::from_secs(60),
            default_group,
            primary_eni_serves_pods: true,
            confirm_reads: 3,
            stale_read_grace: Duration::from_secs(10),
        }
    }
}

/// An ENI attached to the node, as the cloud reports it (also the input of
/// [`super::Datastore::add_eni`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    /// EC2 network interface id, `eni-...`.
    pub id: String,
    /// Attachment device index; 0 is the instance's primary ENI.
    pub device_index: u32,
    pub subnet_id: String,
    /// MAC address, as EC2 prints it.
    pub mac: String,
    /// Whether this is the instance's primary ENI (never released).
    pub primary: bool,
    /// The ENI's own primary private address (not a pod address).
    pub primary_ip: Ipv4Addr,
    /// Security groups the ENI carries.
    pub security_groups: SgSet,
    /// Secondary private addresses, each usable by one pod.
    pub ips: Vec<Ipv4Addr>,
    /// Delegated /28 prefixes, 16 pod addresses each.
    pub prefixes: Vec<Ipv4Net>,
    /// When the ENI was attached.
    pub attached_at: SystemTime,
}

/// What identifies one pod interface, as in the CNI spec: an ADD repeated
/// with the same key gets the same address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AssignmentKey {
    /// The CNI network name.
    pub network: String,
    /// The container id (`CNI_CONTAINERID`).
    pub container_id: String,
    /// The interface name inside the pod (`CNI_IFNAME`).
    pub ifname: String,
}

impl AssignmentKey {
    /// A key from its three parts.
    pub fn new(
        network: impl Into<String>,
        container_id: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Self {
        AssignmentKey {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

impl fmt::Display for AssignmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.network, self.container_id, self.ifname)
    }
}

/// The Kubernetes pod an address belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl fmt::Display for PodMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An address held by a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Who holds it.
    pub key: AssignmentKey,
    pub ip: Ipv4Addr,
    pub pod: PodMeta,
    /// When it was assigned.
    pub assigned_at: SystemTime,
    /// When it was assigned, on the node's boot clock; `None` when assigned
    /// by a weftd that did not record it.
    pub assigned_boot: Option<BootInstant>,
}

/// A released address still cooling down, as recorded in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoolingAddress {
    pub ip: Ipv4Addr,
    /// When its pod released it.
    pub released_at: SystemTime,
}

/// What Weft gave back to EC2 less than the stale-read grace period ago, as
/// recorded in the checkpoint: a read may still show it (reads lag writes),
/// so not even a restart takes it back from one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenBack {
    /// Addresses unassigned (or on a deleted ENI), and when.
    pub addresses: Vec<(Ipv4Addr, SystemTime)>,
    /// ENIs deleted, and when.
    pub enis: Vec<(String, SystemTime)>,
}

/// Where an assigned address lives: what pod plumbing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The ENI carrying it.
    pub eni_id: String,
    /// The ENI's device index (its route table is `device_index + 1`).
    pub device_index: u32,
    /// Whether the ENI is the primary ENI (no policy routing needed).
    pub primary_eni: bool,
    /// The prefix the address comes from, if any.
    pub prefix: Option<Ipv4Net>,
    /// `false` when the key already held this address (a repeated ADD).
    pub fresh: bool,
}

/// The state of one pod address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressState {
    /// Ready to hand out.
    Free,
    /// Held by a pod.
    Assigned(AssignmentKey),
    /// Released by a pod; free again at `until` (monotonic).
    Cooling {
        /// When the cooldown ends.
        until: std::time::Instant,
    },
    /// Being given back to EC2 (or its ENI is); never handed out.
    Releasing,
}

/// One pod address and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    /// The ENI carrying it.
    pub eni_id: String,
    /// The prefix it comes from, `None` for a secondary IP.
    pub prefix: Option<Ipv4Net>,
    pub state: AddressState,
}

/// A change the datastore made to match the cloud or the checkpoint, to be
/// logged by the caller at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correction {
    /// A checkpointed or live assignment was dropped.
    AssignmentDropped {
        key: AssignmentKey,
        ip: Ipv4Addr,
        pod: PodMeta,
        why: String,
    },
    /// The cloud reports an ENI the datastore did not know.
    EniAdded {
        eni_id: String,
        /// Pod addresses it brought.
        addresses: u32,
    },
    /// An ENI the datastore knew is no longer attached.
    EniRemoved { eni_id: String },
    /// The cloud reports different attributes for a known ENI.
    EniUpdated {
        eni_id: String,
        /// What changed.
        what: String,
    },
    /// A known ENI gained addresses.
    AddressesAdded {
        eni_id: String,
        /// How many pod addresses.
        count: u32,
    },
    /// A known ENI lost addresses.
    AddressesRemoved {
        eni_id: String,
        /// How many pod addresses.
        count: u32,
    },
    /// An address that left the pool while a pod held it: it is not handed
    /// out again until the node has no route to it any more.
    Quarantined {
        ip: Ipv4Addr,
        /// The pod interface that held it.
        key: AssignmentKey,
    },
    /// A quarantined address whose pod is gone from the node.
    QuarantineLifted { ip: Ipv4Addr },
    /// An address or prefix of the inventory was not taken into the pool.
    Ignored {
        /// The ENI reporting it.
        eni_id: String,
        /// The address or prefix.
        what: String,
        why: String,
    },
}

impl fmt::Display for Correction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Correction::AssignmentDropped { key, ip, pod, why } => {
                write!(f, "dropped assignment of {ip} to pod {pod} ({key}): {why}")
            }
            Correction::EniAdded { eni_id, addresses } => {
                write!(
                    f,
                    "took ENI {eni_id} with {addresses} pod addresses into the pool"
                )
            }
            Correction::EniRemoved { eni_id } => {
                write!(f, "removed ENI {eni_id}: no longer attached to the node")
            }
            Correction::EniUpdated { eni_id, what } => write!(f, "ENI {eni_id}: {what}"),
            Correction::AddressesAdded { eni_id, count } => {
                write!(
                    f,
                    "ENI {eni_id} has {count} pod addresses the pool did not know"
                )
            }
            Correction::AddressesRemoved { eni_id, count } => {
                write!(f, "ENI {eni_id} lost {count} pod addresses the pool knew")
            }
            Correction::Quarantined { ip, key } => write!(
                f,
                "quarantined {ip}: EC2 no longer has it but {key} held it; not handed out while the node routes it"
            ),
            Correction::QuarantineLifted { ip } => {
                write!(
                    f,
                    "lifted the quarantine of {ip}: the node no longer routes it"
                )
            }
            Correction::Ignored { eni_id, what, why } => {
                write!(f, "ignored {what} of ENI {eni_id}: {why}")
            }
        }
    }
}
