//! Bringing the pool back in line with the cloud while running: an ENI
//! detached or addresses removed behind the agent's back, an ENI attached
//! by someone else.

use super::driver::Driver;
use super::inventory::{log_corrections, to_ipam};
use crate::state::Checkpoint;
use std::collections::HashMap;

impl Driver {
    /// Lists the node's ENIs and applies the difference to the pool (only
    /// called between operations, so nothing of the pool is in flight).
    /// Assignments whose address is gone are dropped and the checkpoint
    /// rewritten; new secondary ENIs are set up on the node.
    pub(super) async fn resync_inventory(&mut self) {
        let inventory = match self.cloud.list_enis().await {
            Ok(inventory) => inventory,
            Err(error) => {
                tracing::warn!(%error, "inventory resync skipped");
                return;
            }
        };
        let now = self.shared.now();
        let records: Vec<_> = inventory.iter().map(|e| to_ipam(e, now.wall)).collect();
        {
            let mut inner = self.shared.lock();
            let corrections = inner
                .store
                .datastore_mut()
                .reconcile_with_inventory(&records);
            if log_corrections(&corrections, "inventory")
                && let Err(error) = inner
                    .store
                    .sink()
                    .save_checkpoint(&Checkpoint::of(inner.store.datastore(), now.mono))
            {
                tracing::error!(%error, "checkpoint not rewritten after dropping assignments");
            }
        }
        let known = std::mem::take(&mut self.enis);
        let mut enis = HashMap::with_capacity(inventory.len());
        for eni in inventory {
            if !known.contains_key(&eni.id)
                && eni.device_index() != Some(0)
                && let Err(why) = self.hooks.on_attached(&eni).await
            {
                tracing::error!(eni = %eni.id, %why, "node set-up of a newly seen ENI failed");
            }
            enis.insert(eni.id.clone(), eni);
        }
        self.enis = enis;
    }
}
