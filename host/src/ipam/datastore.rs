//! The pool datastore: ENIs, their addresses, and which pod holds which.
//!
//! # Placement rule
//!
//! A pod of security-group set `G` gets an address only from an ENI that
//! carries exactly `G` (and serves pods: the primary ENI does unless
//! [`IpamConfig::primary_eni_serves_pods`] is off). Among those ENIs the one
//! with the most assigned addresses wins, ties going to the lowest device
//! index; inside it, the free address whose prefix holds the most assigned
//! or cooling addresses wins (a secondary IP counts as a prefix of its own),
//! ties going to the lowest address. Packing this way empties the other ENIs
//! and prefixes so that scale-down can give them back to EC2.
//!
//! # Address life cycle
//!
//! free → assigned → cooling (for [`IpamConfig::cooldown`]) → free. Scale-down
//! first marks free addresses, prefixes or a whole ENI as *releasing*
//! (`begin_release_*`), which takes them out of placement while the EC2 call
//! is in flight, then removes them (`remove_*`) or puts them back
//! (`abort_*`). Assigned and cooling addresses are never marked releasing.

use super::activity::Churn;
use super::model::{
    ADDRESSES_PER_PREFIX, AddressInfo, AddressState, Assignment, AssignmentKey, CoolingAddress,
    Correction, Eni, IpamConfig, Placement, PodMeta,
};
use super::{IpamError, Now, SgSet};
use ipnet::Ipv4Net;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};
use weft_policy_sdk::pool;

/// What occupies a pod address that is not free.
#[derive(Debug, Clone)]
enum Use {
    Assigned(AssignmentKey),
    Cooling {
        until: Instant,
        released_at: SystemTime,
    },
    Releasing,
}

/// One pod address of the pool.
#[derive(Debug, Clone)]
struct Slot {
    eni: String,
    prefix: Option<Ipv4Net>,
    used: Option<Use>,
}

impl Slot {
    /// Ready to hand out (an expired cooldown counts as free).
    fn is_free(&self, now: Instant) -> bool {
        match &self.used {
            None => true,
            Some(Use::Cooling { until, .. }) => *until <= now,
            Some(_) => false,
        }
    }

    /// Assigned or still cooling: must not leave the pool.
    fn is_held(&self, now: Instant) -> bool {
        match &self.used {
            Some(Use::Assigned(_)) => true,
            Some(Use::Cooling { until, .. }) => *until > now,
            _ => false,
        }
    }

    fn state(&self, now: Instant) -> AddressState {
        match &self.used {
            Some(Use::Assigned(key)) => AddressState::Assigned(key.clone()),
            Some(Use::Cooling { until, .. }) if *until > now => {
                AddressState::Cooling { until: *until }
            }
            Some(Use::Releasing) => AddressState::Releasing,
            _ => AddressState::Free,
        }
    }

    fn held_state_name(&self) -> &'static str {
        match self.used {
            Some(Use::Assigned(_)) => "assigned",
            _ => "cooling down",
        }
    }
}

/// An ENI of the pool.
#[derive(Debug, Clone)]
struct EniEntry {
    id: String,
    device_index: u32,
    subnet_id: String,
    mac: String,
    primary: bool,
    primary_ip: Ipv4Addr,
    security_groups: SgSet,
    attached_at: SystemTime,
    ips: BTreeSet<Ipv4Addr>,
    prefixes: BTreeSet<Ipv4Net>,
    /// Being detached and deleted.
    draining: bool,
}

impl EniEntry {
    fn empty(eni: &Eni) -> Self {
        EniEntry {
            id: eni.id.clone(),
            device_index: eni.device_index,
            subnet_id: eni.subnet_id.clone(),
            mac: eni.mac.clone(),
            primary: eni.primary,
            primary_ip: eni.primary_ip,
            security_groups: eni.security_groups.clone(),
            attached_at: eni.attached_at,
            ips: BTreeSet::new(),
            prefixes: BTreeSet::new(),
            draining: false,
        }
    }

    fn to_eni(&self) -> Eni {
        Eni {
            id: self.id.clone(),
            device_index: self.device_index,
            subnet_id: self.subnet_id.clone(),
            mac: self.mac.clone(),
            primary: self.primary,
            primary_ip: self.primary_ip,
            security_groups: self.security_groups.clone(),
            ips: self.ips.iter().copied().collect(),
            prefixes: self.prefixes.iter().copied().collect(),
            attached_at: self.attached_at,
        }
    }

