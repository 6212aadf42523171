//! What the API side (ADD/DEL) and the reconciler task share.

use super::clock::PoolClock;
use super::config::PoolConfig;
use super::error::Blocked;
use super::ownership::UnmanagedEni;
use super::wait::WaitQueue;
use crate::cloud::{InstanceLimits, NodeIdentity};
use crate::ipam::{Now, SgSet};
use crate::metrics::Metrics;
use crate::state::{DurableDatastore, StateDir};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;
use tokio::sync::{Notify, watch};

/// The reconciler's last word on one group.
#[derive(Debug, Clone)]
pub(crate) struct GroupOutcome {
    /// When the round ran.
    pub at: SystemTime,
    /// Why the group could not get the addresses it needs, if so.
    pub blocked: Option<Blocked>,
    /// The pool-sizing policy's reason, or what was done.
    pub summary: String,
}

/// The mutable part, behind one mutex that is never held across an await.
pub(crate) struct Inner {
    /// The pool, durable on every assignment.
    pub store: DurableDatastore<StateDir>,
    /// ADDs waiting for an address, by group, in arrival order.
    pub pending: WaitQueue,
    /// The last outcome of every group the reconciler looked at.
    pub outcomes: BTreeMap<SgSet, GroupOutcome>,
    /// ENIs attached to the node that Weft does not manage.
    pub unmanaged: Vec<UnmanagedEni>,
}

/// Shared between [`super::Pool`] and the reconciler task.
pub(crate) struct Shared {
    /// The settings.
    pub config: PoolConfig,
    /// Who this node is.
    pub node: NodeIdentity,
    /// What its instance type allows.
    pub limits: InstanceLimits,
    /// The most addresses the node holds.
    pub max_pods: u32,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where the time comes from.
    pub clock: PoolClock,
    /// The mutable state.
    inner: Mutex<Inner>,
    /// Wakes the reconciler; permits coalesce, so a burst of events costs
    /// one round.
    pub wake: Notify,
    /// Asks the reconciler to stop after its current round.
    pub halt: Notify,
    /// Bumped whenever the pool may have gained an address or a group's
    /// outcome changed: waiting ADDs look again.
    pub changed: watch::Sender<u64>,
    /// Set once the reconciler stopped.
    stopped: AtomicBool,
}

impl Shared {
    /// Shared state around a rebuilt pool.
    pub(super) fn new(
        config: PoolConfig,
        node: NodeIdentity,
        limits: InstanceLimits,
        metrics: Arc<Metrics>,
        clock: PoolClock,
        store: DurableDatastore<StateDir>,
    ) -> Self {
        let limits = config.node_limits(limits);
        Shared {
            max_pods: config.effective_max_pods(&limits),
            config,
            node,
            limits,
            metrics,
            clock,
            inner: Mutex::new(Inner {
                store,
                pending: WaitQueue::default(),
                outcomes: BTreeMap::new(),
                unmanaged: Vec::new(),
            }),
            wake: Notify::new(),
            halt: Notify::new(),
            changed: watch::channel(0).0,
            stopped: AtomicBool::new(false),
        }
    }

    /// Locks the state. A panic while it was held cannot leave the
    /// datastore half-changed (every change is computed on a copy or is a
    /// single step), so a poisoned lock is taken over.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current moment.
    pub(super) fn now(&self) -> Now {
        self.clock.now()
    }

    /// Tells waiting ADDs to look again.
    pub(super) fn notify_changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Marks the reconciler stopped and releases every waiter.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify_changed();
    }

    /// Whether the reconciler stopped.
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The pool-sizing limits the policy sees.
    pub(super) fn policy_limits(&self) -> weft_policy_sdk::pool::InstanceLimits {
        weft_policy_sdk::pool::InstanceLimits {
            max_enis: self.limits.max_enis,
            ipv4_per_eni: self.limits.ipv4_per_eni,
            prefix_delegation: self.config.prefixes_enabled(&self.limits),
            max_pods: self.max_pods,
        }
    }
}
