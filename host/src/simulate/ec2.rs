//! The EC2 the simulated node talks to: the embedded simulator
//! ([`SimCloud`]) with per-call latency and AWS's token buckets, on the
//! virtual clock, behind a counter of every call the pool makes.

use super::timers::Timers;
use crate::cloud::{
    Cloud, CloudError, CloudFuture, CreateEni, Ec2Action, Eni, InstanceLimits, ManualClock,
    NodeIdentity, RateLimits, SimCloud, Subnet,
};
use crate::reconcile::VirtualClock;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Per-call latencies of the simulated EC2, in milliseconds.
///
/// Where the defaults come from (no public per-API latency table exists;
/// these are read off public VPC CNI reports and rounded):
/// * `AssignPrivateIpAddresses` 500: aws/amazon-vpc-cni-k8s#648 measured
///   the first assignment of secondary IPs at start-up as a 400-600 ms
///   delay.
/// * `CreateNetworkInterface` 500 + `AttachNetworkInterface` 1500: in the
///   ipamd log of aws/amazon-vpc-cni-k8s#1872 an ENI is created at
///   22:44:04.191 and its first addresses are allocated 1.8 s later; #420
///   reports attachments that take longer still (the CNI then waited up to
///   10 s per ENI).
/// * `UnassignPrivateIpAddresses` 500, `DetachNetworkInterface` 1000,
///   `DeleteNetworkInterface` 500, `Describe*` 200: assumed of the same
///   order as their counterparts; no public measurement was found. Every
///   value can be changed with `--latency API=MS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latencies(pub BTreeMap<Ec2Action, u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(BTreeMap::from([
            (Ec2Action::DescribeInstances, 200),
            (Ec2Action::DescribeInstanceTypes, 200),
            (Ec2Action::DescribeNetworkInterfaces, 200),
            (Ec2Action::DescribeSubnets, 200),
            (Ec2Action::CreateNetworkInterface, 500),
            (Ec2Action::AttachNetworkInterface, 1500),
            (Ec2Action::ModifyNetworkInterfaceAttribute, 300),
            (Ec2Action::AssignPrivateIpAddresses, 500),
            (Ec2Action::UnassignPrivateIpAddresses, 500),
            (Ec2Action::DetachNetworkInterface, 1000),
            (Ec2Action::DeleteNetworkInterface, 500),
        ]))
    }
}

impl Latencies {
    /// Sets one latency from `API=MS` (e.g. `AttachNetworkInterface=3000`).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (name, ms) = spec.split_once('=').ok_or_else(|| {
            format!("latency {spec:?}: write API=MS, e.g. AttachNetworkInterface=3000")
        })?;
        let api = Ec2Action::from_name(name).ok_or_else(|| {
            let names: Vec<_> = Ec2Action::ALL.iter().map(|a| a.name()).collect();
            format!("latency {spec:?}: unknown API; one of {}", names.join(", "))
        })?;
        let ms = ms.parse().map_err(|e| {
            format!("latency {spec:?}: {ms:?} is not a number of milliseconds: {e}")
        })?;
        self.0.insert(api, ms);
        Ok(())
    }
}

/// The simulated EC2 of one run: no latency of its own (the counter
/// charges it to the virtual clock), throttled on the virtual clock.
pub(crate) fn build(
    instance_type: &str,
    seed: u64,
    throttle: RateLimits,
    clock: Arc<ManualClock>,
    start: SystemTime,
) -> Result<SimCloud, CloudError> {
    SimCloud::builder()
        .seed(seed)
        .instance_type(instance_type)
        .subnet("10.0.0.0/16")
        .throttle(throttle)
        .clock(clock)
        .start_time(start)
        .build()
}

/// Calls the pool made, by what they change in EC2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// Mutating EC2 requests by API, whether they succeeded or not. A new
    /// ENI is `CreateNetworkInterface` + `AttachNetworkInterface` +
    /// `ModifyNetworkInterfaceAttribute` (delete-on-termination), as Weft's
    /// EC2 client (`cloud::ec2`) and the VPC CNI's `AllocENI` send them; a
    /// release `DetachNetworkInterface` + `DeleteNetworkInterface`.
    pub mutating: BTreeMap<String, u32>,
    /// Calls EC2 refused with `RequestLimitExceeded`.
    pub throttled: u32,
}

impl CallCounts {
    /// Every mutating request.
    pub fn total(&self) -> u32 {
        self.mutating.values().sum()
    }
}

