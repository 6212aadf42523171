//! Time as the datastore sees it: always passed in, never read.

use std::time::{Duration, Instant, SystemTime};
use weft_cni::boottime::BootInstant;

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
    /// The node's boot clock, which the plugin reads too: what orders an
    /// assignment against a DEL the plugin kept. `None` on virtual clocks
    /// (simulations) and where it cannot be read.
    pub boot: Option<BootInstant>,
}

impl Now {
    /// Reads both system clocks. The datastore never calls this: its callers
    /// read the clock once per operation and pass the result in, which is
    /// what lets tests drive time.
    pub fn system() -> Self {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
            boot: BootInstant::now().ok(),
        }
    }

    /// The same moment `by` later on both clocks.
    pub fn advance(self, by: Duration) -> Self {
        Now {
            mono: self.mono + by,
            wall: self.wall + by,
            boot: self.boot.map(|b| BootInstant {
                boottime_ns: b
                    .boottime_ns
                    .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX)),
                ..b
            }),
        }
    }

    /// Wall-clock time elapsed since `then`; zero if `then` is in the future
    /// (a clock step backwards).
    pub(crate) fn wall_since(&self, then: SystemTime) -> Duration {
        self.wall.duration_since(then).unwrap_or(Duration::ZERO)
    }
}
