//! The device index a new ENI attaches at. Creates run concurrently and a
//! read of the node's ENIs may not show an attachment for a while, so the
//! indexes this client is attaching or attached are held here: until the
//! attach fails, the ENI is deleted, or [`HOLD`] has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long an attached ENI's index stays held when nothing deletes it:
/// EC2's reads show an attachment within seconds.
const HOLD: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct DeviceIndexes {
    held: Mutex<BTreeMap<u32, Held>>,
}

struct Held {
    /// `None` while the create and attach are in flight.
    eni_id: Option<String>,
    since: Instant,
}

impl DeviceIndexes {
    /// Takes the lowest index in `1..max` that neither `used` (what a read
    /// shows attached) nor a held index occupies. `Err` carries how many
    /// indexes are occupied.
    pub(super) fn take(
        &self,
        used: &BTreeSet<u32>,
        max: u32,
        now: Instant,
    ) -> Result<Taken<'_>, usize> {
        let mut held = self.lock();
        held.retain(|_, h| h.eni_id.is_none() || now.duration_since(h.since) < HOLD);
        let Some(index) = (1..max).find(|i| !used.contains(i) && !held.contains_key(i)) else {
            return Err(used.union(&held.keys().copied().collect()).count());
        };
        held.insert(
            index,
            Held {
                eni_id: None,
                since: now,
            },
        );
        Ok(Taken {
            indexes: self,
            index,
            kept: false,
        })
    }

    /// `eni_id` was deleted: its index is free once reads stop showing it.
    pub(super) fn deleted(&self, eni_id: &str) {
        self.lock()
            .retain(|_, h| h.eni_id.as_deref() != Some(eni_id));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An index held for one create; given back when dropped unless kept.
pub(super) struct Taken<'a> {
    indexes: &'a DeviceIndexes,
    index: u32,
    kept: bool,
}

impl Taken<'_> {
    pub(super) fn index(&self) -> u32 {
        self.index
    }

    /// `eni_id` is attached at this index.
    pub(super) fn keep(mut self, eni_id: &str, now: Instant) {
        if let Some(held) = self.indexes.lock().get_mut(&self.index) {
            held.eni_id = Some(eni_id.to_owned());
            held.since = now;
        }
        self.kept = true;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.indexes.lock().remove(&self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(indexes: &[u32]) -> BTreeSet<u32> {
        indexes.iter().copied().collect()
    }

    #[test]
    fn concurrent_creates_take_distinct_indexes_past_what_the_read_shows() {
        let indexes = DeviceIndexes::default();
        let now = Instant::now();
        let read = used(&[0, 1]);
        let a = indexes.take(&read, 4, now).expect("free");
        let b = indexes.take(&read, 4, now).expect("free");
        assert_eq!((a.index(), b.index()), (2, 3));
        assert_eq!(indexes.take(&read, 4, now).err(), Some(4));
    }

    #[test]
    fn a_failed_attach_gives_its_index_back() {
        let indexes = DeviceIndexes::default();
        let now = Instant::now();
        drop(indexes.take(&used(&[0]), 3, now).expect("free"));
        assert_eq!(indexes.take(&used(&[0]), 3, now).expect("free").index(), 1);
    }

    #[test]
    fn an_attached_index_is_held_from_a_stale_read_until_deleted_or_its_hold_ends() {
        let indexes = DeviceIndexes::default();
        let now = Instant::now();
        let stale = used(&[0]);
        indexes
            .take(&stale, 3, now)
            .expect("free")
            .keep("eni-a", now);
        let next = indexes.take(&stale, 3, now).expect("free");
        assert_eq!(next.index(), 2, "the stale read does not show eni-a at 1");
        drop(next);
        indexes.deleted("eni-a");
        assert_eq!(indexes.take(&stale, 3, now).expect("free").index(), 1);

        indexes
            .take(&stale, 3, now)
            .expect("free")
            .keep("eni-b", now);
        let later = now + HOLD;
        assert_eq!(indexes.take(&stale, 3, later).expect("free").index(), 1);
    }
}
