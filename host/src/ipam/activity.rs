//! Per-group churn counters over a sliding minute.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use weft_policy_sdk::pool;

/// The window the counters cover.
const WINDOW: Duration = Duration::from_secs(60);

/// Whether an event was an assignment or a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Add,
    Remove,
}

/// Assignments and releases of one group during the last minute.
#[derive(Debug, Clone, Default)]
pub(crate) struct Churn {
    events: VecDeque<(Instant, Event)>,
    last_add: Option<Instant>,
}

impl Churn {
    /// Records an assignment.
    pub(crate) fn add(&mut self, now: Instant) {
        self.push(now, Event::Add);
        self.last_add = Some(now);
    }

    /// Records a release.
    pub(crate) fn remove(&mut self, now: Instant) {
        self.push(now, Event::Remove);
    }

    fn push(&mut self, now: Instant, event: Event) {
        while let Some(&(at, _)) = self.events.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.events.pop_front();
        }
        self.events.push_back((now, event));
    }

    /// The counters as the pool-sizing policy sees them.
    pub(crate) fn snapshot(&self, now: Instant) -> pool::Activity {
        let recent = |kind: Event| {
            let n = self
                .events
                .iter()
                .filter(|&&(at, e)| e == kind && now.saturating_duration_since(at) < WINDOW)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        pool::Activity {
            adds_last_minute: recent(Event::Add),
            removes_last_minute: recent(Event::Remove),
            seconds_since_last_add: self
                .last_add
                .map(|at| now.saturating_duration_since(at).as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_last_minute() {
        let t0 = Instant::now();
        let mut churn = Churn::default();
        churn.add(t0);
        churn.add(t0 + Duration::from_secs(30));
        churn.remove(t0 + Duration::from_secs(40));
        let at = |s| churn.snapshot(t0 + Duration::from_secs(s));
        assert_eq!(at(50).adds_last_minute, 2);
        assert_eq!(at(50).removes_last_minute, 1);
        assert_eq!(at(50).seconds_since_last_add, Some(20));
        assert_eq!(at(65).adds_last_minute, 1);
        assert_eq!(at(101).removes_last_minute, 0);
        assert_eq!(at(200).seconds_since_last_add, Some(170));
        assert_eq!(Churn::default().snapshot(t0).seconds_since_last_add, None);
    }

    #[test]
    fn old_events_are_pruned_on_record() {
        let t0 = Instant::now();
        let mut churn = Churn::default();
        for s in 0..100 {
            churn.add(t0 + Duration::from_secs(s));
        }
        assert_eq!(churn.events.len(), 60);
    }
}
