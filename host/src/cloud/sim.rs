//! `SimCloud`: an embedded, deterministic VPC simulator behind the [`Cloud`] trait.
//!
//! It enforces what matters for address management: the instance type's ENI and address limits
//! (from a built-in table of real types), subnet capacity with EC2's five reserved addresses and
//! unique addresses, /28 prefixes that must be aligned and fail with `InsufficientCidrBlocks` when
//! the subnet is fragmented, per-API latency, EC2-like token-bucket throttling and injected
//! failures. All randomness (ids, MACs, addresses, injected failures) comes from one seeded RNG.
//!
//! ```
//! # async fn demo() -> Result<(), weft_host::cloud::CloudError> {
//! use weft_host::cloud::{AddressRequest, Cloud, CreateEni, SimCloud};
//! let sim = SimCloud::builder()
//!     .seed(7)
//!     .instance_type("m5.large")
//!     .subnet("10.0.0.0/24")
//!     .build()?;
//! let node = sim.identity().await?;
//! let eni = sim
//!     .create_eni(&CreateEni {
//!         subnet_id: node.subnet_id.clone(),
//!         security_groups: node.security_groups.clone(),
//!         addresses: AddressRequest::Ips(9),
//!         tags: Default::default(),
//!     })
//!     .await?;
//! assert_eq!(eni.secondary_ips.len(), 9);
//! # Ok(()) }
//! ```

mod addresses;
mod catalog;
mod fabric;
mod faults;
mod ipv6;
mod links;
mod persist;
mod state;

pub use faults::Fault;
pub use links::{EniLinks, NetnsEniLinks};
pub use state::ForeignEni;

use super::action::{ActionClass, Ec2Action};
use super::ratelimit::{Clock, RateLimiter, RateLimits, SystemClock};
use super::types::*;
use super::{Cloud, CloudError, CloudFuture, leak};
use addresses::AddressPool;
use ipnet::{Ipv4Net, Ipv6Net};
use rand::SeedableRng;
use rand::rngs::StdRng;
use state::{SimState, SimSubnet};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// A subnet of the simulated VPC.
#[derive(Debug, Clone)]
pub(crate) struct SubnetSpec {
    /// IPv4 CIDR, e.g. `10.0.0.0/24`.
    pub cidr: String,
    /// Availability zone; the node's zone when `None`.
    pub availability_zone: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The simulator's throttle: its own buckets, or an account's shared with other simulators.
#[derive(Clone)]
enum Throttle {
    Own(RateLimits),
    Account(Arc<RateLimiter>),
}

/// Builds a [`SimCloud`]. The first subnet is the node's own (its primary ENI lives there).
#[derive(Clone)]
pub struct SimBuilder {
    seed: u64,
    instance_type: String,
    cluster: String,
    availability_zone: String,
    subnets: Vec<SubnetSpec>,
    vpc_cidrs: Vec<String>,
    security_groups: Vec<String>,
    latency: BTreeMap<Ec2Action, Duration>,
    throttle: Option<Throttle>,
    client_limits: Option<RateLimits>,
    stale_reads: Option<Duration>,
    clock: Arc<dyn Clock>,
    start_time: Option<SystemTime>,
    links: Option<Arc<dyn EniLinks>>,
    leak_min_age: Duration,
    state_file: Option<PathBuf>,
    node_index: Option<u32>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            seed: 0,
            instance_type: "m5.large".into(),
            cluster: "weft-sim".into(),
            availability_zone: "us-east-1a".into(),
            subnets: Vec::new(),
            vpc_cidrs: Vec::new(),
            security_groups: vec!["sg-0000000000000000a".into()],
            latency: BTreeMap::new(),
            throttle: None,
            client_limits: None,
            stale_reads: None,
            clock: Arc::new(SystemClock),
            start_time: None,
            links: None,
            leak_min_age: leak::DEFAULT_MIN_AGE,
            state_file: None,
            node_index: None,
        }
    }
}

