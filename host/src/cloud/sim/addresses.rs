//! Address allocation inside one simulated subnet.
//!
//! Like EC2: the first four addresses and the last one of every subnet are reserved; secondary
//! IPs are picked at random among the free addresses (which is what fragments real subnets); a
//! /28 prefix must be a free, 16-aligned block of 16 addresses.

use crate::cloud::types::PREFIX_ADDRESSES;
use ipnet::Ipv4Net;
use rand::Rng;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Addresses EC2 reserves at the start of every subnet (network, router, DNS, future use).
const RESERVED_LOW: u32 = 4;

/// The address space of one subnet.
#[derive(Debug, Clone)]
pub(super) struct AddressPool {
    net: Ipv4Net,
    /// Offsets (from the network address) in use, the reserved ones included.
    used: BTreeSet<u32>,
}

impl AddressPool {
    /// An empty subnet with EC2's five reserved addresses taken.
    pub(super) fn new(net: Ipv4Net) -> Self {
        let net = net.trunc();
        let size = Self::size_of(net);
        let mut used: BTreeSet<u32> = (0..RESERVED_LOW.min(size)).collect();
        used.insert(size.saturating_sub(1));
        AddressPool { net, used }
    }

    fn size_of(net: Ipv4Net) -> u32 {
        1u32.checked_shl(32 - u32::from(net.prefix_len()))
            .unwrap_or(u32::MAX)
    }

    fn size(&self) -> u32 {
        Self::size_of(self.net)
    }

    fn base(&self) -> u32 {
        u32::from(self.net.network())
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.net.contains(&ip).then(|| u32::from(ip) - self.base())
    }

    /// The subnet's CIDR.
    pub(super) fn net(&self) -> Ipv4Net {
        self.net
    }

    /// Free addresses (what EC2 reports as `AvailableIpAddressCount`).
    pub(super) fn free(&self) -> u32 {
        self.size()
            .saturating_sub(u32::try_from(self.used.len()).unwrap_or(u32::MAX))
    }

    /// Whether `ip` is one of the five reserved addresses.
    pub(super) fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        self.offset(ip)
            .is_some_and(|o| o < RESERVED_LOW || o == self.size() - 1)
    }

    /// Takes a specific free address (used to model other tenants of the subnet).
    pub(super) fn take_exact(&mut self, ip: Ipv4Addr) -> bool {
        match self.offset(ip) {
            Some(o) => self.used.insert(o),
            None => false,
        }
    }

    /// Takes `count` free addresses at random, or none when fewer are free.
    pub(super) fn take_ips(&mut self, count: u32, rng: &mut impl Rng) -> Option<Vec<Ipv4Addr>> {
        if count > self.free() {
            return None;
        }
        let mut taken = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let nth = rng.random_range(0..self.free());
            let offset = (0..self.size())
                .filter(|o| !self.used.contains(o))
                .nth(nth as usize)?;
            self.used.insert(offset);
            taken.push(Ipv4Addr::from(self.base() + offset));
        }
        Some(taken)
    }

    /// Takes `count` free aligned /28 blocks at random, or none when fewer exist.
    pub(super) fn take_prefixes(&mut self, count: u32, rng: &mut impl Rng) -> Option<Vec<Ipv4Net>> {
        let mut taken = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let candidates: Vec<u32> = (0..self.size() / PREFIX_ADDRESSES)
                .map(|block| block * PREFIX_ADDRESSES)
                .filter(|start| {
                    self.used
                        .range(*start..start + PREFIX_ADDRESSES)
                        .next()
                        .is_none()
                })
                .collect();
            if candidates.is_empty() {
                for prefix in &taken {
                    self.release_prefix(*prefix);
                }
                return None;
            }
            let start = candidates[rng.random_range(0..candidates.len())];
            self.used.extend(start..start + PREFIX_ADDRESSES);
            let prefix = Ipv4Net::new(Ipv4Addr::from(self.base() + start), 28).ok()?;
            taken.push(prefix);
        }
        Some(taken)
    }

    /// Returns an address to the pool.
    pub(super) fn release_ip(&mut self, ip: Ipv4Addr) {
        if let Some(o) = self.offset(ip)
            && !self.is_reserved(ip)
        {
            self.used.remove(&o);
        }
    }

    /// Returns a /28 block to the pool.
    pub(super) fn release_prefix(&mut self, prefix: Ipv4Net) {
        for ip in prefix_addresses(prefix) {
            self.release_ip(ip);
        }
    }
}

/// Every address of a /28 prefix (all 16 are usable by pods).
pub(super) fn prefix_addresses(prefix: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(prefix.network())..=u32::from(prefix.broadcast())).map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn pool(cidr: &str) -> AddressPool {
        AddressPool::new(cidr.parse().expect("cidr"))
    }

    #[test]
    fn five_addresses_are_reserved() {
        let mut p = pool("10.0.0.0/24");
        assert_eq!(p.free(), 251);
        assert!(p.is_reserved("10.0.0.3".parse().expect("ip")));
        assert!(p.is_reserved("10.0.0.255".parse().expect("ip")));
        assert!(!p.take_exact("10.0.0.0".parse().expect("ip")));
        let mut rng = StdRng::seed_from_u64(1);
        let all = p.take_ips(251, &mut rng).expect("fits");
        assert!(all.iter().all(|ip| !p.is_reserved(*ip)));
        assert!(p.take_ips(1, &mut rng).is_none());
    }

    #[test]
    fn a_27_never_yields_a_prefix() {
        // Its two /28 blocks hold the reserved low addresses and the broadcast address.
        let mut p = pool("10.0.0.0/27");
        let mut rng = StdRng::seed_from_u64(1);
        assert!(p.take_prefixes(1, &mut rng).is_none());
        assert_eq!(p.free(), 27);
    }

    #[test]
    fn prefixes_are_aligned_and_all_or_nothing() {
        let mut p = pool("10.0.0.0/26");
        let mut rng = StdRng::seed_from_u64(7);
        let got = p.take_prefixes(2, &mut rng).expect("two free blocks");
        for prefix in &got {
            assert_eq!(prefix.prefix_len(), 28);
            assert_eq!(u32::from(prefix.network()) % 16, 0);
        }
        let free = p.free();
        assert!(p.take_prefixes(1, &mut rng).is_none());
        assert_eq!(p.free(), free, "a failed request takes nothing");
        p.release_prefix(got[0]);
        assert_eq!(p.take_prefixes(1, &mut rng), Some(vec![got[0]]));
    }
}