    /// Every pod address: secondary IPs, then the addresses of each prefix.
    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ips
            .iter()
            .copied()
            .chain(self.prefixes.iter().flat_map(|p| prefix_addresses(*p)))
    }

    /// Updates the attributes (not the addresses) from the cloud's view;
    /// describes what changed, if anything.
    fn update_from(&mut self, eni: &Eni) -> Option<String> {
        let mut changes = Vec::new();
        if self.security_groups != eni.security_groups {
            changes.push(format!(
                "security groups changed from {} to {}",
                self.security_groups, eni.security_groups
            ));
        }
        if self.device_index != eni.device_index {
            changes.push(format!(
                "device index changed from {} to {}",
                self.device_index, eni.device_index
            ));
        }
        if self.subnet_id != eni.subnet_id || self.mac != eni.mac || self.primary != eni.primary {
            changes.push("subnet, MAC or primary flag changed".to_owned());
        }
        let fresh = EniEntry {
            ips: std::mem::take(&mut self.ips),
            prefixes: std::mem::take(&mut self.prefixes),
            draining: self.draining,
            ..EniEntry::empty(eni)
        };
        *self = fresh;
        (!changes.is_empty()).then(|| changes.join("; "))
    }
}

/// The 16 addresses of a /28 prefix, network and broadcast included: EC2
/// hands all of them to the ENI.
fn prefix_addresses(prefix: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(prefix.network())..=u32::from(prefix.broadcast())).map(Ipv4Addr::from)
}

fn check_prefix(prefix: Ipv4Net) -> Result<(), IpamError> {
    if prefix.prefix_len() == 28 && prefix.trunc() == prefix {
        Ok(())
    } else {
        Err(IpamError::InvalidPrefix(prefix))
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Address counts of one ENI.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ips: u32,
    prefixes: u32,
    assigned: u32,
    cooling: u32,
    free: u32,
    releasing: u32,
}

/// How much the pool may still grow without holding more pod addresses than
/// the node may run pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrowthBudget {
    /// Secondary IPs that may still be added.
    pub ips: u32,
    /// Prefixes that may still be added. Rounded up: the last prefix may
    /// overshoot max pods by up to 15 addresses, as it does in VPC CNI.
    pub prefixes: u32,
}

/// The pool datastore. Pure logic: no I/O, no clock reads (every operation
/// that depends on time takes a [`Now`]).
#[derive(Debug, Clone)]
pub struct Datastore {
    config: IpamConfig,
    enis: BTreeMap<String, EniEntry>,
    slots: HashMap<Ipv4Addr, Slot>,
    assignments: HashMap<AssignmentKey, Assignment>,
    churn: HashMap<SgSet, Churn>,
}

impl Datastore {
    /// An empty pool.
    pub fn new(config: IpamConfig) -> Self {
        Datastore {
            config,
            enis: BTreeMap::new(),
            slots: HashMap::new(),
            assignments: HashMap::new(),
            churn: HashMap::new(),
        }
    }

    /// The pool after a restart: the ENIs the cloud reports, then the
    /// checkpointed assignments and cooldowns laid over them (see
    /// [`Datastore::reconcile_with_inventory`] and [`Datastore::restore`]).
    /// Returns every correction made, to be logged.
    pub fn rebuild(
        config: IpamConfig,
        inventory: &[Eni],
        allocations: Vec<Assignment>,
        cooling: &[CoolingAddress],
        now: Now,
    ) -> (Self, Vec<Correction>) {
        let mut store = Datastore::new(config);
        let mut corrections = store.reconcile_with_inventory(inventory);
        corrections.extend(store.restore(allocations, cooling, now));
        (store, corrections)
    }

    /// The settings.
    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    fn serves_pods(&self, eni: &EniEntry) -> bool {
        !eni.primary || self.config.primary_eni_serves_pods
    }

