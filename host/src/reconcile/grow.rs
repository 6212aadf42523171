//! Growing the pool: a decision's address assigns and ENI creates are
//! journaled one by one, then sent to EC2 together, so a burst that needs
//! three new ENIs waits for one create (seconds) rather than three in a row.
//! Answers are applied to the datastore in the decision's order.

use super::driver::Driver;
use super::error::{Blocked, BlockedKind};
use super::execute::{blocked, is_fragmented};
use super::hooks::{EniHooks, HookError};
use super::inventory::{TAG_OPERATION, to_ipam};
use super::settle::Lost;
use crate::cloud::{AddressRequest, Cloud, CloudError, CreateEni, Eni};
use crate::ipam::SgSet;
use crate::state::{Intent, Operation};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use weft_policy_sdk::{pool, subnet};

/// One growth step, journaled and ready to send.
struct Step {
    intent: Intent,
    call: Call,
}

enum Call {
    Assign {
        eni_id: String,
        request: AddressRequest,
    },
    Create {
        request: CreateEni,
        group: SgSet,
    },
}

/// EC2's answer to a step.
enum Answer {
    Assigned(Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError>),
    Created(Result<Box<Created>, CloudError>),
}

/// A new ENI and the node's set-up of it.
struct Created {
    eni: Eni,
    set_up: Result<(), HookError>,
}

impl Step {
    async fn send(&self, cloud: &dyn Cloud, hooks: &dyn EniHooks) -> Answer {
        match &self.call {
            Call::Assign { eni_id, request } => Answer::Assigned(match *request {
                AddressRequest::Ips(n) => cloud
                    .assign_ips(eni_id, n)
                    .await
                    .map(|ips| (ips, Vec::new())),
                AddressRequest::Prefixes(n) => cloud
                    .assign_prefixes(eni_id, n)
                    .await
                    .map(|prefixes| (Vec::new(), prefixes)),
            }),
            Call::Create { request, .. } => {
                Answer::Created(match cloud.create_eni(request).await {
                    Ok(eni) => {
                        let set_up = hooks.on_attached(&eni).await;
                        Ok(Box::new(Created { eni, set_up }))
                    }
                    Err(e) => Err(e),
                })
            }
        }
    }

    /// The secondary-IP request that stands in for this step's prefixes.
    fn as_ips(&self, ips: u32) -> Call {
        match &self.call {
            Call::Assign { eni_id, .. } => Call::Assign {
                eni_id: eni_id.clone(),
                request: AddressRequest::Ips(ips),
            },
            Call::Create { request, group } => Call::Create {
                request: CreateEni {
                    addresses: AddressRequest::Ips(ips),
                    ..request.clone()
                },
                group: group.clone(),
            },
        }
    }

    fn eni_id(&self) -> Option<&str> {
        match &self.call {
            Call::Assign { eni_id, .. } => Some(eni_id),
            Call::Create { .. } => None,
        }
    }
}

/// What became of one step once its answer was applied.
enum Outcome {
    Done,
    Failed(Blocked),
    /// The call's answer was lost: the inventory is read again.
    Lost(Blocked),
    /// The subnet had no free /28 block: the step is sent again with this
    /// many secondary IPs instead of prefixes.
    Fragmented(u32),
}

impl Driver {
    /// Carries out the growing part of `decision` for `group`: addresses
    /// for existing ENIs and new ENIs, all sent at once. Every step that
    /// could be journaled is sent and applied; returns the first failure.
    pub(super) async fn grow(
        &mut self,
        group: &SgSet,
        decision: &pool::PoolDecision,
    ) -> Result<(), Blocked> {
        let mut failures = Vec::new();
        let mut steps = Vec::new();
        // Two requests for one ENI (IPs and prefixes) go one after the
        // other, so that each sees the ENI's room as the other left it.
        let mut after = Vec::new();
        for change in &decision.changes {
            for request in [
                AddressRequest::Ips(change.add_ips),
                AddressRequest::Prefixes(change.add_prefixes),
            ] {
                if request.slots() == 0 {
                    continue;
                }
                if steps
                    .iter()
                    .any(|s: &Step| s.eni_id() == Some(&change.eni_id))
                {
                    after.push((change.eni_id.as_str(), request));
                    continue;
                }
                match self.assign_step(&change.eni_id, request) {
                    Ok(step) => steps.extend(step),
                    Err(b) => failures.push(b),
                }
            }
        }
        if !decision.create.is_empty()
            && let Err(b) = self.create_steps(group, &decision.create, &mut steps).await
        {
            failures.push(b);
        }
        let answers = {
            let (cloud, hooks) = (&*self.cloud, &*self.hooks);
            futures::future::join_all(steps.iter().map(|s| s.send(cloud, hooks))).await
        };
        let mut resync = false;
        let mut again = Vec::new();
        for (step, answer) in steps.into_iter().zip(answers) {
            match self.apply(&step, answer).await {
                Outcome::Done => {}
                Outcome::Failed(b) => failures.push(b),
                Outcome::Lost(b) => {
                    resync = true;
                    failures.push(b);
                }
                Outcome::Fragmented(ips) => again.push(step.as_ips(ips)),
            }
        }
        if resync {
            // What the lost calls may have added comes in from a read of
            // the node's ENIs weighed like any other possibly stale read,
            // taken now rather than at the next round.
            self.resync_inventory().await;
        }
        for call in again {
            let done = match self.journaled(call) {
                Ok(step) => self.send_and_apply(step).await,
                Err(b) => Err(b),
            };
            if let Err(b) = done {
                failures.push(b);
            }
        }
        for (eni_id, request) in after {
            match self.assign_step(eni_id, request) {
                Ok(Some(step)) => {
                    if let Err(b) = self.send_and_apply(step).await {
                        failures.push(b);
                    }
                }
                Ok(None) => {}
                Err(b) => failures.push(b),
            }
        }
        for extra in failures.iter().skip(1) {
            tracing::warn!(%extra, "another step of the decision failed");
        }
        failures.into_iter().next().map_or(Ok(()), Err)
    }

