//! # predictive-pool: size the pool by demand
//!
//! Keeps as many *free* addresses (neither assigned nor cooling) as the
//! group is likely to need in the next minute, asks EC2 for them in few,
//! large calls, and gives them back slowly.
//!
//! * **Demand.** The pods added in the last minute
//!   (`activity.adds-last-minute`) predict the next minute's ADDs; the
//!   target is `max(min-warm, adds-last-minute) + pending-adds`. Unlike the
//!   VPC CNI's *available* count, cooling addresses do not count as warm:
//!   they cannot be handed out, and counting them is what makes a
//!   once-a-minute CronJob start cold under `WARM_ENI_TARGET`.
//! * **Growing in batches.** When short, it asks for at least `batch`
//!   addresses (or the shortfall, if larger): existing ENIs are filled
//!   lowest device index first, one call each, then new ENIs are created
//!   with what is still needed (at least `batch`, at most a full ENI). EC2
//!   charges a call, not an address, so a few spare addresses per call save
//!   calls on the next burst.
//! * **Releasing slowly.** While pods keep coming (an ADD within
//!   `hold-seconds`) it keeps up to one ENI's worth of free addresses beyond
//!   the target, so a burst that repeats (CronJobs, rollouts, a drained node
//!   refilled) finds its addresses still warm. Once the group has been quiet
//!   for `hold-seconds` it gives back everything above the target. Either
//!   way it releases only when at least `batch` addresses are surplus, as
//!   whole unused ENIs (at least 60 s old, no pod, nothing cooling, never
//!   the primary) where they fit, else as IPs from the highest device index
//!   down.
//!
//! Settings (JSON, kebab-case, all optional): `min-warm` (default 2),
//! `batch` (default 8), `hold-seconds` (default 300).

use serde::Deserialize;
use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{Eni, EniChange, NewEni, PoolDecision, PoolState};
use weft_policy_sdk::settings::parse_settings;

/// An ENI younger than this is never released (as VPC CNI's
/// `minENILifeTime`).
const MIN_ENI_AGE_SECONDS: u64 = 60;

/// Settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Free addresses kept even when nothing happens.
    #[serde(default = "default_min_warm")]
    pub min_warm: u32,
    /// Smallest number of addresses asked for or given back in one go.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Quiet time after the last ADD before the pool shrinks to its target.
    #[serde(default = "default_hold_seconds")]
    pub hold_seconds: u64,
}

fn default_min_warm() -> u32 {
    2
}

fn default_batch() -> u32 {
    8
}

fn default_hold_seconds() -> u64 {
    300
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_warm: default_min_warm(),
            batch: default_batch(),
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
        if settings.batch == 0 {
            return Err("batch must be at least 1".into());
        }
        Ok(PredictivePool { settings })
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        decide(&self.settings, state)
    }
}

/// The decision for one group.
pub fn decide(s: &Settings, state: &PoolState) -> PoolDecision {
    let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
    let free: u32 = state.enis.iter().map(Eni::free).sum();
    let expected = state.activity.adds_last_minute.max(s.min_warm);
    let target = expected + state.pending_adds;
    if free < target {
        return grow(s, state, per_eni, target - free);
    }
    let quiet = state
        .activity
        .seconds_since_last_add
        .is_none_or(|since| since >= s.hold_seconds);
    let keep = if quiet { target } else { target + per_eni };
    let surplus = free - target.min(free);
    let surplus = surplus.saturating_sub(keep - target);
    if surplus < s.batch {
        return PoolDecision {
            reason: format!("{free} free for an expected {target}: warm enough"),
            ..PoolDecision::default()
        };
    }
    shrink(state, surplus, quiet)
}

fn grow(s: &Settings, state: &PoolState, per_eni: u32, short: u32) -> PoolDecision {
    let room = state.limits.max_pods.saturating_sub(state.node_addresses);
    let mut want = short.max(s.batch).min(room);
    let mut decision = PoolDecision {
        reason: format!("{short} short of the expected demand: asking for {want}"),
        ..PoolDecision::default()
    };
    let mut enis: Vec<&Eni> = state.enis.iter().collect();
    enis.sort_by_key(|e| e.device_index);
    for eni in enis {
        let n = per_eni.saturating_sub(eni.ips + eni.prefixes).min(want);
        if n > 0 {
            decision.changes.push(EniChange {
                eni_id: eni.id.clone(),
                add_ips: n,
                ..EniChange::default()
            });
            want -= n;
        }
    }
    let mut enis = state.node_enis;
    while want > 0 && enis < state.limits.max_enis {
        let n = want.max(s.batch).min(per_eni);
        decision.create.push(NewEni {
            ips: n,
            prefixes: 0,
        });
        want = want.saturating_sub(n);
        enis += 1;
    }
    decision
}

fn shrink(state: &PoolState, mut surplus: u32, quiet: bool) -> PoolDecision {
    let mut decision = PoolDecision {
        reason: format!(
            "{surplus} free addresses beyond what the {} group needs: giving them back",
            if quiet { "quiet" } else { "busy" }
        ),
        ..PoolDecision::default()
    };
    let mut enis: Vec<&Eni> = state.enis.iter().collect();
    enis.sort_by_key(|e| std::cmp::Reverse(e.device_index));
    for eni in &enis {
        let unused = eni.device_index != 0
            && eni.age_seconds >= MIN_ENI_AGE_SECONDS
            && eni.assigned == 0
            && eni.cooling == 0;
        if unused && eni.addresses() <= surplus {
            decision.release.push(eni.id.clone());
            surplus -= eni.addresses();
        }
    }
    for eni in enis {
        if surplus == 0 {
            break;
        }
        if decision.release.contains(&eni.id) {
            continue;
        }
        let n = eni.free().min(eni.ips).min(surplus);
        if n > 0 {
            decision.changes.push(EniChange {
                eni_id: eni.id.clone(),
                release_ips: n,
                ..EniChange::default()
            });
            surplus -= n;
        }
    }
    decision
}

weft_policy_sdk::export_pool_sizing!(PredictivePool);

#[cfg(test)]
mod tests;
