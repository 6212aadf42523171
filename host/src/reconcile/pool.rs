//! [`Pool`]: the handle the agent's API handlers use.

use super::clock::PoolClock;
use super::config::PoolConfig;
use super::driver::{Driver, RoundReport, RoundRequest};
use super::error::PoolError;
use super::hooks::EniHooks;
use super::recovery::recover;
use super::shared::Shared;
use super::snapshot::PoolSnapshot;
use super::wait;
use crate::cloud::Cloud;
use crate::ipam::{Assignment, AssignmentKey, Placement, PodMeta, SgSet};
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::state::{DurableDatastore, StateDir};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use weft_policy_sdk::pool::PoolState;

/// What the pool service needs.
pub struct PoolDeps {
    /// EC2, or the simulator.
    pub cloud: Arc<dyn Cloud>,
    /// The pool-sizing and subnet-selection policies.
    pub policies: Arc<PolicySet>,
    /// The state directory (checkpoint and journal); the pool keeps its lock.
    pub state: StateDir,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Node-side set-up of secondary ENIs.
    pub hooks: Arc<dyn EniHooks>,
    /// Settings.
    pub config: PoolConfig,
}

/// The node's address pool: pod ADDs and DELs on one side, a reconciler
/// task that sizes the pool through the policies and EC2 on the other.
///
/// * [`Pool::assign`] answers at once from a free address; otherwise it
///   wakes the reconciler and waits (at most
///   [`PoolConfig::add_wait_ms`]), then fails with
///   [`PoolError::TryAgain`] naming why the group could not grow.
///   Concurrent ADDs of a group are counted as pending adds of one round,
///   so they share one scale-up.
/// * [`Pool::release`] is idempotent.
/// * Every assignment and release is on disk before it is answered; every
///   EC2 change is journaled before it is sent, so [`Pool::start`] after a
///   crash finishes or undoes it.
pub struct Pool {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<RoundRequest>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Pool {
    /// Recovers the pool (cloud inventory, journal, checkpoint; every
    /// correction is logged) and starts the reconciler, which runs its
    /// first round at once. Must be called inside a tokio runtime.
    pub async fn start(deps: PoolDeps) -> crate::Result<Arc<Pool>> {
        Self::start_with_clock(deps, PoolClock::system()).await
    }

    /// [`Pool::start`] on another clock: `weftd simulate` runs the pool in
    /// virtual time.
    pub(crate) async fn start_with_clock(
        deps: PoolDeps,
        clock: PoolClock,
    ) -> crate::Result<Arc<Pool>> {
        let PoolDeps {
            cloud,
            policies,
            state,
            metrics,
            hooks,
            config,
        } = deps;
        let recovered = recover(cloud.as_ref(), hooks.as_ref(), &state, &config, &clock).await?;
        let shared = Arc::new(Shared::new(
            config,
            recovered.node,
            recovered.limits,
            metrics,
            clock,
            DurableDatastore::new(recovered.store, state),
        ));
        shared.lock().unmanaged = recovered.unmanaged;
        let driver = Driver::new(
            shared.clone(),
            cloud,
            policies,
            hooks,
            recovered.journal,
            recovered.enis,
        );
        let (requests, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(driver.run(receiver));
        shared.wake.notify_one();
        Ok(Arc::new(Pool {
            shared,
            requests,
            task: Mutex::new(Some(task)),
        }))
    }

    /// Gives pod interface `key` an address on an ENI of `group`. A key
    /// that already holds one gets it back (`fresh: false`).
    pub async fn assign(
        &self,
        key: AssignmentKey,
        group: &SgSet,
        pod: PodMeta,
    ) -> Result<Placement, PoolError> {
        wait::assign(&self.shared, key, group, pod).await
    }

    /// Releases the address of `key` (it cools down before reuse). `None`
    /// for an unknown key: DEL is idempotent.
    pub fn release(&self, key: &AssignmentKey) -> Result<Option<Assignment>, PoolError> {
        if self.shared.is_stopped() {
            return Err(PoolError::ShutDown);
        }
        let released = self.shared.lock().store.release(key, self.shared.now())?;
        if released.is_some() {
            self.shared.wake.notify_one();
        }
        Ok(released)
    }

    /// Every assignment, by key.
    pub fn assignments(&self) -> Vec<Assignment> {
        let mut all: Vec<Assignment> = self
            .shared
            .lock()
            .store
            .datastore()
            .assignments()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// The assignment of `key`, if it holds an address.
    pub fn assignment(&self, key: &AssignmentKey) -> Option<Assignment> {
        self.shared
            .lock()
            .store
            .datastore()
            .assignment(key)
            .cloned()
    }

    /// Where address `ip` lives (its ENI), if the pool holds it.
    pub(crate) fn placement(&self, ip: Ipv4Addr) -> Option<Placement> {
        let inner = self.shared.lock();
        let store = inner.store.datastore();
        let info = store.address(ip, self.shared.now().mono)?;
        let eni = store.eni(&info.eni_id)?;
        Some(Placement {
            ip,
            eni_id: eni.id,
            device_index: eni.device_index,
            primary_eni: eni.primary,
            prefix: info.prefix,
            fresh: false,
        })
    }

    /// Every group's pool exactly as the pool-sizing policy sees it now.
    pub(crate) fn pool_states(&self) -> Vec<PoolState> {
        let limits = self.shared.policy_limits();
        let inner = self.shared.lock();
        let store = inner.store.datastore();
        let now = self.shared.now();
        store
            .groups()
            .iter()
            .map(|group| {
                let pending = inner.pending.count(group);
                store.pool_state(group, &limits, pending, now)
            })
            .collect()
    }

    /// Why the pool cannot serve ADDs, or `None` when it can.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.shared.is_stopped() {
            return Some("the pool service is shut down".to_owned());
        }
        // The reconciler marks the pool stopped whenever it returns; ended
        // without that, it panicked, and the pool can no longer grow.
        let ended = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(JoinHandle::is_finished);
        ended.then(|| {
            "the pool's reconciler stopped unexpectedly (it panicked; weftd's log has the \
             panic): restart weftd"
                .to_owned()
        })
    }

    /// The node's default security-group set.
    pub fn default_group(&self) -> SgSet {
        self.shared
            .lock()
            .store
            .datastore()
            .config()
            .default_group
            .clone()
    }

    /// The pool as it is now, for introspection.
    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot::of(
            &self.shared.lock(),
            self.shared.max_pods,
            self.shared.now().mono,
        )
    }

    /// Runs one reconcile round after every event so far and returns what
    /// it did.
    pub async fn reconcile(&self) -> Result<RoundReport, PoolError> {
        let (reply, done) = oneshot::channel();
        self.requests.send(reply).map_err(|_| PoolError::ShutDown)?;
        done.await.map_err(|_| PoolError::ShutDown)
    }

    /// Stops the reconciler once its current round is done (an EC2 call in
    /// flight is answered and applied first). Waiting ADDs then fail with
    /// [`PoolError::ShutDown`]. The state directory's lock is released when
    /// the last handle is dropped.
    pub async fn shutdown(&self) {
        self.shared.halt.notify_one();
        self.join(false).await;
    }

    /// Stops the reconciler at once, as a crash would: an EC2 operation in
    /// flight is abandoned, and the next start finishes or undoes it from
    /// its journal entry.
    #[cfg(feature = "testing")]
    pub async fn abort(&self) {
        self.join(true).await;
    }

    async fn join(&self, abort: bool) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            if abort {
                task.abort();
            }
            let _ = task.await;
        }
        self.shared.stop();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}
