//! Read-only views of the pool: what the reconciler, the policy and
//! introspection see.

use super::slot::{EniEntry, Use, count};
use super::{Datastore, GrowthBudget};
use crate::ipam::model::{
    ADDRESSES_PER_PREFIX, AddressInfo, Assignment, AssignmentKey, CoolingAddress, Eni, GivenBack,
};
use crate::ipam::{IpamError, Now, SgSet};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;
use weft_policy_sdk::pool;

impl Datastore {
    /// The assignment of `key`, if any.
    pub fn assignment(&self, key: &AssignmentKey) -> Option<&Assignment> {
        self.assignments.get(key)
    }

    /// Every assignment, in no particular order.
    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments.values()
    }

    /// What Weft gave back within the grace period before `now`, on the
    /// wall clock (what the checkpoint keeps so that a restart still
    /// withholds it from stale reads).
    pub(crate) fn given_back(&self, now: Now) -> GivenBack {
        let grace = self.grace();
        let wall = |at: &Instant| {
            let age = now.mono.saturating_duration_since(*at);
            (age < grace).then(|| now.wall.checked_sub(age).unwrap_or(now.wall))
        };
        let mut addresses: Vec<_> = self
            .withheld
            .iter()
            .filter_map(|(ip, at)| Some((*ip, wall(at)?)))
            .collect();
        addresses.sort();
        let mut enis: Vec<_> = self
            .gone_enis
            .iter()
            .filter_map(|(id, at)| Some((id.clone(), wall(at)?)))
            .collect();
        enis.sort();
        GivenBack { addresses, enis }
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
    pub(crate) fn eni(&self, eni_id: &str) -> Option<Eni> {
        self.enis.get(eni_id).map(EniEntry::to_eni)
    }

    /// Every ENI, ordered by id.
    pub fn enis(&self) -> Vec<Eni> {
        self.enis.values().map(EniEntry::to_eni).collect()
    }

    /// The security-group sets the pool serves: the default group and the
    /// set of every ENI that serves pods.
    pub(crate) fn groups(&self) -> Vec<SgSet> {
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
    pub(crate) fn activity(&self, group: &SgSet, now: Instant) -> pool::Activity {
        self.churn
            .get(group)
            .map(|c| c.snapshot(now))
            .unwrap_or_default()
    }

    /// Pod addresses the node holds (assigned, cooling and free; not those
    /// being released), across groups.
    pub(crate) fn node_addresses(&self, now: Instant) -> u32 {
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
    pub(crate) fn growth_budget(&self, max_pods: u32, now: Instant) -> GrowthBudget {
        let headroom = max_pods.saturating_sub(self.node_addresses(now));
        GrowthBudget {
            ips: headroom,
            prefixes: headroom.div_ceil(ADDRESSES_PER_PREFIX),
        }
    }

    /// The input of the pool-sizing policy for `group`. ENIs being released
    /// are left out of `enis` (but counted in `node_enis`, since they are
    /// still attached), as are addresses being released.
    pub(crate) fn pool_state(
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
            node_enis: count(self.enis.len()).saturating_add(self.foreign_enis),
            node_addresses: self.node_addresses(now.mono),
            node_assigned: count(self.assignments.len()),
            limits: limits.clone(),
            pending_adds,
            activity: self.activity(group, now.mono),
        }
    }

    /// Whether ENI `eni_id` may be detached and deleted now: not the primary
    /// ENI, not already being released, no assigned or cooling address, and
    /// attached for at least [`crate::ipam::IpamConfig::min_eni_age`].
    pub(crate) fn eni_releasable(&self, eni_id: &str, now: Now) -> Result<(), IpamError> {
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
}
