//! # predictive-pool: size the pool by demand, and by when bursts recur
//!
//! It keeps ready what the coming minute's pods will take, judged from the
//! usual minute and the last two; when the last hour shows bursts at a
//! regular interval, it has the next one's addresses free from
//! `lead-seconds` (20) before it is due. It asks EC2 for what is missing
//! while demand is steady and for whole ENIs in a burst, and gives back
//! only unused ENIs' addresses, never within two minutes of a busy
//! minute. Every call is worth `min-warm` addresses at least: a ramp is
//! not served one address a call, nor a wobble given back and asked for
//! again.
//!
//! * **The usual minute**: the upper median of the group's ADDs per minute
//!   over the history (`activity.history`, the `pool-sizing-timed`
//!   world) but the last 60 s. While the history is shorter than the hour
//!   its oldest minute is the group's first, the pods the scheduler held
//!   for a new node: a start, not a rate, left out here and from "the last
//!   two minutes" below. A CronJob's run every minute is usual; a fan-out
//!   in a few minutes of the hour is not. A minute is **busy** with at
//!   least `burst-adds` ADDs above the usual.
//! * **The coming minute** needs free or cooling addresses (a cooling one
//!   is back within the host's cooldown, 30 s by default): the most of
//!   `min-warm`, the usual minute's ADDs and what the last two minutes
//!   took (ADDs less REMOVEs: a rollout's new pods replace old ones), the
//!   last at most one ENI's IPs (a bigger burst is served by its waiting
//!   ADDs and the forecast); plus the ADDs waiting, and while ADDs wait at
//!   least those and the last minute's ADDs again (a burst that has not
//!   shown its size). While a usual minute has an ADD, one address is free
//!   now, not only cooling: the next ADD may come before a cooling one is
//!   back (a diurnal ramp's ADDs waited with 5 cooling).
//! * **Recurring bursts**: a run of busy minutes of the whole history (the
//!   group's first minute included) is a burst; its size is the most
//!   addresses it had taken (ADDs less REMOVEs since its start) at the end
//!   of one of its minutes. It came when its first minute's median ADD
//!   came (the history is timed to the second; a burst's ADDs come within
//!   seconds and are most of that minute's). With two bursts seen, the
//!   time between them is the period; from `lead-seconds` before the next
//!   is due until a minute after, the last burst's size plus the ADDs
//!   waiting must be free (a cooling address may come back too late).
//!   Without history (the older `pool-sizing` world) there is no forecast
//!   and no usual minute. A busy minute without a median ADD age (the
//!   host sends one for every minute with an ADD; a hand-written `weftd
//!   policy eval` input may not) is taken to have come at its older end:
//!   ready up to a minute early, never late.
//! * **A new node** (no pod and no ADD yet, its first ADD waiting, or its
//!   first ADD less than a minute ago) must have `start-warm` addresses
//!   free, less those it already holds (assigned or cooling); its pods
//!   arrive over its first minutes, so nothing is given back while it is
//!   new, in the group's first three minutes as this agent saw them (also
//!   after a restart of the agent, which keeps no history), nor in the
//!   three minutes after the first ADDs of an hour without any.
//! * **Growing** by the larger of the two shortfalls, never beyond the
//!   node's max-pods addresses. While demand is steady, by that and at
//!   least `min-warm` (a ramp topped up by its shortfall alone asked for
//!   one address a call): on attached ENIs, lowest device index first,
//!   then new ENIs. In a burst (the last minute's ADDs and those waiting
//!   `burst-adds` above the usual, ADDs waiting after a busy minute, a
//!   burst due, a new node; one ADD waiting in a quiet hour is a late
//!   top-up, not a burst) EC2 charges a call, not an address: every ENI
//!   touched is filled to its room in one call and new ENIs are created
//!   full; while ADDs wait, every attached ENI with addresses and room is
//!   filled (one call each, where a new ENI takes three and seconds), and
//!   an empty one (the spare) only as far as still needed: one ADD
//!   waiting in a ramp filled the spare, gave most of it back seconds
//!   later and created another.
//! * **Giving back**: nothing while one of the last two minutes was busy,
//!   nor from three minutes and `lead-seconds` before a burst is due
//!   until it is no longer expected (a minute after; giving addresses back
//!   to ask for them again minutes later costs two calls). Otherwise free
//!   addresses go back while free ones still cover what must be free (a
//!   burst due, ADDs waiting, a new node's start), and free and cooling
//!   ones the coming minute plus a usual minute's ADDs more (so what a
//!   CronJob's run takes is not given back between runs and asked for
//!   again at the next); and only when more than `min-warm` addresses
//!   are spare, what a top-up may leave. Only ENIs no pod uses (not the
//!   primary, nothing assigned or cooling, no prefixes; the datastore
//!   packs pods onto the fullest ENI, so others empty out) give addresses
//!   back, highest device index first, one call each, of at least
//!   `min-warm` addresses or all the ENI holds (a CronJob's run gave one
//!   address back and asked for it again every minute). An emptied ENI
//!   stays attached (growing it again is one call, not a create and an
//!   attach) until the group has had no ADD for `hold-seconds` and the
//!   ENI is a minute old. Once no minute of the last `hold-seconds` was
//!   busy (the group's bursts, its start's included, are over), ENIs that
//!   hold pods give back too, fewest pods first, at least half an ENI's
//!   addresses a call: a burst's last pods otherwise pin their ENIs' free
//!   addresses until they are gone, which may be days.
//! * **A spare ENI.** While every ENI of the node serves this group, it
//!   keeps `spare-enis` secondary ENIs attached without addresses (created
//!   empty, never released): an unforeseen burst then grows an attached
//!   ENI in one call of about half a second instead of waiting seconds for
//!   a create, an attach and a modify. An empty ENI holds no pod address
//!   idle, only its own primary address in the subnet. When a burst that
//!   took the spare is otherwise served, its replacement is created with
//!   an ENI's addresses: the burst has not shown its size, and filling
//!   an empty ENI later is one call more while its pods wait.
//!
//! Settings (JSON, kebab-case, all optional): `min-warm` (default 4),
//! `start-warm` (default two ENIs' worth of pod IPs: the primary's and one
//! more; half the node's ENIs was 343 addresses on a c5.18xlarge),
//! `burst-adds` (default 6), `lead-seconds` (default 20), `hold-seconds`
//! (default 1800), `spare-enis` (default 1).

