//! The reconciler task: one round per wake-up (coalesced), per resync
//! period, or per explicit request; in each round every group is sized by
//! the pool-sizing policy and the decision is carried out.

use super::config::IpFamily;
use super::error::{Blocked, BlockedKind};
use super::hooks::EniHooks;
use super::settle::Unsettled;
use super::shared::{GroupOutcome, Shared};
use crate::cloud::{self, Cloud};
use crate::ipam::SgSet;
use crate::policy::PolicySet;
use crate::state::{Intent, Journal};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use weft_policy_sdk::pool;

/// How long a group that ran into a limit (ENIs, subnet, no subnet) does
/// not ask EC2 to grow again: the limit rarely lifts sooner, and asking on
/// every ADD would only spend the account's request budget.
const GROWTH_HOLD: Duration = Duration::from_secs(30);

/// Shortest and longest pause after EC2 throttled the reconciler.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoundReport {
    /// Changing EC2 calls made (create, assign, unassign, delete).
    pub cloud_changes: u32,
    /// Groups that could not get the addresses they need, and why.
    pub blocked: Vec<(SgSet, Blocked)>,
    /// EC2 calls whose answer was lost and that later reads have not yet
    /// settled: until they are, addresses Weft gave back may still be on
    /// EC2 (withheld from the pool) and the pool is not final.
    pub unsettled: usize,
}

impl RoundReport {
    /// Whether the pool is at rest: the round changed nothing in EC2,
    /// every group has what it needs and no lost answer is still open.
    pub fn is_settled(&self) -> bool {
        self.cloud_changes == 0 && self.blocked.is_empty() && self.unsettled == 0
    }
}

/// A request for a round, answered when it is done.
pub(super) type RoundRequest = oneshot::Sender<RoundReport>;

/// Exponential backoff after throttling.
#[derive(Debug, Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
}

