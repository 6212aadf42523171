//! Time as the datastore sees it: always passed in, never read.

use std::time::{Duration, Instant, SystemTime};

/// One moment, on both clocks. Cooldowns and churn use the monotonic clock
/// (immune to wall-clock jumps); timestamps that outlive the process
/// (assignment times, release times in the checkpoint, ENI attach times from
/// EC2) use the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Wall-clock time.
    pub wall: SystemTime,
}

impl Now {
    /// Reads both system clocks. The datastore never calls this: its callers
    /// read the clock once per operation and pass the result in, which is
    /// what lets tests drive time.
    pub fn system() -> Self {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The same moment `by` later on both clocks.
    pub fn advance(self, by: Duration) -> Self {
        Now {
            mono: self.mono + by,
            wall: self.wall + by,
        }
    }

    /// Wall-clock time elapsed since `then`; zero if `then` is in the future
    /// (a clock step backwards).
    pub(crate) fn wall_since(&self, then: SystemTime) -> Duration {
        self.wall.duration_since(then).unwrap_or(Duration::ZERO)
    }
}
