//! # predictive-pool: size the pool by demand, and by when bursts recur
//!
//! In one sentence: it keeps free as many addresses as pods arrived in the
//! busier of the last two minutes (up to an ENI's worth, plus those
//! waiting); when the last hour shows bursts of ADDs at a regular
//! interval, it has the last burst's worth ready from `lead-minutes` before
//! the next one is due; it grows a whole ENI's room per EC2 call and gives
//! addresses back an unused ENI at a time, never during or just before a
//! burst, keeping the emptied ENI attached so that growing it again is one
//! call.
//!
//! * **Demand.** `max(min-warm, min(adds in the busier of the last two
//!   minutes, one ENI's IPs)) + pending-adds` free addresses (neither
//!   assigned nor cooling: a cooling address cannot be handed out, which is
//!   what makes a once-a-minute CronJob start cold under the VPC CNI's
//!   `WARM_ENI_TARGET`). A burst bigger than an ENI is not expected to
//!   repeat within the minute: its own waiting ADDs grow the pool, and the
//!   forecast prepares for its return. The group's first minute does not
//!   count: its pods are the ones the scheduler held for a new node (see
//!   below), a start and not a rate.
//! * **Recurring bursts.** From the group's churn per minute over the last
//!   hour (`activity.history`, the `pool-sizing-history` world), a minute
//!   with at least `burst-adds` ADDs is busy and a run of busy minutes is a
//!   burst. With two bursts seen, the interval between their starts is the
//!   period; from `lead-minutes` before the next start is due until
//!   `lead-minutes` after it, the target is at least the largest number of
//!   ADDs either burst had in one minute. A burst that does not come by
//!   then is no longer expected. Without history (a component of the older
//!   `pool-sizing` world's host) the policy is demand-only.
//! * **A new node.** A node that has never had a pod (none assigned, no ADD
//!   seen), or had its first less than a minute ago, is receiving the pods
//!   the scheduler held for it: until then the group holds at least
//!   `start-warm` addresses (default: half its ENIs' worth) counting those
//!   assigned.
//! * **Growing.** EC2 charges a call, not an address: every ENI it touches
//!   is filled to its room in one `AssignPrivateIpAddresses`, lowest device
//!   index first, and new ENIs are created full.
//! * **Releasing.** Only addresses of ENIs no pod uses (nothing assigned or
//!   cooling; the datastore packs pods onto the fullest ENI, so ENIs empty
//!   out) go back, all of an ENI's IPs in one call, and only while what
//!   stays free still meets the target; nothing goes back while a burst
//!   arrives (the last minute had `burst-adds`) or while a recurring one is
//!   due within twice `lead-minutes` (plus one), so a forecast that moves by
//!   a minute does not give addresses back only to ask for them again. The
//!   emptied ENI stays attached (it
//!   holds no pod address; growing it again is one call, not a create and
//!   an attach) until the group has had no ADD for `hold-seconds`.
//!
//! Settings (JSON, kebab-case, all optional): `min-warm` (default 4),
//! `start-warm` (default half the node's ENIs' worth of IPs), `burst-adds`
//! (default 6), `lead-minutes` (default 2), `hold-seconds` (default 1800).

use serde::Deserialize;
use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{Eni, EniChange, Minute, NewEni, PoolDecision, PoolState};
use weft_policy_sdk::settings::parse_settings;

mod forecast;

pub use forecast::{Burst, bursts, expected_burst};

/// An ENI younger than this is never released (as VPC CNI's
/// `minENILifeTime`).
const MIN_ENI_AGE_SECONDS: u64 = 60;

/// Minutes of history the host keeps (the `pool-sizing-history` world).
const HISTORY_MINUTES: usize = 60;

/// Settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Free addresses kept even when nothing happens.
    #[serde(default = "default_min_warm")]
    pub min_warm: u32,
    /// Free addresses on a node that never had a pod; `None`: half of the
    /// node's ENIs' worth.
    #[serde(default)]
    pub start_warm: Option<u32>,
    /// ADDs in one minute that make it part of a burst.
    #[serde(default = "default_burst_adds")]
    pub burst_adds: u32,
    /// How long before (and after) a recurring burst is due its addresses
    /// are kept ready.
    #[serde(default = "default_lead_minutes")]
    pub lead_minutes: u32,
    /// Quiet time (no ADD) after which emptied ENIs are detached.
    #[serde(default = "default_hold_seconds")]
    pub hold_seconds: u64,
}

fn default_min_warm() -> u32 {
    4
}

fn default_burst_adds() -> u32 {
    6
}

fn default_lead_minutes() -> u32 {
    2
}

fn default_hold_seconds() -> u64 {
    1800
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_warm: default_min_warm(),
            start_warm: None,
            burst_adds: default_burst_adds(),
            lead_minutes: default_lead_minutes(),
            hold_seconds: default_hold_seconds(),
        }
    }
}

/// The policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PredictivePool {
    settings: Settings,
}

impl PoolSizing for PredictivePool {
    fn configure(settings: &str) -> Result<Self, String> {
        let settings: Settings = parse_settings(settings)?;
        if settings.burst_adds == 0 {
            return Err("burst-adds must be at least 1 (a minute without ADDs is no burst)".into());
        }
        Ok(PredictivePool { settings })
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        decide(&self.settings, state)
    }
}