impl SimBuilder {
    /// Seed of every random choice (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The node's instance type; must be in the built-in table (default `m5.large`).
    pub fn instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = instance_type.into();
        self
    }

    /// Cluster name put in the `weft.io/cluster` tag (default `weft-sim`).
    pub(crate) fn cluster_name(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// The zone of subnets added without one (default `us-east-1a`); the node's zone is its
    /// subnet's (the first subnet's).
    pub(crate) fn availability_zone(mut self, zone: impl Into<String>) -> Self {
        self.availability_zone = zone.into();
        self
    }

    /// Adds an untagged subnet in the node's zone.
    pub fn subnet(self, cidr: impl Into<String>) -> Self {
        self.subnet_with(SubnetSpec {
            cidr: cidr.into(),
            availability_zone: None,
            tags: BTreeMap::new(),
        })
    }

    /// Adds a subnet.
    pub(crate) fn subnet_with(mut self, spec: SubnetSpec) -> Self {
        self.subnets.push(spec);
        self
    }

    /// Adds an IPv4 CIDR block of the VPC; every subnet must lie in one.
    /// Without any, the VPC has the /16 around each subnet.
    pub fn vpc_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.vpc_cidrs.push(cidr.into());
        self
    }

    /// The node's security groups (default one group).
    pub fn security_groups<S: Into<String>>(mut self, groups: impl IntoIterator<Item = S>) -> Self {
        self.security_groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Every call of `api` takes this long (on the tokio timer).
    pub fn latency(mut self, api: Ec2Action, latency: Duration) -> Self {
        self.latency.insert(api, latency);
        self
    }

    /// Throttles calls with EC2-like token buckets: a call finding its bucket empty fails with
    /// [`CloudError::Throttled`].
    pub(crate) fn throttle(mut self, limits: RateLimits) -> Self {
        self.throttle = Some(Throttle::Own(limits));
        self
    }

    /// Throttles calls with buckets shared with other simulators: EC2 meters a whole account
    /// (per region), so the nodes of a fleet draw on the same buckets.
    pub fn account_throttle(mut self, account: Arc<RateLimiter>) -> Self {
        self.throttle = Some(Throttle::Account(account));
        self
    }

    /// Client-side buckets: every call waits for a token first, as [`Ec2Cloud`]'s calls do.
    ///
    /// [`Ec2Cloud`]: crate::cloud::Ec2Cloud
    pub fn client_limits(mut self, limits: RateLimits) -> Self {
        self.client_limits = Some(limits);
        self
    }

    /// EC2's reads lag its writes: for `window` after a changing call, the node's ENI list
    /// answers what it was before that call (never older than `window`).
    pub fn stale_reads(mut self, window: Duration) -> Self {
        self.stale_reads = Some(window);
        self
    }

    /// The simulator's clock: it refills the throttling buckets and ages ENIs (default the
    /// system clock). With a [`ManualClock`](crate::cloud::ManualClock) and a fixed
    /// [`start_time`](Self::start_time) the simulator is fully deterministic.
    pub(crate) fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The wall-clock time at build (default now); later times follow [`clock`](Self::clock).
    pub(crate) fn start_time(mut self, time: SystemTime) -> Self {
        self.start_time = Some(time);
        self
    }

    /// Materialises attached ENIs through this hook.
    pub fn links(mut self, links: Arc<dyn EniLinks>) -> Self {
        self.links = Some(links);
        self
    }

    /// Minimum age of a leaked ENI (default 5 minutes).
    pub fn leak_min_age(mut self, age: Duration) -> Self {
        self.leak_min_age = age;
        self
    }

    /// Keeps the VPC in `path`: the ENIs saved there by an earlier simulator
    /// of the same configuration are taken back at build, and every
    /// changing call saves them, so an agent restart finds its VPC again.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Makes this simulator node `index` of a VPC shared through its
    /// [`state_file`](Self::state_file) with other simulators (other
    /// agents, each its own node) of the same seed and subnets: every call
    /// locks the file and first takes what the others changed, so addresses
    /// are never handed out twice and each node sees the others' ENIs.
    pub fn node_index(mut self, index: u32) -> Self {
        self.node_index = Some(index);
        self
    }

    /// Builds the simulator with the node attached at device index 0 of the first subnet.
    pub fn build(self) -> Result<SimCloud, CloudError> {
        let invalid = |detail: String| CloudError::Fatal {
            api: "SimCloud::build".into(),
            detail,
        };
        let limits = catalog::limits(&self.instance_type).ok_or_else(|| {
            invalid(format!(
                "unknown instance type {:?}; the simulator knows {}",
                self.instance_type,
                catalog::known().join(", ")
            ))
        })?;
        if self.subnets.is_empty() {
            return Err(invalid("add at least one subnet (the node's own)".into()));
        }
        let rng = StdRng::seed_from_u64(self.seed);
        let mut subnets = Vec::with_capacity(self.subnets.len());
        for spec in &self.subnets {
            let cidr: Ipv4Net = spec
                .cidr
                .parse()
                .map_err(|e| invalid(format!("subnet CIDR {:?}: {e}", spec.cidr)))?;
            if cidr.prefix_len() > 28 || cidr.prefix_len() < 16 {
                return Err(invalid(format!(
                    "subnet {cidr}: EC2 subnets are /16 to /28"
                )));
            }
            if subnets.iter().any(|s: &SimSubnet| {
                s.pool.net().contains(&cidr.network()) || cidr.contains(&s.pool.net().network())
            }) {
                return Err(invalid(format!("subnet {cidr} overlaps another subnet")));
            }
            subnets.push(SimSubnet {
                id: String::new(),
                availability_zone: spec
                    .availability_zone
                    .clone()
                    .unwrap_or_else(|| self.availability_zone.clone()),
                tags: spec.tags.clone(),
                pool: AddressPool::new(cidr),
            });
        }
        let vpc_cidrs = vpc_cidrs(&self.vpc_cidrs, &subnets).map_err(invalid)?;
        let mut state = SimState {
            rng,
            vpc_cidrs,
            cluster: self.cluster,
            identity: NodeIdentity {
                instance_id: String::new(),
                instance_type: limits.instance_type.clone(),
                availability_zone: subnets[0].availability_zone.clone(),
                vpc_id: String::new(),
                primary_eni_id: String::new(),
                subnet_id: String::new(),
                security_groups: self.security_groups,
                mac: MacAddr([0; 6]),
            },
            limits,
            subnets,
            enis: BTreeMap::new(),
            handed_out_ips: Vec::new(),
            handed_out_prefixes: Vec::new(),
            ipv6_prefixes: BTreeMap::new(),
            faults: Default::default(),
            leak_min_age: self.leak_min_age,
        };
        for i in 0..state.subnets.len() {
            state.subnets[i].id = state.new_id("subnet");
        }
        state.identity.instance_id = state.new_id("i");
        state.identity.vpc_id = state.new_id("vpc");
        state.identity.subnet_id = state.subnets[0].id.clone();
        // The VPC's ids come from the seed; a node of a shared VPC draws its
        // own from a stream of its own.
        let node_seed = match self.node_index {
            Some(index) if index > 0 => {
                let seed = self.seed ^ u64::from(index).wrapping_mul(0xd1b5_4a32_d192_ed03);
                state.rng = StdRng::seed_from_u64(seed);
                state.identity.instance_id = state.new_id("i");
                seed
            }
            _ => self.seed,
        };
        let persist = match (self.state_file, self.node_index) {
            (Some(path), Some(_)) => {
                let _locked = persist::lock(&path)?;
                let generation = persist::restore(&path, &mut state, node_seed)?;
                if !state.adopt_primary() {
                    state.boot()?;
                }
                persist::save(&path, &state, generation + 1)?;
                Some((path, AtomicU64::new(generation + 1)))
            }
            (Some(path), None) => {
                state.boot()?;
                let generation = persist::restore(&path, &mut state, self.seed)?;
                Some((path, AtomicU64::new(generation)))
            }
            (None, _) => {
                state.boot()?;
                None
            }
        };
        let client = self
            .client_limits
            .map(|limits| RateLimiter::new(&limits, self.clock.clone()));
        let limiter = self.throttle.map(|throttle| match throttle {
            Throttle::Own(limits) => Arc::new(RateLimiter::new(&limits, self.clock.clone())),
            Throttle::Account(shared) => shared,
        });
        Ok(SimCloud {
            state: Mutex::new(state),
            client,
            stale: self.stale_reads.map(|window| Stale {
                window,
                view: Mutex::new(None),
            }),
            calls: Mutex::new(BTreeMap::new()),
            start: (
                self.clock.now(),
                self.start_time.unwrap_or_else(SystemTime::now),
            ),
            clock: self.clock,
            latency: self.latency,
            limiter,
            links: self.links,
            persist,
            shared: self.node_index.is_some(),
        })
    }
}

