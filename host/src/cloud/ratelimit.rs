//! Client-side token buckets per EC2 API class.
//!
//! EC2 meters every account with one token bucket per API class: a call takes a token, an empty
//! bucket answers `RequestLimitExceeded`, and tokens refill at a fixed rate. Weft keeps the same
//! buckets on the client so one node never bursts into throttling. The bucket arithmetic is pure
//! and takes the time from a [`Clock`], so tests drive it with a [`ManualClock`].

use super::action::ActionClass;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A source of monotonic time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to (for tests and the deterministic simulator).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub(crate) fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Size and refill rate of a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    /// Tokens when full (the burst).
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_sec: f64,
}

/// One token bucket.
#[derive(Debug, Clone)]
pub(super) struct TokenBucket {
    spec: BucketSpec,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(super) fn new(spec: BucketSpec, now: Instant) -> Self {
        TokenBucket {
            spec,
            tokens: f64::from(spec.capacity),
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub(super) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.spec.refill_per_sec).min(f64::from(self.spec.capacity));
        self.updated = now.max(self.updated);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.spec.refill_per_sec <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.spec.refill_per_sec,
        ))
    }
}

/// The smallest burst a node's share of a bucket keeps: enough for a
/// node's start-up reads (instance, instance type, ENIs, subnets, VPC) and
/// for one new ENI's calls of each class, so that neither waits on the
/// share's slow refill.
pub(crate) const MIN_NODE_BURST: u32 = 10;

/// The bucket of every [`ActionClass`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Filtered `Describe*` calls.
    pub describe: BucketSpec,
    /// ENI create/delete/modify.
    pub eni_lifecycle: BucketSpec,
    /// Address assignment and unassignment.
    pub address_assignment: BucketSpec,
    /// Other mutating calls (attach/detach).
    pub mutating: BucketSpec,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::aws()
    }
}

impl RateLimits {
    /// AWS's per-account, per-region EC2 request buckets (capacity / refill
    /// per second), from "Request throttling for the Amazon EC2 API"
    /// (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html):
    /// filtered non-mutating `Describe*` 100 / 20; `Create`/`DeleteNetworkInterface` and
    /// `ModifyNetworkInterfaceAttribute` 100 / 5; `Assign`/`UnassignPrivateIpAddresses`
    /// 100 / 5; every other mutating action (`Attach`/`DetachNetworkInterface`) the default
    /// mutating bucket, 50 / 5.
    pub fn aws() -> Self {
        let spec = |capacity, refill_per_sec| BucketSpec {
            capacity,
            refill_per_sec,
        };
        RateLimits {
            describe: spec(100, 20.0),
            eni_lifecycle: spec(100, 5.0),
            address_assignment: spec(100, 5.0),
            mutating: spec(50, 5.0),
        }
    }

    /// One node's share of these (account-wide) buckets when `nodes` nodes
    /// may call EC2 at the same time. The refill, which sets the sustained
    /// rate, is divided exactly by `nodes`, so the fleet together never
    /// asks for more than the account refills. The burst is divided too but
    /// kept at [`MIN_NODE_BURST`] calls at least (never more than the
    /// account's): a node's start-up reads and one ENI's create, attach,
    /// modify and assign go out at once instead of one per refill period.
    /// If every node bursts in the same second the fleet can exceed the
    /// account's burst once; EC2 then answers `RequestLimitExceeded`, which
    /// is retried with backoff, and the divided refill holds from then on.
    pub fn share(self, nodes: u32) -> Self {
        let nodes = nodes.max(1);
        let part = |spec: BucketSpec| BucketSpec {
            capacity: (spec.capacity / nodes).max(MIN_NODE_BURST.min(spec.capacity)),
            refill_per_sec: spec.refill_per_sec / f64::from(nodes),
        };
        RateLimits {
            describe: part(self.describe),
            eni_lifecycle: part(self.eni_lifecycle),
            address_assignment: part(self.address_assignment),
            mutating: part(self.mutating),
        }
    }

    /// Replaces the bucket of one class.
    pub fn with(mut self, class: ActionClass, spec: BucketSpec) -> Self {
        *self.spec_mut(class) = spec;
        self
    }

    /// The bucket of a class.
    pub fn spec(&self, class: ActionClass) -> BucketSpec {
        match class {
            ActionClass::Describe => self.describe,
            ActionClass::EniLifecycle => self.eni_lifecycle,
            ActionClass::AddressAssignment => self.address_assignment,
            ActionClass::Mutating => self.mutating,
        }
    }

    fn spec_mut(&mut self, class: ActionClass) -> &mut BucketSpec {
        match class {
            ActionClass::Describe => &mut self.describe,
            ActionClass::EniLifecycle => &mut self.eni_lifecycle,
            ActionClass::AddressAssignment => &mut self.address_assignment,
            ActionClass::Mutating => &mut self.mutating,
        }
    }
}

/// Token buckets for every API class, shared by all calls of one client.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<BTreeMap<ActionClass, TokenBucket>>,
    clock: Arc<dyn Clock>,
}

impl RateLimiter {
    /// Full buckets sized by `limits`, timed by `clock`.
    pub fn new(limits: &RateLimits, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let buckets = ActionClass::ALL
            .iter()
            .map(|&class| (class, TokenBucket::new(limits.spec(class), now)))
            .collect();
        RateLimiter {
            buckets: Mutex::new(buckets),
            clock,
        }
    }

