//! Typed errors of cloud calls, with messages that say what to fix.

use std::fmt;
use std::time::Duration;

/// Which instance or account limit a request ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKind {
    /// Network interfaces attached to the instance.
    Enis,
    /// IPv4 addresses (secondary IPs plus /28 prefixes) on one network interface.
    IpsPerEni,
    /// Any other quota EC2 reported, by its error code.
    Other(String),
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKind::Enis => f.write_str("network interfaces per instance"),
            LimitKind::IpsPerEni => f.write_str("IPv4 addresses per network interface"),
            LimitKind::Other(code) => write!(f, "quota {code}"),
        }
    }
}

impl LimitKind {
    fn advice(&self) -> &'static str {
        match self {
            LimitKind::Enis => {
                "use a larger instance type or lower the warm ENI target so fewer ENIs are needed"
            }
            LimitKind::IpsPerEni => {
                "ask for fewer addresses per call, or use a larger instance type"
            }
            LimitKind::Other(_) => "raise the quota in the AWS Service Quotas console",
        }
    }
}

/// An error of a [`Cloud`](super::Cloud) call.
///
/// [`CloudError::is_retryable`] tells whether trying the same call again later can succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// EC2 (or the client-side rate limiter) refused the call for exceeding the request rate.
    #[error(
        "{api} was throttled (RequestLimitExceeded); Weft retries with backoff. If this persists, \
         look for other EC2 API callers in the account or lower Weft's warm targets"
    )]
    Throttled {
        /// The EC2 API.
        api: String,
    },
    /// An instance-type or account limit was reached.
    #[error("{api}: limit of {what} reached ({detail}); {advice}", advice = what.advice())]
    LimitExceeded {
        /// The EC2 API.
        api: String,
        /// Which limit.
        what: LimitKind,
        /// What EC2 said.
        detail: String,
    },
    /// The subnet has no free address left.
    #[error(
        "{api}: subnet {subnet} has too few free IPv4 addresses ({detail}); tag another subnet in \
         the node's availability zone for Weft or enlarge the VPC"
    )]
    InsufficientAddresses {
        /// The EC2 API.
        api: String,
        /// The subnet, when known.
        subnet: String,
        /// What EC2 said.
        detail: String,
    },
    /// The subnet has free addresses but no aligned free /28 block (fragmentation).
    #[error(
        "{api}: subnet {subnet} has no free aligned /28 block for a prefix ({detail}); the subnet \
         is fragmented: use secondary IPs instead of prefixes, reserve a CIDR for prefixes \
         (subnet CIDR reservation), or tag a fresh subnet for Weft"
    )]
    InsufficientCidrBlocks {
        /// The EC2 API.
        api: String,
        /// The subnet, when known.
        subnet: String,
        /// What EC2 said.
        detail: String,
    },
    /// The resource does not exist (any more).
    #[error("{api}: {what} not found ({detail})")]
    NotFound {
        /// The EC2 API.
        api: String,
        /// The resource, e.g. `network interface eni-123`.
        what: String,
        /// What EC2 said.
        detail: String,
    },
    /// A temporary failure (5xx, connection error); retrying later can succeed.
    #[error("{api} failed temporarily ({detail}); Weft retries with backoff")]
    Transient {
        /// The EC2 API.
        api: String,
        /// The cause.
        detail: String,
    },
    /// No answer within the per-call timeout; retrying later can succeed.
    #[error(
        "{api} got no answer within {after:?}; check the node's route to the EC2 endpoint, or \
         raise the call timeout"
    )]
    Timeout {
        /// The EC2 API.
        api: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Anything retrying cannot fix: bad credentials, missing permissions, invalid requests.
    #[error("{api} failed: {detail}")]
    Fatal {
        /// The EC2 API.
        api: String,
        /// The cause, including what to fix when known.
        detail: String,
    },
}

impl CloudError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CloudError::Throttled { .. }
                | CloudError::Transient { .. }
                | CloudError::Timeout { .. }
        )
    }

    /// Whether the call may have taken effect although it failed (an answer was lost), so a
    /// retry of a non-idempotent call must first check what happened.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            CloudError::Transient { .. } | CloudError::Timeout { .. }
        )
    }

    /// The outcome label of the `cloud_calls` metric.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            CloudError::Throttled { .. } => "throttled",
            CloudError::LimitExceeded { .. }
            | CloudError::InsufficientAddresses { .. }
            | CloudError::InsufficientCidrBlocks { .. } => "limit",
            CloudError::NotFound { .. } => "not-found",
            CloudError::Transient { .. } => "transient",
            CloudError::Timeout { .. } => "timeout",
            CloudError::Fatal { .. } => "fatal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_transient_and_timeout_are_retryable() {
        let api = || "AssignPrivateIpAddresses".to_owned();
        assert!(CloudError::Throttled { api: api() }.is_retryable());
        assert!(!CloudError::Throttled { api: api() }.is_ambiguous());
        assert!(
            CloudError::Timeout {
                api: api(),
                after: Duration::from_secs(1)
            }
            .is_ambiguous()
        );
        let limit = CloudError::LimitExceeded {
            api: api(),
            what: LimitKind::IpsPerEni,
            detail: "10 max".into(),
        };
        assert!(!limit.is_retryable());
        assert_eq!(limit.outcome(), "limit");
        assert!(limit.to_string().contains("larger instance type"));
    }
}