/// The VPC's CIDR blocks: those given, which must hold every subnet, or the
/// /16 around each subnet.
fn vpc_cidrs(given: &[String], subnets: &[SimSubnet]) -> Result<Vec<Ipv4Net>, String> {
    let mut cidrs = Vec::new();
    for cidr in given {
        let net: Ipv4Net = cidr
            .parse()
            .map_err(|e| format!("VPC CIDR {cidr:?}: {e}"))?;
        cidrs.push(net.trunc());
    }
    for subnet in subnets {
        let net = subnet.pool.net();
        if given.is_empty() {
            let around = Ipv4Net::new(net.network(), 16)
                .map_err(|e| e.to_string())?
                .trunc();
            if !cidrs.contains(&around) {
                cidrs.push(around);
            }
        } else if !cidrs.iter().any(|c| c.contains(&net)) {
            return Err(format!(
                "subnet {net} lies in none of the VPC's CIDR blocks"
            ));
        }
    }
    Ok(cidrs)
}

/// What the node's ENI list answered before the changing calls of the last window.
struct Stale {
    window: Duration,
    /// The old answer, when it was taken, and until when it is given.
    view: Mutex<Option<(Vec<Eni>, Instant, Instant)>>,
}

/// Counts of the simulator's calls, by API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallCount {
    /// Calls made (throttled and failed ones included).
    pub calls: u32,
    /// Calls refused by the (account) throttle.
    pub throttled: u32,
}