/// A [`Cloud`] that counts what goes through it and makes each EC2 request
/// take its latency in virtual time: a round that creates an ENI ends
/// `CreateNetworkInterface + AttachNetworkInterface +
/// ModifyNetworkInterfaceAttribute` later, while pods keep coming.
pub(crate) struct Counting {
    inner: SimCloud,
    timers: Arc<Timers>,
    latencies: Latencies,
    counts: Mutex<CallCounts>,
}

impl Counting {
    pub(crate) fn new(inner: SimCloud, timers: Arc<Timers>, latencies: Latencies) -> Self {
        Counting {
            inner,
            timers,
            latencies,
            counts: Mutex::default(),
        }
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> CallCounts {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the latency of `apis` (or of the `describe` read), counts the
    /// mutating ones and a throttled answer; passes the result on.
    async fn counted<T>(
        &self,
        apis: &[Ec2Action],
        call: CloudFuture<'_, T>,
    ) -> Result<T, CloudError> {
        let took: u64 = if apis.is_empty() {
            self.latencies
                .0
                .get(&Ec2Action::DescribeNetworkInterfaces)
                .copied()
                .unwrap_or(0)
        } else {
            apis.iter()
                .map(|a| self.latencies.0.get(a).copied().unwrap_or(0))
                .sum()
        };
        self.timers.sleep(Duration::from_millis(took)).await;
        let result = call.await;
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for api in apis {
            *counts.mutating.entry(api.name().to_owned()).or_default() += 1;
        }
        if matches!(result, Err(CloudError::Throttled { .. })) {
            counts.throttled += 1;
        }
        result
    }
}

impl Cloud for Counting {
    fn identity(&self) -> CloudFuture<'_, NodeIdentity> {
        Box::pin(self.counted(&[], self.inner.identity()))
    }

    fn instance_limits(&self) -> CloudFuture<'_, InstanceLimits> {
        Box::pin(self.counted(&[], self.inner.instance_limits()))
    }

    fn list_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        Box::pin(self.counted(&[], self.inner.list_enis()))
    }

    fn list_subnets(&self) -> CloudFuture<'_, Vec<Subnet>> {
        Box::pin(self.counted(&[], self.inner.list_subnets()))
    }

    fn create_eni<'a>(&'a self, request: &'a CreateEni) -> CloudFuture<'a, Eni> {
        Box::pin(self.counted(
            &[
                Ec2Action::CreateNetworkInterface,
                Ec2Action::AttachNetworkInterface,
                Ec2Action::ModifyNetworkInterfaceAttribute,
            ],
            self.inner.create_eni(request),
        ))
    }

    fn assign_ips<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Addr>> {
        Box::pin(self.counted(
            &[Ec2Action::AssignPrivateIpAddresses],
            self.inner.assign_ips(eni_id, count),
        ))
    }

    fn assign_prefixes<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Net>> {
        Box::pin(self.counted(
            &[Ec2Action::AssignPrivateIpAddresses],
            self.inner.assign_prefixes(eni_id, count),
        ))
    }

    fn unassign_ips<'a>(&'a self, eni_id: &'a str, ips: &'a [Ipv4Addr]) -> CloudFuture<'a, ()> {
        Box::pin(self.counted(
            &[Ec2Action::UnassignPrivateIpAddresses],
            self.inner.unassign_ips(eni_id, ips),
        ))
    }

    fn unassign_prefixes<'a>(
        &'a self,
        eni_id: &'a str,
        prefixes: &'a [Ipv4Net],
    ) -> CloudFuture<'a, ()> {
        Box::pin(self.counted(
            &[Ec2Action::UnassignPrivateIpAddresses],
            self.inner.unassign_prefixes(eni_id, prefixes),
        ))
    }

    fn delete_eni<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(self.counted(
            &[
                Ec2Action::DetachNetworkInterface,
                Ec2Action::DeleteNetworkInterface,
            ],
            self.inner.delete_eni(eni_id),
        ))
    }

    fn find_enis_by_tag<'a>(&'a self, key: &'a str, value: &'a str) -> CloudFuture<'a, Vec<Eni>> {
        Box::pin(self.counted(&[], self.inner.find_enis_by_tag(key, value)))
    }

    fn list_leaked_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        Box::pin(self.counted(&[], self.inner.list_leaked_enis()))
    }
}
