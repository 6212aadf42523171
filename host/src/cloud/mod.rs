//! The cloud layer: every EC2 side effect of the agent goes through the [`Cloud`] trait.
//!
//! Two implementations:
//! * [`Ec2Cloud`]: the real thing, on aws-sdk-ec2, with client-side rate limiting, retries with
//!   backoff, per-call timeouts, metrics and no leaks on partial failure.
//! * [`SimCloud`]: an in-process VPC simulator that enforces EC2's limits (ENIs per instance,
//!   addresses per ENI, subnet capacity, /28 alignment and fragmentation), deterministic under a
//!   seed, with injectable latency, throttling and failures.

mod action;
pub(crate) mod ec2;
mod error;
pub mod leak;
mod ratelimit;
mod retry;
pub mod sim;
mod types;

pub use action::{ActionClass, Ec2Action};
pub use ec2::{Ec2Cloud, Ec2Config};
pub use error::{CloudError, LimitKind};
pub use ratelimit::{BucketSpec, Clock, ManualClock, RateLimiter, RateLimits, SystemClock};
pub use retry::RetryPolicy;
pub use sim::SimCloud;
pub use types::*;

use futures::future::BoxFuture;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::Ipv4Addr;

/// The answer of a cloud without IPv6 prefixes (test doubles).
fn no_ipv6(api: Ec2Action) -> CloudError {
    CloudError::Fatal {
        api: api.name().into(),
        detail: "this cloud does not delegate IPv6 prefixes".into(),
    }
}

/// The future every [`Cloud`] method returns (boxed so `Arc<dyn Cloud>` works).
pub type CloudFuture<'a, T> = BoxFuture<'a, Result<T, CloudError>>;

/// Everything the agent asks of EC2 (or of the simulator).
///
/// Calls are retried inside the implementation where that is safe; an error returned here has
/// exhausted the retries (or is not retryable). No call leaves a half-made resource behind: an ENI
/// that was created but could not be attached is deleted before the error is returned.
pub trait Cloud: Send + Sync {
    /// Who and where this node is.
    fn identity(&self) -> CloudFuture<'_, NodeIdentity>;

    /// What this node's instance type allows.
    fn instance_limits(&self) -> CloudFuture<'_, InstanceLimits>;

    /// The ENIs attached to this node, the primary included, by device index.
    fn list_enis(&self) -> CloudFuture<'_, Vec<Eni>>;

    /// The subnets of this node's VPC (all zones; the subnet-selection policy filters).
    fn list_subnets(&self) -> CloudFuture<'_, Vec<Subnet>>;

    /// The IPv4 CIDR blocks associated with this node's VPC: traffic to them
    /// is never SNATed. They change when blocks are associated or
    /// disassociated, so the agent reads them again from time to time.
    fn vpc_cidrs(&self) -> CloudFuture<'_, Vec<Ipv4Net>> {
        Box::pin(async {
            Err(CloudError::Fatal {
                api: Ec2Action::DescribeVpcs.name().into(),
                detail: "this cloud does not tell its VPC's CIDR blocks".into(),
            })
        })
    }

    /// Creates an ENI with its addresses and Weft's tags, and attaches it to this node at the
    /// lowest free device index with delete-on-termination. Returns the attached ENI.
    fn create_eni<'a>(&'a self, request: &'a CreateEni) -> CloudFuture<'a, Eni>;

    /// Adds `count` secondary IPs to an ENI of this node in one call; returns the new addresses.
    fn assign_ips<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Addr>>;

    /// Adds `count` /28 prefixes to an ENI of this node in one call; returns the new prefixes.
    fn assign_prefixes<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Net>>;

    /// The IPv6 prefixes delegated to ENI `eni_id`.
    fn ipv6_prefixes<'a>(&'a self, _eni_id: &'a str) -> CloudFuture<'a, Vec<Ipv6Net>> {
        Box::pin(async { Err(no_ipv6(Ec2Action::DescribeNetworkInterfaces)) })
    }

    /// Delegates one /80 IPv6 prefix to ENI `eni_id` of this node
    /// (`AssignIpv6Addresses` with `Ipv6PrefixCount = 1`); returns it.
    fn assign_ipv6_prefix<'a>(&'a self, _eni_id: &'a str) -> CloudFuture<'a, Ipv6Net> {
        Box::pin(async { Err(no_ipv6(Ec2Action::AssignIpv6Addresses)) })
    }

    /// Removes secondary IPs from an ENI in one call.
    fn unassign_ips<'a>(&'a self, eni_id: &'a str, ips: &'a [Ipv4Addr]) -> CloudFuture<'a, ()>;

    /// Removes /28 prefixes from an ENI in one call.
    fn unassign_prefixes<'a>(
        &'a self,
        eni_id: &'a str,
        prefixes: &'a [Ipv4Net],
    ) -> CloudFuture<'a, ()>;

    /// Detaches (when attached) and deletes an ENI; succeeds when it is already gone.
    fn delete_eni<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, ()>;

    /// Every ENI of the VPC, attached or not, whose tag `key` has `value` (how a restart finds
    /// an ENI whose create answer was lost, by the operation id the agent tagged it with).
    fn find_enis_by_tag<'a>(&'a self, key: &'a str, value: &'a str) -> CloudFuture<'a, Vec<Eni>>;

    /// Whether the instance's own view already shows `eni` (on EC2 the metadata service lists
    /// its MAC with its primary address, which lags the attachment by up to seconds). The
    /// device itself is checked on the node by the pool's hooks. True where there is no such
    /// view.
    fn eni_ready<'a>(&'a self, _eni: &'a Eni) -> CloudFuture<'a, bool> {
        Box::pin(async { Ok(true) })
    }

    /// ENIs of this cluster that are detached and older than the configured minimum age
    /// (see [`leak::is_leaked`]).
    fn list_leaked_enis(&self) -> CloudFuture<'_, Vec<Eni>>;

    /// Deletes every leaked ENI; returns the ids deleted. An ENI that fails to delete is left
    /// for the next round and does not stop the others.
    fn delete_leaked_enis(&self) -> CloudFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut deleted = Vec::new();
            for eni in self.list_leaked_enis().await? {
                match self.delete_eni(&eni.id).await {
                    Ok(()) => deleted.push(eni.id),
                    Err(error) => {
                        tracing::warn!(eni = %eni.id, %error, "leaked ENI not deleted; retrying next round");
                    }
                }
            }
            Ok(deleted)
        })
    }
}