    /// The journaled step that adds `request` to an existing ENI, with
    /// prefixes turned into secondary IPs while its subnet is fragmented;
    /// `None` when there is nothing to send. Refused while an earlier
    /// assign to the ENI is unsettled: it may have added the addresses.
    fn assign_step(
        &mut self,
        eni_id: &str,
        request: AddressRequest,
    ) -> Result<Option<Step>, Blocked> {
        if self.assign_unsettled(eni_id) {
            return Err(Blocked::new(
                BlockedKind::Pending,
                format!(
                    "EC2's answer to an earlier assign to {eni_id} was lost; no other assign goes \
                     there until reads of EC2 settle it (after {} s)",
                    self.shared.config.stale_read_grace().as_secs()
                ),
            ));
        }
        let subnet = self
            .enis
            .get(eni_id)
            .map(|e| e.subnet_id.clone())
            .unwrap_or_default();
        let request = self.usable(&subnet, request, self.room(eni_id));
        if request.slots() == 0 {
            return Ok(None);
        }
        self.journaled(Call::Assign {
            eni_id: eni_id.to_owned(),
            request,
        })
        .map(Some)
    }

    /// Adds to `steps` the journaled creates of `new` ENIs for `group`,
    /// each in the subnet the subnet-selection policy picks from one read
    /// of the subnets. Stops at the first that cannot be prepared; those
    /// journaled before it are in `steps`, to be sent.
    async fn create_steps(
        &mut self,
        group: &SgSet,
        new: &[pool::NewEni],
        steps: &mut Vec<Step>,
    ) -> Result<(), Blocked> {
        let subnets = self.cloud.list_subnets().await.map_err(|e| blocked(&e))?;
        let candidates: Vec<subnet::Candidate> = subnets
            .iter()
            .map(crate::cloud::Subnet::as_candidate)
            .collect();
        let slots = self.shared.limits.slots_per_eni();
        for eni in new {
            let request = subnet::EniRequest {
                security_groups: group.ids().to_vec(),
                purpose: subnet::Purpose::PodAddresses,
                ips: eni.ips,
                prefixes: eni.prefixes,
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
            let addresses = if eni.prefixes > 0 {
                self.usable(&subnet_id, AddressRequest::Prefixes(eni.prefixes), slots)
            } else {
                AddressRequest::Ips(eni.ips)
            };
            steps.push(self.journaled(Call::Create {
                request: CreateEni {
                    subnet_id,
                    security_groups: group.ids().to_vec(),
                    addresses,
                    tags: Default::default(),
                },
                group: group.clone(),
            })?);
        }
        Ok(())
    }

    /// Journals `call`; a new ENI carries the operation id in a tag.
    fn journaled(&mut self, mut call: Call) -> Result<Step, Blocked> {
        let op = match &call {
            Call::Assign { eni_id, request } => {
                let (ips, prefixes) = split(*request);
                Operation::AssignAddresses {
                    eni_id: eni_id.clone(),
                    ips,
                    prefixes,
                }
            }
            Call::Create { request, group } => {
                let (ips, prefixes) = split(request.addresses);
                Operation::CreateEni {
                    subnet_id: request.subnet_id.clone(),
                    security_groups: group.clone(),
                    ips,
                    prefixes,
                }
            }
        };
        let intent = self.begin(op)?;
        if let Call::Create { request, .. } = &mut call {
            request.tags = [(TAG_OPERATION.to_owned(), intent.id.as_str().to_owned())].into();
        }
        Ok(Step { intent, call })
    }

    /// One step on its own: sent, applied, and sent again with secondary
    /// IPs if its prefixes found the subnet fragmented.
    async fn send_and_apply(&mut self, mut step: Step) -> Result<(), Blocked> {
        loop {
            let answer = step.send(&*self.cloud, &*self.hooks).await;
            match self.apply(&step, answer).await {
                Outcome::Done => return Ok(()),
                Outcome::Failed(b) => return Err(b),
                Outcome::Lost(b) => {
                    self.resync_inventory().await;
                    return Err(b);
                }
                // Secondary IPs are never fragmented: this ends.
                Outcome::Fragmented(ips) => step = self.journaled(step.as_ips(ips))?,
            }
        }
    }

    /// Applies EC2's answer to `step` to the datastore and the journal.
    async fn apply(&mut self, step: &Step, answer: Answer) -> Outcome {
        match (&step.call, answer) {
            (Call::Assign { eni_id, request }, Answer::Assigned(result)) => {
                self.counted("assign-addresses", &result);
                match result {
                    Ok((ips, prefixes)) => {
                        self.assigned(eni_id, &ips, &prefixes);
                        self.finish(&step.intent);
                        Outcome::Done
                    }
                    Err(e) if e.is_ambiguous() => {
                        self.lost(step.intent.clone(), eni_id, Lost::Assign);
                        Outcome::Lost(blocked(&e))
                    }
                    Err(e) => {
                        self.finish(&step.intent);
                        self.fragmented(step, &e, request.slots(), self.room(eni_id))
                    }
                }
            }
            (Call::Create { request, .. }, Answer::Created(result)) => {
                self.counted("create-eni", &result);
                match result.map(|created| (created.eni, created.set_up)) {
                    Ok((eni, Ok(()))) => {
                        self.attached(eni);
                        self.finish(&step.intent);
                        Outcome::Done
                    }
                    Ok((eni, Err(why))) => {
                        let b = self.set_up_failed(&eni, &why).await;
                        self.finish(&step.intent);
                        Outcome::Failed(b)
                    }
                    Err(e) => {
                        self.finish(&step.intent);
                        let room = self.shared.limits.slots_per_eni();
                        self.fragmented(step, &e, request.addresses.slots(), room)
                    }
                }
            }
            _ => unreachable!("a step's answer is of its own kind"),
        }
    }

    /// A failed prefix request on a fragmented subnet becomes a request for
    /// secondary IPs; any other failure is reported.
    fn fragmented(&mut self, step: &Step, error: &CloudError, slots: u32, room: u32) -> Outcome {
        let prefixes = match &step.call {
            Call::Assign { request, eni_id } => {
                matches!(request, AddressRequest::Prefixes(_)).then(|| self.subnet_of(eni_id))
            }
            Call::Create { request, .. } => {
                matches!(request.addresses, AddressRequest::Prefixes(_))
                    .then(|| request.subnet_id.clone())
            }
        };
        match prefixes {
            Some(subnet) if is_fragmented(error) => {
                self.prefixes_failed(&subnet, error);
                Outcome::Fragmented(self.fallback_ips(slots, room))
            }
            _ => Outcome::Failed(blocked(error)),
        }
    }

    fn subnet_of(&self, eni_id: &str) -> String {
        self.enis
            .get(eni_id)
            .map(|e| e.subnet_id.clone())
            .unwrap_or_default()
    }

    fn assigned(&mut self, eni_id: &str, ips: &[Ipv4Addr], prefixes: &[Ipv4Net]) {
        let applied = {
            let mut inner = self.shared.lock();
            let store = inner.store.datastore_mut();
            store.touch(eni_id, self.shared.now().mono);
            store
                .add_ips(eni_id, ips)
                .and_then(|()| store.add_prefixes(eni_id, prefixes))
        };
        match applied {
            Ok(()) => tracing::info!(eni = eni_id, ?ips, ?prefixes, "addresses added"),
            Err(error) => {
                tracing::error!(eni = eni_id, %error, "EC2 added addresses the pool cannot take");
            }
        }
    }

    /// Takes a new ENI into the pool, now that the node has set it up.
    fn attached(&mut self, eni: Eni) {
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
    }

    /// Gives back a new ENI the node could not set up.
    async fn set_up_failed(&mut self, eni: &Eni, why: &HookError) -> Blocked {
        tracing::error!(eni = %eni.id, %why, "node set-up of a new ENI failed; giving it back");
        let undone = self.delete_journaled(eni).await;
        if let Ok(deleted) = &undone {
            self.released(&eni.id, deleted);
        }
        let mut detail = format!("node set-up of ENI {} failed: {why}", eni.id);
        if let Err(e) = undone {
            detail.push_str(&format!("; deleting it failed too ({e})"));
        }
        Blocked::new(BlockedKind::CloudFailed, detail)
    }
}

fn split(request: AddressRequest) -> (u32, u32) {
    match request {
        AddressRequest::Ips(n) => (n, 0),
        AddressRequest::Prefixes(n) => (0, n),
    }
}