/// The embedded VPC simulator. See the [module docs](self).
pub struct SimCloud {
    state: Mutex<SimState>,
    client: Option<RateLimiter>,
    stale: Option<Stale>,
    calls: Mutex<BTreeMap<Ec2Action, CallCount>>,
    clock: Arc<dyn Clock>,
    /// The clock's instant and the wall-clock time at build.
    start: (Instant, SystemTime),
    latency: BTreeMap<Ec2Action, Duration>,
    limiter: Option<Arc<RateLimiter>>,
    links: Option<Arc<dyn EniLinks>>,
    /// The state file and its save count, when the VPC is kept.
    persist: Option<(PathBuf, AtomicU64)>,
    /// Other simulators share the state file: every call locks and reloads it.
    shared: bool,
}

impl SimCloud {
    /// A builder with defaults: seed 0, `m5.large`, cluster `weft-sim`, `us-east-1a`.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The simulated wall-clock time.
    fn wall_now(&self) -> SystemTime {
        let (instant, time) = self.start;
        time + self.clock.now().saturating_duration_since(instant)
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One simulated API call: latency, throttling, injected faults, then the state change.
    async fn call<T>(
        &self,
        api: Ec2Action,
        op: impl FnOnce(&mut SimState) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        if let Some(client) = &self.client {
            client.acquire(api.class()).await;
        }
        if let Some(latency) = self.latency.get(&api) {
            tokio::time::sleep(*latency).await;
        }
        let throttled = self
            .limiter
            .as_ref()
            .is_some_and(|limiter| limiter.try_acquire(api.class()).is_err());
        self.count(api, throttled);
        if throttled {
            return Err(CloudError::Throttled {
                api: api.name().to_owned(),
            });
        }
        let mut state = self.lock();
        let _shared = self.take_shared(&mut state)?;
        let SimState { faults, rng, .. } = &mut *state;
        let fault = faults.next(api, rng);
        if let Some(fault) = fault.filter(|f| *f != Fault::LostAnswer) {
            return Err(fault.error(api));
        }
        let changing = api.class() != ActionClass::Describe;
        if changing {
            self.remember_view(&state);
        }
        let result = op(&mut state)?;
        if changing {
            self.save(&state)?;
        }
        match fault {
            Some(lost) => Err(lost.error(api)),
            None => Ok(result),
        }
    }

    fn count(&self, api: Ec2Action, throttled: bool) {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let count = calls.entry(api).or_default();
        count.calls += 1;
        count.throttled += u32::from(throttled);
    }

    /// Before a changing call: keeps the node's ENI list as it is, for stale reads.
    fn remember_view(&self, state: &SimState) {
        let Some(stale) = &self.stale else {
            return;
        };
        let now = self.clock.now();
        let mut view = stale.view.lock().unwrap_or_else(PoisonError::into_inner);
        match view.as_mut() {
            // Within the window of an older answer: give that one a little longer, but never
            // past `window` after it was taken.
            Some((_, taken, until)) if *until > now => {
                *until = (now + stale.window).min(*taken + stale.window)
            }
            _ => *view = Some((state.node_enis(), now, now + stale.window)),
        }
    }

    /// The node's ENIs as a read answers them now: stale within a window after a change.
    fn node_enis_read(&self, state: &SimState) -> Vec<Eni> {
        let now = self.clock.now();
        self.stale
            .as_ref()
            .and_then(|stale| {
                let view = stale.view.lock().unwrap_or_else(PoisonError::into_inner);
                view.as_ref()
                    .filter(|(_, _, until)| *until > now)
                    .map(|(enis, _, _)| enis.clone())
            })
            .unwrap_or_else(|| state.node_enis())
    }

    /// Test hook: how often `api` was called, and how often the throttle refused it.
    pub fn calls(&self, api: Ec2Action) -> CallCount {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&api)
            .copied()
            .unwrap_or_default()
    }

