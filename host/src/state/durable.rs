//! The datastore with its checkpoint: pod assignments and releases take
//! effect only once they are on disk.

use super::{Checkpoint, CommitError, StateDir, StateError};
use crate::ipam::{Assignment, AssignmentKey, Datastore, Now, Placement, PodMeta, SgSet};

/// Where checkpoints are written: the [`StateDir`] in production, a fake in
/// tests that need writes to fail.
pub trait CheckpointSink {
    /// Replaces the stored checkpoint, durably, or fails without changing
    /// it.
    fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StateError>;
}

impl CheckpointSink for StateDir {
    fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        StateDir::save_checkpoint(self, checkpoint)
    }
}

/// A borrowed sink, so the agent can keep its [`StateDir`] for the journal.
impl<T: CheckpointSink> CheckpointSink for &T {
    fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        (**self).save_checkpoint(checkpoint)
    }
}

/// A [`Datastore`] whose assignments are durable before they are answered.
///
/// [`DurableDatastore::assign`] and [`DurableDatastore::release`] compute
/// the next state on a copy, write its checkpoint, and only then adopt it:
/// if the write fails, the pool is exactly as before and the caller fails
/// the CNI call (the runtime retries it).
#[derive(Debug)]
pub struct DurableDatastore<S = StateDir> {
    store: Datastore,
    sink: S,
}

impl<S: CheckpointSink> DurableDatastore<S> {
    /// Wraps `store`, whose assignments `sink` already holds (e.g. a
    /// datastore just rebuilt from that checkpoint).
    pub fn new(store: Datastore, sink: S) -> Self {
        DurableDatastore { store, sink }
    }

    /// The pool.
    pub fn datastore(&self) -> &Datastore {
        &self.store
    }

    /// The pool, for the changes the checkpoint does not record: applying
    /// cloud results and scale-down reservations. Assignments made through
    /// this reference are not persisted; use [`DurableDatastore::assign`].
    pub(crate) fn datastore_mut(&mut self) -> &mut Datastore {
        &mut self.store
    }

    /// Where checkpoints go.
    pub(crate) fn sink(&self) -> &S {
        &self.sink
    }

    /// Applies `change` to a copy of the pool, persists the copy if the
    /// change asks for it, and adopts it.
    fn commit<T, E>(
        &mut self,
        now: Now,
        change: impl FnOnce(&mut Datastore) -> Result<(T, bool), E>,
    ) -> Result<T, CommitError>
    where
        CommitError: From<E>,
    {
        let mut next = self.store.clone();
        let (out, changed) = change(&mut next)?;
        if changed {
            self.sink.save_checkpoint(&Checkpoint::of(&next, now))?;
            self.store = next;
        }
        Ok(out)
    }

    /// [`Datastore::assign`], durable before it returns. A repeated ADD
    /// (same key) writes nothing.
    pub fn assign(
        &mut self,
        key: AssignmentKey,
        group: &SgSet,
        pod: PodMeta,
        now: Now,
    ) -> Result<Placement, CommitError> {
        self.commit(now, |store| {
            store.assign(key, group, pod, now).map(|p| {
                let fresh = p.fresh;
                (p, fresh)
            })
        })
    }

    /// [`Datastore::release`], durable before it returns. An unknown key
    /// writes nothing and returns `None`.
    pub fn release(
        &mut self,
        key: &AssignmentKey,
        now: Now,
    ) -> Result<Option<Assignment>, CommitError> {
        self.commit(now, |store| {
            let released = store.release(key, now);
            let changed = released.is_some();
            Ok::<_, CommitError>((released, changed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{Eni, IpamConfig};
    use std::cell::{Cell, RefCell};
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    /// Keeps the last checkpoint in memory; fails while `fail` is set.
    #[derive(Default)]
    struct Sink {
        fail: Cell<bool>,
        saved: RefCell<Option<Checkpoint>>,
        writes: Cell<u32>,
    }

    impl CheckpointSink for Sink {
        fn save_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
            if self.fail.get() {
                return Err(StateError::Io {
                    action: "write",
                    path: PathBuf::from("/state/ipam-checkpoint.json"),
                    source: std::io::Error::other("disk full"),
                });
            }
            self.writes.set(self.writes.get() + 1);
            *self.saved.borrow_mut() = Some(checkpoint.clone());
            Ok(())
        }
    }

    fn pool(now: Now) -> DurableDatastore<Sink> {
        let group = SgSet::new(["sg-1"]);
        let mut store = Datastore::new(IpamConfig::new(group.clone()));
        store
            .add_eni(Eni {
                id: "eni-0".into(),
                device_index: 0,
                subnet_id: "subnet-1".into(),
                mac: "02:00:00:00:00:01".into(),
                primary: true,
                primary_ip: Ipv4Addr::new(10, 0, 0, 1),
                security_groups: group,
                ips: vec![Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 0, 11)],
                prefixes: vec![],
                attached_at: now.wall,
            })
            .unwrap();
        DurableDatastore::new(store, Sink::default())
    }

    fn saved(pool: &DurableDatastore<Sink>) -> Checkpoint {
        pool.sink().saved.borrow().clone().unwrap()
    }

    fn key(c: &str) -> AssignmentKey {
        AssignmentKey::new("weft", c, "eth0")
    }

    #[test]
    fn every_assignment_and_release_is_on_disk_before_it_returns() {
        let now = Now::system();
        let mut pool = pool(now);
        let group = SgSet::new(["sg-1"]);
        let placed = pool
            .assign(key("a"), &group, PodMeta::default(), now)
            .unwrap();
        assert_eq!(saved(&pool).allocations.len(), 1);
        assert_eq!(saved(&pool).allocations[0].ip, placed.ip);
        // A repeated ADD and an unknown DEL write nothing.
        pool.assign(key("a"), &group, PodMeta::default(), now)
            .unwrap();
        assert_eq!(pool.release(&key("zz"), now).unwrap(), None);
        assert_eq!(pool.sink().writes.get(), 1);
        pool.release(&key("a"), now).unwrap().unwrap();
        assert!(saved(&pool).allocations.is_empty());
        assert_eq!(saved(&pool).cooling[0].ip, placed.ip);
        assert_eq!(saved(&pool), Checkpoint::of(pool.datastore(), now));
    }

    #[test]
    fn a_failed_write_leaves_the_pool_unchanged() {
        let now = Now::system();
        let mut pool = pool(now);
        let group = SgSet::new(["sg-1"]);
        pool.assign(key("a"), &group, PodMeta::default(), now)
            .unwrap();
        pool.sink().fail.set(true);
        let err = pool
            .assign(key("b"), &group, PodMeta::default(), now)
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(pool.datastore().assignment(&key("b")).is_none());
        assert_eq!(pool.datastore().free_count(&group, now.mono), 1);
        assert!(pool.release(&key("a"), now).is_err());
        assert!(pool.datastore().assignment(&key("a")).is_some());
        // A refused assignment is reported as such, with nothing written.
        pool.sink().fail.set(false);
        pool.assign(key("b"), &group, PodMeta::default(), now)
            .unwrap();
        let err = pool
            .assign(key("c"), &group, PodMeta::default(), now)
            .unwrap_err();
        assert!(matches!(
            err,
            CommitError::Refused(crate::ipam::IpamError::NoFreeAddress { .. })
        ));
        assert_eq!(pool.sink().writes.get(), 2);
    }
}
