//! The sizing computation: how many addresses the group is short of, or
//! over, its target, and the ENI changes that close the gap.
//!
//! Everything is counted in `u64`/`i64`, so no input can overflow it.

use crate::settings::{Rule, Settings};
use weft_policy_sdk::pool::{Eni, EniChange, NewEni, PoolDecision, PoolState};

/// Pod addresses in one /28 prefix.
const PREFIX_ADDRESSES: u64 = 16;

/// What the pool grows and shrinks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Secondary IPv4 addresses.
    Ip,
    /// /28 prefixes.
    Prefix,
}

impl Unit {
    /// Addresses in one unit.
    fn size(self) -> u64 {
        match self {
            Unit::Ip => 1,
            Unit::Prefix => PREFIX_ADDRESSES,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Ip => "IPs",
            Unit::Prefix => "prefixes",
        }
    }

    /// An [`EniChange`] adding `n` units to `eni`.
    fn add(self, eni: &str, n: u32) -> EniChange {
        let mut change = EniChange {
            eni_id: eni.to_owned(),
            ..Default::default()
        };
        match self {
            Unit::Ip => change.add_ips = n,
            Unit::Prefix => change.add_prefixes = n,
        }
        change
    }

    /// An [`EniChange`] releasing `n` units from `eni`.
    fn release(self, eni: &str, n: u32) -> EniChange {
        let mut change = EniChange {
            eni_id: eni.to_owned(),
            ..Default::default()
        };
        match self {
            Unit::Ip => change.release_ips = n,
            Unit::Prefix => change.release_prefixes = n,
        }
        change
    }

    /// A [`NewEni`] holding `n` units.
    fn new_eni(self, n: u32) -> NewEni {
        match self {
            Unit::Ip => NewEni {
                ips: n,
                prefixes: 0,
            },
            Unit::Prefix => NewEni {
                ips: 0,
                prefixes: n,
            },
        }
    }

    /// Units of `eni` that can be given back without touching an assigned
    /// or cooling address (an upper bound: the host picks which).
    fn releasable(self, eni: &Eni) -> u64 {
        let free = u64::from(eni.free());
        match self {
            Unit::Ip => u64::from(eni.ips).min(free),
            Unit::Prefix => u64::from(eni.prefixes).min(free / PREFIX_ADDRESSES),
        }
    }
}

/// Counts over the group, with the node's limits applied.
struct Pool<'a> {
    state: &'a PoolState,
    unit: Unit,
    /// Addresses held by the group.
    total: i64,
    /// Free addresses minus the ADDs already waiting for one.
    free: i64,
    /// Units (IPs or prefixes) an ENI can hold: `ipv4-per-eni - 1`.
    slots_per_eni: u64,
}

impl<'a> Pool<'a> {
    fn new(state: &'a PoolState, unit: Unit) -> Self {
        let total: u64 = state.enis.iter().map(|e| u64::from(e.addresses())).sum();
        let free: u64 = state.enis.iter().map(|e| u64::from(e.free())).sum();
        Pool {
            state,
            unit,
            total: total as i64,
            free: free as i64 - i64::from(state.pending_adds),
            slots_per_eni: u64::from(state.limits.ipv4_per_eni.saturating_sub(1)),
        }
    }

    /// Units the node may still add before it holds `max-pods` addresses.
    /// A prefix may be added while at least one of its addresses is
    /// usable, as VPC CNI does.
    fn max_pods_budget(&self) -> u64 {
        let left = u64::from(self.state.limits.max_pods)
            .saturating_sub(u64::from(self.state.node_addresses));
        left.div_ceil(self.unit.size())
    }

    /// ENIs the node may still attach.
    fn eni_budget(&self) -> u64 {
        u64::from(
            self.state
                .limits
                .max_enis
                .saturating_sub(self.state.node_enis),
        )
    }

    /// The group's ENIs, primary first, then by device index.
    fn enis_ascending(&self) -> Vec<&'a Eni> {
        let mut enis: Vec<&Eni> = self.state.enis.iter().collect();
        enis.sort_by(|a, b| (a.device_index, &a.id).cmp(&(b.device_index, &b.id)));
        enis
    }

    /// Unused slots of an ENI.
    fn room(&self, eni: &Eni) -> u64 {
        self.slots_per_eni
            .saturating_sub(u64::from(eni.ips) + u64::from(eni.prefixes))
    }
}

/// The group's shortfall or surplus under the rule, in addresses.
#[derive(Debug, PartialEq, Eq)]
enum Gap {
    /// Grow by at least this many addresses; `whole_enis` fills every ENI
    /// it touches (WARM_ENI_TARGET).
    Short { addresses: u64, whole_enis: bool },
    /// This many addresses may be given back.
    Over { addresses: u64 },
    /// On target.
    None,
}

