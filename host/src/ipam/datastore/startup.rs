//! Start-up and resynchronisation: matching the pool to the cloud's
//! inventory and laying the checkpoint over it.

use super::Datastore;
use super::slot::{EniEntry, Missing, Slot, Use, count, prefix_addresses};
use crate::ipam::Now;
use crate::ipam::model::{Assignment, CoolingAddress, Correction, Eni, GivenBack};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

/// How far a read of the cloud is trusted.
#[derive(Debug, Clone, Copy)]
enum Trust {
    /// Completely: what it lacks is gone (start-up, after confirming reads).
    Full,
    /// As one of a series of possibly stale reads taken at this instant.
    Stale(Instant),
}

impl Datastore {
    /// Removes `ip` from the pool whatever its state, dropping its
    /// assignment (reported) if it has one; with `quarantine`, the address
    /// is not taken back from a read until [`Datastore::lift_quarantine`].
    fn evict(&mut self, ip: Ipv4Addr, why: &str, quarantine: bool, out: &mut Vec<Correction>) {
        let Some(slot) = self.slots.remove(&ip) else {
            return;
        };
        if let Some(Use::Assigned(key)) = slot.used
            && let Some(a) = self.assignments.remove(&key)
        {
            out.push(Correction::AssignmentDropped {
                key: a.key.clone(),
                ip: a.ip,
                pod: a.pod,
                why: why.to_owned(),
            });
            if quarantine {
                self.quarantine.insert(ip, a.key.clone());
                out.push(Correction::Quarantined { ip, key: a.key });
            }
        }
    }

    /// Withholds what Weft gave back less than the grace period before `now`
    /// (on the wall clock: it comes from the checkpoint of an earlier run)
    /// from the reads of the cloud until the grace period has passed, as if
    /// this run had given it back.
    pub(crate) fn withhold(&mut self, given_back: &GivenBack, now: Now) {
        let grace = self.grace();
        let since = |at: SystemTime| {
            let age = now.wall_since(at);
            (age < grace).then(|| now.mono.checked_sub(age).unwrap_or(now.mono))
        };
        for (ip, at) in &given_back.addresses {
            if let Some(at) = since(*at)
                && !self.slots.contains_key(ip)
            {
                self.withheld.insert(*ip, at);
            }
        }
        for (id, at) in &given_back.enis {
            if let Some(at) = since(*at)
                && !self.enis.contains_key(id)
            {
                self.gone_enis.insert(id.clone(), at);
            }
        }
    }

    /// Makes the pool match the ENIs the cloud reports attached to the node,
    /// trusting the report completely (start-up) except for what Weft gave
    /// back within the grace period ([`Datastore::withhold`]). ENIs and
    /// addresses the cloud no longer reports leave the pool, and an
    /// assignment on one is dropped; ENIs and addresses the pool did not
    /// know join it as free.
    /// Addresses reported twice or invalid prefixes are ignored. Returns
    /// every correction, to be logged.
    pub fn reconcile_with_inventory(&mut self, inventory: &[Eni]) -> Vec<Correction> {
        self.reconcile(inventory, Trust::Full)
    }

    /// Takes in one read of the cloud while running, knowing reads lag
    /// writes: an ENI or address missing from it leaves the pool only once
    /// it has been missing from [`IpamConfig::confirm_reads`] reads in a
    /// row over [`IpamConfig::stale_read_grace`] and Weft did not change its
    /// ENI meanwhile (until then it is not handed out); an address that
    /// leaves while a pod holds it is quarantined. Addresses and ENIs Weft
    /// gave back within the grace period are not taken back from the read.
    ///
    /// [`IpamConfig::confirm_reads`]: crate::ipam::IpamConfig::confirm_reads
    /// [`IpamConfig::stale_read_grace`]: crate::ipam::IpamConfig::stale_read_grace
    pub(crate) fn observe_inventory(&mut self, inventory: &[Eni], now: Instant) -> Vec<Correction> {
        self.reconcile(inventory, Trust::Stale(now))
    }

    /// Quarantined addresses, to be checked against the node's routes.
    pub(crate) fn quarantined(&self) -> Vec<Ipv4Addr> {
        self.quarantine.keys().copied().collect()
    }

    /// Ends the quarantine of `ips` (the node no longer routes them): the
    /// next read that reports one brings it back as free.
    pub(crate) fn lift_quarantine(&mut self, ips: &[Ipv4Addr]) -> Vec<Correction> {
        ips.iter()
            .filter(|ip| self.quarantine.remove(*ip).is_some())
            .map(|ip| Correction::QuarantineLifted { ip: *ip })
            .collect()
    }