use serde::Deserialize;
use weft_policy_sdk::PoolSizing;
use weft_policy_sdk::pool::{Eni, EniChange, Minute, NewEni, PoolDecision, PoolState};
use weft_policy_sdk::settings::parse_settings;

mod forecast;

pub use forecast::{Burst, Forecast, bursts, expected_burst, usual_adds};

/// An ENI younger than this is never released (as VPC CNI's
/// `minENILifeTime`).
const MIN_ENI_AGE_SECONDS: u64 = 60;

/// Minutes of history the host keeps (the `pool-sizing-timed` world).
const HISTORY_MINUTES: usize = 60;

/// The longest `lead-seconds`: the history's hour.
const MAX_LEAD_SECONDS: u32 = 3600;

/// How long after it was due a recurring burst is still expected.
const LATE_SECONDS: u32 = 60;

/// From how long before a recurring burst is due (beyond `lead-seconds`)
/// nothing is given back: it would be asked for again minutes later, two
/// calls for a few minutes' idle addresses.
const HOLD_BEFORE_SECONDS: u32 = 180;

/// A new node's first minutes, whose pods arrive over them: nothing that
/// `start-warm` prepared is given back meanwhile.
const START_MINUTES: usize = 3;

/// ENIs' worth of addresses a new node has free by default (`start-warm`).
const START_ENIS: u32 = 2;

/// Settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Free addresses kept even when nothing happens; also the fewest a
    /// call asks for or gives back.
    #[serde(default = "default_min_warm")]
    pub min_warm: u32,
    /// Free addresses on a node that never had a pod; `None`:
    /// two ENIs' worth (`START_ENIS`).
    #[serde(default)]
    pub start_warm: Option<u32>,
    /// ADDs in one minute that make it part of a burst.
    #[serde(default = "default_burst_adds")]
    pub burst_adds: u32,
    /// How long before a recurring burst is due its addresses are ready:
    /// more than the host's resync period (10 s), which may pass before
    /// the next decision, plus what EC2 takes to assign them.
    #[serde(default = "default_lead_seconds")]
    pub lead_seconds: u32,
    /// Quiet time (no ADD) after which emptied ENIs are detached; also the
    /// time without a busy minute after which ENIs with pods give back.
    #[serde(default = "default_hold_seconds")]
    pub hold_seconds: u64,
    /// Secondary ENIs without addresses kept attached ahead of need.
    #[serde(default = "default_spare_enis")]
    pub spare_enis: u32,
}

fn default_min_warm() -> u32 {
    4
}

fn default_burst_adds() -> u32 {
    6
}

fn default_lead_seconds() -> u32 {
    20
}

fn default_hold_seconds() -> u64 {
    1800
}

fn default_spare_enis() -> u32 {
    1
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_warm: default_min_warm(),
            start_warm: None,
            burst_adds: default_burst_adds(),
            lead_seconds: default_lead_seconds(),
            hold_seconds: default_hold_seconds(),
            spare_enis: default_spare_enis(),
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
        if settings.lead_seconds > MAX_LEAD_SECONDS {
            return Err(format!(
                "lead-seconds must be at most {MAX_LEAD_SECONDS} (the history covers an hour)"
            ));
        }
        Ok(PredictivePool { settings })
    }

    fn size_pool(&self, state: &PoolState) -> PoolDecision {
        decide(&self.settings, state)
    }
}

/// What the group needs, in addresses not assigned to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Free addresses needed now: the ADDs waiting, a recurring burst due
    /// (cooling addresses may not be back when it comes), a new node's
    /// start.
    pub now: u32,
    /// Free or cooling addresses for the ADDs of the coming minute: a
    /// cooling address is back within the host's cooldown (30 s by
    /// default), before that minute is over.
    pub soon: u32,
    /// Whether a burst arrives (ADDs wait, or the last minute's ADDs are
    /// `burst-adds` above the usual), is due, or the node is new: then EC2
    /// is asked for a whole ENI's room per call. Otherwise for the
    /// shortfall only.
    pub burst: bool,
    /// Why, for the decision's reason.
    pub why: String,
}

/// The ADDs that make a minute busy: `burst-adds` above the usual minute.
fn busy(s: &Settings, history: &[Minute]) -> u32 {
    usual_adds(rate_minutes(history).get(1..).unwrap_or_default()) + s.burst_adds
}

/// The history's minutes that show the group's rate: all but the first
/// while the history is shorter than the hour (its oldest minute is the
/// group's first: the pods the scheduler held for the node, which
/// `start-warm` serves; a start, not a rate).
fn rate_minutes(history: &[Minute]) -> &[Minute] {
    if history.len() < HISTORY_MINUTES {
        &history[..history.len().saturating_sub(1)]
    } else {
        history
    }
}

