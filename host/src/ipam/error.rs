//! Errors of the pool datastore.

use super::SgSet;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Why a datastore operation was refused. Nothing is changed when one is
/// returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// No address can be handed to a pod of this group now.
    #[error("no free address for security groups {group}: {why}")]
    NoFreeAddress {
        /// The pod's security-group set.
        group: SgSet,
        /// Why, e.g. all addresses assigned or cooling down.
        why: String,
    },
    /// The ENI is not in the datastore.
    #[error("unknown ENI {0}")]
    UnknownEni(String),
    /// An ENI with this id is already in the datastore.
    #[error("ENI {0} is already in the pool")]
    DuplicateEni(String),
    /// The address is already on an ENI of the pool.
    #[error("address {ip} is already on ENI {owner}")]
    AddressConflict {
        ip: Ipv4Addr,
        /// The ENI that has it.
        owner: String,
    },
    /// The address or prefix is not on this ENI.
    #[error("{what} is not on ENI {eni_id}")]
    NotOnEni {
        eni_id: String,
        /// The address or prefix.
        what: String,
    },
    /// A prefix that is not an aligned /28.
    #[error("prefix {0} is not an aligned /28 (EC2 delegates /28 prefixes only)")]
    InvalidPrefix(Ipv4Net),
    /// The address is assigned or cooling down and cannot leave the pool.
    #[error("address {ip} of ENI {eni_id} is {state} and cannot be removed")]
    AddressInUse {
        eni_id: String,
        ip: Ipv4Addr,
        /// `assigned` or `cooling down`.
        state: &'static str,
    },
    /// The ENI may not be released now.
    #[error("ENI {eni_id} cannot be released: {why}")]
    EniNotReleasable {
        eni_id: String,
        /// Why, e.g. it is the primary ENI or has pods.
        why: String,
    },
    /// Every node-local IPv4 address for IPv6 pods' IPv4 egress is held.
    #[error(
        "every node-local IPv4 address of {cidr} (IPv4 egress of IPv6 pods) is held: widen \
         [egress] ipv4-egress-cidr, or delete pods"
    )]
    Ipv4EgressExhausted {
        /// The node-local range.
        cidr: Ipv4Net,
    },
    /// Every address of the primary ENI's IPv6 prefix is held.
    #[error("every address of the primary ENI's IPv6 prefix {prefix} is held: delete pods")]
    Ipv6PrefixExhausted { prefix: ipnet::Ipv6Net },
}
