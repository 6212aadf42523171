//! IPv6 mode's addresses: every pod interface gets one address of the
//! /80 prefix delegated to the primary ENI. No warm pool: the prefix is
//! delegated once and holds 2^48 addresses.
//!
//! Addresses are handed out in order from a cursor that only moves forward
//! (wrapping after the last address), so a released address is not handed
//! out again before every other one of the prefix has been: no cooldown is
//! needed. The cursor is part of the checkpoint, so a restart does not
//! hand out the address of a pod that was just deleted either.
//!
//! With IPv4 egress on, every pod also gets a node-local IPv4 address of a
//! link-local range (`169.254.172.0/22` by default), handed out the same
//! way from a cursor of its own; the node SNATs it to its primary IPv4.

use super::{AssignmentKey, IpamError, PodMeta};
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

/// An IPv6 address held by a pod interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Assignment {
    /// Who holds it.
    pub key: AssignmentKey,
    pub ip: Ipv6Addr,
    /// The node-local IPv4 address of its IPv4 egress, when that is on.
    pub ipv4: Option<Ipv4Addr>,
    pub pod: PodMeta,
    /// When it was assigned.
    pub assigned_at: SystemTime,
}

/// An assignment a checkpoint held that [`Ipv6Block::restore`] did not
/// keep whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub held: Ipv6Assignment,
    /// Why.
    pub reason: &'static str,
    /// The IPv6 address was kept and only the IPv4 egress address dropped.
    pub kept_ipv6: bool,
}

/// Offsets handed out in order over `first..=last`, wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    first: u128,
    last: u128,
    next: u128,
}

impl Cursor {
    /// A cursor at `next` (moved into range).
    fn new(first: u128, last: u128, next: u128) -> Self {
        let mut cursor = Cursor { first, last, next };
        cursor.next = cursor.in_range(next);
        cursor
    }

    fn in_range(&self, offset: u128) -> u128 {
        if (self.first..=self.last).contains(&offset) {
            offset
        } else {
            self.first
        }
    }

    fn contains(&self, offset: u128) -> bool {
        (self.first..=self.last).contains(&offset)
    }

    /// The next offset that `taken` does not hold, trying at most
    /// `held + 1` of them (`held`: how many `taken` holds).
    fn take(&mut self, held: usize, taken: impl Fn(u128) -> bool) -> Option<u128> {
        let tries = (held as u128 + 1).min(self.last - self.first + 1);
        for _ in 0..tries {
            let candidate = self.next;
            self.next = self.in_range(candidate.saturating_add(1));
            if !taken(candidate) {
                return Some(candidate);
            }
        }
        None
    }
}

/// The node-local IPv4 range of IPv6 pods' IPv4 egress and its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ipv4Egress {
    cidr: Ipv4Net,
    cursor: Cursor,
}

impl Ipv4Egress {
    /// Hosts of `cidr` (not its network and broadcast addresses, unless it
    /// is a /31 or /32), from offset `next`.
    fn new(cidr: Ipv4Net, next: u32) -> Self {
        let cidr = cidr.trunc();
        let size = 1u128 << (32 - u32::from(cidr.prefix_len()));
        let (first, last) = if size <= 2 {
            (0, size - 1)
        } else {
            (1, size - 2)
        };
        Ipv4Egress {
            cidr,
            cursor: Cursor::new(first, last, u128::from(next)),
        }
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u128> {
        let offset = u128::from(u32::from(ip).wrapping_sub(u32::from(self.cidr.network())));
        (self.cidr.contains(&ip) && self.cursor.contains(offset)).then_some(offset)
    }

    fn address(&self, offset: u128) -> Ipv4Addr {
        let offset = u32::try_from(offset).expect("an IPv4 offset fits 32 bits");
        Ipv4Addr::from(u32::from(self.cidr.network()) + offset)
    }
}

/// The /80 of the primary ENI and who holds which of its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Block {
    prefix: Ipv6Net,
    /// The ENI the prefix is delegated to.
    eni_id: String,
    assignments: BTreeMap<AssignmentKey, Ipv6Assignment>,
    /// Offsets in the prefix; never 0 (the prefix's own address, which EC2
    /// does not use for hosts either).
    cursor: Cursor,
    ipv4_egress: Option<Ipv4Egress>,
}

impl Ipv6Block {
    /// An empty block over `prefix` of ENI `eni_id`, without IPv4 egress.
    pub(crate) fn new(prefix: Ipv6Net, eni_id: impl Into<String>) -> Self {
        let prefix = prefix.trunc();
        let size = 1u128.checked_shl(128 - u32::from(prefix.prefix_len()));
        Ipv6Block {
            prefix,
            eni_id: eni_id.into(),
            assignments: BTreeMap::new(),
            cursor: Cursor::new(1, size.map_or(u128::MAX, |s| s - 1), 1),
            ipv4_egress: None,
        }
    }

    /// The block with IPv4 egress: every new assignment also gets an
    /// address of `cidr`, from offset `next` on.
    pub(crate) fn with_ipv4_egress(self, cidr: Ipv4Net, next: u32) -> Self {
        Ipv6Block {
            ipv4_egress: Some(Ipv4Egress::new(cidr, next)),
            ..self
        }
    }

