//! ADD: take a free address at once, or wait (bounded) for the reconciler
//! to add one. Waiting ADDs of a group are served in arrival order.

use super::error::{Blocked, BlockedKind, PoolError};
use super::shared::Shared;
use crate::ipam::{AssignmentKey, IpamError, Placement, PodMeta, SgSet};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How often a waiting ADD looks again without being told (a cooling
/// address becoming free is not an event).
const RECHECK: Duration = Duration::from_millis(250);

/// The ADDs waiting for an address, per group, first come first.
///
/// Only the first of a group tries to take an address, and a new ADD takes
/// one at once only when none waits: an address that comes free goes to
/// the ADD that has waited longest (which is also the one closest to its
/// "try again later"), never to whichever task the runtime wakes first.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    next_ticket: u64,
    queues: BTreeMap<SgSet, VecDeque<u64>>,
}

impl WaitQueue {
    /// How many ADDs of `group` wait.
    pub(crate) fn count(&self, group: &SgSet) -> u32 {
        self.queues
            .get(group)
            .map_or(0, |q| u32::try_from(q.len()).unwrap_or(u32::MAX))
    }

    /// The groups with waiting ADDs.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &SgSet> {
        self.queues.keys()
    }

    fn join(&mut self, group: &SgSet) -> u64 {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.queues
            .entry(group.clone())
            .or_default()
            .push_back(ticket);
        ticket
    }

    fn is_first(&self, group: &SgSet, ticket: u64) -> bool {
        self.queues
            .get(group)
            .and_then(VecDeque::front)
            .is_some_and(|first| *first == ticket)
    }

    fn leave(&mut self, group: &SgSet, ticket: u64) {
        if let Some(queue) = self.queues.get_mut(group) {
            queue.retain(|t| *t != ticket);
            if queue.is_empty() {
                self.queues.remove(group);
            }
        }
    }
}

/// One waiting ADD's place in the queue, for as long as it lives, so that
/// a cancelled ADD leaves it too.
struct PendingAdd<'a> {
    shared: &'a Shared,
    group: SgSet,
    ticket: u64,
}

impl<'a> PendingAdd<'a> {
    fn new(shared: &'a Shared, group: &SgSet) -> Self {
        let ticket = shared.lock().pending.join(group);
        shared.wake.notify_one();
        PendingAdd {
            shared,
            group: group.clone(),
            ticket,
        }
    }

    fn is_first(&self) -> bool {
        self.shared
            .lock()
            .pending
            .is_first(&self.group, self.ticket)
    }
}

impl Drop for PendingAdd<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.leave(&self.group, self.ticket);
        // The next in line looks at once.
        self.shared.notify_changed();
    }
}

/// One attempt: `Ok(None)` when the group has no free address.
fn try_assign(
    shared: &Shared,
    key: &AssignmentKey,
    group: &SgSet,
    pod: &PodMeta,
) -> Result<Option<Placement>, PoolError> {
    if shared.is_stopped() {
        return Err(PoolError::ShutDown);
    }
    let placed = shared
        .lock()
        .store
        .assign(key.clone(), group, pod.clone(), shared.now());
    match placed {
        Ok(placement) => {
            if placement.fresh {
                shared.wake.notify_one();
            }
            Ok(Some(placement))
        }
        Err(crate::state::CommitError::Refused(IpamError::NoFreeAddress { .. })) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// [`super::Pool::assign`].
pub(super) async fn assign(
    shared: &Shared,
    key: AssignmentKey,
    group: &SgSet,
    pod: PodMeta,
) -> Result<Placement, PoolError> {
    let mut changes = shared.changed.subscribe();
    // Another ADD waits for this group: the next address is its, unless
    // this one is a repeat of an ADD already served.
    let may_take = {
        let inner = shared.lock();
        inner.pending.count(group) == 0 || inner.store.datastore().assignment(&key).is_some()
    };
    if may_take && let Some(placement) = try_assign(shared, &key, group, &pod)? {
        shared.metrics.pool("add", "immediate");
        return Ok(placement);
    }
    let started = shared.now().mono;
    let deadline = started + shared.config.add_wait();
    let pending = PendingAdd::new(shared, group);
    tracing::debug!(%key, %group, "no free address; waiting for the reconciler");
    loop {
        let left = deadline.saturating_duration_since(shared.now().mono);
        if left.is_zero() {
            break;
        }
        // A timeout or a closed channel both mean: look again.
        tokio::select! {
            _ = changes.changed() => {}
            () = shared.clock.sleep(left.min(RECHECK)) => {}
        }
        if pending.is_first()
            && let Some(placement) = try_assign(shared, &key, group, &pod)?
        {
            shared.metrics.pool("add", "waited");
            return Ok(placement);
        }
    }
    let reason = shared
        .lock()
        .outcomes
        .get(group)
        .and_then(|o| o.blocked.clone())
        .unwrap_or_else(|| {
            Blocked::new(
                BlockedKind::Pending,
                "the reconciler has not found capacity for this group yet",
            )
        });
    shared.metrics.pool("add", "try-again");
    tracing::warn!(%key, %group, %reason, "ADD found no address within the wait");
    Err(PoolError::TryAgain {
        group: group.clone(),
        waited: shared.now().mono.saturating_duration_since(started),
        reason,
    })
}