    /// Takes a token of `class` now, or says how long until one is available.
    pub(crate) fn try_acquire(&self, class: ActionClass) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get_mut(&class) {
            Some(bucket) => bucket.try_take(now),
            None => Ok(()),
        }
    }

    /// Waits (on the tokio timer) until a token of `class` is available and takes it.
    pub(crate) async fn acquire(&self, class: ActionClass) {
        while let Err(wait) = self.try_acquire(class) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(capacity: u32, refill_per_sec: f64) -> BucketSpec {
        BucketSpec {
            capacity,
            refill_per_sec,
        }
    }

    #[test]
    fn a_full_bucket_allows_its_burst_then_refuses() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(spec(3, 1.0), now);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(now), Ok(()));
        }
        let wait = bucket.try_take(now).expect_err("bucket is empty");
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn tokens_refill_at_the_rate_and_never_beyond_capacity() {
        let clock = Arc::new(ManualClock::default());
        let limiter = RateLimiter::new(
            &RateLimits::aws().with(ActionClass::AddressAssignment, spec(2, 5.0)),
            clock.clone(),
        );
        let class = ActionClass::AddressAssignment;
        assert!(limiter.try_acquire(class).is_ok());
        assert!(limiter.try_acquire(class).is_ok());
        assert_eq!(limiter.try_acquire(class), Err(Duration::from_millis(200)));
        clock.advance(Duration::from_millis(200));
        assert!(limiter.try_acquire(class).is_ok());
        assert!(limiter.try_acquire(class).is_err());
        // A long pause refills to capacity (2), not to 5 tokens.
        clock.advance(Duration::from_secs(1));
        assert!(limiter.try_acquire(class).is_ok());
        assert!(limiter.try_acquire(class).is_ok());
        assert!(limiter.try_acquire(class).is_err());
    }

    #[test]
    fn classes_have_independent_buckets() {
        let clock = Arc::new(ManualClock::default());
        let limits = RateLimits::aws().with(ActionClass::EniLifecycle, spec(1, 1.0));
        let limiter = RateLimiter::new(&limits, clock);
        assert!(limiter.try_acquire(ActionClass::EniLifecycle).is_ok());
        assert!(limiter.try_acquire(ActionClass::EniLifecycle).is_err());
        assert!(limiter.try_acquire(ActionClass::Describe).is_ok());
    }

    #[test]
    fn aws_defaults_match_the_published_buckets() {
        let limits = RateLimits::aws();
        assert_eq!(limits.spec(ActionClass::Describe), spec(100, 20.0));
        assert_eq!(limits.spec(ActionClass::AddressAssignment), spec(100, 5.0));
        assert_eq!(limits.spec(ActionClass::EniLifecycle), spec(100, 5.0));
        assert_eq!(limits.spec(ActionClass::Mutating), spec(50, 5.0));
    }

    #[test]
    fn a_nodes_share_keeps_a_fleet_within_the_account_bucket() {
        let share = RateLimits::aws().share(5);
        assert_eq!(share.spec(ActionClass::EniLifecycle), spec(20, 1.0));
        assert_eq!(share.spec(ActionClass::Describe), spec(20, 4.0));
        // The burst stays at MIN_NODE_BURST however large the fleet; the
        // refill is divided exactly.
        let many = RateLimits::aws().share(1000);
        assert_eq!(many.spec(ActionClass::Mutating), spec(10, 0.005));
        assert_eq!(
            RateLimits::aws()
                .with(ActionClass::Mutating, spec(4, 1.0))
                .share(100)
                .spec(ActionClass::Mutating)
                .capacity,
            4,
            "never more than the account's burst"
        );
        assert_eq!(RateLimits::aws().share(0), RateLimits::aws());
    }

    /// The default share: every node of a 100-node cluster calling at once
    /// stays within the account's refill.
    #[test]
    fn the_default_share_keeps_a_100_node_cluster_within_the_account() {
        let account = RateLimits::aws();
        let node = account.share(crate::cloud::ec2::DEFAULT_RATE_SHARE_NODES);
        for class in ActionClass::ALL {
            let fleet = node.spec(class).refill_per_sec * 100.0;
            assert!(
                fleet <= account.spec(class).refill_per_sec * (1.0 + 1e-9),
                "{class:?}: 100 nodes refill {fleet}/s, the account {}/s",
                account.spec(class).refill_per_sec
            );
        }
        // A node's start-up reads (5 Describe calls) and a new ENI (create
        // and modify, attach, assign) go out without waiting.
        let now = Instant::now();
        let mut buckets: Vec<(ActionClass, u32, TokenBucket)> = [
            (ActionClass::Describe, 5),
            (ActionClass::EniLifecycle, 2),
            (ActionClass::Mutating, 1),
            (ActionClass::AddressAssignment, 1),
        ]
        .into_iter()
        .map(|(class, calls)| (class, calls, TokenBucket::new(node.spec(class), now)))
        .collect();
        for (class, calls, bucket) in &mut buckets {
            for call in 0..*calls {
                assert!(bucket.try_take(now).is_ok(), "{class:?} call {call} waits");
            }
        }
    }

    #[test]
    fn a_bucket_without_refill_reports_an_unbounded_wait() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(spec(0, 0.0), now);
        assert_eq!(bucket.try_take(now), Err(Duration::MAX));
    }
}
