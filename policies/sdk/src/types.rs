//! Plain Rust mirrors of the records in `wit/policy.wit`.
//!
//! Field names and meanings are those of the WIT contract (kebab-case there,
//! snake_case here, kebab-case again in JSON so fixtures read like the WIT).
//! The same types are used by policies compiled to Wasm, by the native test
//! harness, and by the host when it runs a default policy natively.

use serde::{Deserialize, Serialize};

/// A key/value pair: an AWS tag, a Kubernetes label or annotation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

impl Tag {
    /// A tag from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Types of the pool-sizing decision (WIT interface `pool`).
pub mod pool {
    use serde::{Deserialize, Serialize};

    /// What the instance type allows.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct InstanceLimits {
        /// Maximum ENIs attached, the primary included.
        pub max_enis: u32,
        /// Maximum IPv4 addresses per ENI, the ENI's own primary address included.
        pub ipv4_per_eni: u32,
        /// Whether /28 prefix delegation is supported.
        pub prefix_delegation: bool,
        /// Maximum pods on the node.
        pub max_pods: u32,
    }

    /// One ENI of the group being sized.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Eni {
        /// EC2 network interface id.
        pub id: String,
        /// Attachment device index; 0 is the primary ENI.
        pub device_index: u32,
        /// Subnet id.
        pub subnet_id: String,
        /// Secondary IPv4 addresses usable by pods.
        pub ips: u32,
        /// /28 prefixes (16 pod addresses each).
        pub prefixes: u32,
        /// Addresses assigned to pods.
        pub assigned: u32,
        /// Addresses cooling down after release.
        pub cooling: u32,
        /// Seconds since attachment.
        pub age_seconds: u64,
    }

    impl Eni {
        /// Pod addresses the ENI holds: its secondary IPs plus 16 per prefix
        /// (saturating, so absurd inputs cannot overflow).
        pub fn addresses(&self) -> u32 {
            self.ips.saturating_add(self.prefixes.saturating_mul(16))
        }

        /// Addresses free to hand to a new pod now.
        pub fn free(&self) -> u32 {
            self.addresses()
                .saturating_sub(self.assigned.saturating_add(self.cooling))
        }
    }

    /// Recent pod churn in the group.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Activity {
        /// Addresses assigned during the last minute.
        pub adds_last_minute: u32,
        /// Addresses released during the last minute.
        pub removes_last_minute: u32,
        /// Seconds since the last assignment, if any.
        pub seconds_since_last_add: Option<u64>,
        /// The group's churn per minute over the last hour, most recent
        /// first (entry 0 is the last 60 s). Components get it through the
        /// `pool-sizing-timed` world (the SDK's export); components of the
        /// older `pool-sizing-history` world get it without
        /// `median_add_age`, and those of `pool-sizing` never see it.
        #[serde(default)]
        pub history: Vec<Minute>,
    }

    /// One minute of a group's churn (WIT `pool-timing.minute`).
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Minute {
        /// Addresses assigned during the minute.
        pub adds: u32,
        /// Addresses released during the minute.
        pub removes: u32,
        /// Seconds ago of the minute's median ADD (the earlier of the two
        /// middle ones), within the minute's window (entry `k`: `60 k` to
        /// `60 k + 59`); `None` without an ADD. The host sends it to the
        /// SDK's `pool-sizing-timed` world; a state written by hand (e.g.
        /// `weftd policy eval` input) may leave it out.
        #[serde(default)]
        pub median_add_age: Option<u32>,
    }

    /// Everything the pool-sizing decision sees.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct PoolState {
        /// The group's security-group set.
        pub group: Vec<String>,
        /// Whether this is the node's default group (served by the primary ENI).
        pub default_group: bool,
        /// The group's ENIs.
        pub enis: Vec<Eni>,
        /// ENIs attached to the node across all groups.
        pub node_enis: u32,
        /// Pod addresses held by the node across all groups.
        pub node_addresses: u32,
        /// Pods with an address across all groups.
        pub node_assigned: u32,
        /// The instance's limits.
        pub limits: InstanceLimits,
        /// ADDs of this group waiting for an address.
        pub pending_adds: u32,
        /// Recent churn in this group.
        #[serde(default)]
        pub activity: Activity,
    }

    /// A change to one existing ENI.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", default)]
    pub struct EniChange {
        /// The ENI to change.
        pub eni_id: String,
        /// Secondary IPs to add.
        pub add_ips: u32,
        /// Prefixes to add.
        pub add_prefixes: u32,
        /// Free secondary IPs to release.
        pub release_ips: u32,
        /// Unused prefixes to release.
        pub release_prefixes: u32,
    }

    /// A new ENI for the group.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", default)]
    pub struct NewEni {
        /// Secondary IPs to create it with.
        pub ips: u32,
        /// Prefixes to create it with.
        pub prefixes: u32,
    }

    /// The pool-sizing decision; the default leaves the pool as it is.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", default)]
    pub struct PoolDecision {
        /// Changes to existing ENIs.
        pub changes: Vec<EniChange>,
        /// ENIs to create.
        pub create: Vec<NewEni>,
        /// ENIs to release.
        pub release: Vec<String>,
        /// Why, in a sentence.
        pub reason: String,
    }

    impl PoolDecision {
        /// Whether the decision changes nothing.
        pub fn is_noop(&self) -> bool {
            self.changes.iter().all(|c| {
                c.add_ips == 0
                    && c.add_prefixes == 0
                    && c.release_ips == 0
                    && c.release_prefixes == 0
            }) && self.create.is_empty()
                && self.release.is_empty()
        }
    }
}

