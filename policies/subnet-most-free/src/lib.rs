//! # subnet-most-free: Weft's default subnet-selection policy
//!
//! Chooses the subnet of every new ENI with the Amazon VPC CNI's subnet
//! discovery rule:
//!
//! 1. The eligible subnets are the node's own subnet (the subnet of its
//!    primary ENI) plus every candidate tagged `kubernetes.io/role/cni`. A
//!    tag value of `0` excludes a subnet, the node's own included.
//! 2. Only subnets in the node's availability zone qualify (EC2 attaches an
//!    ENI only within the instance's zone).
//! 3. A subnet must have enough free addresses for the ENI: its own primary
//!    address, its secondary IPs and 16 per /28 prefix.
//! 4. Of those, the subnet with the most free addresses wins; ties go to the
//!    lowest subnet id, so the choice is deterministic.
//!
//! When nothing fits, the policy refuses with a reason that says, subnet by
//! subnet, why each candidate was passed over.
//!
//! ## Settings (custom networking)
//!
//! | setting | meaning |
//! | --- | --- |
//! | `subnet-ids` | only these subnets are eligible (rule 1 is replaced: the node's subnet is not implied) |
//! | `tags` | only subnets carrying all these tags (exact values) are eligible (rule 1 is replaced likewise) |
//! | `node-label`, `node-subnets` | custom networking by node label (ENIConfig without the CRD): the node's value of `node-label` (default `k8s.amazonaws.com/eniConfig`) picks its eligible subnets from `node-subnets` (value -> subnet ids); a node without the label, or with a value not listed, gets no ENI |
//!
//! At most one of the three may be set. Rules 2 to 4 always apply. The
//! node's labels come from the agent's Kubernetes API (`EniRequest.node`).
//!
//! ```
//! use subnet_most_free::SubnetMostFree;
//! use weft_policy_sdk::{SubnetSelection, Tag};
//! use weft_policy_sdk::subnet::{Candidate, Choice, EniRequest, Purpose};
//!
//! let policy = SubnetMostFree::configure("{}").unwrap();
//! let request = EniRequest {
//!     security_groups: vec!["sg-0123456789abcdef0".into()],
//!     purpose: Purpose::PodAddresses,
//!     ips: 9,
//!     prefixes: 0,
//!     availability_zone: "us-west-2a".into(),
//!     node_subnet_id: "subnet-0000000a".into(),
//!     node: Default::default(),
//! };
//! let subnet = |id: &str, free_ips, tags: Vec<Tag>| Candidate {
//!     id: id.into(),
//!     availability_zone: "us-west-2a".into(),
//!     cidr: "10.0.0.0/20".into(),
//!     free_ips,
//!     tags,
//! };
//! let candidates = [
//!     subnet("subnet-0000000a", 40, vec![]),
//!     subnet("subnet-0000000b", 4000, vec![Tag::new("kubernetes.io/role/cni", "1")]),
//!     subnet("subnet-0000000c", 9000, vec![]),
//! ];
//! // subnet-c is not tagged for pods; subnet-b has the most free addresses.
//! assert_eq!(
//!     policy.select_subnet(&request, &candidates),
//!     Choice::UseSubnet("subnet-0000000b".into())
//! );
//! ```

mod select;
mod settings;

pub use settings::Settings;

use weft_policy_sdk::SubnetSelection;
use weft_policy_sdk::settings::parse_settings;
use weft_policy_sdk::subnet::{Candidate, Choice, EniRequest};

/// The tag that marks a subnet for pod ENIs; the value `0` excludes it.
pub const ROLE_TAG: &str = "kubernetes.io/role/cni";

/// The subnet-most-free policy (see the crate docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetMostFree {
    settings: Settings,
}

impl SubnetMostFree {
    /// The policy with already-parsed settings, validated.
    pub fn new(settings: Settings) -> Result<Self, String> {
        settings.validate()?;
        Ok(SubnetMostFree { settings })
    }
}

impl SubnetSelection for SubnetMostFree {
    fn configure(settings: &str) -> Result<Self, String> {
        SubnetMostFree::new(parse_settings(settings)?)
    }

    fn select_subnet(&self, request: &EniRequest, candidates: &[Candidate]) -> Choice {
        select::select(&self.settings, request, candidates)
    }
}

weft_policy_sdk::export_subnet_selection!(SubnetMostFree);
