//! The pool datastore: ENIs, their addresses, and which pod holds which.
//! One file per concern: address and ENI records (`slot`), pods (here),
//! queries, scale-down, applying cloud results, start-up.

mod apply;
mod queries;
mod scale_down;
mod slot;
mod startup;

use super::activity::Churn;
use super::model::{
    ADDRESSES_PER_PREFIX, AddressState, Assignment, AssignmentKey, CoolingAddress, Correction, Eni,
    GivenBack, IpamConfig, Placement, PodMeta,
};
use super::{IpamError, Now, SgSet};
use slot::{Counts, EniEntry, Slot, Use, count, prefix_addresses};
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;
use std::time::Instant;

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
///
/// # Placement rule
///
/// A pod of security-group set `G` gets an address only from an ENI that
/// carries exactly `G` (and serves pods: the primary ENI does unless
/// [`IpamConfig::primary_eni_serves_pods`] is off). Among those ENIs the one
/// with the most assigned addresses wins, ties going to the lowest device
/// index; inside it, the free address whose prefix holds the most assigned
/// or cooling addresses wins (a secondary IP counts as a prefix of its own),
/// ties going to the lowest address. Packing this way empties the other ENIs
/// and prefixes so that scale-down can give them back to EC2.
///
/// # Address life cycle
///
/// free → assigned → cooling (for [`IpamConfig::cooldown`]) → free. Scale-down
/// first marks free addresses, prefixes or a whole ENI as *releasing*
/// (`begin_release_*`), which takes them out of placement while the EC2 call
/// is in flight, then removes them (`remove_*`) or puts them back
/// (`abort_*`). Assigned and cooling addresses are never marked releasing.
///
/// The addresses the cloud reports are the truth: applying a result never
/// fails for an address the pool can hold, and
/// [`Datastore::reconcile_with_inventory`] brings the pool back in line
/// with the cloud after a restart or a missed update.
#[derive(Debug, Clone)]
pub struct Datastore {
    config: IpamConfig,
    enis: BTreeMap<String, EniEntry>,
    slots: HashMap<Ipv4Addr, Slot>,
    assignments: HashMap<AssignmentKey, Assignment>,
    churn: HashMap<SgSet, Churn>,
    /// Addresses Weft gave back to EC2, and when: a stale read that still
    /// shows one must not bring it back as free.
    withheld: HashMap<Ipv4Addr, Instant>,
    /// ENIs Weft deleted, and when, for the same reason.
    gone_enis: HashMap<String, Instant>,
    /// Addresses EC2 no longer has that a pod held when they left the pool:
    /// not handed out until the node stops routing them.
    quarantine: BTreeMap<Ipv4Addr, AssignmentKey>,
    /// ENIs on the node's default network card that Weft does not manage:
    /// they take device slots all the same.
    foreign_enis: u32,
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
            withheld: HashMap::new(),
            gone_enis: HashMap::new(),
            quarantine: BTreeMap::new(),
            foreign_enis: 0,
        }
    }

    /// The stale-read grace period.
    fn grace(&self) -> Duration {
        self.config.stale_read_grace
    }

    /// Records that Weft just changed ENI `eni_id` (reads may lag it).
    pub(crate) fn touch(&mut self, eni_id: &str, now: Instant) {
        if let Some(eni) = self.enis.get_mut(eni_id) {
            eni.changed_at = Some(now);
            eni.missing = None;
            eni.missing_ips.clear();
            eni.missing_prefixes.clear();
        }
    }

    /// Sets how many ENIs Weft does not manage occupy the default network
    /// card (counted against the instance's ENI limit).
    pub(crate) fn set_foreign_enis(&mut self, count: u32) {
        self.foreign_enis = count;
    }

    /// The pool after a restart: the ENIs the cloud reports, less what Weft
    /// gave back within the grace period, then the checkpointed assignments
    /// and cooldowns laid over them (see [`Datastore::withhold`],
    /// [`Datastore::reconcile_with_inventory`] and [`Datastore::restore`]).
    /// Returns every correction made, to be logged.
    pub fn rebuild(
        config: IpamConfig,
        inventory: &[Eni],
        allocations: Vec<Assignment>,
        cooling: &[CoolingAddress],
        given_back: &GivenBack,
        now: Now,
    ) -> (Self, Vec<Correction>) {
        let mut store = Datastore::new(config);
        store.withhold(given_back, now);
        let mut corrections = store.reconcile_with_inventory(inventory);
        corrections.extend(store.restore(allocations, cooling, now));
        (store, corrections)
    }

    /// The settings.
    pub(crate) fn config(&self) -> &IpamConfig {
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
        for eni in self
            .group_enis(group)
            .filter(|e| !e.draining && e.missing.is_none())
        {
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
                    Some(s) if s.is_free(now) && !eni.doubtful(*ip, None) => {
                        consider((Reverse(0), *ip));
                    }
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
                if eni.doubtful(prefix.network(), Some(*prefix)) {
                    continue;
                }
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
}
