//! Errors of the pool service, and why a group could not grow.

use crate::ipam::SgSet;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Why the reconciler could not give a group more addresses: what an ADD
/// that waited in vain reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockedKind {
    /// Every ENI the instance may attach is attached and full.
    EniLimit,
    /// The node already holds max-pods addresses.
    MaxPods,
    /// The subnet has no free address (or no aligned /28 block).
    SubnetFull,
    /// The subnet-selection policy found no subnet for a new ENI.
    NoSubnet,
    /// EC2 throttled the reconciler; it is backing off.
    Throttled,
    /// The pool-sizing policy decided not to grow the group.
    PolicyRefused,
    /// An EC2 call failed; retried in the next round.
    CloudFailed,
    /// The state directory could not be written.
    StateFailed,
    /// The reconciler added capacity, but other pods took it first or it
    /// has not been asked yet.
    Pending,
}

impl fmt::Display for BlockedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockedKind::EniLimit => "ENI limit reached",
            BlockedKind::MaxPods => "max pods reached",
            BlockedKind::SubnetFull => "subnet full",
            BlockedKind::NoSubnet => "no subnet",
            BlockedKind::Throttled => "EC2 throttled",
            BlockedKind::PolicyRefused => "policy refused",
            BlockedKind::CloudFailed => "EC2 call failed",
            BlockedKind::StateFailed => "state not writable",
            BlockedKind::Pending => "capacity still being added",
        })
    }
}

/// A [`BlockedKind`] with the details an operator needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocked {
    pub kind: BlockedKind,
    /// What exactly happened.
    pub detail: String,
}

impl Blocked {
    /// A reason from its parts.
    pub(crate) fn new(kind: BlockedKind, detail: impl Into<String>) -> Self {
        Blocked {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// Why a pool-service call failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No address could be had within the ADD wait; the CNI plugin answers
    /// "try again later" (CNI error 11) and the runtime retries.
    #[error(
        "no free address for security groups {group} after waiting {} ms; try again later ({reason})",
        waited.as_millis()
    )]
    TryAgain {
        /// The pod's security-group set.
        group: SgSet,
        /// How long the ADD waited.
        waited: Duration,
        /// The reconciler's last outcome for the group.
        reason: Blocked,
    },
    /// The assignment or release was refused or could not be made
    /// durable; nothing was assigned or released.
    #[error(transparent)]
    Commit(#[from] crate::state::CommitError),
    /// The pool service has been shut down.
    #[error("the pool service is shut down; restart weftd")]
    ShutDown,
}

impl PoolError {
    /// Whether the CNI plugin should answer "try again later" (code 11).
    pub fn is_try_again(&self) -> bool {
        matches!(self, PoolError::TryAgain { .. })
    }
}
