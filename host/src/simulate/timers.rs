//! Sleeps in virtual time: futures that complete once the simulation's
//! [`ManualClock`] reaches their deadline. The player advances the clock to
//! the earliest deadline when nothing else is due, so an EC2 call that
//! takes 2 s holds up exactly what waits for it, while pod ADDs and DELs
//! keep arriving; the pool's own sleeps (resync, backoff, a waiting ADD's
//! re-check) run on the same timers.

use crate::cloud::{Clock, ManualClock};
use crate::reconcile::{Sleep, VirtualClock};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// (deadline, sequence): sleeps with the same deadline wake in the order
/// they began.
type Key = (Instant, u64);

/// The pending virtual sleeps of one run.
#[derive(Debug)]
pub(crate) struct Timers {
    clock: Arc<ManualClock>,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    seq: u64,
    wakers: BTreeMap<Key, Waker>,
}

impl Timers {
    pub(crate) fn new(clock: Arc<ManualClock>) -> Self {
        Timers {
            clock,
            waiting: Mutex::default(),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The earliest deadline still waited for.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.waiting().wakers.keys().next().map(|&(at, _)| at)
    }

    /// Moves the clock to the earliest pending sleep's end and wakes it;
    /// false when none is pending.
    pub(crate) fn advance(&self) -> bool {
        let Some(at) = self.next() else {
            return false;
        };
        let now = self.clock.now();
        if at > now {
            self.clock.advance(at - now);
        }
        self.fire();
        true
    }

    /// Waits for `task`, moving the clock to the next sleep's end whenever
    /// every task woken so far has run and `task` has not ended.
    #[cfg(test)]
    pub(crate) async fn until_done<T>(
        &self,
        task: tokio::task::JoinHandle<T>,
    ) -> Result<T, tokio::task::JoinError> {
        loop {
            run_woken().await;
            if task.is_finished() {
                return task.await;
            }
            self.advance();
        }
    }

    /// Wakes every sleep whose deadline has come.
    fn fire(&self) {
        let now = self.clock.now();
        let mut waiting = self.waiting();
        while let Some(entry) = waiting.wakers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
        }
    }
}

impl VirtualClock for Timers {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn sleep(&self, by: Duration) -> Sleep<'_> {
        let mut waiting = self.waiting();
        waiting.seq += 1;
        Box::pin(VirtualSleep {
            timers: self,
            key: (self.clock.now() + by, waiting.seq),
            registered: false,
        })
    }
}

/// Lets every task woken so far run (the runtime is single-threaded, so
/// they run in a fixed order).
pub(crate) async fn run_woken() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// One sleep; a sleep dropped before its deadline (the other branch of a
/// `select!` won) leaves no timer behind.
struct VirtualSleep<'a> {
    timers: &'a Timers,
    key: Key,
    registered: bool,
}

impl Future for VirtualSleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timers.clock.now() >= self.key.0 {
            self.timers.waiting().wakers.remove(&self.key);
            self.registered = false;
            return Poll::Ready(());
        }
        let key = self.key;
        self.timers.waiting().wakers.insert(key, cx.waker().clone());
        self.registered = true;
        Poll::Pending
    }
}

impl Drop for VirtualSleep<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.timers.waiting().wakers.remove(&self.key);
        }
    }
}
