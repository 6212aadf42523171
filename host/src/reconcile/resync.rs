//! Bringing the pool back in line with the cloud while running: an ENI
//! detached or addresses removed behind the agent's back, an ENI attached
//! by someone else. Reads of EC2 lag its writes, so one read is never
//! trusted alone (see [`crate::ipam::Datastore::observe_inventory`]).

use super::driver::Driver;
use super::inventory::{log_corrections, to_ipam};
use super::ownership;
use crate::state::Checkpoint;
use std::collections::HashMap;

impl Driver {
    /// Lists the node's ENIs and applies the difference to the pool (only
    /// called between operations, so nothing of the pool is in flight).
    /// Assignments whose address is confirmed gone are dropped (the address
    /// quarantined) and the checkpoint rewritten; new secondary ENIs of
    /// Weft's are set up on the node; lost answers are settled.
    pub(super) async fn resync_inventory(&mut self) {
        // The read shows EC2 as it was when it was sent, or older: what it
        // is weighed against (how long ago Weft gave an address back or
        // changed an ENI) is measured up to then, not to its arrival.
        let now = self.shared.now();
        let inventory = match self.cloud.list_enis().await {
            Ok(inventory) => inventory,
            Err(error) => {
                tracing::warn!(%error, "inventory resync skipped");
                return;
            }
        };
        let node = &self.shared.node;
        let (inventory, unmanaged) = ownership::classify(inventory, node);
        let records: Vec<_> = inventory
            .iter()
            .map(|e| to_ipam(e, &node.primary_eni_id, now.wall))
            .collect();
        {
            let mut inner = self.shared.lock();
            let store = inner.store.datastore_mut();
            store.set_foreign_enis(ownership::on_default_card(&unmanaged));
            let before = (store.assignments().count(), store.enis().len());
            let corrections = store.observe_inventory(&records, now.mono);
            let after = (store.assignments().count(), store.enis().len());
            if !corrections.is_empty() {
                tracing::info!(
                    assignments_before = before.0,
                    assignments_after = after.0,
                    enis_before = before.1,
                    enis_after = after.1,
                    corrections = corrections.len(),
                    "pool corrected to EC2's inventory"
                );
            }
            if log_corrections(&corrections, "inventory")
                && let Err(error) = inner
                    .store
                    .sink()
                    .save_checkpoint(&Checkpoint::of(inner.store.datastore(), now))
            {
                tracing::error!(%error, "checkpoint not rewritten after dropping assignments");
            }
            inner.unmanaged = unmanaged;
        }
        self.lift_quarantine().await;
        self.settle(now.mono);
        let known = std::mem::take(&mut self.enis);
        let mut enis = HashMap::with_capacity(inventory.len());
        for eni in inventory {
            if !known.contains_key(&eni.id)
                && eni.id != self.shared.node.primary_eni_id
                && let Err(why) = self.hooks.on_attached(&eni).await
            {
                tracing::error!(eni = %eni.id, %why, "node set-up of a newly seen ENI failed");
            }
            enis.insert(eni.id.clone(), eni);
        }
        // An ENI missing from this read but not yet confirmed gone keeps
        // its record.
        for (id, eni) in known {
            if !enis.contains_key(&id) && self.shared.lock().store.datastore().eni(&id).is_some() {
                enis.insert(id, eni);
            }
        }
        self.enis = enis;
    }

    /// Frees quarantined addresses the node no longer routes to a pod.
    async fn lift_quarantine(&mut self) {
        let quarantined = self.shared.lock().store.datastore().quarantined();
        if quarantined.is_empty() {
            return;
        }
        let routed = match self.hooks.routed(&quarantined).await {
            Ok(routed) => routed,
            Err(why) => {
                tracing::warn!(%why, "cannot read the node's routes; quarantine kept");
                return;
            }
        };
        let free: Vec<_> = quarantined
            .into_iter()
            .filter(|ip| !routed.contains(ip))
            .collect();
        let lifted = self
            .shared
            .lock()
            .store
            .datastore_mut()
            .lift_quarantine(&free);
        log_corrections(&lifted, "quarantine");
    }
}
