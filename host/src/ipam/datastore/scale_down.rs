//! Scale-down: reserving free addresses, prefixes and ENIs while EC2
//! takes them back.

use super::Datastore;
use super::slot::{Use, prefix_addresses};
use crate::ipam::{IpamError, Now};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::Instant;

impl Datastore {
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
    pub(crate) fn abort_release_eni(&mut self, eni_id: &str) -> Result<(), IpamError> {
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
}
