//! Carrying out one validated pool decision: every EC2 change is journaled
//! before it is sent, applied to the datastore when it answers, and then
//! marked finished.

use super::driver::Driver;
use super::error::{Blocked, BlockedKind};
use super::settle::{Lost, given_back};
use crate::cloud::{AddressRequest, CloudError, PREFIX_ADDRESSES};
use crate::ipam::SgSet;
use crate::state::{Checkpoint, Intent, Operation};
use std::time::Duration;
use weft_policy_sdk::pool;

/// How long prefix requests in a subnet become secondary-IP requests after
/// the subnet had no free aligned /28 block (VPC CNI issue #2749).
const PREFIX_RETRY: Duration = Duration::from_secs(300);

/// The reason an ADD reports for a cloud error.
pub(super) fn blocked(error: &CloudError) -> Blocked {
    let kind = match error {
        CloudError::Throttled { .. } => BlockedKind::Throttled,
        CloudError::LimitExceeded { .. } => BlockedKind::EniLimit,
        CloudError::InsufficientAddresses { .. } | CloudError::InsufficientCidrBlocks { .. } => {
            BlockedKind::SubnetFull
        }
        _ => BlockedKind::CloudFailed,
    };
    Blocked::new(kind, error.to_string())
}

pub(super) fn is_fragmented(error: &CloudError) -> bool {
    matches!(error, CloudError::InsufficientCidrBlocks { .. })
}

impl Driver {
    /// Carries out `decision` for `group`: the growth (addresses for
    /// existing ENIs and new ENIs, sent at once), then addresses given back,
    /// then released ENIs. Stops at the first failure (the next round
    /// starts again from the pool as it then is).
    pub(super) async fn execute(
        &mut self,
        group: &SgSet,
        decision: &pool::PoolDecision,
    ) -> Result<(), Blocked> {
        self.grow(group, decision).await?;
        for change in &decision.changes {
            if change.release_ips > 0 || change.release_prefixes > 0 {
                self.release_addresses(&change.eni_id, change.release_ips, change.release_prefixes)
                    .await?;
            }
        }
        for eni_id in &decision.release {
            self.release_eni(eni_id).await?;
        }
        Ok(())
    }

    pub(super) fn begin(&mut self, op: Operation) -> Result<Intent, Blocked> {
        self.journal.begin(op, self.shared.now().wall).map_err(|e| {
            Blocked::new(
                BlockedKind::StateFailed,
                format!("cannot journal the EC2 operation, so it was not sent: {e}"),
            )
        })
    }

    pub(super) fn finish(&mut self, intent: &Intent) {
        if let Err(error) = self.journal.finish(&intent.id) {
            tracing::error!(op = %intent.id, %error, "cannot record a finished operation; the next start replays it");
        }
    }