    /// Test hook: attaches an ENI someone other than Weft made to the node; returns it.
    pub fn attach_foreign(&self, kind: ForeignEni) -> Result<Eni, CloudError> {
        let mut state = self.lock();
        let eni = state.attach_foreign(kind)?;
        self.save(&state)?;
        Ok(eni)
    }

    /// Materialises the node's primary ENI (on a fabric: its link, address
    /// and default route, as the instance's own network set-up would);
    /// nothing without a links hook.
    pub async fn materialise_primary(&self) -> Result<(), CloudError> {
        self.materialise_attached(true).await
    }

    /// Materialises the node's attached secondary ENIs whose links are
    /// missing. On EC2 an attached ENI's device is there whatever the agent
    /// did; here the agent makes it after the attach, so one killed in
    /// between left an attached ENI without a device, which its successor
    /// would wait for in vain. Nothing without a links hook.
    pub async fn materialise_secondaries(&self) -> Result<(), CloudError> {
        self.materialise_attached(false).await
    }

    /// Has the links hook make the node's attached ENIs, the primary or
    /// the secondaries (a link that exists is left alone).
    async fn materialise_attached(&self, primary: bool) -> Result<(), CloudError> {
        let Some(links) = &self.links else {
            return Ok(());
        };
        let enis: Vec<Eni> = {
            let state = self.lock();
            let primary_id = &state.identity.primary_eni_id;
            state
                .node_enis()
                .into_iter()
                .filter(|e| (&e.id == primary_id) == primary)
                .collect()
        };
        for eni in &enis {
            links.attached(eni).await?;
        }
        Ok(())
    }

    /// Tells the links hook an ENI's addresses changed.
    async fn addresses_changed(&self, eni_id: &str) {
        let Some(links) = &self.links else {
            return;
        };
        let eni = self.lock().enis.get(eni_id).cloned();
        if let Some(eni) = eni.filter(|e| e.attachment.is_some())
            && let Err(error) = links.addresses(&eni).await
        {
            tracing::warn!(eni = %eni.id, %error, "simulated fabric not updated");
        }
    }

    /// An address-changing call, then the links hook.
    async fn change_addresses<T>(
        &self,
        eni_id: &str,
        op: impl FnOnce(&mut SimState) -> Result<T, CloudError>,
        api: Ec2Action,
    ) -> Result<T, CloudError> {
        let result = self.call(api, op).await;
        self.addresses_changed(eni_id).await;
        result
    }

    /// In a shared VPC: locks the state file (until the guard drops) and
    /// takes what other simulators changed.
    fn take_shared(
        &self,
        state: &mut SimState,
    ) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, CloudError> {
        let Some((path, generation)) = self.persist.as_ref().filter(|_| self.shared) else {
            return Ok(None);
        };
        let locked = persist::lock(path)?;
        let known = generation.load(Ordering::Relaxed);
        generation.store(persist::reload(path, state, known)?, Ordering::Relaxed);
        Ok(Some(locked))
    }

