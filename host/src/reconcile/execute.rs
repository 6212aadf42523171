//! Carrying out one validated pool decision: every EC2 change is journaled
//! before it is sent, applied to the datastore when it answers, and then
//! marked finished.

use super::driver::Driver;
use super::error::{Blocked, BlockedKind};
use super::inventory::{TAG_OPERATION, to_ipam};
use super::settle::{Lost, given_back};
use crate::cloud::{AddressRequest, CloudError, CreateEni, PREFIX_ADDRESSES};
use crate::ipam::SgSet;
use crate::state::{Checkpoint, Intent, Operation};
use std::time::Duration;
use weft_policy_sdk::{pool, subnet};

/// How long prefix requests in a subnet become secondary-IP requests after
/// the subnet had no free aligned /28 block (VPC CNI issue #2749).
const PREFIX_RETRY: Duration = Duration::from_secs(300);

/// Why one step failed.
enum Failure {
    /// The cloud refused or failed.
    Cloud(CloudError),
    /// Something else, already explained.
    Blocked(Blocked),
}

impl From<Blocked> for Failure {
    fn from(b: Blocked) -> Self {
        Failure::Blocked(b)
    }
}

impl From<Failure> for Blocked {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Cloud(e) => blocked(&e),
            Failure::Blocked(b) => b,
        }
    }
}

