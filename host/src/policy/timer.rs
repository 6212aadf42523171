//! The engine's sandboxes and its one timer thread.
//!
//! A call holds one of [`SANDBOXES`] slots, as many as the pooling
//! allocator has component instances, from before its store is made until
//! the store is dropped: a call that finds them all taken waits for one,
//! within its deadline, instead of failing to instantiate.
//!
//! While any slot is held, the thread advances the engine's epoch every
//! [`EPOCH_TICK`] (guest code stops at its epoch deadline) and marks the
//! calls past their due time overdue. Epoch interruption cannot stop host
//! code: a call stuck there (a bug in a host function; none of the granted
//! ones blocks since `super::wasi`) is logged while it is stuck, and its
//! answer is discarded when it returns, as at a deadline. While no slot is
//! held the thread waits on a condition variable, so an idle node pays no
//! wake-ups; the call that takes the first slot wakes it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// Calls (component instances) that can run at once on one engine.
pub(super) const SANDBOXES: usize = 64;
/// How often the epoch advances while a call runs; deadlines are whole
/// ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The sandboxes and the timer thread, which stops when this is dropped.
pub(crate) struct Timer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    engine: Engine,
    state: Mutex<State>,
    /// Wakes the waiting thread: a slot was taken, or it must stop.
    wake: Condvar,
    /// Wakes a call waiting for a slot: one was freed.
    freed: Condvar,
    /// Times the thread woke up.
    #[cfg(feature = "testing")]
    wakeups: std::sync::atomic::AtomicU64,
}

struct State {
    /// The call holding each slot.
    slots: [Option<Held>; SANDBOXES],
    /// The slots no call holds.
    free: Vec<usize>,
    /// Calls waiting for a slot.
    waiting: usize,
    /// Whether the thread waits for a slot to be taken.
    parked: bool,
    stop: bool,
}

struct Held {
    policy: Arc<str>,
    due: Instant,
    overdue: bool,
}

impl Timer {
    pub(super) fn start(engine: &Engine) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            state: Mutex::new(State {
                slots: std::array::from_fn(|_| None),
                free: (0..SANDBOXES).rev().collect(),
                waiting: 0,
                parked: false,
                stop: false,
            }),
            wake: Condvar::new(),
            freed: Condvar::new(),
            #[cfg(feature = "testing")]
            wakeups: Default::default(),
        });
        let timer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("weft-policy-timer".into())
            .spawn(move || timer.run())?;
        Ok(Timer {
            shared,
            thread: Some(thread),
        })
    }

    /// Takes a slot for a call of `policy` that started at `started`,
    /// waiting for one until `deadline` after it (`None` when none came
    /// free by then); the call is overdue `limit` after it.
    pub(super) fn enter(
        &self,
        policy: &Arc<str>,
        started: Instant,
        deadline: Duration,
        limit: Duration,
    ) -> Option<Sandbox<'_>> {
        let shared = &*self.shared;
        let give_up = started + deadline;
        let mut state = shared.lock();
        let index = loop {
            if let Some(index) = state.free.pop() {
                break index;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state.waiting += 1;
            state = shared
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        };
        state.slots[index] = Some(Held {
            policy: policy.clone(),
            due: started + limit,
            overdue: false,
        });
        if state.parked {
            shared.wake.notify_one();
        }
        Some(Sandbox { shared, index })
    }

    /// Times the thread woke up so far.
    #[cfg(feature = "testing")]
    pub(super) fn wakeups(&self) -> u64 {
        self.shared
            .wakeups
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // It waits, or sleeps one tick at most, before seeing the flag.
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        let mut state = self.lock();
        while !state.stop {
            if state.free.len() == SANDBOXES {
                state.parked = true;
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.parked = false;
            } else {
                drop(state);
                std::thread::sleep(EPOCH_TICK);
                self.engine.increment_epoch();
                state = self.lock();
                mark_overdue(&mut state, Instant::now());
            }
            #[cfg(feature = "testing")]
            self.wakeups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Frees slot `index`; `true` when its call was overdue.
    fn release(&self, index: usize) -> bool {
        let mut state = self.lock();
        let held = state.slots[index].take();
        state.free.push(index);
        if state.waiting > 0 {
            self.freed.notify_one();
        }
        held.is_some_and(|held| held.overdue)
    }
}

fn mark_overdue(state: &mut State, now: Instant) {
    for held in state.slots.iter_mut().flatten() {
        if !held.overdue && now > held.due {
            held.overdue = true;
            tracing::error!(
                policy = %held.policy,
                "a policy call is stuck in host code past its limit; its answer will be discarded"
            );
        }
    }
}

/// A slot held by a call, freed when dropped.
pub(super) struct Sandbox<'a> {
    shared: &'a Shared,
    index: usize,
}

impl Sandbox<'_> {
    /// Frees the slot: `true` when the call ran past its limit, so that
    /// its answer must be discarded.
    pub(super) fn leave(self) -> bool {
        let overdue = self.shared.release(self.index);
        std::mem::forget(self);
        overdue
    }
}

impl Drop for Sandbox<'_> {
    fn drop(&mut self) {
        self.shared.release(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_stuck_in_host_code_past_its_limit_is_discarded() {
        let timer = Timer::start(&Engine::default()).expect("timer");
        let policy: Arc<str> = "stuck".into();
        let limit = Duration::from_millis(10);
        let sandbox = timer
            .enter(&policy, Instant::now(), limit, limit)
            .expect("a free sandbox");
        // A host call that does not return in time, as `wasi:io/poll.block`
        // on a real clock would not: the timer marks it overdue meanwhile.
        std::thread::sleep(Duration::from_millis(500));
        assert!(sandbox.leave(), "overdue");
        // The slot's next call is watched afresh.
        let limit = Duration::from_secs(60);
        let sandbox = timer
            .enter(&policy, Instant::now(), limit, limit)
            .expect("a free sandbox");
        assert!(!sandbox.leave());
    }
}
