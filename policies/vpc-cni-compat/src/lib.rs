//! # vpc-cni-compat: the Amazon VPC CNI's pool algorithm
//!
//! The anchor `weftd simulate` compares other policies with: the decisions
//! `ipamd` (aws/amazon-vpc-cni-k8s, `pkg/ipamd/ipamd.go` and
//! `pkg/ipamd/datastore/data_store.go`) takes in one pass of its pool
//! manager, re-expressed over Weft's pool-sizing input. Secondary-IP mode;
//! the settings are the VPC CNI variables of the same names.
//!
//! What it follows, function by function:
//!
//! * `isDatastorePoolTooLow` / `datastoreTargetState`: *available* is
//!   total minus assigned (cooling addresses count as available, as in
//!   `DataStoreStats.AvailableAddresses`). With `warm-ip-target` or
//!   `minimum-ip-target` the pool is short by `max(warm − available,
//!   minimum − total)` and over by `max(min(available − warm, total −
//!   minimum), 0)`; otherwise it is low when `available < warm-eni-target ×
//!   IPs per ENI` (or nothing is available with a target of 0). No growth
//!   once the node holds max-pods addresses.
//! * `increaseDatastorePool` → `tryAssignIPs`: the first ENI (lowest device
//!   index) that is not full gets `min(room, to_allocate)` IPs in **one**
//!   call, `to_allocate` being a whole ENI's worth, or the shortfall when an
//!   IP target is set. Only when no ENI has room: `tryAllocateENI` creates
//!   **one** ENI (with `GetENIResourcesToAllocate` IPs: a full ENI, or the
//!   shortfall), if `hasRoomForEni`.
//! * `isDatastorePoolTooHigh` → `tryUnassignCidrsFromAll`: only with an IP
//!   target; gives back `over` unassigned IPs, ENI by ENI.
//! * `shouldRemoveExtraENIs` → `RemoveUnusedENIFromStore` /
//!   `getDeletableENI`: with an IP target always looked at, otherwise only
//!   when `available ≥ (warm-eni-target + 1) × IPs per ENI`; frees at most
//!   **one** ENI per pass: not the primary, at least 60 s old
//!   (`minENILifeTime`), no cooling address, no pod, and not needed by the
//!   other ENIs to meet `warm-ip-target` (`isRequiredForWarmIPTarget`) or
//!   `minimum-ip-target` (`isRequiredForMinimumIPTarget`).
//! * `ipamd` knows nothing of pods waiting for an address: `pending-adds`
//!   and `activity` are ignored.
//!
//! What a stateless policy cannot reproduce, and how Weft's host stands
//! in: `ipamd` runs this pass every 5 s (`ipPoolMonitorInterval`) and
//! shrinks at most every 30 s (`decreaseIPPoolInterval`); Weft asks after
//! every ADD/DEL and on its resync period, and a policy keeps no memory
//! between calls, so one action per call is the closest equivalent (the
//! host's own throttling backoff and growth hold stand in for the
//! cooldowns after EC2 errors). Prefix delegation and custom networking are
//! out of scope here: the built-in `warm-pool` covers them.

use serde::Deserialize;
use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{EniChange, NewEni, PoolDecision, PoolState};
use weft_policy_sdk::settings::parse_settings;

/// `minENILifeTime` in the VPC CNI datastore.
const MIN_ENI_LIFE_SECONDS: u64 = 60;

/// Settings: the VPC CNI environment variables (kebab-case); 0 is unset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// `WARM_ENI_TARGET` (default 1).
    #[serde(default = "one")]
    pub warm_eni_target: u32,
    /// `WARM_IP_TARGET`.
    #[serde(default)]
    pub warm_ip_target: u32,
    /// `MINIMUM_IP_TARGET`.
    #[serde(default)]
    pub minimum_ip_target: u32,
}

fn one() -> u32 {
    1
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warm_eni_target: 1,
            warm_ip_target: 0,
            minimum_ip_target: 0,
        }
    }
}

impl Settings {
    /// `warmIPTargetsDefined`.
    fn ip_targets(&self) -> bool {
        self.warm_ip_target > 0 || self.minimum_ip_target > 0
    }
}

/// The policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcCniCompat {
    settings: Settings,
}

impl PoolSizing for VpcCniCompat {
    fn configure(settings: &str) -> Result<Self, String> {
        Ok(VpcCniCompat {
            settings: parse_settings(settings)?,
        })
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        decide(&self.settings, state)
    }
}

/// Pool totals as `GetIPStats` counts them.
struct Stats {
    total: u32,
    assigned: u32,
}

impl Stats {
    fn of(state: &PoolState) -> Self {
        Stats {
            total: state.enis.iter().map(|e| e.ips).sum(),
            assigned: state.enis.iter().map(|e| e.assigned).sum(),
        }
    }

    fn available(&self) -> u32 {
        self.total.saturating_sub(self.assigned)
    }
}

/// `datastoreTargetState`: (short, over), only meaningful with IP targets.
fn target_state(s: &Settings, stats: &Stats) -> (u32, u32) {
    let available = stats.available();
    let short = s
        .warm_ip_target
        .saturating_sub(available)
        .max(s.minimum_ip_target.saturating_sub(stats.total));
    let over = available
        .saturating_sub(s.warm_ip_target)
        .min(stats.total.saturating_sub(s.minimum_ip_target));
    (short, over)
}