    /// Saves the VPC when it has a state file.
    fn save(&self, state: &SimState) -> Result<(), CloudError> {
        match &self.persist {
            Some((path, generation)) => {
                persist::save(path, state, generation.fetch_add(1, Ordering::Relaxed) + 1)
            }
            None => Ok(()),
        }
    }

    /// Detaches and deletes without fault injection (the undo path of a failed create).
    async fn undo_create(&self, eni: &Eni) {
        if let Some(links) = &self.links
            && eni.attachment.is_some()
            && let Err(error) = links.detached(eni).await
        {
            tracing::warn!(eni = %eni.id, %error, "simulated link not removed");
        }
        let mut state = self.lock();
        if eni.attachment.is_some() {
            let _ = state.detach(&eni.id);
        }
        let _ = state.delete(&eni.id);
        if let Err(error) = self.save(&state) {
            tracing::warn!(%error, "simulated VPC not saved after undoing a create");
        }
    }

    /// Fails the next calls of `api` with these faults, in order.
    pub fn fail_next(&self, api: Ec2Action, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.script(api, faults);
    }

    /// Fails a fraction `rate` of the calls of `api` with `fault` (seeded).
    pub fn set_failure_rate(&self, api: Ec2Action, rate: f64, fault: Fault) {
        self.lock().faults.set_rate(api, rate, fault);
    }

    /// Test hook: every secondary IP ever handed out (ENI primaries included), in order.
    #[cfg(test)]
    pub(crate) fn handed_out_ips(&self) -> Vec<Ipv4Addr> {
        self.lock().handed_out_ips.clone()
    }

    /// Test hook: every /28 prefix ever handed out, in order.
    pub fn handed_out_prefixes(&self) -> Vec<Ipv4Net> {
        self.lock().handed_out_prefixes.clone()
    }

    /// Test hook: every ENI in the VPC, attached or not.
    pub fn all_enis(&self) -> Vec<Eni> {
        self.lock().enis.values().cloned().collect()
    }

    /// Test hook: every address held by any ENI (prefixes expanded); duplicates would be a bug.
    #[cfg(test)]
    pub(crate) fn held_addresses(&self) -> Vec<Ipv4Addr> {
        self.lock().held_addresses()
    }

    /// Test hook: another tenant of the VPC takes `ip` (to fragment a subnet on purpose).
    /// Returns false when `ip` is in no subnet or already taken.
    pub fn occupy(&self, ip: Ipv4Addr) -> bool {
        let mut state = self.lock();
        state
            .subnets
            .iter_mut()
            .find(|s| s.pool.net().contains(&ip))
            .is_some_and(|s| s.pool.take_exact(ip))
    }

    /// Test hook: the VPC's CIDR blocks become `cidrs` (as when a block is
    /// associated with or disassociated from a VPC).
    pub fn set_vpc_cidrs(&self, cidrs: Vec<Ipv4Net>) {
        self.lock().vpc_cidrs = cidrs;
    }

    /// Test hook: detaches an ENI without deleting it, as a crash between detach and delete
    /// would, leaving a leaked ENI behind.
    pub fn orphan_eni(&self, eni_id: &str) -> Result<(), CloudError> {
        self.lock().detach(eni_id).map(drop)
    }
}

