//! Per-group churn: the last minute's counters and the last hour minute by
//! minute.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use weft_policy_sdk::pool;

/// One minute, the window of the counters and of each history entry.
const MINUTE: Duration = Duration::from_secs(60);
/// Minutes of history kept.
const HISTORY_MINUTES: u32 = 60;
/// Most events kept per group (an hour of an assignment or release every
/// 0.36 s); beyond that the oldest go, and the oldest minutes undercount.
const MAX_EVENTS: usize = 10_000;

/// Whether an event was an assignment or a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Add,
    Remove,
}

/// Assignments and releases of one group during the last hour.
#[derive(Debug, Clone, Default)]
pub(crate) struct Churn {
    events: VecDeque<(Instant, Event)>,
    last_add: Option<Instant>,
    /// When the first event was recorded: the history covers the minutes
    /// since.
    first: Option<Instant>,
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
        let kept = MINUTE * HISTORY_MINUTES;
        while let Some(&(at, _)) = self.events.front() {
            if now.saturating_duration_since(at) < kept && self.events.len() < MAX_EVENTS {
                break;
            }
            self.events.pop_front();
        }
        self.events.push_back((now, event));
        self.first.get_or_insert(now);
    }

    /// The counters and the history as the pool-sizing policy sees them.
    pub(crate) fn snapshot(&self, now: Instant) -> pool::Activity {
        let minutes = self.first.map_or(0, |first| {
            let seen = now.saturating_duration_since(first).as_secs() / MINUTE.as_secs() + 1;
            u32::try_from(seen).map_or(HISTORY_MINUTES, |m| m.min(HISTORY_MINUTES))
        });
        let mut history = vec![pool::Minute::default(); minutes as usize];
        // The ADDs' ages (whole seconds) per minute.
        let mut add_ages: Vec<Vec<u32>> = vec![Vec::new(); history.len()];
        for &(at, event) in &self.events {
            let age = now.saturating_duration_since(at).as_secs();
            let Some(i) = usize::try_from(age / MINUTE.as_secs())
                .ok()
                .filter(|&i| i < history.len())
            else {
                continue;
            };
            match event {
                Event::Add => {
                    history[i].adds += 1;
                    add_ages[i].push(u32::try_from(age).unwrap_or(u32::MAX));
                }
                Event::Remove => history[i].removes += 1,
            }
        }
        for (minute, ages) in history.iter_mut().zip(&mut add_ages) {
            // Youngest first: of two middle ones, the later index is the
            // earlier ADD.
            ages.sort_unstable();
            minute.median_add_age = ages.get(ages.len() / 2).copied();
        }
        let last = history.first().copied().unwrap_or_default();
        pool::Activity {
            adds_last_minute: last.adds,
            removes_last_minute: last.removes,
            seconds_since_last_add: self
                .last_add
                .map(|at| now.saturating_duration_since(at).as_secs()),
            history,
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
    fn history_counts_each_minute_back_from_now_for_an_hour() {
        let t0 = Instant::now();
        let mut churn = Churn::default();
        let minute = |adds, removes| (adds, removes);
        assert!(churn.snapshot(t0).history.is_empty());
        // A burst of 5 at t0, 2 releases at +100 s, 1 ADD at +200 s.
        for _ in 0..5 {
            churn.add(t0);
        }
        let counts = |h: Vec<pool::Minute>| -> Vec<(u32, u32)> {
            h.iter().map(|m| (m.adds, m.removes)).collect()
        };
        let history = counts(churn.snapshot(t0 + Duration::from_secs(30)).history);
        assert_eq!(history, vec![minute(5, 0)]);
        churn.remove(t0 + Duration::from_secs(100));
        churn.remove(t0 + Duration::from_secs(100));
        churn.add(t0 + Duration::from_secs(200));
        let at = |s| counts(churn.snapshot(t0 + Duration::from_secs(s)).history);
        // At +210 s: (150, 210] has the ADD, (90, 150] the releases,
        // (30, 90] nothing, the burst is in the oldest minute.
        assert_eq!(
            at(210),
            vec![minute(1, 0), minute(0, 2), minute(0, 0), minute(5, 0)]
        );
        // After an hour the history stays 60 minutes long; the burst is gone.
        let late = at(3700);
        assert_eq!(late.len(), 60);
        assert_eq!(late.iter().map(|m| m.0).sum::<u32>(), 1);
    }

    #[test]
    fn each_minute_tells_when_its_median_add_came() {
        let t0 = Instant::now();
        let mut churn = Churn::default();
        // One ADD at t0, then a burst of 5 at +40..+44 s, a release at +50 s.
        churn.add(t0);
        for s in 40..45 {
            churn.add(t0 + Duration::from_secs(s));
        }
        churn.remove(t0 + Duration::from_secs(50));
        let ages = |churn: &Churn, s| -> Vec<Option<u32>> {
            let history = churn.snapshot(t0 + Duration::from_secs(s)).history;
            history.iter().map(|m| m.median_add_age).collect()
        };
        // At +59 s the minute's 6 ADDs are 59, 19..15 s old: the median
        // (the earlier of the two middle ones) is the burst's second, 18 s.
        assert_eq!(ages(&churn, 59), vec![Some(18)]);
        // At +100 s minute 1 has the lone ADD and the burst's first (100
        // and 60 s old), minute 0 the other four (59..56 s).
        assert_eq!(ages(&churn, 100), vec![Some(58), Some(100)]);
        // A minute with a release and no ADD has no median.
        churn.remove(t0 + Duration::from_secs(200));
        assert_eq!(ages(&churn, 230), vec![None, None, None, Some(189)]);
    }

    #[test]
    fn old_events_are_pruned_on_record() {
        let t0 = Instant::now();
        let mut churn = Churn::default();
        for s in 0..4000 {
            churn.add(t0 + Duration::from_secs(s));
        }
        assert_eq!(churn.events.len(), 3600);
        for _ in 0..2 * MAX_EVENTS {
            churn.add(t0 + Duration::from_secs(4000));
        }
        assert_eq!(churn.events.len(), MAX_EVENTS);
    }
}