    /// Whether a read reporting `ip` must not put it into the pool.
    fn held_back(&self, ip: Ipv4Addr, trust: Trust) -> bool {
        if self.quarantine.contains_key(&ip) {
            return true;
        }
        match trust {
            // Only what the checkpoint says was given back within the grace
            // period is withheld at start-up.
            Trust::Full => self.withheld.contains_key(&ip),
            Trust::Stale(now) => self
                .withheld
                .get(&ip)
                .is_some_and(|at| now.saturating_duration_since(*at) < self.grace()),
        }
    }

    fn reconcile(&mut self, inventory: &[Eni], trust: Trust) -> Vec<Correction> {
        let mut out = Vec::new();
        let reported: HashMap<&str, &Eni> = inventory.iter().map(|e| (e.id.as_str(), e)).collect();
        let (reads, grace) = (self.config.confirm_reads, self.grace());
        let quarantine = matches!(trust, Trust::Stale(_));
        if let Trust::Stale(now) = trust {
            self.withheld
                .retain(|_, at| now.saturating_duration_since(*at) < grace);
            self.gone_enis
                .retain(|_, at| now.saturating_duration_since(*at) < grace);
        }
        // Whether something missing from this read is confirmed gone.
        let confirmed = |missing: &mut Option<Missing>, changed: bool| match trust {
            Trust::Full => true,
            Trust::Stale(_) if changed => {
                *missing = None;
                false
            }
            Trust::Stale(now) => missing
                .get_or_insert_with(|| Missing::new(now))
                .missed(now, reads, grace),
        };

        // Removals first, so an address that moved between ENIs can join its
        // new ENI afterwards.
        let absent: Vec<String> = self
            .enis
            .keys()
            .filter(|id| !reported.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in absent {
            let Some(entry) = self.enis.get_mut(&id) else {
                continue;
            };
            let changed = matches!(trust, Trust::Stale(now) if entry.changed_within(grace, now));
            let mut missing = entry.missing;
            let gone = confirmed(&mut missing, changed);
            entry.missing = missing;
            if !gone {
                continue;
            }
            if let Some(eni) = self.enis.remove(&id) {
                let why = format!("its ENI {id} is no longer attached to the node");
                for ip in eni.addresses() {
                    self.evict(ip, &why, quarantine, &mut out);
                }
                out.push(Correction::EniRemoved { eni_id: id });
            }
        }
        for eni in inventory {
            let Some(entry) = self.enis.get_mut(&eni.id) else {
                continue;
            };
            entry.missing = None;
            if let Some(what) = entry.update_from(eni) {
                out.push(Correction::EniUpdated {
                    eni_id: eni.id.clone(),
                    what,
                });
            }
            let changed = matches!(trust, Trust::Stale(now) if entry.changed_within(grace, now));
            let mut lost_ips = Vec::new();
            for ip in entry.ips.clone() {
                if eni.ips.contains(&ip) {
                    entry.missing_ips.remove(&ip);
                    continue;
                }
                let mut missing = entry.missing_ips.get(&ip).copied();
                let gone = confirmed(&mut missing, changed);
                match missing {
                    Some(m) if !gone => entry.missing_ips.insert(ip, m),
                    _ => entry.missing_ips.remove(&ip),
                };
                if gone {
                    lost_ips.push(ip);
                }
            }
            let mut lost_prefixes = Vec::new();
            for prefix in entry.prefixes.clone() {
                if eni.prefixes.contains(&prefix) {
                    entry.missing_prefixes.remove(&prefix);
                    continue;
                }
                let mut missing = entry.missing_prefixes.get(&prefix).copied();
                let gone = confirmed(&mut missing, changed);
                match missing {
                    Some(m) if !gone => entry.missing_prefixes.insert(prefix, m),
                    _ => entry.missing_prefixes.remove(&prefix),
                };
                if gone {
                    lost_prefixes.push(prefix);
                }
            }
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
                self.evict(ip, &why, quarantine, &mut out);
            }
        }

        // Additions.
        for eni in inventory {
            let known = self.enis.contains_key(&eni.id);
            if !known && self.gone_enis.contains_key(&eni.id) {
                continue;
            }
            if !known {
                self.enis.insert(eni.id.clone(), EniEntry::empty(eni));
            }
            let before = self.slots.len();
            for ip in &eni.ips {
                if self.held_back(*ip, trust) {
                    continue;
                }
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
                if prefix_addresses(*prefix).any(|ip| self.held_back(ip, trust)) {
                    continue;
                }
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
    /// is dropped and reported (on no ENI: also quarantined, since its pod
    /// may still run); a cooldown keeps the time it had left when
    /// measured on the wall clock. Churn counters are not replayed.
    pub(crate) fn restore(
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
                let (ip, key) = (a.ip, a.key.clone());
                out.push(Correction::AssignmentDropped {
                    key: a.key,
                    ip: a.ip,
                    pod: a.pod,
                    why,
                });
                if !self.slots.contains_key(&ip) {
                    // The pod may still run with this address routed to it.
                    self.quarantine.insert(ip, key.clone());
                    out.push(Correction::Quarantined { ip, key });
                }
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