impl Cloud for SimCloud {
    fn identity(&self) -> CloudFuture<'_, NodeIdentity> {
        Box::pin(self.call(Ec2Action::DescribeInstances, |s| Ok(s.identity.clone())))
    }

    fn instance_limits(&self) -> CloudFuture<'_, InstanceLimits> {
        Box::pin(self.call(Ec2Action::DescribeInstanceTypes, |s| Ok(s.limits.clone())))
    }

    fn list_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        Box::pin(self.call(Ec2Action::DescribeNetworkInterfaces, |s| {
            Ok(self.node_enis_read(s))
        }))
    }

    fn list_subnets(&self) -> CloudFuture<'_, Vec<Subnet>> {
        Box::pin(self.call(Ec2Action::DescribeSubnets, |s| Ok(s.subnets())))
    }

    fn vpc_cidrs(&self) -> CloudFuture<'_, Vec<Ipv4Net>> {
        Box::pin(self.call(Ec2Action::DescribeVpcs, |s| Ok(s.vpc_cidrs.clone())))
    }

    fn create_eni<'a>(&'a self, request: &'a CreateEni) -> CloudFuture<'a, Eni> {
        Box::pin(async move {
            let now = self.wall_now();
            let created = self
                .call(Ec2Action::CreateNetworkInterface, |s| {
                    s.create_eni(request, now)
                })
                .await?;
            let attached = match self
                .call(Ec2Action::AttachNetworkInterface, |s| s.attach(&created.id))
                .await
            {
                Ok(eni) => eni,
                Err(error) => {
                    self.undo_create(&created).await;
                    return Err(error);
                }
            };
            if let Some(links) = &self.links
                && let Err(error) = links.attached(&attached).await
            {
                self.undo_create(&attached).await;
                return Err(error);
            }
            Ok(attached)
        })
    }

    fn assign_ips<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Addr>> {
        Box::pin(self.change_addresses(
            eni_id,
            move |s| s.assign_ips(eni_id, count),
            Ec2Action::AssignPrivateIpAddresses,
        ))
    }

    fn assign_prefixes<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Net>> {
        Box::pin(self.change_addresses(
            eni_id,
            move |s| s.assign_prefixes(eni_id, count),
            Ec2Action::AssignPrivateIpAddresses,
        ))
    }

    fn ipv6_prefixes<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, Vec<Ipv6Net>> {
        Box::pin(self.call(Ec2Action::DescribeNetworkInterfaces, move |s| {
            s.ipv6_prefixes(eni_id)
        }))
    }

    fn assign_ipv6_prefix<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, Ipv6Net> {
        Box::pin(self.call(Ec2Action::AssignIpv6Addresses, move |s| {
            s.assign_ipv6_prefix(eni_id)
        }))
    }

    fn unassign_ips<'a>(&'a self, eni_id: &'a str, ips: &'a [Ipv4Addr]) -> CloudFuture<'a, ()> {
        Box::pin(self.change_addresses(
            eni_id,
            move |s| s.unassign_ips(eni_id, ips),
            Ec2Action::UnassignPrivateIpAddresses,
        ))
    }

    fn unassign_prefixes<'a>(
        &'a self,
        eni_id: &'a str,
        prefixes: &'a [Ipv4Net],
    ) -> CloudFuture<'a, ()> {
        Box::pin(self.change_addresses(
            eni_id,
            move |s| s.unassign_prefixes(eni_id, prefixes),
            Ec2Action::UnassignPrivateIpAddresses,
        ))
    }

    fn delete_eni<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let eni = match self
                .call(Ec2Action::DescribeNetworkInterfaces, |s| {
                    s.eni(Ec2Action::DescribeNetworkInterfaces, eni_id).cloned()
                })
                .await
            {
                Ok(eni) => eni,
                Err(CloudError::NotFound { .. }) => return Ok(()),
                Err(error) => return Err(error),
            };
            if eni.attachment.is_some() {
                if let Some(links) = &self.links {
                    links.detached(&eni).await?;
                }
                self.call(Ec2Action::DetachNetworkInterface, |s| s.detach(eni_id))
                    .await?;
            }
            self.call(Ec2Action::DeleteNetworkInterface, |s| s.delete(eni_id))
                .await
        })
    }

    fn find_enis_by_tag<'a>(&'a self, key: &'a str, value: &'a str) -> CloudFuture<'a, Vec<Eni>> {
        Box::pin(self.call(Ec2Action::DescribeNetworkInterfaces, move |s| {
            Ok(s.enis
                .values()
                .filter(|e| e.tags.get(key).is_some_and(|v| v == value))
                .cloned()
                .collect())
        }))
    }

    fn list_leaked_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        let now = self.wall_now();
        Box::pin(self.call(Ec2Action::DescribeNetworkInterfaces, move |s| {
            Ok(s.leaked(now))
        }))
    }
}

#[cfg(test)]
mod tests;