/// Types of the subnet-selection decision (WIT interface `subnet`).
pub mod subnet {
    use super::Tag;
    use serde::{Deserialize, Serialize};

    /// Why an ENI is being created.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Purpose {
        /// Secondary IPs or prefixes for pods.
        #[default]
        PodAddresses,
    }

    /// The ENI about to be created.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct EniRequest {
        /// Security groups the ENI will carry.
        pub security_groups: Vec<String>,
        /// Why it is created.
        #[serde(default)]
        pub purpose: Purpose,
        /// Secondary IPs it will be created with.
        #[serde(default)]
        pub ips: u32,
        /// Prefixes it will be created with.
        #[serde(default)]
        pub prefixes: u32,
        /// The node's availability zone.
        pub availability_zone: String,
        /// The subnet of the node's primary ENI.
        pub node_subnet_id: String,
        /// The node's Kubernetes metadata, when the agent has an API server
        /// (empty otherwise). Components get it through the
        /// `subnet-selection-node` world (the SDK's export); those of the
        /// older `subnet-selection` world never see it.
        #[serde(default)]
        pub node: Node,
    }

    /// The node an ENI is created for, as Kubernetes describes it.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", default)]
    pub struct Node {
        /// The node's name.
        pub name: String,
        /// The node's labels.
        pub labels: Vec<Tag>,
        /// The node's annotations.
        pub annotations: Vec<Tag>,
    }

    /// A subnet of the node's VPC.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Candidate {
        /// Subnet id.
        pub id: String,
        /// Availability zone.
        pub availability_zone: String,
        /// IPv4 CIDR block.
        pub cidr: String,
        /// Free IPv4 addresses.
        pub free_ips: u64,
        /// The subnet's tags.
        #[serde(default)]
        pub tags: Vec<Tag>,
    }

    /// The subnet-selection decision.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Choice {
        /// Create the ENI in this subnet.
        UseSubnet(String),
        /// Do not create the ENI, for this reason.
        Refuse(String),
    }
}

/// Types of the security-group decision (WIT interface `security`).
pub mod security {
    use super::Tag;
    use serde::{Deserialize, Serialize};

    /// The pod being added.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case", default)]
    pub struct Pod {
        /// Namespace.
        pub namespace: String,
        /// Name.
        pub name: String,
        /// UID.
        pub uid: String,
        /// Labels.
        pub labels: Vec<Tag>,
        /// Annotations.
        pub annotations: Vec<Tag>,
        /// Service account.
        pub service_account: String,
    }

    /// Everything the security-group decision sees.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub struct Request {
        /// The pod.
        pub pod: Pod,
        /// The security groups of the node's primary ENI.
        pub node_security_groups: Vec<String>,
    }
}