/// What the group needs now, and why.
pub fn need(s: &Settings, state: &PoolState) -> Need {
    let history = &state.activity.history;
    let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
    let rate = rate_minutes(history);
    let usual = usual_adds(rate.get(1..).unwrap_or_default());
    // The addresses the last minutes took (ADDs less REMOVEs: a pod
    // replacing another takes no more), at most an ENI's worth: a bigger
    // burst is served by its waiting ADDs and the forecast.
    let recent = if history.is_empty() {
        let a = &state.activity;
        a.adds_last_minute.saturating_sub(a.removes_last_minute)
    } else {
        rate.iter()
            .take(2)
            .map(|m| m.adds.saturating_sub(m.removes))
            .max()
            .unwrap_or(0)
    }
    .min(per_eni);
    let busy = busy(s, history);
    let mut soon = s.min_warm.max(usual).max(recent);
    let mut why = format!("{usual} ADDs a usual minute, {recent} taken lately");
    let mut now = 0;
    let forecast = expected_burst(history, busy, s.lead_seconds, LATE_SECONDS);
    if let Some(burst) = forecast {
        why = format!(
            "a burst taking {} due (every {} s)",
            burst.size, burst.period
        );
        now = burst.size;
    }
    now += state.pending_adds;
    if usual > 0 {
        // ADDs come every minute: the next may come before a cooling
        // address is back (a diurnal ramp's ADDs waited on 5 cooling).
        now = now.max(1);
    }
    soon += state.pending_adds;
    if state.pending_adds > 0 {
        // ADDs outran the pool: a burst that has not shown its size yet,
        // expected to bring as many again as it did so far.
        soon = soon.max(state.pending_adds + state.activity.adds_last_minute);
    }
    // Never had a pod, or had its first less than a minute ago (the
    // history starts with the group's first event), or its first is
    // waiting (an agent restarted on a node with pods: once served, it is
    // the history's first minute).
    let new_node = (state.node_assigned == 0 && state.activity.seconds_since_last_add.is_none())
        || history.len() == 1
        || (history.is_empty() && state.pending_adds > 0);
    if new_node {
        // `start-warm` counts every address held (the pods held for the
        // node, waiting or not, included).
        let held: u32 = state.enis.iter().map(|e| e.assigned + e.cooling).sum();
        let start = s
            .start_warm
            .unwrap_or(per_eni * state.limits.max_enis.min(START_ENIS))
            .saturating_sub(held);
        if start > now.max(soon) {
            why = "a new node".to_owned();
        }
        now = now.max(start);
    }
    let burst = arriving(state, busy) || forecast.is_some() || new_node;
    Need {
        now,
        soon,
        burst,
        why,
    }
}

/// Whether a burst arrives: the last minute's ADDs and those waiting are
/// `burst-adds` above the usual, or ADDs wait after a busy minute. One ADD
/// waiting in a quiet hour is a top-up late, not a burst (filling ENIs for
/// it gave them back at the next decision).
fn arriving(state: &PoolState, busy: u32) -> bool {
    let a = &state.activity;
    state.pending_adds + a.adds_last_minute >= busy
        || (state.pending_adds > 0 && a.history.iter().take(2).any(|m| m.adds >= busy))
}

/// The decision for one group: sized by demand, plus the spare ENIs.
pub fn decide(s: &Settings, state: &PoolState) -> PoolDecision {
    let mut decision = size(s, state);
    let empty = state.enis.iter().filter(|e| empty_secondary(e)).count() as u32;
    let attached = state.node_enis + decision.create.len() as u32;
    let more = spare_enis(s, state)
        .saturating_sub(empty)
        .min(state.limits.max_enis.saturating_sub(attached));
    // A burst the sizing finds served so far has taken the spare: its
    // replacement comes with an ENI's addresses (module doc).
    let served = decision.is_noop();
    let arriving = arriving(state, busy(s, &state.activity.history));
    let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
    let mut room = state.limits.max_pods.saturating_sub(state.node_addresses);
    decision.create.extend((0..more).map(|_| {
        let ips = if served && arriving {
            per_eni.min(room)
        } else {
            0
        };
        room -= ips;
        NewEni { ips, prefixes: 0 }
    }));
    decision
}

/// A secondary ENI without any address: a spare.
fn empty_secondary(eni: &Eni) -> bool {
    eni.device_index != 0 && eni.ips + eni.prefixes == 0
}

/// The empty ENIs to keep: an attached ENI grows in one call of about
/// half a second, a new one takes three calls and seconds, and an ENI
/// without secondary addresses holds none idle (only its own primary
/// address). Kept only while every ENI of the node serves this group: an
/// ENI slot held empty here cannot serve another security-group set.
fn spare_enis(s: &Settings, state: &PoolState) -> u32 {
    let sole_group = state.node_enis as usize == state.enis.len();
    if sole_group { s.spare_enis } else { 0 }
}