/// The reason an ADD reports for a cloud error.
fn blocked(error: &CloudError) -> Blocked {
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

fn is_fragmented(error: &CloudError) -> bool {
    matches!(error, CloudError::InsufficientCidrBlocks { .. })
}

impl Driver {
    /// Carries out `decision` for `group`: changes to existing ENIs, new
    /// ENIs, released ENIs, in that order. Stops at the first failure (the
    /// next round starts again from the pool as it then is).
    pub(super) async fn execute(
        &mut self,
        group: &SgSet,
        decision: &pool::PoolDecision,
    ) -> Result<(), Blocked> {
        for change in &decision.changes {
            if change.add_ips > 0 {
                self.add(&change.eni_id, AddressRequest::Ips(change.add_ips))
                    .await?;
            }
            if change.add_prefixes > 0 {
                self.add(
                    &change.eni_id,
                    AddressRequest::Prefixes(change.add_prefixes),
                )
                .await?;
            }
            if change.release_ips > 0 || change.release_prefixes > 0 {
                self.release_addresses(&change.eni_id, change.release_ips, change.release_prefixes)
                    .await?;
            }
        }
        for new in &decision.create {
            self.create(group, new).await?;
        }
        for eni_id in &decision.release {
            self.release_eni(eni_id).await?;
        }
        Ok(())
    }

    fn begin(&mut self, op: Operation) -> Result<Intent, Blocked> {
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
    fn room(&self, eni_id: &str) -> u32 {
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
    fn fallback_ips(&self, prefixes: u32, room: u32) -> u32 {
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
    fn usable(&self, subnet: &str, request: AddressRequest, room: u32) -> AddressRequest {
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

    fn prefixes_failed(&mut self, subnet: &str, error: &CloudError) {
        tracing::warn!(%subnet, %error, retry_after = ?PREFIX_RETRY, "no /28 prefix to be had; using secondary IPs instead");
        self.no_prefixes_until
            .insert(subnet.to_owned(), self.shared.now().mono + PREFIX_RETRY);
    }

    /// Adds addresses to an existing ENI, falling back from prefixes to
    /// secondary IPs when the subnet is fragmented.
    async fn add(&mut self, eni_id: &str, request: AddressRequest) -> Result<(), Blocked> {
        if self.assign_unsettled(eni_id) {
            tracing::debug!(
                eni = eni_id,
                "an earlier assign's answer was lost; no new assign until it is settled"
            );
            return Ok(());
        }
        let subnet = self
            .enis
            .get(eni_id)
            .map(|e| e.subnet_id.clone())
            .unwrap_or_default();
        let request = self.usable(&subnet, request, self.room(eni_id));
        match self.assign(eni_id, request).await {
            Err(Failure::Cloud(e)) if is_fragmented(&e) => {
                self.prefixes_failed(&subnet, &e);
                let ips = self.fallback_ips(request.slots(), self.room(eni_id));
                self.assign(eni_id, AddressRequest::Ips(ips))
                    .await
                    .map_err(Blocked::from)
            }
            other => other.map_err(Blocked::from),
        }
    }

    /// One journaled `AssignPrivateIpAddresses`.
    async fn assign(&mut self, eni_id: &str, request: AddressRequest) -> Result<(), Failure> {
        if request.slots() == 0 {
            return Ok(());
        }
        let (ips, prefixes) = match request {
            AddressRequest::Ips(n) => (n, 0),
            AddressRequest::Prefixes(n) => (0, n),
        };
        let intent = self.begin(Operation::AssignAddresses {
            eni_id: eni_id.to_owned(),
            ips,
            prefixes,
        })?;
        let result = match request {
            AddressRequest::Ips(n) => self
                .cloud
                .assign_ips(eni_id, n)
                .await
                .map(|ips| (ips, Vec::new())),
            AddressRequest::Prefixes(n) => self
                .cloud
                .assign_prefixes(eni_id, n)
                .await
                .map(|prefixes| (Vec::new(), prefixes)),
        };
        self.counted("assign-addresses", &result);
        let (ips, prefixes) = match result {
            Ok(added) => added,
            Err(e) if e.is_ambiguous() => {
                self.lost(intent, eni_id, Lost::Assign);
                // What the call may have added comes in from a read of the
                // node's ENIs weighed like any other possibly stale read,
                // taken now rather than at the next round.
                self.resync_inventory().await;
                return Err(Failure::Cloud(e));
            }
            Err(e) => {
                self.finish(&intent);
                return Err(Failure::Cloud(e));
            }
        };
        let applied = {
            let mut inner = self.shared.lock();
            let store = inner.store.datastore_mut();
            store.touch(eni_id, self.shared.now().mono);
            store
                .add_ips(eni_id, &ips)
                .and_then(|()| store.add_prefixes(eni_id, &prefixes))
        };
        match applied {
            Ok(()) => {
                tracing::info!(eni = eni_id, ?ips, ?prefixes, "addresses added");
            }
            Err(error) => {
                tracing::error!(eni = eni_id, %error, "EC2 added addresses the pool cannot take");
            }
        }
        self.finish(&intent);
        Ok(())
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

    /// Creates and attaches a new ENI for `group` in the subnet the
    /// subnet-selection policy picks.
    async fn create(&mut self, group: &SgSet, new: &pool::NewEni) -> Result<(), Blocked> {
        let subnets = self.cloud.list_subnets().await.map_err(|e| blocked(&e))?;
        let candidates: Vec<subnet::Candidate> = subnets
            .iter()
            .map(crate::cloud::Subnet::as_candidate)
            .collect();
        let request = subnet::EniRequest {
            security_groups: group.ids().to_vec(),
            purpose: subnet::Purpose::PodAddresses,
            ips: new.ips,
            prefixes: new.prefixes,
            availability_zone: self.shared.node.availability_zone.clone(),
            node_subnet_id: self.shared.node.subnet_id.clone(),
            node: self.hooks.node_metadata().unwrap_or_default(),
        };
        let subnet_id = match self.policies.select_subnet(&request, &candidates) {
            subnet::Choice::UseSubnet(id) => id,
            subnet::Choice::Refuse(why) => {
                return Err(Blocked::new(
                    BlockedKind::NoSubnet,
                    format!("the subnet-selection policy chose no subnet: {why}"),
                ));
            }
        };
        let slots = self.shared.limits.slots_per_eni();
        let addresses = if new.prefixes > 0 {
            self.usable(&subnet_id, AddressRequest::Prefixes(new.prefixes), slots)
        } else {
            AddressRequest::Ips(new.ips)
        };
        match self.create_attached(group, &subnet_id, addresses).await {
            Err(Failure::Cloud(e)) if is_fragmented(&e) => {
                self.prefixes_failed(&subnet_id, &e);
                let ips = self.fallback_ips(addresses.slots(), slots);
                self.create_attached(group, &subnet_id, AddressRequest::Ips(ips))
                    .await
                    .map_err(Blocked::from)
            }
            other => other.map_err(Blocked::from),
        }
    }

    /// One journaled create-and-attach; the ENI carries the operation id in
    /// a tag. The ENI joins the pool only after the node-side hook set it
    /// up.
    async fn create_attached(
        &mut self,
        group: &SgSet,
        subnet_id: &str,
        addresses: AddressRequest,
    ) -> Result<(), Failure> {
        let (ips, prefixes) = match addresses {
            AddressRequest::Ips(n) => (n, 0),
            AddressRequest::Prefixes(n) => (0, n),
        };
        let intent = self.begin(Operation::CreateEni {
            subnet_id: subnet_id.to_owned(),
            security_groups: group.clone(),
            ips,
            prefixes,
        })?;
        let request = CreateEni {
            subnet_id: subnet_id.to_owned(),
            security_groups: group.ids().to_vec(),
            addresses,
            tags: [(TAG_OPERATION.to_owned(), intent.id.as_str().to_owned())].into(),
        };
        let result = self.cloud.create_eni(&request).await;
        self.counted("create-eni", &result);
        let eni = match result {
            Ok(eni) => eni,
            Err(e) => {
                self.finish(&intent);
                return Err(Failure::Cloud(e));
            }
        };
        if let Err(why) = self.hooks.on_attached(&eni).await {
            tracing::error!(eni = %eni.id, %why, "node set-up of a new ENI failed; giving it back");
            let undone = self.delete_journaled(&eni).await;
            if let Ok(deleted) = &undone {
                self.released(&eni.id, deleted);
            }
            self.finish(&intent);
            let mut detail = format!("node set-up of ENI {} failed: {why}", eni.id);
            if let Err(e) = undone {
                detail.push_str(&format!("; deleting it failed too ({e})"));
            }
            return Err(Failure::Blocked(Blocked::new(
                BlockedKind::CloudFailed,
                detail,
            )));
        }
        let added = {
            let mut inner = self.shared.lock();
            let store = inner.store.datastore_mut();
            let added = store.add_eni(to_ipam(
                &eni,
                &self.shared.node.primary_eni_id,
                self.shared.now().wall,
            ));
            // Reads may not show the new ENI for a while.
            store.touch(&eni.id, self.shared.now().mono);
            added
        };
        match added {
            Ok(()) => tracing::info!(
                eni = %eni.id,
                device_index = ?eni.device_index(),
                subnet = %eni.subnet_id,
                ips = eni.secondary_ips.len(),
                prefixes = eni.prefixes.len(),
                "ENI attached"
            ),
            Err(error) => {
                tracing::error!(eni = %eni.id, %error, "attached ENI not taken into the pool")
            }
        }
        self.enis.insert(eni.id.clone(), eni);
        self.finish(&intent);
        Ok(())
    }

    /// One journaled detach-and-delete, with the node-side hook first.
    /// Returns the intent of a delete that succeeded, for
    /// [`Driver::released`] to finish.
    async fn delete_journaled(&mut self, eni: &crate::cloud::Eni) -> Result<Intent, CloudError> {
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
    async fn release_eni(&mut self, eni_id: &str) -> Result<(), Blocked> {
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
