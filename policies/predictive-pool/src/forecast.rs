//! Recurring bursts in a group's churn history.

use weft_policy_sdk::pool::Minute;

/// A run of busy minutes (each with at least `burst-adds` ADDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Minutes ago its first minute was (index in the history).
    pub start: u32,
    /// Minutes ago its last minute was.
    pub end: u32,
    /// The most ADDs it had in one minute.
    pub peak: u32,
}

/// The bursts in `history` (most recent minute first), most recent first.
pub fn bursts(history: &[Minute], burst_adds: u32) -> Vec<Burst> {
    let mut found: Vec<Burst> = Vec::new();
    let mut open: Option<Burst> = None;
    for (ago, minute) in (0u32..).zip(history) {
        if minute.adds >= burst_adds {
            let burst = open.get_or_insert(Burst {
                start: ago,
                end: ago,
                peak: 0,
            });
            burst.start = ago;
            burst.peak = burst.peak.max(minute.adds);
        } else if let Some(burst) = open.take() {
            found.push(burst);
        }
    }
    found.extend(open);
    found
}

/// The ADDs of the burst due now, if the last two bursts recur: the
/// interval between their starts is the period, and the next start is
/// expected one period after the last, give or take `lead` minutes. The
/// size is the larger peak of the two.
pub fn expected_burst(history: &[Minute], burst_adds: u32, lead: u32) -> Option<u32> {
    let [last, before, ..] = bursts(history, burst_adds)[..] else {
        return None;
    };
    let period = before.start - last.start;
    let due_in = i64::from(period) - i64::from(last.start);
    (due_in.abs() <= i64::from(lead)).then_some(last.peak.max(before.peak))
}