fn size(s: &Settings, state: &PoolState) -> PoolDecision {
    let free: u32 = state.enis.iter().map(Eni::free).sum();
    let cooling: u32 = state.enis.iter().map(|e| e.cooling).sum();
    let need = need(s, state);
    let short = need
        .now
        .saturating_sub(free)
        .max(need.soon.saturating_sub(free + cooling));
    if short > 0 {
        return grow(s, state, short, &need);
    }
    let target = need.now.max(need.soon);
    let reason = format!("{free} free, {cooling} cooling for {target} ({})", need.why);
    // A burst in progress has not shown its size yet; one due soon would
    // take the addresses again (from `HOLD_BEFORE_SECONDS` and the lead
    // before it is due until it is no longer expected). A new node's pods
    // arrive over its first minutes (as this agent saw them: its history
    // starts with the group's first event since the agent started).
    let history = &state.activity.history;
    let busy = busy(s, history);
    let busy_lately =
        history.iter().take(2).any(|m| m.adds >= busy) || state.activity.adds_last_minute >= busy;
    let due = expected_burst(
        history,
        busy,
        HOLD_BEFORE_SECONDS.saturating_add(s.lead_seconds),
        LATE_SECONDS,
    );
    let hold = if busy_lately || due.is_some() {
        Some("a burst is arriving or due")
    } else if need.burst
        || (1..=START_MINUTES).contains(&history.len())
        || history
            .iter()
            .rposition(|m| m.adds > 0)
            .is_some_and(|oldest| oldest < START_MINUTES)
    {
        // A new node, its first minutes, or its first ADDs in the hour: a
        // node whose pods had all gone (an agent restarted on it sees only
        // their DELs) starts again too.
        Some("the group's first minutes")
    } else {
        None
    };
    if let Some(why) = hold {
        return PoolDecision {
            reason: format!("{reason}: {why}, nothing given back"),
            ..PoolDecision::default()
        };
    }
    let quiet = state
        .activity
        .seconds_since_last_add
        .is_none_or(|since| since >= s.hold_seconds);
    // Only free addresses go back (the churn that cooled the others takes
    // them again). A usual minute's pods come and go within it (a
    // CronJob's run): between runs their addresses look spare, so only
    // what is spare beyond a usual minute's ADDs more goes back, and what
    // a run takes is not given back and asked for again at the next.
    let usual = usual_adds(rate_minutes(history).get(1..).unwrap_or_default());
    let surplus = free
        .saturating_sub(need.now)
        .min((free + cooling).saturating_sub(need.soon + usual));
    // Growth asks at least `min-warm`: no more than that is spare after a
    // top-up, and it is not given back when the usual minute wobbles.
    let surplus = if surplus > s.min_warm { surplus } else { 0 };
    let calm = calm(s, history, busy);
    shrink(s, state, surplus, quiet, calm, &reason)
}

/// Whether no minute of the last `hold-seconds` (the history's hour at
/// most) was busy: the group's bursts, its start's included, are over.
fn calm(s: &Settings, history: &[Minute], busy: u32) -> bool {
    let minutes = usize::try_from(s.hold_seconds / 60)
        .unwrap_or(HISTORY_MINUTES)
        .clamp(1, HISTORY_MINUTES);
    history.len() >= minutes && history[..minutes].iter().all(|m| m.adds < busy)
}

