//! IPv6 mode's addresses: every pod interface gets one address of the
//! /80 prefix delegated to the primary ENI. No warm pool: the prefix is
//! delegated once and holds 2^48 addresses.
//!
//! Addresses are handed out in order from a cursor that only moves forward
//! (wrapping after the last address), so a released address is not handed
//! out again before every other one of the prefix has been: no cooldown is
//! needed. The cursor is part of the checkpoint, so a restart does not
//! hand out the address of a pod that was just deleted either.

use super::{AssignmentKey, PodMeta};
use ipnet::Ipv6Net;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::SystemTime;

/// An IPv6 address held by a pod interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Assignment {
    /// Who holds it.
    pub key: AssignmentKey,
    pub ip: Ipv6Addr,
    pub pod: PodMeta,
    /// When it was assigned.
    pub assigned_at: SystemTime,
}

/// The /80 of the primary ENI and who holds which of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Block {
    prefix: Ipv6Net,
    /// The ENI the prefix is delegated to.
    eni_id: String,
    assignments: BTreeMap<AssignmentKey, Ipv6Assignment>,
    /// Offset in the prefix of the next address to try; never 0 (the
    /// prefix's own address, which EC2 does not use for hosts either).
    next: u128,
}

impl Ipv6Block {
    /// An empty block over `prefix` of ENI `eni_id`.
    pub fn new(prefix: Ipv6Net, eni_id: impl Into<String>) -> Self {
        Ipv6Block {
            prefix: prefix.trunc(),
            eni_id: eni_id.into(),
            assignments: BTreeMap::new(),
            next: 1,
        }
    }

    /// The block as a checkpoint left it: `assignments` outside the prefix
    /// (a prefix EC2 no longer reports for the ENI) or holding an address
    /// twice are returned apart, to be reported as dropped.
    pub fn restore(
        prefix: Ipv6Net,
        eni_id: impl Into<String>,
        next: u128,
        assignments: Vec<Ipv6Assignment>,
    ) -> (Self, Vec<Ipv6Assignment>) {
        let mut block = Ipv6Block::new(prefix, eni_id);
        block.next = block.offset_in_range(next);
        let mut dropped = Vec::new();
        for held in assignments {
            let taken = block.assignments.values().any(|a| a.ip == held.ip);
            if !block.prefix.contains(&held.ip) || taken || block.offset(held.ip) == 0 {
                dropped.push(held);
            } else {
                block.assignments.insert(held.key.clone(), held);
            }
        }
        (block, dropped)
    }

    /// The prefix.
    pub fn prefix(&self) -> Ipv6Net {
        self.prefix
    }

    /// The ENI the prefix is delegated to.
    pub fn eni_id(&self) -> &str {
        &self.eni_id
    }

    /// The cursor (for the checkpoint).
    pub fn next(&self) -> u128 {
        self.next
    }

    /// Every assignment, by key.
    pub fn assignments(&self) -> impl Iterator<Item = &Ipv6Assignment> {
        self.assignments.values()
    }

    /// What `key` holds.
    pub fn assignment(&self, key: &AssignmentKey) -> Option<&Ipv6Assignment> {
        self.assignments.get(key)
    }

    /// Gives `key` an address; a key that holds one keeps it (a repeated
    /// ADD). Returns the address and whether it is new.
    pub fn assign(
        &mut self,
        key: AssignmentKey,
        pod: PodMeta,
        now: SystemTime,
    ) -> (Ipv6Addr, bool) {
        if let Some(held) = self.assignments.get(&key) {
            return (held.ip, false);
        }
        let ip = loop {
            let candidate = self.address(self.next);
            self.next = self.offset_in_range(self.next + 1);
            // At most as many tries as there are pods: 2^48 addresses.
            if !self.assignments.values().any(|a| a.ip == candidate) {
                break candidate;
            }
        };
        self.assignments.insert(
            key.clone(),
            Ipv6Assignment {
                key,
                ip,
                pod,
                assigned_at: now,
            },
        );
        (ip, true)
    }

    /// Releases what `key` holds; `None` for a key that holds nothing.
    pub fn release(&mut self, key: &AssignmentKey) -> Option<Ipv6Assignment> {
        self.assignments.remove(key)
    }

    /// Addresses in the prefix.
    fn size(&self) -> u128 {
        1u128 << (128 - u32::from(self.prefix.prefix_len()))
    }

    /// `offset` wrapped into `1..size`.
    fn offset_in_range(&self, offset: u128) -> u128 {
        let size = self.size();
        if offset == 0 || offset >= size {
            1
        } else {
            offset
        }
    }

    fn address(&self, offset: u128) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.prefix.network()) + offset)
    }

    fn offset(&self, ip: Ipv6Addr) -> u128 {
        u128::from(ip) - u128::from(self.prefix.network())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> AssignmentKey {
        AssignmentKey::new("weft", c, "eth0")
    }

    fn block() -> Ipv6Block {
        Ipv6Block::new("2001:db8:0:0:1::/80".parse().unwrap(), "eni-1")
    }

    #[test]
    fn hands_out_addresses_in_order_and_keeps_a_repeated_key() {
        let mut b = block();
        let now = SystemTime::UNIX_EPOCH;
        let (a, fresh) = b.assign(key("a"), PodMeta::default(), now);
        assert_eq!((a.to_string().as_str(), fresh), ("2001:db8::1:0:0:1", true));
        assert_eq!(b.assign(key("a"), PodMeta::default(), now), (a, false));
        let (c, _) = b.assign(key("c"), PodMeta::default(), now);
        assert_eq!(c.to_string(), "2001:db8::1:0:0:2");
    }

    #[test]
    fn a_released_address_is_not_handed_out_again_soon() {
        let mut b = block();
        let now = SystemTime::UNIX_EPOCH;
        let (a, _) = b.assign(key("a"), PodMeta::default(), now);
        assert_eq!(b.release(&key("a")).unwrap().ip, a);
        assert_eq!(b.release(&key("a")), None);
        let (next, _) = b.assign(key("b"), PodMeta::default(), now);
        assert_ne!(next, a);
    }

    #[test]
    fn the_cursor_wraps_and_skips_held_addresses() {
        // A /126 has offsets 1, 2, 3.
        let mut b = Ipv6Block::new("2001:db8::/126".parse().unwrap(), "eni-1");
        let now = SystemTime::UNIX_EPOCH;
        let ips: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|c| b.assign(key(c), PodMeta::default(), now).0)
            .collect();
        b.release(&key("b"));
        assert_eq!(b.assign(key("d"), PodMeta::default(), now).0, ips[1]);
    }

    #[test]
    fn restore_drops_what_is_outside_the_prefix_or_duplicated() {
        let now = SystemTime::UNIX_EPOCH;
        let held = |c: &str, ip: &str| Ipv6Assignment {
            key: key(c),
            ip: ip.parse().unwrap(),
            pod: PodMeta::default(),
            assigned_at: now,
        };
        let (b, dropped) = Ipv6Block::restore(
            "2001:db8:0:0:1::/80".parse().unwrap(),
            "eni-1",
            7,
            vec![
                held("a", "2001:db8::1:0:0:5"),
                held("b", "2001:db8::2:0:0:5"),
                held("c", "2001:db8::1:0:0:5"),
                held("d", "2001:db8::1:0:0:0"),
            ],
        );
        assert_eq!(b.assignments().count(), 1);
        assert_eq!(b.next(), 7);
        let dropped: Vec<_> = dropped
            .iter()
            .map(|a| a.key.container_id.as_str())
            .collect();
        assert_eq!(dropped, ["b", "c", "d"]);
    }
}
