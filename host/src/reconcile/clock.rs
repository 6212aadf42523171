//! Where the pool service reads the time and sleeps.
//!
//! In the agent both clocks are the system's and sleeps are tokio's.
//! `weftd simulate` runs the same service in virtual time: its clock is the
//! simulator's, the wall clock is a fixed start plus the virtual time
//! elapsed, and every sleep of the pool (the reconciler's resync and
//! backoff, a waiting ADD's re-check) ends when the simulator's clock gets
//! there. So ENI ages, cooldowns, churn windows, backoffs and ADD waits all
//! move with the simulated trace rather than with the machine, and a run
//! never depends on how fast the machine is.

use crate::ipam::Now;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A sleep of the pool.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A clock that moves only when its owner moves it, and sleeps on it.
pub trait VirtualClock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Completes once [`VirtualClock::now`] is `by` later than now.
    fn sleep(&self, by: Duration) -> Sleep<'_>;
}

/// The pool service's source of [`Now`] and of sleeps.
#[derive(Clone, Default)]
pub struct PoolClock {
    /// `None`: the system clocks.
    virtual_time: Option<VirtualTime>,
}

#[derive(Clone)]
struct VirtualTime {
    clock: Arc<dyn VirtualClock>,
    /// The clock's reading and the wall-clock time it stands for.
    start: (Instant, SystemTime),
}

impl PoolClock {
    /// The system clocks (what the agent uses).
    pub(crate) fn system() -> Self {
        PoolClock::default()
    }

    /// Monotonic time and sleeps from `clock`; wall-clock time is
    /// `start_wall` plus the time `clock` advanced since this call.
    pub(crate) fn following(clock: Arc<dyn VirtualClock>, start_wall: SystemTime) -> Self {
        let start = (clock.now(), start_wall);
        PoolClock {
            virtual_time: Some(VirtualTime { clock, start }),
        }
    }

    /// The current moment on both clocks.
    pub(crate) fn now(&self) -> Now {
        match &self.virtual_time {
            None => Now::system(),
            Some(VirtualTime { clock, start }) => {
                let mono = clock.now();
                Now {
                    mono,
                    wall: start.1 + mono.saturating_duration_since(start.0),
                }
            }
        }
    }

    /// Completes `by` later on this clock.
    pub(crate) fn sleep(&self, by: Duration) -> Sleep<'_> {
        match &self.virtual_time {
            None => Box::pin(tokio::time::sleep(by)),
            Some(VirtualTime { clock, .. }) => clock.sleep(by),
        }
    }
}

impl fmt::Debug for PoolClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.virtual_time {
            None => f.write_str("PoolClock::System"),
            Some(v) => write!(f, "PoolClock::Following({:?})", v.clock),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Clock, ManualClock};

    /// A manual clock whose sleeps never end (this test only reads it).
    #[derive(Debug, Default)]
    struct Manual(ManualClock);

    impl VirtualClock for Manual {
        fn now(&self) -> Instant {
            self.0.now()
        }
        fn sleep(&self, _: Duration) -> Sleep<'_> {
            Box::pin(std::future::pending())
        }
    }

    #[test]
    fn a_following_clock_moves_both_clocks_with_its_source_only() {
        let source = Arc::new(Manual::default());
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = PoolClock::following(source.clone(), epoch);
        let t0 = clock.now();
        assert_eq!(t0.wall, epoch);
        source.0.advance(Duration::from_secs(90));
        let t1 = clock.now();
        assert_eq!(t1.mono - t0.mono, Duration::from_secs(90));
        assert_eq!(t1.wall, epoch + Duration::from_secs(90));
    }
}
