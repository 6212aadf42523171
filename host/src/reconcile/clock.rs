//! Where the pool service reads the time.
//!
//! In the agent both clocks are the system's. `weftd simulate` runs the same
//! service in virtual time: its clock follows tokio's (paused) timer, and
//! the wall clock is a fixed start plus the virtual time elapsed, so ENI
//! ages, cooldowns, churn windows, backoffs and ADD waits all move with the
//! simulated trace rather than with the machine.

use crate::cloud::Clock;
use crate::ipam::Now;
use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The pool service's source of [`Now`].
#[derive(Clone, Default)]
pub struct PoolClock {
    /// `None`: the system clocks.
    virtual_time: Option<VirtualTime>,
}

#[derive(Clone)]
struct VirtualTime {
    clock: Arc<dyn Clock>,
    /// The clock's reading and the wall-clock time it stands for.
    start: (Instant, SystemTime),
}

impl PoolClock {
    /// The system clocks (what the agent uses).
    pub fn system() -> Self {
        PoolClock::default()
    }

    /// Monotonic time from `clock`; wall-clock time is `start_wall` plus
    /// the time `clock` advanced since this call.
    pub fn following(clock: Arc<dyn Clock>, start_wall: SystemTime) -> Self {
        let start = (clock.now(), start_wall);
        PoolClock {
            virtual_time: Some(VirtualTime { clock, start }),
        }
    }

    /// The current moment on both clocks.
    pub fn now(&self) -> Now {
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
    use crate::cloud::ManualClock;
    use std::time::Duration;

    #[test]
    fn a_following_clock_moves_both_clocks_with_its_source_only() {
        let source = Arc::new(ManualClock::default());
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = PoolClock::following(source.clone(), epoch);
        let t0 = clock.now();
        assert_eq!(t0.wall, epoch);
        source.advance(Duration::from_secs(90));
        let t1 = clock.now();
        assert_eq!(t1.mono - t0.mono, Duration::from_secs(90));
        assert_eq!(t1.wall, epoch + Duration::from_secs(90));
    }
}
