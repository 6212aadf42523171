//! Applying what the cloud did: addresses and ENIs joining and leaving.

use super::Datastore;
use super::slot::{EniEntry, Slot, Use, check_prefix, prefix_addresses};
use crate::ipam::IpamError;
use crate::ipam::model::Eni;
use ipnet::Ipv4Net;
use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::time::Instant;

impl Datastore {
    /// Checks that `ip` may join ENI `eni_id`; `Ok(false)` if it already has.
    pub(super) fn check_new_address(&self, eni_id: &str, ip: Ipv4Addr) -> Result<bool, IpamError> {
        match self.slots.get(&ip) {
            None => Ok(true),
            Some(slot) if slot.eni == eni_id && slot.prefix.is_none() => Ok(false),
            Some(slot) => Err(IpamError::AddressConflict {
                ip,
                owner: slot.eni.clone(),
            }),
        }
    }

    pub(super) fn check_new_prefix(
        &self,
        eni_id: &str,
        prefix: Ipv4Net,
    ) -> Result<bool, IpamError> {
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

    pub(super) fn insert_ip(&mut self, eni_id: &str, ip: Ipv4Addr) {
        self.withheld.remove(&ip);
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

    pub(super) fn insert_prefix(&mut self, eni_id: &str, prefix: Ipv4Net) {
        if let Some(eni) = self.enis.get_mut(eni_id) {
            eni.prefixes.insert(prefix);
            for ip in prefix_addresses(prefix) {
                self.withheld.remove(&ip);
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
    pub(super) fn check_not_held(
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
            self.withheld.insert(*ip, now);
            if let Some(eni) = self.enis.get_mut(eni_id) {
                eni.ips.remove(ip);
                eni.missing_ips.remove(ip);
            }
        }
        self.touch(eni_id, now);
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
                self.withheld.insert(ip, now);
            });
            if let Some(eni) = self.enis.get_mut(eni_id) {
                eni.prefixes.remove(prefix);
                eni.missing_prefixes.remove(prefix);
            }
        }
        self.touch(eni_id, now);
        Ok(())
    }

    /// Records that ENI `eni_id`, which the pool does not hold, was deleted:
    /// a stale read does not bring it in for the grace period.
    pub(crate) fn deleted_eni(&mut self, eni_id: &str, now: Instant) {
        if !self.enis.contains_key(eni_id) {
            self.gone_enis.insert(eni_id.to_owned(), now);
        }
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
            self.withheld.insert(ip, now);
        }
        self.gone_enis.insert(eni_id.to_owned(), now);
        Ok(eni.to_eni())
    }
}