/// One pass of `updateIPPoolIfRequired` for the group.
pub fn decide(s: &Settings, state: &PoolState) -> PoolDecision {
    let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
    let stats = Stats::of(state);
    let (short, over) = target_state(s, &stats);
    let low = if state.node_addresses >= state.limits.max_pods {
        false
    } else if s.ip_targets() {
        short > 0
    } else {
        let available = stats.available();
        available < per_eni * s.warm_eni_target || (s.warm_eni_target == 0 && available == 0)
    };
    let mut decision = PoolDecision::default();
    if low {
        grow(s, state, per_eni, short, &mut decision);
    } else if s.ip_targets() && over > 0 {
        shrink_ips(state, over, &mut decision);
    }
    let remove_extra = s.ip_targets() || stats.available() >= (s.warm_eni_target + 1) * per_eni;
    if remove_extra
        && decision.changes.iter().all(|c| c.add_ips == 0)
        && decision.create.is_empty()
        && let Some(eni) = deletable_eni(s, state, &decision)
    {
        decision.release.push(eni);
    }
    if decision.reason.is_empty() {
        decision.reason = format!(
            "vpc-cni: total {} assigned {} available {}: within targets",
            stats.total,
            stats.assigned,
            stats.available()
        );
    }
    decision
}

/// `tryAssignIPs`, else `tryAllocateENI`.
fn grow(s: &Settings, state: &PoolState, per_eni: u32, short: u32, decision: &mut PoolDecision) {
    let to_allocate = if s.ip_targets() { short } else { per_eni };
    let room_left = state.limits.max_pods.saturating_sub(state.node_addresses);
    let mut enis: Vec<_> = state.enis.iter().collect();
    enis.sort_by_key(|e| e.device_index);
    if let Some(eni) = enis.iter().find(|e| e.ips < per_eni) {
        let n = (per_eni - eni.ips).min(to_allocate).min(room_left);
        if n > 0 {
            decision.changes.push(EniChange {
                eni_id: eni.id.clone(),
                add_ips: n,
                ..EniChange::default()
            });
            decision.reason = format!("vpc-cni tryAssignIPs: {n} IPs on {}", eni.id);
        }
        return;
    }
    if state.node_enis < state.limits.max_enis {
        let n = if s.ip_targets() {
            short.min(per_eni)
        } else {
            per_eni
        }
        .min(room_left);
        if n > 0 {
            decision.create.push(NewEni {
                ips: n,
                prefixes: 0,
            });
            decision.reason = format!("vpc-cni tryAllocateENI: new ENI with {n} IPs");
        }
    }
}

/// `tryUnassignCidrsFromAll`: `over` unassigned IPs, ENI by ENI (highest
/// device index first; ipamd walks a Go map, in no set order).
fn shrink_ips(state: &PoolState, mut over: u32, decision: &mut PoolDecision) {
    let mut enis: Vec<_> = state.enis.iter().collect();
    enis.sort_by_key(|e| std::cmp::Reverse(e.device_index));
    for eni in enis {
        let freeable = eni.free();
        let n = over.min(freeable);
        if n == 0 {
            continue;
        }
        decision.changes.push(EniChange {
            eni_id: eni.id.clone(),
            release_ips: n,
            ..EniChange::default()
        });
        over -= n;
        if over == 0 {
            break;
        }
    }
    if !decision.changes.is_empty() {
        let n: u32 = decision.changes.iter().map(|c| c.release_ips).sum();
        decision.reason = format!("vpc-cni decreaseDatastorePool: {n} IPs over the warm target");
    }
}

/// `getDeletableENI`, counting what this decision already gives back.
fn deletable_eni(s: &Settings, state: &PoolState, decision: &PoolDecision) -> Option<String> {
    let released = |id: &str| {
        decision
            .changes
            .iter()
            .filter(|c| c.eni_id == id)
            .map(|c| c.release_ips)
            .sum::<u32>()
    };
    let ips = |e: &weft_policy_sdk::pool::Eni| e.ips - released(&e.id).min(e.ips);
    let warm = |e: &weft_policy_sdk::pool::Eni| ips(e).saturating_sub(e.assigned);
    let mut enis: Vec<_> = state.enis.iter().collect();
    enis.sort_by_key(|e| e.device_index);
    let eni = enis.into_iter().find(|eni| {
        let others = state.enis.iter().filter(|o| o.id != eni.id);
        let other_warm: u32 = others.clone().map(warm).sum();
        let other_total: u32 = others.map(ips).sum();
        // An ENI that gives IPs back in this pass is looked at in the next
        // (the host refuses a decision that changes and releases one ENI).
        eni.device_index != 0
            && released(&eni.id) == 0
            && eni.age_seconds >= MIN_ENI_LIFE_SECONDS
            && eni.cooling == 0
            && eni.assigned == 0
            && !(s.warm_ip_target > 0 && other_warm < s.warm_ip_target)
            && !(s.minimum_ip_target > 0 && other_total < s.minimum_ip_target)
    })?;
    Some(eni.id.clone())
}

weft_policy_sdk::export_pool_sizing!(VpcCniCompat);

#[cfg(test)]
mod tests;
