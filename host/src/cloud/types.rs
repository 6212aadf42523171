//! The data the cloud layer returns and takes.

use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Tag naming the Kubernetes cluster on every ENI Weft creates.
pub const TAG_CLUSTER: &str = "weft.io/cluster";
/// Tag naming the instance an ENI was created for.
pub const TAG_INSTANCE_ID: &str = "weft.io/instance-id";
/// Tag holding the ENI's creation time, in seconds since the Unix epoch.
pub const TAG_CREATED_AT: &str = "weft.io/created-at";
/// Tag holding the idempotency token of the create call (finds an ENI whose answer was lost).
pub(crate) const TAG_CREATE_TOKEN: &str = "weft.io/create-token";

/// Addresses per /28 prefix.
pub(crate) const PREFIX_ADDRESSES: u32 = 16;

pub(crate) use crate::mac::MacAddr;

/// Who and where this node is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeIdentity {
    /// EC2 instance id.
    pub instance_id: String,
    /// Instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// Availability zone, e.g. `us-east-1a`.
    pub availability_zone: String,
    pub vpc_id: String,
    /// The primary ENI (device index 0).
    pub primary_eni_id: String,
    /// The primary ENI's subnet.
    pub subnet_id: String,
    /// The primary ENI's security groups: the default set for pods.
    pub security_groups: Vec<String>,
    /// The primary ENI's MAC address.
    pub mac: MacAddr,
}

/// What the instance type allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLimits {
    pub instance_type: String,
    /// Network interfaces attached at most, the primary included.
    pub max_enis: u32,
    /// IPv4 addresses per ENI, its primary address included; each /28 prefix takes one.
    pub ipv4_per_eni: u32,
    /// IPv6 addresses per ENI.
    pub ipv6_per_eni: u32,
    /// Network cards (ENIs of cards other than 0 are not used by Weft).
    pub network_cards: u32,
    /// Whether /28 prefix delegation is possible (Nitro instances).
    pub prefix_delegation: bool,
}

impl InstanceLimits {
    /// Secondary IPs plus prefixes one ENI can hold.
    pub(crate) fn slots_per_eni(&self) -> u32 {
        self.ipv4_per_eni.saturating_sub(1)
    }

    /// Maximum pods with secondary IPs: ENIs x (IPs per ENI - 1) + 2 (host-network pods).
    pub fn max_pods(&self) -> u32 {
        self.max_enis
            .saturating_mul(self.slots_per_eni())
            .saturating_add(2)
    }
}

impl From<&InstanceLimits> for weft_policy_sdk::pool::InstanceLimits {
    fn from(limits: &InstanceLimits) -> Self {
        weft_policy_sdk::pool::InstanceLimits {
            max_enis: limits.max_enis,
            ipv4_per_eni: limits.ipv4_per_eni,
            prefix_delegation: limits.prefix_delegation,
            max_pods: limits.max_pods(),
        }
    }
}

/// State of a network interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EniStatus {
    /// Not attached: a leak candidate when it carries Weft's tags.
    Available,
    /// Being attached.
    Attaching,
    /// Attached.
    InUse,
    /// Being detached.
    Detaching,
    /// Any other state EC2 reports.
    Other(String),
}

impl EniStatus {
    /// Parses EC2's status string.
    pub(crate) fn parse(status: &str) -> Self {
        match status {
            "available" => EniStatus::Available,
            "attaching" => EniStatus::Attaching,
            "in-use" => EniStatus::InUse,
            "detaching" => EniStatus::Detaching,
            other => EniStatus::Other(other.to_owned()),
        }
    }
}

/// The attachment of an ENI to an instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// Attachment id, needed to detach.
    pub id: String,
    pub instance_id: String,
    /// Device index; 0 is the primary ENI.
    pub device_index: u32,
    pub network_card_index: u32,
    /// Whether EC2 deletes the ENI when the instance terminates.
    pub delete_on_termination: bool,
}

