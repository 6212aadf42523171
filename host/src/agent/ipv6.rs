//! IPv6 mode (`[pool] ip-family = "ipv6"`): the primary ENI's /80 prefix,
//! delegated once, and the pods' addresses from it, checkpointed like the
//! IPv4 ones.
//!
//! At start the agent reads the primary ENI's IPv6 prefixes from the cloud
//! and asks for one /80 only when it has none. A lost answer is safe: the
//! start fails, and the next start finds the prefix on the ENI. When the ENI
//! has several prefixes, the one the checkpoint names is kept.
//!
//! With IPv4 egress on, every pod also holds a node-local IPv4 address
//! (checkpointed with its IPv6 one); the IPv4 cursor survives restarts
//! while the range stays the same.

use crate::Result;
use crate::cloud::{Cloud, NodeIdentity};
use crate::ipam::{AssignmentKey, Ipv6Assignment, Ipv6Block, Now, PodMeta};
use crate::state::{CommitError, DurableIpv6Block, Ipv6Checkpoint, StateError};
use ipnet::Ipv4Net;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The pods' IPv6 addresses.
#[derive(Debug)]
pub(super) struct Ipv6Pods {
    store: Mutex<DurableIpv6Block>,
}

impl Ipv6Pods {
    /// The primary ENI's prefix (delegated now if it has none) with the
    /// assignments of `checkpoint`, and IPv4 egress addresses of
    /// `ipv4_egress` when that is on; what they do not hold is dropped and
    /// logged.
    pub(super) async fn start(
        cloud: &dyn Cloud,
        node: &NodeIdentity,
        checkpoint: PathBuf,
        ipv4_egress: Option<Ipv4Net>,
    ) -> Result<Self> {
        let eni = &node.primary_eni_id;
        let saved = Ipv6Checkpoint::load(&checkpoint)?;
        let prefixes = cloud.ipv6_prefixes(eni).await?;
        let kept = saved
            .as_ref()
            .filter(|s| s.eni_id == *eni)
            .and_then(|s| prefixes.iter().find(|p| **p == s.prefix));
        let prefix = match kept.or(prefixes.first()) {
            Some(prefix) => *prefix,
            None => {
                let prefix = cloud.assign_ipv6_prefix(eni).await?;
                tracing::info!(%prefix, %eni, "delegated an IPv6 prefix to the primary ENI");
                prefix
            }
        };
        let saved_ipv4 = saved.as_ref().and_then(|s| s.ipv4_egress);
        let (next, allocations) = match saved {
            Some(saved) if saved.prefix == prefix => (saved.next, saved.allocations),
            Some(saved) => (1, saved.allocations),
            None => (1, Vec::new()),
        };
        let mut block = Ipv6Block::new(prefix, eni.clone());
        if let Some(range) = ipv4_egress {
            let next = saved_ipv4
                .filter(|(saved, _)| *saved == range)
                .map_or(0, |(_, next)| next);
            block = block.with_ipv4_egress(range, next);
        }
        let (block, dropped) = Ipv6Block::restore(block, next, allocations);
        for d in dropped {
            let held = &d.held;
            let what = if d.kept_ipv6 {
                "dropped the IPv4 egress address of an assignment (its IPv6 address is kept)"
            } else {
                "dropped assignment"
            };
            tracing::warn!(key = %held.key, ip = %held.ip, ipv4 = ?held.ipv4, pod = %held.pod, %prefix, reason = d.reason, "{what}");
        }
        tracing::info!(%prefix, pods = block.assignments().count(), "IPv6 mode: pods get addresses of the primary ENI's prefix");
        Ok(Ipv6Pods {
            store: Mutex::new(DurableIpv6Block::new(block, checkpoint)?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, DurableIpv6Block> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An address (and an IPv4 egress address) for `key`, on disk before it
    /// returns; the same for a repeated ADD. Returns the assignment and
    /// whether it is new.
    pub(super) fn assign(
        &self,
        key: AssignmentKey,
        pod: PodMeta,
    ) -> std::result::Result<(Ipv6Assignment, bool), CommitError> {
        self.lock().assign(key, pod, Now::system())
    }

    /// Releases what `key` holds, on disk before it returns.
    pub(super) fn release(
        &self,
        key: &AssignmentKey,
    ) -> std::result::Result<Option<Ipv6Assignment>, StateError> {
        self.lock().release(key)
    }

    /// What `key` holds.
    pub(super) fn assignment(&self, key: &AssignmentKey) -> Option<Ipv6Assignment> {
        self.lock().block().assignment(key).cloned()
    }

    /// Every assignment.
    pub(super) fn assignments(&self) -> Vec<Ipv6Assignment> {
        self.lock().block().assignments().cloned().collect()
    }
}
