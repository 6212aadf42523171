//! Recurring bursts in a group's churn history.

use weft_policy_sdk::pool::Minute;

/// A run of busy minutes (each with at least the busy threshold of ADDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Seconds ago it came: its first minute's median ADD (a burst's ADDs
    /// come within seconds, so while they are most of the minute's, an
    /// unrelated ADD earlier in it does not move the median). An age
    /// outside that minute's window is taken to its nearest end; without
    /// one (the host sends one for every minute with an ADD), the
    /// window's older end.
    pub age: u32,
    /// The most addresses it had taken at the end of one of its minutes:
    /// its ADDs less its REMOVEs so far (a rollout's new pods replace old
    /// ones, whose addresses come back; a fan-out's do not).
    pub size: u32,
}

/// The burst the last two predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forecast {
    /// The addresses it will take: what the last one took.
    pub size: u32,
    /// Seconds between the last two.
    pub period: u32,
}

/// The ADDs of a usual minute: the (upper) median over `history`. A
/// CronJob's minute is usual however many pods it starts; a fan-out that
/// takes a few minutes of the hour is not.
pub fn usual_adds(history: &[Minute]) -> u32 {
    let mut adds: Vec<u32> = history.iter().map(|m| m.adds).collect();
    adds.sort_unstable();
    adds.get(adds.len() / 2).copied().unwrap_or(0)
}

/// The bursts in `history` (most recent minute first), most recent first:
/// runs of minutes with at least `busy` ADDs.
pub fn bursts(history: &[Minute], busy: u32) -> Vec<Burst> {
    let mut found: Vec<Burst> = Vec::new();
    let mut open: Option<(Burst, Vec<&Minute>)> = None;
    for (ago, minute) in (0u32..).zip(history) {
        if minute.adds >= busy {
            let (burst, minutes) = open.get_or_insert((Burst { age: 0, size: 0 }, Vec::new()));
            let window = ago.saturating_mul(60);
            let older_end = window.saturating_add(59);
            burst.age = minute
                .median_add_age
                .map_or(older_end, |age| age.clamp(window, older_end));
            minutes.push(minute);
        } else if let Some(burst) = open.take() {
            found.push(sized(burst));
        }
    }
    found.extend(open.map(sized));
    found
}

/// A burst with its size, from its minutes (most recent first).
fn sized((mut burst, minutes): (Burst, Vec<&Minute>)) -> Burst {
    let mut taken = 0i64;
    for minute in minutes.iter().rev() {
        taken += i64::from(minute.adds) - i64::from(minute.removes);
        burst.size = burst.size.max(u32::try_from(taken).unwrap_or(0));
    }
    burst
}

/// The burst due now, if the last two bursts recur: the time between them
/// is the period, and the next is expected one period after the last, from
/// `early` seconds before until `late` seconds after.
pub fn expected_burst(history: &[Minute], busy: u32, early: u32, late: u32) -> Option<Forecast> {
    let [last, before, ..] = bursts(history, busy)[..] else {
        return None;
    };
    // Two bursts have a quiet minute between them, and each age is inside
    // its minute: the earlier one is older.
    let period = before.age.checked_sub(last.age)?;
    let due_in = i64::from(period) - i64::from(last.age);
    (-i64::from(late)..=i64::from(early))
        .contains(&due_in)
        .then_some(Forecast {
            size: last.size,
            period,
        })
}
