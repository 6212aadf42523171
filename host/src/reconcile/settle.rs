//! EC2 calls whose answer was lost, settled against the journal and later
//! reads instead of being sent again.
//!
//! A lost `AssignPrivateIpAddresses` answer may or may not have added
//! addresses; re-sending could add them twice, and a read right after may
//! still be stale (or older than a read before the call: EC2's reads need
//! not be monotonic), so no read is taken as the answer. The intent stays
//! open in the journal, no other assign goes to that ENI, and the inventory
//! resync (run at once, then every round while anything is unsettled) takes
//! in whatever EC2 reports under the rules of any read: an address Weft gave
//! back within the grace period is not taken back, nothing missing is
//! dropped on one read. After the grace period the intent is closed.
//!
//! A lost `UnassignPrivateIpAddresses` answer may or may not have given the
//! addresses back. The pool takes them out at once, as if the answer had
//! come, and no read brings them back for the grace period (see
//! [`crate::ipam::Datastore::remove_ips`]); whatever EC2 still has after it
//! comes back as free from a read. Nothing ever puts them back because reads
//! have not yet confirmed them gone: that count restarts with every change
//! Weft makes to the ENI and every stale read, so it is no evidence that EC2
//! still has them. The intent stays open until the grace period has passed
//! (a restart meanwhile redoes the unassign).

use super::driver::Driver;
use crate::cloud::CloudError;
use crate::ipam::{Datastore, IpamError};
use crate::state::Intent;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Whether EC2 may have taken back the addresses of an unassign that ended
/// so (`None`: never sent): it did, or the answer was lost.
fn may_have_taken(outcome: Option<&Result<(), CloudError>>) -> bool {
    outcome.is_some_and(|r| r.as_ref().map_or_else(CloudError::is_ambiguous, |()| true))
}

/// Applies to the pool how the unassign of `ips` and `prefixes` of ENI
/// `eni_id` (marked releasing) ended, each part with its outcome (`None`:
/// not sent). What EC2 may have taken leaves the pool, even when the answer
/// was lost; the rest is free again.
pub(super) fn given_back(
    store: &mut Datastore,
    eni_id: &str,
    (ips, ips_done): (&[Ipv4Addr], &Result<(), CloudError>),
    (prefixes, prefixes_done): (&[Ipv4Net], Option<&Result<(), CloudError>>),
    now: Instant,
) -> Result<(), IpamError> {
    if may_have_taken(Some(ips_done)) {
        store.remove_ips(eni_id, ips, now)?;
    } else {
        store.abort_release(eni_id, ips, &[])?;
    }
    if may_have_taken(prefixes_done) {
        store.remove_prefixes(eni_id, prefixes, now)
    } else {
        store.abort_release(eni_id, &[], prefixes)
    }
}

/// The shortest wait between the reads that settle a lost answer.
const SETTLE_READ_INTERVAL: Duration = Duration::from_millis(500);

/// What a call with a lost answer was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// Add addresses.
    Assign,
    /// Give addresses back (already out of the pool).
    Unassign,
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
    /// now holds for this ENI: reads sent after the grace period show the
    /// call's effect, whatever it was.
    fn due(&self, sent: Instant, grace: Duration, reads: u32) -> bool {
        sent.saturating_duration_since(self.since) >= grace && self.reads >= reads
    }
}

impl Driver {
    /// Whether an assign to `eni_id` is still unsettled (no other assign
    /// goes there meanwhile).
    pub(super) fn assign_unsettled(&self, eni_id: &str) -> bool {
        self.unsettled
            .iter()
            .any(|u| u.eni_id == eni_id && u.lost == Lost::Assign)
    }

