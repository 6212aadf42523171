//! Start-up and resynchronisation: matching the pool to the cloud's
//! inventory and laying the checkpoint over it.

use super::Datastore;
use super::slot::{EniEntry, Slot, Use, count, prefix_addresses};
use crate::ipam::Now;
use crate::ipam::model::{Assignment, CoolingAddress, Correction, Eni};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

impl Datastore {
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