/// Asks for `short` more addresses: whole ENIs' room in a burst, else the
/// shortfall and at least `min-warm` (lowest device index first; new ENIs
/// last).
fn grow(s: &Settings, state: &PoolState, short: u32, need: &Need) -> PoolDecision {
    let per_eni = state.limits.ipv4_per_eni.saturating_sub(1);
    let mut room = state.limits.max_pods.saturating_sub(state.node_addresses);
    // A call asks for at least `min-warm` addresses: a ramp topped up by
    // its shortfall alone asked for one address a call.
    let mut want = short.max(s.min_warm).min(room);
    // ADDs wait in a burst: every attached ENI with addresses is filled.
    let filling = state.pending_adds > 0 && need.burst;
    let mut decision = PoolDecision {
        reason: if need.burst {
            format!("{short} short ({}): filling ENIs", need.why)
        } else {
            format!("{short} short ({}): topping up", need.why)
        },
        ..PoolDecision::default()
    };
    let ask = |want: u32, space: u32| if need.burst { space } else { want.min(space) };
    let mut enis: Vec<&Eni> = state.enis.iter().collect();
    enis.sort_by_key(|e| e.device_index);
    for eni in enis {
        if want == 0 && !filling {
            break;
        }
        let space = per_eni.saturating_sub(eni.ips + eni.prefixes).min(room);
        // ADDs wait: every attached ENI's room (an attached ENI grows in
        // one call of half a second, a new one takes three and seconds);
        // an empty one (the spare) only as far as still needed.
        let n = if filling && eni.ips + eni.prefixes > 0 {
            space
        } else if want > 0 {
            ask(want, space)
        } else {
            0
        };
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
        let n = ask(want, per_eni.min(room));
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
/// index first, and when `calm` the free IPs of ENIs with pods; when
/// `quiet`, releases ENIs left without addresses but the spare ones.
fn shrink(
    s: &Settings,
    state: &PoolState,
    mut surplus: u32,
    quiet: bool,
    calm: bool,
    why: &str,
) -> PoolDecision {
    let spare = spare_enis(s, state);
    let mut decision = PoolDecision::default();
    // The lowest-indexed empty ENIs are the spares.
    let mut beyond_spares =
        (state.enis.iter().filter(|e| empty_secondary(e)).count() as u32).saturating_sub(spare);
    let mut enis: Vec<&Eni> = state.enis.iter().collect();
    enis.sort_by_key(|e| std::cmp::Reverse(e.device_index));
    for eni in enis {
        let unused = eni.device_index != 0 && eni.assigned == 0 && eni.cooling == 0;
        if !unused || eni.prefixes > 0 {
            continue;
        }
        // A call returns at least `min-warm` addresses (or all the ENI
        // holds): fewer are not worth it, the coming minutes' churn takes
        // them again.
        if eni.ips > 0 && surplus >= s.min_warm.min(eni.ips).max(1) {
            let n = eni.ips.min(surplus);
            decision.changes.push(release_ips(eni, n));
            surplus -= n;
        } else if empty_secondary(eni) && beyond_spares > 0 {
            beyond_spares -= 1;
            if quiet && eni.age_seconds >= MIN_ENI_AGE_SECONDS {
                decision.release.push(eni.id.clone());
            }
        }
    }
    // Calm (module doc): ENIs with pods give back too.
    let half_eni = state.limits.ipv4_per_eni.saturating_sub(1) / 2;
    if calm {
        let mut used: Vec<&Eni> = state
            .enis
            .iter()
            .filter(|e| e.device_index != 0 && e.assigned + e.cooling > 0 && e.prefixes == 0)
            .collect();
        used.sort_by_key(|e| (e.assigned + e.cooling, std::cmp::Reverse(e.device_index)));
        for eni in used {
            let n = eni.free().min(surplus);
            if n > 0 && n >= half_eni {
                decision.changes.push(release_ips(eni, n));
                surplus -= n;
            }
        }
    }
    decision.reason = if decision.is_noop() {
        format!("{why}: warm enough")
    } else {
        format!("{why}: giving addresses back")
    };
    decision
}

/// Gives `n` of an ENI's IPs back.
fn release_ips(eni: &Eni, n: u32) -> EniChange {
    EniChange {
        eni_id: eni.id.clone(),
        release_ips: n,
        ..EniChange::default()
    }
}

weft_policy_sdk::export_pool_sizing!(PredictivePool);

#[cfg(test)]
mod tests;
