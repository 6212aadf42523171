//! ADD: take a free address at once, or wait (bounded) for the reconciler
//! to add one.

use super::error::{Blocked, BlockedKind, PoolError};
use super::shared::Shared;
use crate::ipam::{AssignmentKey, IpamError, Now, Placement, PodMeta, SgSet};
use std::time::{Duration, Instant};

/// How often a waiting ADD looks again without being told (a cooling
/// address becoming free is not an event).
const RECHECK: Duration = Duration::from_millis(250);

/// Counts one waiting ADD of a group for as long as it lives, so that a
/// cancelled ADD stops counting too.
struct PendingAdd<'a> {
    shared: &'a Shared,
    group: SgSet,
}

impl<'a> PendingAdd<'a> {
    fn new(shared: &'a Shared, group: &SgSet) -> Self {
        *shared.lock().pending.entry(group.clone()).or_default() += 1;
        shared.wake.notify_one();
        PendingAdd {
            shared,
            group: group.clone(),
        }
    }
}

impl Drop for PendingAdd<'_> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Some(n) = inner.pending.get_mut(&self.group) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.pending.remove(&self.group);
            }
        }
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
        .assign(key.clone(), group, pod.clone(), Now::system());
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
    if let Some(placement) = try_assign(shared, &key, group, &pod)? {
        shared.metrics.pool("add", "immediate");
        return Ok(placement);
    }
    let started = Instant::now();
    let deadline = started + shared.config.add_wait();
    let _pending = PendingAdd::new(shared, group);
    tracing::debug!(%key, %group, "no free address; waiting for the reconciler");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // A timeout or a closed channel both mean: look again.
        let _ = tokio::time::timeout(left.min(RECHECK), changes.changed()).await;
        if let Some(placement) = try_assign(shared, &key, group, &pod)? {
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
        waited: started.elapsed(),
        reason,
    })
}
