//! The datastore's records of single addresses and ENIs.

use crate::ipam::model::{AddressState, AssignmentKey, Eni};
use crate::ipam::{IpamError, SgSet};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime};

/// What occupies a pod address that is not free.
#[derive(Debug, Clone)]
pub(super) enum Use {
    Assigned(AssignmentKey),
    Cooling {
        until: Instant,
        released_at: SystemTime,
    },
    Releasing,
}

/// One pod address of the pool.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) eni: String,
    pub(super) prefix: Option<Ipv4Net>,
    pub(super) used: Option<Use>,
}

impl Slot {
    /// Ready to hand out (an expired cooldown counts as free).
    pub(super) fn is_free(&self, now: Instant) -> bool {
        match &self.used {
            None => true,
            Some(Use::Cooling { until, .. }) => *until <= now,
            Some(_) => false,
        }
    }

    /// Assigned or still cooling: must not leave the pool.
    pub(super) fn is_held(&self, now: Instant) -> bool {
        match &self.used {
            Some(Use::Assigned(_)) => true,
            Some(Use::Cooling { until, .. }) => *until > now,
            _ => false,
        }
    }

    pub(super) fn state(&self, now: Instant) -> AddressState {
        match &self.used {
            Some(Use::Assigned(key)) => AddressState::Assigned(key.clone()),
            Some(Use::Cooling { until, .. }) if *until > now => {
                AddressState::Cooling { until: *until }
            }
            Some(Use::Releasing) => AddressState::Releasing,
            _ => AddressState::Free,
        }
    }

    pub(super) fn held_state_name(&self) -> &'static str {
        match self.used {
            Some(Use::Assigned(_)) => "assigned",
            _ => "cooling down",
        }
    }
}

/// Something the pool holds that the cloud's recent reads did not report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Missing {
    /// The first read that missed it.
    pub(super) since: Instant,
    /// Reads in a row that missed it.
    pub(super) reads: u32,
}

impl Missing {
    pub(super) fn new(now: Instant) -> Self {
        Missing {
            since: now,
            reads: 0,
        }
    }

    /// Counts one more read without it; whether it is now confirmed gone:
    /// `reads` reads in a row over at least `grace`.
    pub(super) fn missed(&mut self, now: Instant, reads: u32, grace: std::time::Duration) -> bool {
        self.reads += 1;
        self.reads >= reads.max(1) && now.saturating_duration_since(self.since) >= grace
    }
}

/// An ENI of the pool.
#[derive(Debug, Clone)]
pub(super) struct EniEntry {
    pub(super) id: String,
    pub(super) device_index: u32,
    pub(super) subnet_id: String,
    pub(super) mac: String,
    pub(super) primary: bool,
    pub(super) primary_ip: Ipv4Addr,
    pub(super) security_groups: SgSet,
    pub(super) attached_at: SystemTime,
    pub(super) ips: BTreeSet<Ipv4Addr>,
    pub(super) prefixes: BTreeSet<Ipv4Net>,
    /// Being detached and deleted.
    pub(super) draining: bool,
    /// Missing from the cloud's recent reads (not handed out meanwhile).
    pub(super) missing: Option<Missing>,
    /// Addresses and prefixes missing from the cloud's recent reads.
    pub(super) missing_ips: BTreeMap<Ipv4Addr, Missing>,
    pub(super) missing_prefixes: BTreeMap<Ipv4Net, Missing>,
    /// When Weft last changed the ENI (reads before then may not show it).
    pub(super) changed_at: Option<Instant>,
}

impl EniEntry {
    pub(super) fn empty(eni: &Eni) -> Self {
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
            missing: None,
            missing_ips: BTreeMap::new(),
            missing_prefixes: BTreeMap::new(),
            changed_at: None,
        }
    }

    /// Whether a read may not show the ENI's latest state yet: Weft changed
    /// it less than `grace` ago.
    pub(super) fn changed_within(&self, grace: std::time::Duration, now: Instant) -> bool {
        self.changed_at
            .is_some_and(|at| now.saturating_duration_since(at) < grace)
    }

    /// Whether `ip` (of `prefix`, if any) is doubtful: the ENI or the
    /// address is missing from recent reads. Never handed out meanwhile.
    pub(super) fn doubtful(&self, ip: Ipv4Addr, prefix: Option<Ipv4Net>) -> bool {
        self.missing.is_some()
            || match prefix {
                Some(p) => self.missing_prefixes.contains_key(&p),
                None => self.missing_ips.contains_key(&ip),
            }
    }

    pub(super) fn to_eni(&self) -> Eni {
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
    pub(super) fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ips
            .iter()
            .copied()
            .chain(self.prefixes.iter().flat_map(|p| prefix_addresses(*p)))
    }

    /// Updates the attributes (not the addresses) from the cloud's view;
    /// describes what changed, if anything.
    pub(super) fn update_from(&mut self, eni: &Eni) -> Option<String> {
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
            missing_ips: std::mem::take(&mut self.missing_ips),
            missing_prefixes: std::mem::take(&mut self.missing_prefixes),
            changed_at: self.changed_at,
            ..EniEntry::empty(eni)
        };
        *self = fresh;
        (!changes.is_empty()).then(|| changes.join("; "))
    }
}

/// The 16 addresses of a /28 prefix, network and broadcast included: EC2
/// hands all of them to the ENI.
pub(super) fn prefix_addresses(prefix: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(prefix.network())..=u32::from(prefix.broadcast())).map(Ipv4Addr::from)
}

pub(super) fn check_prefix(prefix: Ipv4Net) -> Result<(), IpamError> {
    if prefix.prefix_len() == 28 && prefix.trunc() == prefix {
        Ok(())
    } else {
        Err(IpamError::InvalidPrefix(prefix))
    }
}

pub(super) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Address counts of one ENI.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) ips: u32,
    pub(super) prefixes: u32,
    pub(super) assigned: u32,
    pub(super) cooling: u32,
    pub(super) free: u32,
    pub(super) releasing: u32,
}