    /// Writes the checkpoint after addresses or an ENI left the pool for
    /// EC2, so that a restart within the grace period still withholds them
    /// from stale reads; call it before finishing the intent that gave them
    /// back. Returns whether it was written: if not, that intent stays open
    /// and a restart redoes it and withholds them all the same.
    pub(super) fn save_given_back(&self) -> bool {
        let inner = self.shared.lock();
        let checkpoint = Checkpoint::of(inner.store.datastore(), self.shared.now());
        match inner.store.sink().save_checkpoint(&checkpoint) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "checkpoint not rewritten after giving addresses back; the operation stays open in the journal");
                false
            }
        }
    }

    /// Counts one changing EC2 call.
    pub(super) fn counted<T>(&mut self, event: &str, result: &Result<T, CloudError>) {
        self.changes += 1;
        let outcome = result.as_ref().map_or_else(CloudError::outcome, |_| "ok");
        self.shared.metrics.pool(event, outcome);
    }

    /// Free slots (secondary IPs plus prefixes) of an ENI of the pool.
    pub(super) fn room(&self, eni_id: &str) -> u32 {
        let used = self
            .shared
            .lock()
            .store
            .datastore()
            .eni(eni_id)
            .map_or(0, |e| {
                u32::try_from(e.ips.len() + e.prefixes.len()).unwrap_or(u32::MAX)
            });
        self.shared.limits.slots_per_eni().saturating_sub(used)
    }

    /// Secondary IPs standing in for `prefixes` prefixes: as many
    /// addresses, but no more than `room` slots and the max-pods budget.
    pub(super) fn fallback_ips(&self, prefixes: u32, room: u32) -> u32 {
        let budget = self
            .shared
            .lock()
            .store
            .datastore()
            .growth_budget(self.shared.max_pods, self.shared.now().mono)
            .ips;
        prefixes
            .saturating_mul(PREFIX_ADDRESSES)
            .min(room)
            .min(budget)
    }

    /// `request`, with prefixes turned into secondary IPs while `subnet`
    /// is known to be fragmented.
    pub(super) fn usable(
        &self,
        subnet: &str,
        request: AddressRequest,
        room: u32,
    ) -> AddressRequest {
        match request {
            AddressRequest::Prefixes(n)
                if self
                    .no_prefixes_until
                    .get(subnet)
                    .is_some_and(|until| *until > self.shared.now().mono) =>
            {
                AddressRequest::Ips(self.fallback_ips(n, room))
            }
            other => other,
        }
    }

    pub(super) fn prefixes_failed(&mut self, subnet: &str, error: &CloudError) {
        tracing::warn!(%subnet, %error, retry_after = ?PREFIX_RETRY, "no /28 prefix to be had; using secondary IPs instead");
        self.no_prefixes_until
            .insert(subnet.to_owned(), self.shared.now().mono + PREFIX_RETRY);
    }

    /// Gives free addresses of an ENI back to EC2. Only addresses that are
    /// neither assigned nor cooling are picked, and they are kept from pods
    /// while the call is in flight.
    async fn release_addresses(
        &mut self,
        eni_id: &str,
        ip_count: u32,
        prefix_count: u32,
    ) -> Result<(), Blocked> {
        let (ips, prefixes) = {
            let mut inner = self.shared.lock();
            let store = inner.store.datastore_mut();
            let now = self.shared.now().mono;
            (
                store
                    .begin_release_ips(eni_id, ip_count, now)
                    .unwrap_or_default(),
                store
                    .begin_release_prefixes(eni_id, prefix_count, now)
                    .unwrap_or_default(),
            )
        };
        if ips.is_empty() && prefixes.is_empty() {
            return Ok(());
        }
        let intent = match self.begin(Operation::UnassignAddresses {
            eni_id: eni_id.to_owned(),
            ips: ips.clone(),
            prefixes: prefixes.clone(),
        }) {
            Ok(intent) => intent,
            Err(reason) => {
                let _ = self
                    .shared
                    .lock()
                    .store
                    .datastore_mut()
                    .abort_release(eni_id, &ips, &prefixes);
                return Err(reason);
            }
        };
        let ips_done = if ips.is_empty() {
            Ok(())
        } else {
            let r = self.cloud.unassign_ips(eni_id, &ips).await;
            self.counted("unassign-addresses", &r);
            r
        };
        // Prefixes go only after the IPs went (`None`: not sent).
        let prefixes_done = match (&ips_done, prefixes.is_empty()) {
            (_, true) => Some(Ok(())),
            (Err(_), false) => None,
            (Ok(()), false) => {
                let r = self.cloud.unassign_prefixes(eni_id, &prefixes).await;
                self.counted("unassign-addresses", &r);
                Some(r)
            }
        };
        let lost = [Some(&ips_done), prefixes_done.as_ref()]
            .into_iter()
            .flatten()
            .any(|r| r.as_ref().is_err_and(CloudError::is_ambiguous));
        let applied = given_back(
            self.shared.lock().store.datastore_mut(),
            eni_id,
            (&ips, &ips_done),
            (&prefixes, prefixes_done.as_ref()),
            self.shared.now().mono,
        );
        if let Err(error) = applied {
            tracing::error!(eni = eni_id, %error, "released addresses not applied to the pool");
        }
        let saved = self.save_given_back();
        if lost {
            self.lost(intent, eni_id, Lost::Unassign);
        } else if saved {
            self.finish(&intent);
        }
        ips_done
            .and(prefixes_done.unwrap_or(Ok(())))
            .map_err(|e| blocked(&e))?;
        tracing::info!(eni = eni_id, ?ips, ?prefixes, "addresses given back to EC2");
        Ok(())
    }

    /// One journaled detach-and-delete, with the node-side hook first.
    /// Returns the intent of a delete that succeeded, for
    /// [`Driver::released`] to finish.
    pub(super) async fn delete_journaled(
        &mut self,
        eni: &crate::cloud::Eni,
    ) -> Result<Intent, CloudError> {
        let intent = match self.begin(Operation::DeleteEni {
            eni_id: eni.id.clone(),
        }) {
            Ok(intent) => intent,
            Err(reason) => {
                return Err(CloudError::Fatal {
                    api: "DeleteNetworkInterface".into(),
                    detail: reason.to_string(),
                });
            }
        };
        if let Err(why) = self.hooks.on_released(eni).await {
            tracing::warn!(eni = %eni.id, %why, "node clean-up of an ENI failed; deleting it anyway");
        }
        let result = self.cloud.delete_eni(&eni.id).await;
        self.counted("delete-eni", &result);
        match result {
            Ok(()) => Ok(intent),
            Err(error) => {
                // The detach may be pending or done: the ENI is never used
                // again, its intent stays open and the delete is retried.
                tracing::warn!(eni = %eni.id, %error, "ENI not deleted; retrying later");
                self.undeleted.push((intent, eni.clone()));
                Err(error)
            }
        }
    }

    /// Releases an unused ENI, if the datastore agrees it may go (not the
    /// primary, no assigned or cooling address, old enough).
    pub(super) async fn release_eni(&mut self, eni_id: &str) -> Result<(), Blocked> {
        let now = self.shared.now();
        let refused = self
            .shared
            .lock()
            .store
            .datastore_mut()
            .begin_release_eni(eni_id, now);
        if let Err(why) = refused {
            tracing::debug!(eni = eni_id, %why, "ENI kept");
            return Ok(());
        }
        let Some(eni) = self.enis.get(eni_id).cloned() else {
            let _ = self
                .shared
                .lock()
                .store
                .datastore_mut()
                .abort_release_eni(eni_id);
            tracing::error!(
                eni = eni_id,
                "ENI of the pool missing from the cloud record; kept"
            );
            return Ok(());
        };
        match self.delete_journaled(&eni).await {
            Ok(intent) => {
                self.released(eni_id, &intent);
                Ok(())
            }
            // The ENI stays draining (its addresses are never handed out)
            // until a retried delete or the leaked-ENI collector removes it.
            Err(e) => Err(blocked(&e)),
        }
    }

    /// Takes a deleted ENI out of the pool (a stale read does not bring it
    /// back, even after a restart) and finishes the intent that deleted it.
    pub(super) fn released(&mut self, eni_id: &str, intent: &Intent) {
        let removed = self
            .shared
            .lock()
            .store
            .datastore_mut()
            .remove_eni(eni_id, self.shared.now().mono);
        match removed {
            Ok(_) => tracing::info!(eni = eni_id, "ENI released"),
            Err(error) => {
                tracing::debug!(eni = eni_id, %error, "deleted ENI was not in the pool");
                self.shared
                    .lock()
                    .store
                    .datastore_mut()
                    .deleted_eni(eni_id, self.shared.now().mono);
            }
        }
        self.enis.remove(eni_id);
        if self.save_given_back() {
            self.finish(intent);
        }
    }
}