fn gap(pool: &Pool, rule: Rule) -> (Gap, String) {
    let positive = |n: i64| u64::try_from(n).unwrap_or(0);
    match rule {
        Rule::Ips { warm, minimum } => {
            let (warm, minimum) = (i64::from(warm), i64::from(minimum));
            let short = positive((warm - pool.free).max(minimum - pool.total));
            let over = positive((pool.free - warm).min(pool.total - minimum));
            let why = format!("warm-ip-target {warm}, minimum-ip-target {minimum}");
            if short > 0 {
                let gap = Gap::Short {
                    addresses: short,
                    whole_enis: false,
                };
                (gap, why)
            } else if over >= pool.unit.size() {
                // Less than a prefix over is on target in prefix mode: the
                // targets are met in whole prefixes.
                (Gap::Over { addresses: over }, why)
            } else {
                (Gap::None, why)
            }
        }
        Rule::Enis { warm } => {
            // WARM_ENI_TARGET=0 still asks for an address when none is free.
            let slots = i64::try_from(pool.slots_per_eni).unwrap_or(i64::MAX);
            let target = i64::from(warm).saturating_mul(slots).max(1);
            let short = positive(target.saturating_sub(pool.free));
            let why = format!("warm-eni-target {warm}");
            if short > 0 {
                let gap = Gap::Short {
                    addresses: short,
                    whole_enis: true,
                };
                (gap, why)
            } else {
                (Gap::None, why)
            }
        }
        Rule::Prefixes { warm, scale_down } => {
            let target = i64::from(warm) * PREFIX_ADDRESSES as i64;
            let why = format!("warm-prefix-target {warm}");
            if pool.free < target {
                let gap = Gap::Short {
                    addresses: positive(target - pool.free),
                    whole_enis: false,
                };
                (gap, why)
            } else if scale_down && pool.free - target >= PREFIX_ADDRESSES as i64 {
                let gap = Gap::Over {
                    addresses: positive(pool.free - target),
                };
                (gap, why)
            } else {
                (Gap::None, why)
            }
        }
    }
}

/// Decides the group's change under `settings`.
pub(crate) fn decide(settings: &Settings, state: &PoolState) -> PoolDecision {
    let prefix_mode = settings.prefix_delegation && state.limits.prefix_delegation;
    let unit = if prefix_mode { Unit::Prefix } else { Unit::Ip };
    let pool = Pool::new(state, unit);
    let (gap, rule) = gap(&pool, settings.rule(prefix_mode));
    let mut context = format!(
        "{} free, {} pending, {} held; {rule}",
        pool.free + i64::from(state.pending_adds),
        state.pending_adds,
        pool.total
    );
    if settings.prefix_delegation && !prefix_mode {
        context.push_str("; the instance has no prefix delegation, using secondary IPs");
    }
    match gap {
        Gap::Short {
            addresses,
            whole_enis,
        } => grow(&pool, addresses, whole_enis, context),
        Gap::Over { addresses } => shrink(&pool, settings, addresses, context),
        Gap::None => PoolDecision {
            reason: format!("{context}: on target"),
            ..Default::default()
        },
    }
}

/// Adds at least `short` addresses: first to the room left on existing
/// ENIs (lowest device index first), then on new ENIs, within the node's
/// max-pods and max-enis. `whole_enis` fills each ENI it touches.
fn grow(pool: &Pool, short: u64, whole_enis: bool, context: String) -> PoolDecision {
    let unit = pool.unit;
    let mut need = short.div_ceil(unit.size());
    let mut budget = pool.max_pods_budget();
    let mut decision = PoolDecision::default();
    let mut added = 0u64;
    for eni in pool.enis_ascending() {
        if need == 0 || budget == 0 {
            break;
        }
        let room = pool.room(eni);
        let n = if whole_enis { room } else { room.min(need) }.min(budget);
        if n > 0 {
            decision.changes.push(unit.add(&eni.id, to_u32(n)));
            need = need.saturating_sub(n);
            budget -= n;
            added += n;
        }
    }
    let mut eni_budget = pool.eni_budget();
    while need > 0 && budget > 0 && eni_budget > 0 {
        let per_eni = if whole_enis {
            pool.slots_per_eni
        } else {
            pool.slots_per_eni.min(need)
        };
        let n = per_eni.min(budget);
        if n == 0 {
            break;
        }
        decision.create.push(unit.new_eni(to_u32(n)));
        need = need.saturating_sub(n);
        budget -= n;
        eni_budget -= 1;
        added += n;
    }
    let limited = if need > 0 {
        "; limited by the instance's max-pods, max-enis or ipv4-per-eni"
    } else {
        ""
    };
    decision.reason = format!(
        "{context}: short {short} addresses, adding {added} {} ({} new ENIs){limited}",
        unit.name(),
        decision.create.len()
    );
    decision
}

/// Gives back at most `over` addresses: whole unused ENIs first (never the
/// primary, none younger than `min-eni-age-seconds`; newest first), then
/// free IPs or prefixes, from the highest device index down.
fn shrink(pool: &Pool, settings: &Settings, over: u64, context: String) -> PoolDecision {
    let unit = pool.unit;
    let mut left = over;
    let mut decision = PoolDecision::default();
    let mut enis = pool.enis_ascending();
    enis.reverse();
    for eni in &enis {
        let addresses = u64::from(eni.addresses());
        let unused = eni.assigned == 0 && eni.cooling == 0;
        let old_enough = eni.age_seconds >= settings.min_eni_age_seconds;
        if eni.device_index != 0 && unused && old_enough && addresses <= left {
            decision.release.push(eni.id.clone());
            left -= addresses;
        }
    }
    for eni in enis {
        if left < unit.size() {
            break;
        }
        if decision.release.contains(&eni.id) {
            continue;
        }
        let n = unit.releasable(eni).min(left / unit.size());
        if n > 0 {
            decision.changes.push(unit.release(&eni.id, to_u32(n)));
            left -= n * unit.size();
        }
    }
    decision.reason = format!(
        "{context}: {over} addresses over target, releasing {} addresses ({} ENIs)",
        over - left,
        decision.release.len()
    );
    decision
}

/// Every count fed here is bounded by a `u32` input (ENI slots, max-pods).
fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