    fn group_enis<'a>(&'a self, group: &'a SgSet) -> impl Iterator<Item = &'a EniEntry> + 'a {
        self.enis
            .values()
            .filter(move |e| &e.security_groups == group && self.serves_pods(e))
    }

    fn eni_entry(&self, eni_id: &str) -> Result<&EniEntry, IpamError> {
        self.enis
            .get(eni_id)
            .ok_or_else(|| IpamError::UnknownEni(eni_id.to_owned()))
    }

    fn counts(&self, eni: &EniEntry, now: Instant) -> Counts {
        let mut c = Counts::default();
        let tally = |ip: &Ipv4Addr, c: &mut Counts| match self.slots.get(ip).map(|s| s.state(now)) {
            Some(AddressState::Assigned(_)) => c.assigned += 1,
            Some(AddressState::Cooling { .. }) => c.cooling += 1,
            Some(AddressState::Releasing) | None => c.releasing += 1,
            Some(AddressState::Free) => c.free += 1,
        };
        for ip in &eni.ips {
            let before = c.releasing;
            tally(ip, &mut c);
            if c.releasing == before {
                c.ips += 1;
            }
        }
        for prefix in &eni.prefixes {
            let before = c.releasing;
            prefix_addresses(*prefix).for_each(|ip| tally(&ip, &mut c));
            if c.releasing - before < ADDRESSES_PER_PREFIX {
                c.prefixes += 1;
            }
        }
        c
    }

    // ----- pods -----------------------------------------------------------

    /// Gives the pod interface `key` an address from an ENI of `group` (see
    /// the placement rule in the module docs). Idempotent: a key that
    /// already holds an address gets it back (`fresh: false`), whatever
    /// `group` says this time.
    pub fn assign(
        &mut self,
        key: AssignmentKey,
        group: &SgSet,
        pod: PodMeta,
        now: Now,
    ) -> Result<Placement, IpamError> {
        if let Some(existing) = self.assignments.get(&key) {
            return Ok(self.placement(existing.ip, false));
        }
        let ip = self.pick_free(group, now.mono)?;
        if let Some(slot) = self.slots.get_mut(&ip) {
            slot.used = Some(Use::Assigned(key.clone()));
        }
        self.assignments.insert(
            key.clone(),
            Assignment {
                key,
                ip,
                pod,
                assigned_at: now.wall,
            },
        );
        self.churn.entry(group.clone()).or_default().add(now.mono);
        Ok(self.placement(ip, true))
    }

    /// Builds the placement of an address of the pool.
    fn placement(&self, ip: Ipv4Addr, fresh: bool) -> Placement {
        let slot = self.slots.get(&ip);
        let eni = slot.and_then(|s| self.enis.get(&s.eni));
        Placement {
            ip,
            eni_id: eni.map(|e| e.id.clone()).unwrap_or_default(),
            device_index: eni.map_or(0, |e| e.device_index),
            primary_eni: eni.is_some_and(|e| e.primary),
            prefix: slot.and_then(|s| s.prefix),
            fresh,
        }
    }

    fn pick_free(&self, group: &SgSet, now: Instant) -> Result<Ipv4Addr, IpamError> {
        // Lower ranks win: ENIs by (most assigned, device index), addresses
        // by (most held in their prefix, address).
        type EniRank = (Reverse<u32>, u32);
        type AddressRank = (Reverse<u32>, Ipv4Addr);
        let mut best: Option<(EniRank, AddressRank)> = None;
        let mut enis = 0;
        for eni in self.group_enis(group).filter(|e| !e.draining) {
            enis += 1;
            let mut assigned = 0;
            let mut eni_best: Option<AddressRank> = None;
            let mut consider = |rank: AddressRank| {
                if eni_best.is_none_or(|b| rank < b) {
                    eni_best = Some(rank);
                }
            };
            for ip in &eni.ips {
                match self.slots.get(ip) {
                    Some(s) if s.is_free(now) => consider((Reverse(0), *ip)),
                    Some(Slot {
                        used: Some(Use::Assigned(_)),
                        ..
                    }) => assigned += 1,
                    _ => {}
                }
            }
            for prefix in &eni.prefixes {
                let slots: Vec<(Ipv4Addr, &Slot)> = prefix_addresses(*prefix)
                    .filter_map(|ip| self.slots.get(&ip).map(|s| (ip, s)))
                    .collect();
                let held = count(slots.iter().filter(|(_, s)| s.is_held(now)).count());
                assigned += slots
                    .iter()
                    .filter(|(_, s)| matches!(s.used, Some(Use::Assigned(_))))
                    .count();
                for (ip, _) in slots.iter().filter(|(_, s)| s.is_free(now)) {
                    consider((Reverse(held), *ip));
                }
            }
            if let Some(address) = eni_best {
                let rank = (Reverse(count(assigned)), eni.device_index);
                if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                    best = Some((rank, address));
                }
            }
        }
        if let Some((_, (_, ip))) = best {
            return Ok(ip);
        }
        let why = if enis == 0 {
            "no ENI with exactly these security groups is attached yet".to_owned()
        } else {
            let total = self.group_enis(group).map(|e| self.counts(e, now)).fold(
                Counts::default(),
                |a, c| Counts {
                    assigned: a.assigned + c.assigned,
                    cooling: a.cooling + c.cooling,
                    releasing: a.releasing + c.releasing,
                    ..a
                },
            );
            format!(
                "all addresses of its {enis} ENI(s) are taken: {} assigned, {} cooling down, {} being released",
                total.assigned, total.cooling, total.releasing
            )
        };
        Err(IpamError::NoFreeAddress {
            group: group.clone(),
            why,
        })
    }

    /// Releases the address of `key`: it cools down before reuse. Returns
    /// the assignment, or `None` for an unknown key (DEL is idempotent).
    pub fn release(&mut self, key: &AssignmentKey, now: Now) -> Option<Assignment> {
        let assignment = self.assignments.remove(key)?;
        let cooldown = self.config.cooldown;
        if let Some(slot) = self.slots.get_mut(&assignment.ip) {
            slot.used = (!cooldown.is_zero()).then(|| Use::Cooling {
                until: now.mono + cooldown,
                released_at: now.wall,
            });
            if let Some(eni) = self.enis.get(&slot.eni) {
                self.churn
                    .entry(eni.security_groups.clone())
                    .or_default()
                    .remove(now.mono);
            }
        }
        Some(assignment)
    }

    // ----- queries --------------------------------------------------------

    /// The assignment of `key`, if any.
    pub fn assignment(&self, key: &AssignmentKey) -> Option<&Assignment> {
        self.assignments.get(key)
    }

    /// Every assignment, in no particular order.
    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.values()
    }

    /// Addresses still cooling down at `now`, with their release time (what
    /// the checkpoint keeps so a restart does not cut a cooldown short).
    pub fn cooling(&self, now: Instant) -> Vec<CoolingAddress> {
        let mut out: Vec<CoolingAddress> = self
            .slots
            .iter()
            .filter_map(|(ip, slot)| match slot.used {
                Some(Use::Cooling { until, released_at }) if until > now => Some(CoolingAddress {
                    ip: *ip,
                    released_at,
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|c| c.ip);
        out
    }

    /// Where `ip` lives in the pool and its state, or `None` if no ENI of
    /// the pool has it.
    pub fn address(&self, ip: Ipv4Addr, now: Instant) -> Option<AddressInfo> {
        self.slots.get(&ip).map(|s| AddressInfo {
            eni_id: s.eni.clone(),
            prefix: s.prefix,
            state: s.state(now),
        })
    }

    /// The ENI `eni_id`, with its addresses.
    pub fn eni(&self, eni_id: &str) -> Option<Eni> {
        self.enis.get(eni_id).map(EniEntry::to_eni)
    }

    /// Every ENI, ordered by id.
    pub fn enis(&self) -> Vec<Eni> {
        self.enis.values().map(EniEntry::to_eni).collect()
    }

    /// The security-group sets the pool serves: the default group and the
    /// set of every ENI that serves pods.
    pub fn groups(&self) -> Vec<SgSet> {
        let mut groups: BTreeSet<SgSet> = self
            .enis
            .values()
            .filter(|e| self.serves_pods(e))
            .map(|e| e.security_groups.clone())
            .collect();
        groups.insert(self.config.default_group.clone());
        groups.into_iter().collect()
    }

    /// Addresses of `group` that a pod could get now.
    pub fn free_count(&self, group: &SgSet, now: Instant) -> u32 {
        self.group_enis(group)
            .filter(|e| !e.draining)
            .map(|e| self.counts(e, now).free)
            .sum()
    }

    /// Assignments and releases in `group` during the last minute.
    pub fn activity(&self, group: &SgSet, now: Instant) -> pool::Activity {
        self.churn
            .get(group)
            .map(|c| c.snapshot(now))
            .unwrap_or_default()
    }

    /// Pod addresses the node holds (assigned, cooling and free; not those
    /// being released), across groups.
    pub fn node_addresses(&self, now: Instant) -> u32 {
        self.enis
            .values()
            .filter(|e| self.serves_pods(e))
            .map(|e| {
                let c = self.counts(e, now);
                c.assigned + c.cooling + c.free
            })
            .sum()
    }

    /// How many addresses may still be added without the node holding more
    /// than `max_pods` (the max-pods guard the reconciler clamps every
    /// decision with).
    pub fn growth_budget(&self, max_pods: u32, now: Instant) -> GrowthBudget {
        let headroom = max_pods.saturating_sub(self.node_addresses(now));
        GrowthBudget {
            ips: headroom,
            prefixes: headroom.div_ceil(ADDRESSES_PER_PREFIX),
        }
    }

    /// The input of the pool-sizing policy for `group`. ENIs being released
    /// are left out of `enis` (but counted in `node_enis`, since they are
    /// still attached), as are addresses being released.
    pub fn pool_state(
        &self,
        group: &SgSet,
        limits: &pool::InstanceLimits,
        pending_adds: u32,
        now: Now,
    ) -> pool::PoolState {
        let enis = self
            .group_enis(group)
            .filter(|e| !e.draining)
            .map(|e| {
                let c = self.counts(e, now.mono);
                pool::Eni {
                    id: e.id.clone(),
                    device_index: e.device_index,
                    subnet_id: e.subnet_id.clone(),
                    ips: c.ips,
                    prefixes: c.prefixes,
                    assigned: c.assigned,
                    cooling: c.cooling,
                    age_seconds: now.wall_since(e.attached_at).as_secs(),
                }
            })
            .collect();
        pool::PoolState {
            group: group.ids().to_vec(),
            default_group: *group == self.config.default_group,
            enis,
            node_enis: count(self.enis.len()),
            node_addresses: self.node_addresses(now.mono),
            node_assigned: count(self.assignments.len()),
            limits: limits.clone(),
            pending_adds,
            activity: self.activity(group, now.mono),
        }
    }

    /// Whether ENI `eni_id` may be detached and deleted now: not the primary
    /// ENI, not already being released, no assigned or cooling address, and
    /// attached for at least [`IpamConfig::min_eni_age`].
    pub fn eni_releasable(&self, eni_id: &str, now: Now) -> Result<(), IpamError> {
        let eni = self.eni_entry(eni_id)?;
        let refuse = |why: String| {
            Err(IpamError::EniNotReleasable {
                eni_id: eni_id.to_owned(),
                why,
            })
        };
        if eni.primary {
            return refuse("it is the instance's primary ENI".to_owned());
        }
        if eni.draining {
            return refuse("it is already being released".to_owned());
        }
        let c = self.counts(eni, now.mono);
        if c.assigned > 0 {
            return refuse(format!("{} pod(s) have addresses on it", c.assigned));
        }
        if c.cooling > 0 {
            return refuse(format!("{} address(es) are cooling down", c.cooling));
        }
        let age = now.wall_since(eni.attached_at);
        if age < self.config.min_eni_age {
            return refuse(format!(
                "it was attached {} s ago, the minimum age is {} s",
                age.as_secs(),
                self.config.min_eni_age.as_secs()
            ));
        }
        Ok(())
    }

    // ----- scale-down -----------------------------------------------------

    /// Picks up to `max` free secondary IPs of `eni_id` (highest first) to
    /// give back to EC2 and marks them releasing, so no pod gets them while
    /// the call is in flight. Never picks an assigned or cooling address.
    pub fn begin_release_ips(
        &mut self,
        eni_id: &str,
        max: u32,
        now: Instant,
    ) -> Result<Vec<Ipv4Addr>, IpamError> {
        let eni = self.eni_entry(eni_id)?;
        let picked: Vec<Ipv4Addr> = eni
            .ips
            .iter()
            .rev()
            .filter(|ip| self.slots.get(ip).is_some_and(|s| s.is_free(now)))
            .take(max as usize)
            .copied()
            .collect();
        self.mark_releasing(picked.iter().copied());
        Ok(picked)
    }

    /// Picks up to `max` prefixes of `eni_id` (highest first) with no
    /// assigned or cooling address and marks them releasing.
    pub fn begin_release_prefixes(
        &mut self,
        eni_id: &str,
        max: u32,
        now: Instant,
    ) -> Result<Vec<Ipv4Net>, IpamError> {
        let eni = self.eni_entry(eni_id)?;
        let picked: Vec<Ipv4Net> = eni
            .prefixes
            .iter()
            .rev()
            .filter(|p| {
                prefix_addresses(**p).all(|ip| self.slots.get(&ip).is_some_and(|s| s.is_free(now)))
            })
            .take(max as usize)
            .copied()
            .collect();
        self.mark_releasing(picked.iter().flat_map(|p| prefix_addresses(*p)));
        Ok(picked)
    }

    /// Marks ENI `eni_id` and all its addresses releasing, after checking
    /// [`Datastore::eni_releasable`].
    pub fn begin_release_eni(&mut self, eni_id: &str, now: Now) -> Result<(), IpamError> {
        self.eni_releasable(eni_id, now)?;
        let eni = self.eni_entry(eni_id)?;
        let addresses: Vec<Ipv4Addr> = eni.addresses().collect();
        self.mark_releasing(addresses);
        if let Some(eni) = self.enis.get_mut(eni_id) {
            eni.draining = true;
        }
        Ok(())
    }

    /// Puts addresses and prefixes marked releasing back into the pool (the
    /// EC2 call failed). Addresses not marked releasing are left alone.
    pub fn abort_release(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> Result<(), IpamError> {
        let eni = self.eni_entry(eni_id)?;
        let addresses: Vec<Ipv4Addr> = ips
            .iter()
            .copied()
            .filter(|ip| eni.ips.contains(ip))
            .chain(
                prefixes
                    .iter()
                    .filter(|p| eni.prefixes.contains(p))
                    .flat_map(|p| prefix_addresses(*p)),
            )
            .collect();
        self.unmark_releasing(addresses);
        Ok(())
    }

    /// Puts an ENI marked releasing back into the pool (its detach failed).
    pub fn abort_release_eni(&mut self, eni_id: &str) -> Result<(), IpamError> {
        let eni = self.eni_entry(eni_id)?;
        let addresses: Vec<Ipv4Addr> = eni.addresses().collect();
        self.unmark_releasing(addresses);
        if let Some(eni) = self.enis.get_mut(eni_id) {
            eni.draining = false;
        }
        Ok(())
    }

    fn mark_releasing(&mut self, addresses: impl IntoIterator<Item = Ipv4Addr>) {
        for ip in addresses {
            if let Some(slot) = self.slots.get_mut(&ip) {
                slot.used = Some(Use::Releasing);
            }
        }
    }

    fn unmark_releasing(&mut self, addresses: Vec<Ipv4Addr>) {
        for ip in addresses {
            if let Some(slot) = self.slots.get_mut(&ip)
                && matches!(slot.used, Some(Use::Releasing))
            {
                slot.used = None;
            }
        }
    }

    // ----- applying what the cloud did -------------------------------------

    /// Checks that `ip` may join ENI `eni_id`; `Ok(false)` if it already has.
    fn check_new_address(&self, eni_id: &str, ip: Ipv4Addr) -> Result<bool, IpamError> {
        match self.slots.get(&ip) {
            None => Ok(true),
            Some(slot) if slot.eni == eni_id && slot.prefix.is_none() => Ok(false),
            Some(slot) => Err(IpamError::AddressConflict {
                ip,
                owner: slot.eni.clone(),
            }),
        }
    }

    fn check_new_prefix(&self, eni_id: &str, prefix: Ipv4Net) -> Result<bool, IpamError> {
        check_prefix(prefix)?;
        if self
            .enis
            .get(eni_id)
            .is_some_and(|e| e.prefixes.contains(&prefix))
        {
            return Ok(false);
        }
        for ip in prefix_addresses(prefix) {
            if let Some(slot) = self.slots.get(&ip) {
                return Err(IpamError::AddressConflict {
                    ip,
                    owner: slot.eni.clone(),
                });
            }
        }
        Ok(true)
    }

    fn insert_ip(&mut self, eni_id: &str, ip: Ipv4Addr) {
        if let Some(eni) = self.enis.get_mut(eni_id) {
            eni.ips.insert(ip);
            self.slots.insert(
                ip,
                Slot {
                    eni: eni_id.to_owned(),
                    prefix: None,
                    used: eni.draining.then_some(Use::Releasing),
                },
            );
        }
    }

    fn insert_prefix(&mut self, eni_id: &str, prefix: Ipv4Net) {
        if let Some(eni) = self.enis.get_mut(eni_id) {
            eni.prefixes.insert(prefix);
            for ip in prefix_addresses(prefix) {
                self.slots.insert(
                    ip,
                    Slot {
                        eni: eni_id.to_owned(),
                        prefix: Some(prefix),
                        used: eni.draining.then_some(Use::Releasing),
                    },
                );
            }
        }
    }

    /// Adds an ENI the node just attached, with its addresses. Refused
    /// (nothing changes) if the id is known, a prefix is not an aligned /28,
    /// or an address is already in the pool.
    pub fn add_eni(&mut self, eni: Eni) -> Result<(), IpamError> {
        if self.enis.contains_key(&eni.id) {
            return Err(IpamError::DuplicateEni(eni.id));
        }
        for prefix in &eni.prefixes {
            check_prefix(*prefix)?;
        }
        let ips: BTreeSet<Ipv4Addr> = eni.ips.iter().copied().collect();
        let prefixes: BTreeSet<Ipv4Net> = eni.prefixes.iter().copied().collect();
        let mut seen = HashSet::new();
        let addresses = ips
            .iter()
            .copied()
            .chain(prefixes.iter().flat_map(|p| prefix_addresses(*p)));
        for ip in addresses {
            if !seen.insert(ip) {
                return Err(IpamError::AddressConflict {
                    ip,
                    owner: eni.id.clone(),
                });
            }
            self.check_new_address(&eni.id, ip)?;
        }
        self.enis.insert(eni.id.clone(), EniEntry::empty(&eni));
        for ip in ips {
            self.insert_ip(&eni.id, ip);
        }
        for prefix in prefixes {
            self.insert_prefix(&eni.id, prefix);
        }
        Ok(())
    }

    /// Adds secondary IPs EC2 assigned to ENI `eni_id`. IPs it already has
    /// are skipped; nothing changes if any IP conflicts.
    pub fn add_ips(&mut self, eni_id: &str, ips: &[Ipv4Addr]) -> Result<(), IpamError> {
        self.eni_entry(eni_id)?;
        let mut new = Vec::new();
        for ip in ips {
            if self.check_new_address(eni_id, *ip)? && !new.contains(ip) {
                new.push(*ip);
            }
        }
        for ip in new {
            self.insert_ip(eni_id, ip);
        }
        Ok(())
    }

    /// Adds /28 prefixes EC2 delegated to ENI `eni_id`. Prefixes it already
    /// has are skipped; nothing changes if any prefix is invalid or
    /// conflicts.
    pub fn add_prefixes(&mut self, eni_id: &str, prefixes: &[Ipv4Net]) -> Result<(), IpamError> {
        self.eni_entry(eni_id)?;
        let mut new: Vec<Ipv4Net> = Vec::new();
        for prefix in prefixes {
            if self.check_new_prefix(eni_id, *prefix)? {
                if new.contains(prefix) {
                    continue;
                }
                new.push(*prefix);
            }
        }
        for prefix in new {
            self.insert_prefix(eni_id, prefix);
        }
        Ok(())
    }

    /// Fails if any of `addresses` is assigned or cooling down.
    fn check_not_held(
        &self,
        eni_id: &str,
        addresses: impl IntoIterator<Item = Ipv4Addr>,
        now: Instant,
    ) -> Result<(), IpamError> {
        for ip in addresses {
            if let Some(slot) = self.slots.get(&ip).filter(|s| s.is_held(now)) {
                return Err(IpamError::AddressInUse {
                    eni_id: eni_id.to_owned(),
                    ip,
                    state: slot.held_state_name(),
                });
            }
        }
        Ok(())
    }

    /// Removes secondary IPs EC2 unassigned from ENI `eni_id`. Refused
    /// (nothing changes) if one is not on the ENI or is assigned or cooling.
    pub fn remove_ips(
        &mut self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        now: Instant,
    ) -> Result<(), IpamError> {
        let eni = self.eni_entry(eni_id)?;
        if let Some(ip) = ips.iter().find(|ip| !eni.ips.contains(ip)) {
            return Err(IpamError::NotOnEni {
                eni_id: eni_id.to_owned(),
                what: ip.to_string(),
            });
        }
        self.check_not_held(eni_id, ips.iter().copied(), now)?;
        for ip in ips {
            self.slots.remove(ip);
            if let Some(eni) = self.enis.get_mut(eni_id) {
                eni.ips.remove(ip);
            }
        }
        Ok(())
    }

    /// Removes prefixes EC2 took back from ENI `eni_id`. Refused (nothing
    /// changes) if one is not on the ENI or holds an assigned or cooling
    /// address.
    pub fn remove_prefixes(
        &mut self,
        eni_id: &str,
        prefixes: &[Ipv4Net],
        now: Instant,
    ) -> Result<(), IpamError> {
        let eni = self.eni_entry(eni_id)?;
        if let Some(p) = prefixes.iter().find(|p| !eni.prefixes.contains(p)) {
            return Err(IpamError::NotOnEni {
                eni_id: eni_id.to_owned(),
                what: p.to_string(),
            });
        }
        self.check_not_held(
            eni_id,
            prefixes.iter().flat_map(|p| prefix_addresses(*p)),
            now,
        )?;
        for prefix in prefixes {
            prefix_addresses(*prefix).for_each(|ip| {
                self.slots.remove(&ip);
            });
            if let Some(eni) = self.enis.get_mut(eni_id) {
                eni.prefixes.remove(prefix);
            }
        }
        Ok(())
    }

    /// Removes ENI `eni_id` after it was detached. Refused if it has an
    /// assigned or cooling address.
    pub fn remove_eni(&mut self, eni_id: &str, now: Instant) -> Result<Eni, IpamError> {
        let eni = self.eni_entry(eni_id)?;
        self.check_not_held(eni_id, eni.addresses(), now)?;
        let eni = self
            .enis
            .remove(eni_id)
            .ok_or_else(|| IpamError::UnknownEni(eni_id.to_owned()))?;
        for ip in eni.addresses() {
            self.slots.remove(&ip);
        }
        Ok(eni.to_eni())
    }

    // ----- start-up ---------------------------------------------------------

    /// Removes `ip` from the pool whatever its state, dropping its
    /// assignment (reported) if it has one.
    fn evict(&mut self, ip: Ipv4Addr, why: &str, out: &mut Vec<Correction>) {
        let Some(slot) = self.slots.remove(&ip) else {
            return;
        };
        if let Some(Use::Assigned(key)) = slot.used
            && let Some(a) = self.assignments.remove(&key)
        {
            out.push(Correction::AssignmentDropped {
                key: a.key,
                ip: a.ip,
                pod: a.pod,
                why: why.to_owned(),
            });
        }
    }

    /// Makes the pool match the ENIs the cloud reports attached to the node
    /// (at start-up, and whenever the reconciler resynchronises). ENIs and
    /// addresses the cloud no longer reports leave the pool, and an
    /// assignment on one is dropped; ENIs and addresses the pool did not
    /// know join it as free. Addresses reported twice or invalid prefixes
    /// are ignored. Returns every correction, to be logged.
    pub fn reconcile_with_inventory(&mut self, inventory: &[Eni]) -> Vec<Correction> {
        let mut out = Vec::new();
        let reported: HashMap<&str, &Eni> = inventory.iter().map(|e| (e.id.as_str(), e)).collect();

        // Removals first, so an address that moved between ENIs can join its
        // new ENI afterwards.
        let gone: Vec<String> = self
            .enis
            .keys()
            .filter(|id| !reported.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(eni) = self.enis.remove(&id) {
                let why = format!("its ENI {id} is no longer attached to the node");
                for ip in eni.addresses() {
                    self.evict(ip, &why, &mut out);
                }
                out.push(Correction::EniRemoved { eni_id: id });
            }
        }
        for eni in inventory {
            let Some(entry) = self.enis.get_mut(&eni.id) else {
                continue;
            };
            if let Some(what) = entry.update_from(eni) {
                out.push(Correction::EniUpdated {
                    eni_id: eni.id.clone(),
                    what,
                });
            }
            let lost_ips: Vec<Ipv4Addr> = entry
                .ips
                .iter()
                .filter(|ip| !eni.ips.contains(ip))
                .copied()
                .collect();
            let lost_prefixes: Vec<Ipv4Net> = entry
                .prefixes
                .iter()
                .filter(|p| !eni.prefixes.contains(p))
                .copied()
                .collect();
            for ip in &lost_ips {
                entry.ips.remove(ip);
            }
            for prefix in &lost_prefixes {
                entry.prefixes.remove(prefix);
            }
            let why = format!("the address is no longer on ENI {}", eni.id);
            let lost: Vec<Ipv4Addr> = lost_ips
                .iter()
                .copied()
                .chain(lost_prefixes.iter().flat_map(|p| prefix_addresses(*p)))
                .collect();
            if !lost.is_empty() {
                out.push(Correction::AddressesRemoved {
                    eni_id: eni.id.clone(),
                    count: count(lost.len()),
                });
            }
            for ip in lost {
                self.evict(ip, &why, &mut out);
            }
        }

        // Additions.
        for eni in inventory {
            let known = self.enis.contains_key(&eni.id);
            if !known {
                self.enis.insert(eni.id.clone(), EniEntry::empty(eni));
            }
            let before = self.slots.len();
            for ip in &eni.ips {
                match self.check_new_address(&eni.id, *ip) {
                    Ok(true) => self.insert_ip(&eni.id, *ip),
                    Ok(false) => {}
                    Err(e) => out.push(Correction::Ignored {
                        eni_id: eni.id.clone(),
                        what: ip.to_string(),
                        why: e.to_string(),
                    }),
                }
            }
            for prefix in &eni.prefixes {
                match self.check_new_prefix(&eni.id, *prefix) {
                    Ok(true) => self.insert_prefix(&eni.id, *prefix),
                    Ok(false) => {}
                    Err(e) => out.push(Correction::Ignored {
                        eni_id: eni.id.clone(),
                        what: prefix.to_string(),
                        why: e.to_string(),
                    }),
                }
            }
            let added = count(self.slots.len() - before);
            if !known {
                out.push(Correction::EniAdded {
                    eni_id: eni.id.clone(),
                    addresses: added,
                });
            } else if added > 0 {
                out.push(Correction::AddressesAdded {
                    eni_id: eni.id.clone(),
                    count: added,
                });
            }
        }
        out
    }

    /// Lays checkpointed assignments and cooldowns over the pool. An
    /// assignment whose address is on no ENI of the pool, or already held,
    /// is dropped and reported; a cooldown keeps the time it had left when
    /// measured on the wall clock. Churn counters are not replayed.
    pub fn restore(
        &mut self,
        allocations: Vec<Assignment>,
        cooling: &[CoolingAddress],
        now: Now,
    ) -> Vec<Correction> {
        let mut out = Vec::new();
        for a in allocations {
            let refusal = if let Some(held) = self.assignments.get(&a.key) {
                (held.ip != a.ip).then(|| format!("its key already holds {}", held.ip))
            } else {
                match self.slots.get(&a.ip) {
                    None => Some("the address is on no ENI attached to the node".to_owned()),
                    Some(Slot {
                        used: Some(Use::Assigned(other)),
                        ..
                    }) => Some(format!("the address is already assigned to {other}")),
                    Some(Slot {
                        used: Some(Use::Releasing),
                        ..
                    }) => Some("the address is being released".to_owned()),
                    Some(_) => None,
                }
            };
            if let Some(why) = refusal {
                out.push(Correction::AssignmentDropped {
                    key: a.key,
                    ip: a.ip,
                    pod: a.pod,
                    why,
                });
                continue;
            }
            if let Some(slot) = self.slots.get_mut(&a.ip) {
                slot.used = Some(Use::Assigned(a.key.clone()));
            }
            self.assignments.insert(a.key.clone(), a);
        }
        for c in cooling {
            let left = self
                .config
                .cooldown
                .saturating_sub(now.wall_since(c.released_at));
            if left.is_zero() {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(&c.ip)
                && slot.used.is_none()
            {
                slot.used = Some(Use::Cooling {
                    until: now.mono + left,
                    released_at: c.released_at,
                });
            }
        }
        out
    }
}