/// The kind of a network interface, as EC2's `InterfaceType` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InterfaceType {
    /// An ordinary ENI (`interface`).
    #[default]
    Interface,
    /// An Elastic Fabric Adapter with IP (`efa`).
    Efa,
    /// An EFA without IP (`efa-only`).
    EfaOnly,
    /// A trunk ENI of security groups for pods (`trunk`).
    Trunk,
    /// Anything else EC2 reports (`branch`, `interface` types of other
    /// services...).
    Other(String),
}

impl InterfaceType {
    /// Parses EC2's `InterfaceType`.
    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "interface" | "" => InterfaceType::Interface,
            "efa" => InterfaceType::Efa,
            "efa-only" => InterfaceType::EfaOnly,
            "trunk" => InterfaceType::Trunk,
            other => InterfaceType::Other(other.to_owned()),
        }
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Eni {
    /// ENI id.
    pub id: String,
    pub subnet_id: String,
    /// MAC address (how the node finds the ENI's link).
    pub mac: MacAddr,
    /// The ENI's own primary address (never given to pods);
    /// `0.0.0.0` for an ENI without private IPv4 (IPv6-only, EFA-only),
    /// which Weft never manages.
    pub primary_ip: Ipv4Addr,
    /// Secondary IPv4 addresses.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Delegated /28 prefixes.
    pub prefixes: Vec<Ipv4Net>,
    pub security_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub description: String,
    /// State.
    pub status: EniStatus,
    /// Attachment, when attached.
    pub attachment: Option<Attachment>,
    /// Its kind.
    #[serde(default)]
    pub interface_type: InterfaceType,
}

impl Eni {
    /// Whether the ENI has a private IPv4 address at all.
    pub(crate) fn has_ipv4(&self) -> bool {
        !self.primary_ip.is_unspecified()
    }

    /// Network card of the attachment, when attached.
    pub(crate) fn network_card(&self) -> Option<u32> {
        self.attachment.as_ref().map(|a| a.network_card_index)
    }

    /// Device index when attached.
    pub fn device_index(&self) -> Option<u32> {
        self.attachment.as_ref().map(|a| a.device_index)
    }

    /// Secondary IPs plus prefixes: the slots counted against the per-ENI limit.
    pub(crate) fn used_slots(&self) -> u32 {
        u32::try_from(self.secondary_ips.len() + self.prefixes.len()).unwrap_or(u32::MAX)
    }
}

/// A subnet an ENI can be created in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Subnet id.
    pub id: String,
    pub availability_zone: String,
    /// IPv4 CIDR.
    pub cidr: Ipv4Net,
    /// Free IPv4 addresses as EC2 counts them.
    pub free_ips: u32,
    pub tags: BTreeMap<String, String>,
}

impl Subnet {
    /// The subnet as the subnet-selection policy sees it.
    pub(crate) fn as_candidate(&self) -> weft_policy_sdk::subnet::Candidate {
        weft_policy_sdk::subnet::Candidate {
            id: self.id.clone(),
            availability_zone: self.availability_zone.clone(),
            cidr: self.cidr.to_string(),
            free_ips: u64::from(self.free_ips),
            tags: self
                .tags
                .iter()
                .map(|(k, v)| weft_policy_sdk::Tag::new(k, v))
                .collect(),
        }
    }
}

/// How a new ENI is populated, or what to add to an ENI: secondary IPs or /28 prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRequest {
    /// This many secondary IPv4 addresses.
    Ips(u32),
    /// This many /28 prefixes.
    Prefixes(u32),
}

impl AddressRequest {
    /// Slots against the per-ENI limit.
    pub(crate) fn slots(self) -> u32 {
        match self {
            AddressRequest::Ips(n) | AddressRequest::Prefixes(n) => n,
        }
    }
}

/// A request to create an ENI and attach it to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateEni {
    /// Subnet to create it in.
    pub subnet_id: String,
    /// Security groups (the pool group's set).
    pub security_groups: Vec<String>,
    /// Addresses to create it with.
    pub addresses: AddressRequest,
    /// Extra tags; Weft's own tags are always added.
    pub tags: BTreeMap<String, String>,
}