    /// How long until a round may settle a lost answer: until the earliest
    /// one's grace period ends, or (past it, waiting for more reads) one
    /// more grace period; never less than `SETTLE_READ_INTERVAL` (a grace
    /// configured near zero must not turn the loop into a stream of
    /// reads). `None` while nothing is unsettled. Without it a lost
    /// answer would wait for the next event or resync period, and the ADDs
    /// it holds back (no assign to its ENI meanwhile) would time out.
    pub(super) fn settle_wait(&self, now: Instant) -> Option<Duration> {
        let grace = self.shared.config.stale_read_grace();
        self.unsettled
            .iter()
            .map(|u| (u.since + grace).saturating_duration_since(now))
            .min()
            .map(|left| if left.is_zero() { grace } else { left }.max(SETTLE_READ_INTERVAL))
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

    /// After a read of the cloud sent at `sent` was taken in: closes what
    /// is settled. The read shows EC2 as it was when it was sent, or older,
    /// so the grace period is measured up to then, as the datastore measures
    /// what it withholds from that read: a read sent inside the grace period
    /// and answered after it still had the addresses of a lost unassign
    /// withheld, and closing the answer on it reported the pool at rest
    /// while the next read brought them back.
    pub(super) fn settle(&mut self, sent: Instant) {
        let grace = self.shared.config.stale_read_grace();
        let reads = self.shared.config.stale_read_confirmations.max(1);
        for u in &mut self.unsettled {
            u.reads += 1;
        }
        let (due, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsettled)
            .into_iter()
            .partition(|u| u.due(sent, grace, reads));
        self.unsettled = open;
        for u in due {
            tracing::info!(op = %u.intent.id, eni = %u.eni_id, lost = ?u.lost, "lost answer settled: the pool holds what EC2 reports");
            self.finish(&u.intent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sim::Fault;
    use crate::cloud::{Ec2Action, ManualClock, RateLimits};
    use crate::ipam::{AddressState, AssignmentKey, Eni, IpamConfig, PodMeta, SgSet};
    use crate::metrics::Metrics;
    use crate::policy::{PoliciesConfig, PolicyConfig, PolicySet};
    use crate::reconcile::{NoHooks, Pool, PoolClock, PoolConfig, PoolDeps, RoundReport};
    use crate::simulate::ec2::{self, Counting, Latencies};
    use crate::simulate::timers::Timers;
    use crate::state::StateDir;
    use std::collections::{BTreeMap, BTreeSet};
    use std::future::Future;
    use std::sync::Arc;
    use std::time::SystemTime;

    const GRACE: Duration = Duration::from_secs(2);
    /// How far the reads below lag the writes (less than the grace period).
    const LAG: Duration = Duration::from_millis(1500);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn ips(last: impl IntoIterator<Item = u8>) -> BTreeSet<Ipv4Addr> {
        last.into_iter().map(ip).collect()
    }

    fn eni(addresses: &BTreeSet<Ipv4Addr>) -> Eni {
        Eni {
            id: "eni-1".into(),
            device_index: 1,
            subnet_id: "subnet-1".into(),
            mac: "02:00:00:00:00:01".into(),
            primary: false,
            primary_ip: Ipv4Addr::new(10, 0, 9, 1),
            security_groups: SgSet::new(["sg-1"]),
            ips: addresses.iter().copied().collect(),
            prefixes: vec![],
            attached_at: SystemTime::UNIX_EPOCH,
        }
    }

    /// A pool of one ENI holding `addresses`, 2 s grace, 3 confirming reads.
    fn pool(addresses: &BTreeSet<Ipv4Addr>) -> Datastore {
        let mut config = IpamConfig::new(SgSet::new(["sg-1"]));
        config.stale_read_grace = GRACE;
        config.confirm_reads = 3;
        let mut store = Datastore::new(config);
        store.add_eni(eni(addresses)).expect("ENI");
        store
    }

    fn lost() -> Result<(), CloudError> {
        Err(CloudError::Timeout {
            api: "UnassignPrivateIpAddresses".into(),
            after: Duration::from_secs(10),
        })
    }

    fn in_pool(store: &Datastore) -> BTreeSet<Ipv4Addr> {
        store.eni("eni-1").expect("ENI").ips.into_iter().collect()
    }

    fn free(store: &Datastore, now: Instant) -> BTreeSet<Ipv4Addr> {
        in_pool(store)
            .into_iter()
            .filter(|ip| store.address(*ip, now).map(|a| a.state) == Some(AddressState::Free))
            .collect()
    }

    /// The unassign of .3-.6 took effect but its answer was lost; Weft then
    /// grows the ENI (.7) and keeps changing it every second, and reads lag
    /// by 1.5 s. Every 250 ms for 8 s a read is taken in: no address EC2
    /// took is ever free, and at the end the pool holds what EC2 holds.
    /// (Before the fix the addresses stayed in the pool, releasing, until a
    /// timer put back as free whatever reads had not yet confirmed gone, and
    /// each change of the ENI restarted that confirmation.)
    #[test]
    fn a_lost_unassign_ec2_carried_out_never_frees_its_addresses() {
        let t0 = Instant::now();
        let mut store = pool(&ips(1..=6));
        let picked = store.begin_release_ips("eni-1", 4, t0).expect("picked");
        assert_eq!(picked.iter().copied().collect::<BTreeSet<_>>(), ips(3..=6));
        given_back(&mut store, "eni-1", (&picked, &lost()), (&[], None), t0).expect("applied");
        // EC2 over time: .3-.6 gone at t0, .7 added at t0 + 300 ms.
        let ec2_at = |at: Duration| {
            if at < Duration::from_millis(300) {
                ips([1, 2])
            } else {
                ips([1, 2, 7])
            }
        };
        let mut at = Duration::ZERO;
        while at <= Duration::from_secs(8) {
            let now = t0 + at;
            if at == Duration::from_millis(500) {
                store.add_ips("eni-1", &[ip(7)]).expect("grown");
            }
            if at.as_millis() % 1000 == 500 {
                store.touch("eni-1", now);
            }
            // A read shows EC2 as it was up to 1.5 s earlier (before the
            // unassign while that is less than 1.5 s ago).
            let seen = if at < LAG {
                ips(1..=6)
            } else {
                ec2_at(at - LAG)
            };
            store.observe_inventory(&[eni(&seen)], now);
            let truth = ec2_at(at);
            assert!(
                free(&store, now).is_subset(&truth),
                "at {at:?}: free {:?}, EC2 has {truth:?}",
                free(&store, now)
            );
            at += Duration::from_millis(250);
        }
        assert_eq!(in_pool(&store), ips([1, 2, 7]));
    }

    /// The unassign never reached EC2 (its answer timed out all the same):
    /// the addresses are out of the pool for the grace period, then reads
    /// bring them back as free.
    #[test]
    fn a_lost_unassign_ec2_never_saw_comes_back_after_the_grace() {
        let t0 = Instant::now();
        let mut store = pool(&ips(1..=6));
        let picked = store.begin_release_ips("eni-1", 4, t0).expect("picked");
        given_back(&mut store, "eni-1", (&picked, &lost()), (&[], None), t0).expect("applied");
        let read = [eni(&ips(1..=6))];
        for ms in [0, 500, 1000, 1500] {
            let now = t0 + Duration::from_millis(ms);
            store.observe_inventory(&read, now);
            assert_eq!(in_pool(&store), ips([1, 2]), "at {ms} ms");
        }
        let later = t0 + GRACE;
        store.observe_inventory(&read, later);
        assert_eq!(free(&store, later), ips(1..=6));
    }

    /// A refusal changed nothing: the addresses are free again at once;
    /// prefixes never sent (the IPs failed first) too.
    #[test]
    fn a_refused_unassign_puts_its_addresses_back() {
        let t0 = Instant::now();
        let mut store = pool(&ips(1..=4));
        let picked = store.begin_release_ips("eni-1", 2, t0).expect("picked");
        assert!(free(&store, t0).len() == 2);
        let refused = Err(CloudError::Fatal {
            api: "UnassignPrivateIpAddresses".into(),
            detail: "UnauthorizedOperation".into(),
        });
        given_back(&mut store, "eni-1", (&picked, &refused), (&[], None), t0).expect("applied");
        assert_eq!(free(&store, t0), ips(1..=4));
    }

    /// Runs `work` on the simulator's virtual clock until it ends.
    async fn in_virtual_time<T: Send + 'static>(
        timers: &Timers,
        work: impl Future<Output = T> + Send + 'static,
    ) -> T {
        timers
            .until_done(tokio::spawn(work))
            .await
            .expect("the task ran")
    }

    async fn round(pool: &Arc<Pool>, timers: &Timers) -> RoundReport {
        let pool = pool.clone();
        in_virtual_time(timers, async move { pool.reconcile().await })
            .await
            .expect("round")
    }

    fn pod_key(n: u32) -> AssignmentKey {
        AssignmentKey::new("weft", format!("c{n}"), "eth0")
    }

    /// The pool on the simulated EC2 in virtual time, where every read
    /// takes 700 ms. An unassign EC2 never saw times out: its addresses are
    /// withheld for the grace period (2 s) and the answer stays open. The
    /// third read after it is sent 1.4 s after the unassign and answered
    /// 2.1 s after; it shows EC2 as it was inside the grace period, so the
    /// addresses are still withheld from it and it must not settle the
    /// answer. A round that reports the pool at rest is followed by one that
    /// changes nothing. (Before the fix the grace was measured to the read's
    /// arrival: that round closed the answer and reported the pool at rest,
    /// the next read brought the addresses back and the round after it gave
    /// them back to EC2 again.)
    #[tokio::test]
    async fn a_read_sent_inside_the_grace_settles_no_lost_answer() {
        let clock = Arc::new(ManualClock::default());
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sim =
            ec2::build("m5.large", 7, RateLimits::aws(), clock.clone(), start).expect("simulator");
        sim.fail_next(Ec2Action::UnassignPrivateIpAddresses, [Fault::Timeout]);
        let timers = Arc::new(Timers::new(clock));
        let reads = Latencies(BTreeMap::from([(
            Ec2Action::DescribeNetworkInterfaces,
            700,
        )]));
        let metrics = Arc::new(Metrics::new());
        let policies = PoliciesConfig {
            pool_sizing: Some(PolicyConfig {
                settings: serde_json::json!({"warm-eni-target": 0, "warm-ip-target": 1}),
                ..PolicyConfig::default()
            }),
            ..PoliciesConfig::default()
        };
        let tmp = tempfile::tempdir().expect("temp dir");
        let deps = PoolDeps {
            cloud: Arc::new(Counting::new(sim, timers.clone(), reads)),
            policies: Arc::new(PolicySet::from_config(&policies, metrics.clone()).expect("policy")),
            state: StateDir::open(tmp.path()).expect("state directory"),
            metrics,
            hooks: Arc::new(NoHooks),
            config: PoolConfig {
                cooldown_seconds: 0,
                min_eni_age_seconds: 0,
                inventory_resync_seconds: 0,
                stale_read_grace_seconds: GRACE.as_secs(),
                stale_read_confirmations: 3,
                resync_seconds: 3_600,
                add_wait_ms: 600_000,
                ..PoolConfig::default()
            },
        };
        let pool = in_virtual_time(
            &timers,
            Pool::start_with_clock(deps, PoolClock::following(timers.clone(), start)),
        )
        .await
        .expect("the pool starts");
        let group = pool.default_group();
        for n in 0..6 {
            let (pool, group) = (pool.clone(), group.clone());
            let meta = PodMeta {
                namespace: "default".into(),
                name: format!("p{n}"),
                uid: format!("u{n}"),
            };
            in_virtual_time(&timers, async move {
                pool.assign(pod_key(n), &group, meta).await
            })
            .await
            .expect("address");
        }
        round(&pool, &timers).await;
        for n in 0..6 {
            pool.release(&pod_key(n)).expect("release");
        }
        let lost = round(&pool, &timers).await;
        assert_eq!(lost.unsettled, 1, "the unassign's answer is open: {lost:?}");
        let mut report = round(&pool, &timers).await;
        for _ in 0..20 {
            if report.is_settled() {
                break;
            }
            report = round(&pool, &timers).await;
        }
        assert!(
            report.is_settled(),
            "the pool never came to rest: {report:?}"
        );
        let next = round(&pool, &timers).await;
        assert!(
            next.is_settled(),
            "a round reported the pool at rest ({report:?}); the next one was not: {next:?}"
        );
        in_virtual_time(&timers, async move { pool.shutdown().await }).await;
    }
}
