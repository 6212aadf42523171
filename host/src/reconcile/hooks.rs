//! What the agent does on the node when an ENI joins or leaves the pool.

use crate::cloud::{CloudError, Eni};
use crate::plumbing::PlumbingError;
use futures::future::BoxFuture;
use std::net::Ipv4Addr;

/// The future an [`EniHooks`] method returns.
pub type HookFuture<'a, T = ()> = BoxFuture<'a, Result<T, HookError>>;

/// Why the node-side set-up or clean-up of an ENI failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The node's links, routes or rules could not be changed or read.
    #[error(transparent)]
    Plumbing(#[from] PlumbingError),
    /// EC2 could not tell what the set-up needs (the ENI's subnet).
    #[error("{context}: {source}")]
    Cloud {
        /// What was being looked up.
        context: String,
        /// The failed call.
        #[source]
        source: CloudError,
    },
    /// The ENI is not in a state the node can set up: not attached, in an
    /// unknown subnet, or its device never appeared. Says what to check.
    #[error("{0}")]
    Eni(String),
}

/// Node-side set-up of secondary ENIs (link up, MTU, route table, rules),
/// called by the pool service. Both methods must be idempotent: they are
/// called again for every secondary ENI at start-up and after a crash.
pub trait EniHooks: Send + Sync {
    /// A secondary ENI is attached; called before any pod gets one of its
    /// addresses. An error (a message saying what failed) makes the pool
    /// give the ENI back to EC2.
    fn on_attached<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a>;

    /// A secondary ENI is about to be detached; it has no pods. An error
    /// is logged and does not stop the release.
    fn on_released<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a>;

    /// The node's Kubernetes metadata for the subnet-selection input
    /// (custom networking), when the agent knows it.
    fn node_metadata(&self) -> Option<weft_policy_sdk::subnet::Node> {
        None
    }
    /// Which of `ips` the node still routes to a pod. An address EC2 took
    /// away while a pod held it stays quarantined until it is not.
    fn routed<'a>(&'a self, ips: &'a [Ipv4Addr]) -> HookFuture<'a, Vec<Ipv4Addr>>;
}

/// Hooks that do nothing: for a pool whose ENIs need no node-side set-up
/// (tools, benchmarks, the simulator).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl EniHooks for NoHooks {
    fn on_attached<'a>(&'a self, _eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn on_released<'a>(&'a self, _eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async { Ok(()) })
    }

    fn routed<'a>(&'a self, _ips: &'a [Ipv4Addr]) -> HookFuture<'a, Vec<Ipv4Addr>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