    /// The block as a checkpoint left it (`block`: [`Ipv6Block::new`],
    /// perhaps [`Ipv6Block::with_ipv4_egress`]): `assignments` outside the
    /// prefix (a prefix EC2 no longer reports for the ENI) or holding an
    /// address twice are returned apart, to be reported as dropped; so are
    /// IPv4 egress addresses outside the range (or held twice, or with
    /// IPv4 egress off), whose assignments are kept without them.
    pub(crate) fn restore(
        mut block: Ipv6Block,
        next: u128,
        assignments: Vec<Ipv6Assignment>,
    ) -> (Self, Vec<Dropped>) {
        block.cursor = Cursor::new(block.cursor.first, block.cursor.last, next);
        let mut dropped = Vec::new();
        for mut held in assignments {
            let taken = block.assignments.values().any(|a| a.ip == held.ip);
            let offset = u128::from(held.ip).wrapping_sub(u128::from(block.prefix.network()));
            if !block.prefix.contains(&held.ip) || taken || offset == 0 {
                let reason = "its address is not one the primary ENI's IPv6 prefix holds (or another pod holds it)";
                dropped.push(Dropped {
                    held,
                    reason,
                    kept_ipv6: false,
                });
                continue;
            }
            if let Some(ipv4) = held.ipv4 {
                let reason = match block.ipv4_egress {
                    None => Some("IPv4 egress is off"),
                    Some(egress) if egress.offset(ipv4).is_none() => {
                        Some("its IPv4 egress address is outside the configured range")
                    }
                    Some(_) if block.assignments.values().any(|a| a.ipv4 == Some(ipv4)) => {
                        Some("another pod holds its IPv4 egress address")
                    }
                    Some(_) => None,
                };
                if let Some(reason) = reason {
                    dropped.push(Dropped {
                        held: held.clone(),
                        reason,
                        kept_ipv6: true,
                    });
                    held.ipv4 = None;
                }
            }
            block.assignments.insert(held.key.clone(), held);
        }
        (block, dropped)
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> Ipv6Net {
        self.prefix
    }

    /// The ENI the prefix is delegated to.
    pub(crate) fn eni_id(&self) -> &str {
        &self.eni_id
    }

    /// The cursor (for the checkpoint).
    pub(crate) fn next(&self) -> u128 {
        self.cursor.next
    }

    /// The IPv4 egress range and its cursor (for the checkpoint); `None`
    /// when IPv4 egress is off.
    pub(crate) fn ipv4_egress(&self) -> Option<(Ipv4Net, u32)> {
        self.ipv4_egress.map(|e| {
            let next = u32::try_from(e.cursor.next).expect("an IPv4 offset fits 32 bits");
            (e.cidr, next)
        })
    }

    /// Every assignment, by key.
    pub(crate) fn assignments(&self) -> impl Iterator<Item = &Ipv6Assignment> {
        self.assignments.values()
    }

    /// What `key` holds.
    pub(crate) fn assignment(&self, key: &AssignmentKey) -> Option<&Ipv6Assignment> {
        self.assignments.get(key)
    }

    /// Gives `key` an address (and an IPv4 egress address when that is
    /// on); a key that holds one keeps it (a repeated ADD). Returns the
    /// assignment and whether it is new. Refused, changing nothing, when
    /// the IPv4 egress range is used up.
    pub(crate) fn assign(
        &mut self,
        key: AssignmentKey,
        pod: PodMeta,
        now: SystemTime,
    ) -> Result<(Ipv6Assignment, bool), IpamError> {
        if let Some(held) = self.assignments.get(&key) {
            return Ok((held.clone(), false));
        }
        let held = self.assignments.len();
        let mut ipv4_egress = self.ipv4_egress;
        let ipv4 = match &mut ipv4_egress {
            None => None,
            Some(egress) => {
                let range = *egress;
                let offset = egress
                    .cursor
                    .take(held, |o| {
                        let ip = range.address(o);
                        self.assignments.values().any(|a| a.ipv4 == Some(ip))
                    })
                    .ok_or(IpamError::Ipv4EgressExhausted { cidr: range.cidr })?;
                Some(range.address(offset))
            }
        };
        let network = u128::from(self.prefix.network());
        let mut cursor = self.cursor;
        let offset = cursor
            .take(held, |o| {
                let ip = Ipv6Addr::from(network + o);
                self.assignments.values().any(|a| a.ip == ip)
            })
            .ok_or(IpamError::Ipv6PrefixExhausted {
                prefix: self.prefix,
            })?;
        (self.cursor, self.ipv4_egress) = (cursor, ipv4_egress);
        let assignment = Ipv6Assignment {
            key: key.clone(),
            ip: Ipv6Addr::from(network + offset),
            ipv4,
            pod,
            assigned_at: now,
        };
        self.assignments.insert(key, assignment.clone());
        Ok((assignment, true))
    }

    /// Releases what `key` holds; `None` for a key that holds nothing.
    pub(crate) fn release(&mut self, key: &AssignmentKey) -> Option<Ipv6Assignment> {
        self.assignments.remove(key)
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

    /// The address `b` gives `c` (a new key: fresh).
    fn take(b: &mut Ipv6Block, c: &str) -> Ipv6Assignment {
        let (held, fresh) = b
            .assign(key(c), PodMeta::default(), SystemTime::UNIX_EPOCH)
            .unwrap();
        assert!(fresh);
        held
    }

    #[test]
    fn hands_out_addresses_in_order_and_keeps_a_repeated_key() {
        let mut b = block();
        let a = take(&mut b, "a");
        assert_eq!(
            (a.ip.to_string().as_str(), a.ipv4),
            ("2001:db8::1:0:0:1", None)
        );
        let again = b.assign(key("a"), PodMeta::default(), SystemTime::UNIX_EPOCH);
        assert_eq!(again, Ok((a, false)));
        assert_eq!(take(&mut b, "c").ip.to_string(), "2001:db8::1:0:0:2");
    }

    #[test]
    fn ipv4_egress_addresses_come_in_order_skip_held_ones_and_run_out_cleanly() {
        // A /29 has hosts .1 to .6.
        let mut b = block().with_ipv4_egress("169.254.172.0/29".parse().unwrap(), 0);
        let ipv4 = |b: &mut Ipv6Block, c: &str| take(b, c).ipv4.unwrap().to_string();
        assert_eq!(ipv4(&mut b, "a"), "169.254.172.1");
        assert_eq!(ipv4(&mut b, "b"), "169.254.172.2");
        b.release(&key("a"));
        for (c, expected) in [("c", "3"), ("d", "4"), ("e", "5"), ("f", "6"), ("g", "1")] {
            assert_eq!(ipv4(&mut b, c), format!("169.254.172.{expected}"));
        }
        assert_eq!(
            b.ipv4_egress(),
            Some(("169.254.172.0/29".parse().unwrap(), 2))
        );
        let before = b.clone();
        let full = b.assign(key("h"), PodMeta::default(), SystemTime::UNIX_EPOCH);
        assert!(
            matches!(full, Err(IpamError::Ipv4EgressExhausted { .. })),
            "{full:?}"
        );
        assert_eq!(b, before, "a refused assign changes nothing");
    }

    #[test]
    fn a_released_address_is_not_handed_out_again_soon() {
        let mut b = block();
        let a = take(&mut b, "a").ip;
        assert_eq!(b.release(&key("a")).unwrap().ip, a);
        assert_eq!(b.release(&key("a")), None);
        assert_ne!(take(&mut b, "b").ip, a);
    }

    #[test]
    fn the_cursor_wraps_and_skips_held_addresses() {
        // A /126 has offsets 1, 2, 3.
        let mut b = Ipv6Block::new("2001:db8::/126".parse().unwrap(), "eni-1");
        let ips: Vec<_> = ["a", "b", "c"].iter().map(|c| take(&mut b, c).ip).collect();
        let full = b.assign(key("x"), PodMeta::default(), SystemTime::UNIX_EPOCH);
        assert!(matches!(full, Err(IpamError::Ipv6PrefixExhausted { .. })));
        b.release(&key("b"));
        assert_eq!(take(&mut b, "d").ip, ips[1]);
    }

    #[test]
    fn restore_drops_what_is_outside_the_prefix_or_duplicated() {
        let now = SystemTime::UNIX_EPOCH;
        let held = |c: &str, ip: &str, ipv4: Option<&str>| Ipv6Assignment {
            key: key(c),
            ip: ip.parse().unwrap(),
            ipv4: ipv4.map(|v| v.parse().unwrap()),
            pod: PodMeta::default(),
            assigned_at: now,
        };
        let (b, dropped) = Ipv6Block::restore(
            block().with_ipv4_egress("169.254.172.0/22".parse().unwrap(), 9),
            7,
            vec![
                held("a", "2001:db8::1:0:0:5", Some("169.254.172.5")),
                held("b", "2001:db8::2:0:0:5", None),
                held("c", "2001:db8::1:0:0:5", None),
                held("d", "2001:db8::1:0:0:0", None),
                held("e", "2001:db8::1:0:0:6", Some("169.254.172.5")),
                held("f", "2001:db8::1:0:0:7", Some("169.254.176.1")),
            ],
        );
        assert_eq!(b.assignments().count(), 3);
        assert_eq!(b.next(), 7);
        assert_eq!(b.ipv4_egress().unwrap().1, 9);
        let dropped: Vec<_> = dropped
            .iter()
            .map(|d| (d.held.key.container_id.as_str(), d.kept_ipv6))
            .collect();
        assert_eq!(
            dropped,
            [
                ("b", false),
                ("c", false),
                ("d", false),
                ("e", true),
                ("f", true)
            ]
        );
        let ipv4s: Vec<_> = b.assignments().map(|a| a.ipv4).collect();
        assert_eq!(ipv4s, [Some("169.254.172.5".parse().unwrap()), None, None]);
    }
}