/// The free addresses the group should have now, and why.
pub fn target(s: &Settings, state: &PoolState) -> (u32, String) {
    let history = &state.activity.history;
    let recent = if history.is_empty() {
        state.activity.adds_last_minute
    } else {
        // While the history is shorter than the hour, its oldest minute is
        // the group's first: the pods the scheduler held for the node
        // (`start-warm` is for them), a start and not a rate.
        let rate = if history.len() < HISTORY_MINUTES {
            &history[..history.len() - 1]
        } else {
            history.as_slice()
        };
        rate.iter().take(2).map(|m| m.adds).max().unwrap_or(0)
    };
    // Bigger bursts are served by their waiting ADDs and the forecast.
    let recent = recent.min(state.limits.ipv4_per_eni.saturating_sub(1));
    let mut target = s.min_warm.max(recent);
    let mut why = format!("{recent} recent ADDs");
    if let Some(burst) = expected_burst(history, s.burst_adds, s.lead_minutes) {
        if burst > target {
            why = format!(
                "a burst of {burst} ADDs due (every {} min)",
                period(history, s)
            );
        }
        target = target.max(burst);
    }
    let mut target = target + state.pending_adds;
    // Never had a pod, or had its first less than a minute ago (the
    // history starts with the group's first event).
    let new_node = (state.node_assigned == 0 && state.activity.seconds_since_last_add.is_none())
        || history.len() == 1;
    if new_node {
        let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
        let assigned: u32 = state.enis.iter().map(|e| e.assigned).sum();
        let start = s
            .start_warm
            .unwrap_or(per_eni * (state.limits.max_enis / 2))
            .saturating_sub(assigned);
        // The pods held for it are counted in `start` (waiting or not).
        if start > target {
            why = "a new node".to_owned();
        }
        target = target.max(start);
    }
    (target, why)
}

fn period(history: &[Minute], s: &Settings) -> u32 {
    match bursts(history, s.burst_adds).as_slice() {
        [last, before, ..] => before.start - last.start,
        _ => 0,
    }
}

/// The decision for one group.
pub fn decide(s: &Settings, state: &PoolState) -> PoolDecision {
    let free: u32 = state.enis.iter().map(Eni::free).sum();
    let (target, why) = target(s, state);
    if free < target {
        return grow(state, target - free, &why);
    }
    let reason = format!("{free} free for {target} ({why})");
    // A burst in progress has not shown its size yet; one due soon would
    // take the addresses again.
    let history = &state.activity.history;
    if state.activity.adds_last_minute >= s.burst_adds
        || expected_burst(history, s.burst_adds, 2 * s.lead_minutes + 1).is_some()
    {
        return PoolDecision {
            reason: format!("{reason}: a burst is arriving or due, nothing given back"),
            ..PoolDecision::default()
        };
    }
    let quiet = state
        .activity
        .seconds_since_last_add
        .is_none_or(|since| since >= s.hold_seconds);
    shrink(state, free - target, quiet, &reason)
}

fn grow(state: &PoolState, short: u32, why: &str) -> PoolDecision {
    let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
    let mut room = state.limits.max_pods.saturating_sub(state.node_addresses);
    let mut want = short.min(room);
    let mut decision = PoolDecision {
        reason: format!("{short} short ({why}): filling ENIs"),
        ..PoolDecision::default()
    };
    let mut enis: Vec<&Eni> = state.enis.iter().collect();
    enis.sort_by_key(|e| e.device_index);
    for eni in enis {
        if want == 0 {
            break;
        }
        let n = per_eni.saturating_sub(eni.ips + eni.prefixes).min(room);
        if n > 0 {
            decision.changes.push(EniChange {
                eni_id: eni.id.clone(),
                add_ips: n,
                ..EniChange::default()
            });
            want = want.saturating_sub(n);
            room -= n;
        }
    }
    let mut enis = state.node_enis;
    while want > 0 && enis < state.limits.max_enis {
        let n = per_eni.min(room);
        if n == 0 {
            break;
        }
        decision.create.push(NewEni {
            ips: n,
            prefixes: 0,
        });
        want = want.saturating_sub(n);
        room -= n;
        enis += 1;
    }
    decision
}

/// Gives back whole unused ENIs' IPs (at most `surplus`), highest device
/// index first; when quiet, releases ENIs left without addresses.
fn shrink(state: &PoolState, mut surplus: u32, quiet: bool, why: &str) -> PoolDecision {
    let mut decision = PoolDecision::default();
    let mut enis: Vec<&Eni> = state.enis.iter().collect();
    enis.sort_by_key(|e| std::cmp::Reverse(e.device_index));
    for eni in enis {
        let unused = eni.device_index != 0 && eni.assigned == 0 && eni.cooling == 0;
        if !unused || eni.prefixes > 0 {
            continue;
        }
        if eni.ips > 0 && eni.ips <= surplus {
            decision.changes.push(EniChange {
                eni_id: eni.id.clone(),
                release_ips: eni.ips,
                ..EniChange::default()
            });
            surplus -= eni.ips;
        } else if eni.ips == 0 && quiet && eni.age_seconds >= MIN_ENI_AGE_SECONDS {
            decision.release.push(eni.id.clone());
        }
    }
    decision.reason = if decision.is_noop() {
        format!("{why}: warm enough")
    } else {
        format!("{why}: giving unused ENIs' addresses back")
    };
    decision
}

weft_policy_sdk::export_pool_sizing!(PredictivePool);

#[cfg(test)]
mod tests;
