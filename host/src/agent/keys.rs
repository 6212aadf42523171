//! One CNI operation at a time per attachment (container id and interface):
//! a DEL that arrives while the ADD of the same attachment is still waiting
//! for an address (its plugin may have given up) waits for that ADD and then
//! undoes it, instead of finding nothing and letting the ADD wire a pod
//! nobody will ever delete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Key = (String, String);

/// The attachments being operated on, each with its lock. An entry lives
/// only while someone holds or waits for it.
#[derive(Debug, Default)]
pub(crate) struct AttachmentLocks {
    locks: Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
}

/// Holds one attachment; dropping it lets the next operation on it run.
#[derive(Debug)]
pub(crate) struct AttachmentGuard<'a> {
    locks: &'a AttachmentLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl AttachmentLocks {
    /// Waits until no other operation holds attachment
    /// `container_id`/`ifname`, then holds it.
    pub(crate) async fn lock(&self, container_id: &str, ifname: &str) -> AttachmentGuard<'_> {
        let key = (container_id.to_owned(), ifname.to_owned());
        let lock = self.entry(&key);
        let guard = lock.lock_owned().await;
        AttachmentGuard {
            locks: self,
            key,
            guard: Some(guard),
        }
    }

    /// Holds the attachment if nobody else does.
    pub(crate) fn try_lock(&self, container_id: &str, ifname: &str) -> Option<AttachmentGuard<'_>> {
        let key = (container_id.to_owned(), ifname.to_owned());
        let lock = self.entry(&key);
        let guard = lock.try_lock_owned().ok();
        let held = AttachmentGuard {
            locks: self,
            key,
            guard,
        };
        // A failed attempt still drops through `Drop`, which tidies the map.
        held.guard.is_some().then_some(held)
    }

    fn entry(&self, key: &Key) -> Arc<AsyncMutex<()>> {
        self.map()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(AsyncMutex::new(())))
            .clone()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<AsyncMutex<()>>>> {
        self.locks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many attachments are held or waited for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for AttachmentGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // Only the map's own reference left: nobody holds or waits for it.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn operations_on_one_attachment_run_one_at_a_time() {
        let locks = Arc::new(AttachmentLocks::default());
        let held = locks.lock("ctr", "eth0").await;
        assert!(locks.try_lock("ctr", "eth0").is_none());
        // Another interface of the same container is independent.
        assert!(locks.try_lock("ctr", "net1").is_some());
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("ctr", "eth0").await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter runs once the first is done")
            .unwrap();
        assert_eq!(locks.len(), 0, "entries go when nobody needs them");
    }
}
