//! EC2 calls whose answer was lost, settled against the journal and later
//! reads instead of being sent again.
//!
//! A lost `AssignPrivateIpAddresses` answer may or may not have added
//! addresses; re-sending could add them twice, and a read right after may
//! still be stale. So the intent stays open in the journal, no other assign
//! goes to that ENI, and the inventory resync (which runs every round while
//! anything is unsettled) takes in whatever EC2 reports; after the grace
//! period the intent is closed. A lost `UnassignPrivateIpAddresses` answer
//! leaves its addresses *releasing* (never handed out): those EC2 removed
//! leave the pool once enough reads confirm it, and whatever is still
//! reported after twice the grace period goes back to the free pool.

use super::driver::Driver;
use crate::state::Intent;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// What a call with a lost answer was asked to do.
#[derive(Debug, Clone)]
pub(super) enum Lost {
    /// Add addresses.
    Assign,
    /// Give these back.
    Unassign {
        ips: Vec<Ipv4Addr>,
        prefixes: Vec<Ipv4Net>,
    },
}

/// One open intent whose answer was lost.
#[derive(Debug)]
pub(super) struct Unsettled {
    pub intent: Intent,
    pub eni_id: String,
    pub lost: Lost,
    pub since: Instant,
    /// Reads of the cloud taken since.
    pub reads: u32,
}

impl Unsettled {
    /// Whether enough time and reads have passed to trust what the pool
    /// now holds for this ENI.
    fn due(&self, now: Instant, grace: Duration, reads: u32) -> bool {
        let age = now.saturating_duration_since(self.since);
        match self.lost {
            Lost::Assign => age >= grace && self.reads >= reads,
            // Missing addresses need `reads` reads over `grace` to leave.
            Lost::Unassign { .. } => age >= grace * 2 && self.reads >= reads + 2,
        }
    }
}

impl Driver {
    /// Whether an assign to `eni_id` is still unsettled (no other assign
    /// goes there meanwhile).
    pub(super) fn assign_unsettled(&self, eni_id: &str) -> bool {
        self.unsettled
            .iter()
            .any(|u| u.eni_id == eni_id && matches!(u.lost, Lost::Assign))
    }

    /// Records a call whose answer was lost; its intent stays open.
    pub(super) fn lost(&mut self, intent: Intent, eni_id: &str, lost: Lost) {
        tracing::warn!(op = %intent.id, eni = eni_id, ?lost, "EC2's answer was lost; settling it from later reads instead of sending the call again");
        self.unsettled.push(Unsettled {
            intent,
            eni_id: eni_id.to_owned(),
            lost,
            since: self.shared.now().mono,
            reads: 0,
        });
    }

    /// After a read of the cloud was taken in: closes what is settled.
    pub(super) fn settle(&mut self) {
        let now = self.shared.now().mono;
        let grace = self.shared.config.stale_read_grace();
        let reads = self.shared.config.stale_read_confirmations.max(1);
        for u in &mut self.unsettled {
            u.reads += 1;
        }
        let (due, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsettled)
            .into_iter()
            .partition(|u| u.due(now, grace, reads));
        self.unsettled = open;
        for u in due {
            if let Lost::Unassign { ips, prefixes } = &u.lost {
                // Only what is still in the pool (reads kept reporting it) is
                // put back; what left the pool stays gone.
                let back = self
                    .shared
                    .lock()
                    .store
                    .datastore_mut()
                    .abort_release(&u.eni_id, ips, prefixes);
                tracing::info!(op = %u.intent.id, eni = %u.eni_id, ?back, "lost unassign settled: what EC2 still reports is free again, the rest left the pool");
            } else {
                tracing::info!(op = %u.intent.id, eni = %u.eni_id, "lost assign settled: the pool holds what EC2 reports");
            }
            self.finish(&u.intent);
        }
    }
}
