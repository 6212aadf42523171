//! Sleeps in virtual time: a future that completes once the simulation's
//! [`ManualClock`] reaches its deadline. The player advances the clock to
//! the earliest deadline when nothing else is due, so an EC2 call that
//! takes 2 s holds up exactly what waits for it, while pod ADDs and DELs
//! keep arriving.

use crate::cloud::{Clock, ManualClock};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The pending virtual sleeps of one run.
#[derive(Debug)]
pub(crate) struct Timers {
    clock: Arc<ManualClock>,
    /// (deadline, sequence) -> who waits.
    waiting: Mutex<(u64, BTreeMap<(Instant, u64), Waker>)>,
}

impl Timers {
    pub(crate) fn new(clock: Arc<ManualClock>) -> Self {
        Timers {
            clock,
            waiting: Mutex::default(),
        }
    }

    /// Completes `by` later in virtual time.
    pub(crate) async fn sleep(&self, by: Duration) {
        let deadline = self.clock.now() + by;
        let mut registered = false;
        poll_fn(|cx| {
            if self.clock.now() >= deadline {
                return Poll::Ready(());
            }
            if !registered {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                waiting.0 += 1;
                let seq = waiting.0;
                waiting.1.insert((deadline, seq), cx.waker().clone());
                registered = true;
            }
            Poll::Pending
        })
        .await;
    }

    /// The earliest deadline still waited for.
    pub(crate) fn next(&self) -> Option<Instant> {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.1.keys().next().map(|&(at, _)| at)
    }

    /// Wakes every sleep whose deadline has come.
    pub(crate) fn fire(&self) {
        let now = self.clock.now();
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = waiting.1.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
        }
    }
}