impl Backoff {
    fn throttled(&mut self, now: Instant) -> Duration {
        self.delay = (self.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.until = Some(now + self.delay);
        self.delay
    }

    fn active(&self, now: Instant) -> Option<Duration> {
        self.until
            .map(|u| u.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn succeeded(&mut self) {
        self.until = None;
        self.delay = Duration::ZERO;
    }
}

/// The reconciler: owns the journal and every EC2 change.
pub(super) struct Driver {
    pub(super) shared: Arc<Shared>,
    pub(super) cloud: Arc<dyn Cloud>,
    pub(super) policies: Arc<PolicySet>,
    pub(super) hooks: Arc<dyn EniHooks>,
    pub(super) journal: Journal,
    /// The cloud's record of every attached ENI (what the hooks get).
    pub(super) enis: HashMap<String, cloud::Eni>,
    /// Subnets where a /28 prefix could not be had recently, and until when
    /// prefix requests there become secondary-IP requests.
    pub(super) no_prefixes_until: HashMap<String, Instant>,
    backoff: Backoff,
    /// Groups that ran into a limit, with the reason and until when they
    /// do not grow.
    held: HashMap<SgSet, (Blocked, Instant)>,
    /// When the pool was last compared with the cloud's inventory (start-up
    /// counts).
    inventory_at: Instant,
    /// Changing EC2 calls in the current round.
    pub(super) changes: u32,
    /// Calls whose answer was lost, waiting to be settled from reads.
    pub(super) unsettled: Vec<Unsettled>,
    /// ENIs detached from the node whose delete failed: their intent stays
    /// open and the delete is retried every round.
    pub(super) undeleted: Vec<(Intent, cloud::Eni)>,
    /// When the leaked-ENI collector runs next (`None`: it is off).
    leak_due: Option<Instant>,
}

impl Driver {
    /// A reconciler over a recovered pool.
    pub(super) fn new(
        shared: Arc<Shared>,
        cloud: Arc<dyn Cloud>,
        policies: Arc<PolicySet>,
        hooks: Arc<dyn EniHooks>,
        journal: Journal,
        enis: HashMap<String, cloud::Eni>,
    ) -> Self {
        let inventory_at = shared.now().mono;
        let leak_due = shared.config.leaked_eni_cleanup().map(|_| inventory_at);
        Driver {
            shared,
            cloud,
            policies,
            hooks,
            journal,
            enis,
            no_prefixes_until: HashMap::new(),
            backoff: Backoff::default(),
            held: HashMap::new(),
            inventory_at,
            changes: 0,
            unsettled: Vec::new(),
            undeleted: Vec::new(),
            leak_due,
        }
    }

    /// Runs rounds until the pool asks it to halt or is dropped: on a
    /// wake-up, on request, after the resync period, when a throttling
    /// backoff ends, or when a lost answer may be settled.
    pub(super) async fn run(mut self, mut requests: mpsc::UnboundedReceiver<RoundRequest>) {
        let resync = self.shared.config.resync();
        loop {
            // After throttling, the next round comes when the backoff ends,
            // so waiting ADDs are retried without another event; a lost
            // answer is read again when it may be settled.
            let now = self.shared.now().mono;
            let next = [self.backoff.active(now), self.settle_wait(now)]
                .into_iter()
                .flatten()
                .fold(resync, Duration::min);
            let reply = tokio::select! {
                () = self.shared.halt.notified() => break,
                () = self.shared.wake.notified() => None,
                request = requests.recv() => match request {
                    Some(reply) => Some(reply),
                    None => break,
                },
                () = self.shared.clock.sleep(next) => None,
            };
            let report = self.round().await;
            if let Some(reply) = reply {
                let _ = reply.send(report);
            }
        }
        self.shared.stop();
    }

    /// One round over every group.
    pub(super) async fn round(&mut self) -> RoundReport {
        self.changes = 0;
        // While an answer is unsettled, every round reads the cloud.
        if self
            .shared
            .now()
            .mono
            .saturating_duration_since(self.inventory_at)
            >= self.shared.config.inventory_resync()
            || !self.unsettled.is_empty()
        {
            self.resync_inventory().await;
            self.retry_deletes().await;
            self.inventory_at = self.shared.now().mono;
        }
        if let (Some(due), Some(period)) = (self.leak_due, self.shared.config.leaked_eni_cleanup())
            && due <= self.shared.now().mono
        {
            self.collect_leaked().await;
            self.leak_due = Some(self.shared.now().mono + period);
        }
        // In IPv6 mode pods take addresses from the primary ENI's /80
        // (agent::ipv6): no IPv4 pool is sized and the policy is not asked.
        // Groups with waiting ADDs go first: a slot freed for one of them
        // (`free_a_slot`) is not taken by another group's warm ENI.
        let groups: Vec<SgSet> = if self.shared.config.ip_family == IpFamily::Ipv6 {
            Vec::new()
        } else {
            let inner = self.shared.lock();
            let mut groups: BTreeSet<SgSet> =
                inner.store.datastore().groups().into_iter().collect();
            groups.extend(inner.pending.groups().cloned());
            let mut groups: Vec<SgSet> = groups.into_iter().collect();
            groups.sort_by_key(|group| inner.pending.count(group) == 0);
            groups
        };
        let mut blocked = Vec::new();
        for group in groups {
            if let Some(reason) = self.reconcile_group(&group).await {
                blocked.push((group, reason));
            }
            self.shared.notify_changed();
        }
        self.free_a_slot(&blocked).await;
        RoundReport {
            cloud_changes: self.changes,
            blocked,
            unsettled: self.unsettled.len(),
        }
    }

    /// A group whose ADDs wait only because every ENI slot of the instance
    /// is taken gets the slot of another group's ENI that no pod uses (a
    /// policy's warm or spare ENI): that ENI is released, and the next
    /// round creates one with the waiting group's security groups. One ENI
    /// per round, and only one old enough to be released.
    async fn free_a_slot(&mut self, blocked: &[(SgSet, Blocked)]) {
        let waiting: Vec<&SgSet> = blocked
            .iter()
            .filter(|(_, b)| b.kind == BlockedKind::EniLimit)
            .map(|(group, _)| group)
            .collect();
        if waiting.is_empty() {
            return;
        }
        let now = self.shared.now();
        let unused = {
            let inner = self.shared.lock();
            let store = inner.store.datastore();
            store
                .enis()
                .into_iter()
                .filter(|e| !waiting.contains(&&e.security_groups))
                .filter(|e| store.eni_releasable(&e.id, now).is_ok())
                .max_by_key(|e| e.device_index)
        };
        if let Some(eni) = unused {
            tracing::info!(eni = %eni.id, groups = ?waiting, "releasing an ENI no pod uses: ADDs of another group wait for its slot");
            if self.release_eni(&eni.id).await.is_ok() {
                self.shared.wake.notify_one();
            }
        }
    }

    /// Sizes one group and carries out the decision; returns why the group
    /// is short of addresses, if it is.
    async fn reconcile_group(&mut self, group: &SgSet) -> Option<Blocked> {
        let now = self.shared.now();
        let state = {
            let inner = self.shared.lock();
            let pending = inner.pending.count(group);
            inner
                .store
                .datastore()
                .pool_state(group, &self.shared.policy_limits(), pending, now)
        };
        let decision = self.policies.size_pool(&state);
        let held = self
            .held
            .get(group)
            .filter(|(_, until)| *until > now.mono)
            .map(|(reason, _)| reason.clone());
        let grows = decision
            .changes
            .iter()
            .any(|c| c.add_ips > 0 || c.add_prefixes > 0)
            || !decision.create.is_empty();
        let (blocked, summary) = if decision.is_noop() {
            tracing::debug!(%group, reason = %decision.reason, "pool decision: no change");
            (diagnose(&state, &decision.reason), decision.reason)
        } else if let Some(reason) = held.filter(|_| grows) {
            let why = format!("growth on hold after: {reason}");
            tracing::debug!(%group, %why, "pool decision not carried out");
            (short(&state).then_some(reason), why)
        } else if let Some(left) = self.backoff.active(now.mono) {
            let why = format!(
                "EC2 throttled the last call; waiting {} ms before the next",
                left.as_millis()
            );
            (
                short(&state).then(|| Blocked::new(BlockedKind::Throttled, why.clone())),
                why,
            )
        } else {
            tracing::info!(%group, reason = %decision.reason, ?decision, "pool decision");
            match self.execute(group, &decision).await {
                Ok(()) => {
                    self.backoff.succeeded();
                    (None, decision.reason)
                }
                Err(reason) => {
                    if reason.kind == BlockedKind::Throttled {
                        let delay = self.backoff.throttled(self.shared.now().mono);
                        tracing::warn!(%group, %reason, ?delay, "backing off");
                    } else if matches!(
                        reason.kind,
                        BlockedKind::EniLimit | BlockedKind::SubnetFull | BlockedKind::NoSubnet
                    ) {
                        tracing::warn!(%group, %reason, hold = ?GROWTH_HOLD, "group stops growing for a while");
                        self.held.insert(
                            group.clone(),
                            (reason.clone(), self.shared.now().mono + GROWTH_HOLD),
                        );
                    } else {
                        tracing::warn!(%group, %reason, "pool decision not carried out fully");
                    }
                    (Some(reason), decision.reason)
                }
            }
        };
        self.shared.lock().outcomes.insert(
            group.clone(),
            GroupOutcome {
                at: self.shared.now().wall,
                blocked: blocked.clone(),
                summary,
            },
        );
        blocked
    }
}

/// Whether ADDs of the group are waiting with no free address for them.
fn short(state: &pool::PoolState) -> bool {
    let free: u32 = state.enis.iter().map(pool::Eni::free).sum();
    state.pending_adds > free
}

/// Why a group that needs addresses got a decision that adds none: the
/// node's limits, or else the policy.
fn diagnose(state: &pool::PoolState, reason: &str) -> Option<Blocked> {
    if !short(state) {
        return None;
    }
    let limits = &state.limits;
    if state.node_addresses >= limits.max_pods {
        return Some(Blocked::new(
            BlockedKind::MaxPods,
            format!(
                "the node holds {} pod addresses and max pods is {}",
                state.node_addresses, limits.max_pods
            ),
        ));
    }
    let slots = limits.ipv4_per_eni.saturating_sub(1);
    let full = state.enis.iter().all(|e| e.ips + e.prefixes >= slots);
    if full && state.node_enis >= limits.max_enis {
        let group = if state.enis.is_empty() {
            "none of them carries this group's security groups".to_owned()
        } else {
            format!("this group's {} ENI(s) are full", state.enis.len())
        };
        return Some(Blocked::new(
            BlockedKind::EniLimit,
            format!(
                "all {} ENIs the instance allows are attached and {group}",
                limits.max_enis
            ),
        ));
    }
    Some(Blocked::new(
        BlockedKind::PolicyRefused,
        format!("the pool-sizing policy added nothing: {reason}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(enis: Vec<pool::Eni>, node_enis: u32, pending: u32) -> pool::PoolState {
        let node_addresses = enis.iter().map(pool::Eni::addresses).sum();
        pool::PoolState {
            group: vec!["sg-1".into()],
            default_group: true,
            enis,
            node_enis,
            node_addresses,
            node_assigned: 0,
            limits: pool::InstanceLimits {
                max_enis: 2,
                ipv4_per_eni: 4,
                prefix_delegation: false,
                max_pods: 8,
            },
            pending_adds: pending,
            activity: Default::default(),
        }
    }

    fn eni(ips: u32, assigned: u32) -> pool::Eni {
        pool::Eni {
            id: "eni-1".into(),
            device_index: 0,
            subnet_id: "subnet-1".into(),
            ips,
            prefixes: 0,
            assigned,
            cooling: 0,
            age_seconds: 100,
        }
    }

    #[test]
    fn names_the_limit_that_stops_growth() {
        assert_eq!(diagnose(&state(vec![eni(3, 2)], 1, 1), "ok"), None);
        let mut capped = state(vec![eni(3, 3)], 1, 1);
        capped.limits.max_pods = 3;
        let max_pods = diagnose(&capped, "x").unwrap();
        assert_eq!(max_pods.kind, BlockedKind::MaxPods, "{max_pods}");
        let enis = diagnose(&state(vec![eni(3, 3), eni(3, 3)], 2, 1), "x").unwrap();
        assert_eq!(enis.kind, BlockedKind::EniLimit, "{enis}");
        let policy = diagnose(&state(vec![eni(3, 3)], 1, 2), "warm enough").unwrap();
        assert_eq!(policy.kind, BlockedKind::PolicyRefused);
        assert!(policy.detail.contains("warm enough"));
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.throttled(t0), BACKOFF_MIN);
        assert_eq!(b.throttled(t0), BACKOFF_MIN * 2);
        assert!(b.active(t0).is_some());
        assert!(b.active(t0 + BACKOFF_MAX).is_none());
        b.succeeded();
        assert!(b.active(t0).is_none());
    }
}
