//! Node-side set-up of secondary ENIs, done by the plumbing when the pool
//! service attaches or releases one.

use crate::cloud::{Cloud, Eni};
use crate::kubernetes::Kubernetes;
use crate::plumbing::{EniLink, Plumbing, PlumbingError};
use crate::reconcile::{EniHooks, HookError, HookFuture};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// First and longest pause between looks for a new ENI's device. Every
/// millisecond past the device's arrival is one a waiting pod loses (with a
/// 1 s cap the wait overshot a 2 s device delay by about 560 ms), and a look
/// costs one link lookup and one metadata request.
const READY_POLL_MIN: Duration = Duration::from_millis(50);
const READY_POLL_MAX: Duration = Duration::from_millis(200);

/// [`EniHooks`] that give each secondary ENI its link settings, route table
/// and rule through [`Plumbing`].
pub(crate) struct PlumbingHooks {
    plumbing: Arc<Plumbing>,
    cloud: Arc<dyn Cloud>,
    mtu: u32,
    kubernetes: Option<Arc<Kubernetes>>,
    /// How long a new ENI may take to appear on the node.
    ready_timeout: Duration,
    /// Subnet CIDRs by id: subnets never change their CIDR.
    subnets: Mutex<HashMap<String, Ipv4Net>>,
}

impl PlumbingHooks {
    /// Hooks over `plumbing`; ENI links get `mtu`; subnet CIDRs come from
    /// `cloud` (asked once per unknown subnet); a new ENI's device must
    /// appear within `ready_timeout`; the node's metadata from `kubernetes`
    /// when there is an API server.
    pub(crate) fn new(
        plumbing: Arc<Plumbing>,
        cloud: Arc<dyn Cloud>,
        mtu: u32,
        ready_timeout: Duration,
        kubernetes: Option<Arc<Kubernetes>>,
    ) -> Self {
        PlumbingHooks {
            plumbing,
            cloud,
            mtu,
            ready_timeout,
            kubernetes,
            subnets: Mutex::new(HashMap::new()),
        }
    }

    /// Sets up an ENI once its device exists: on EC2 the device appears
    /// hundreds of milliseconds to seconds after the attach call returns,
    /// and the metadata service lists it later still. Looks again with a
    /// growing pause until both are there or `ready_timeout` has passed.
    async fn setup_when_ready(&self, eni: &Eni, link: &EniLink) -> Result<(), HookError> {
        let started = Instant::now();
        let mut pause = READY_POLL_MIN;
        loop {
            let listed = self.cloud.eni_ready(eni).await.unwrap_or(false);
            let outcome = if listed {
                self.plumbing.setup_eni(link).await
            } else {
                Err(PlumbingError::EniLinkNotFound { mac: eni.mac })
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(eni = %eni.id, waited_ms = started.elapsed().as_millis() as u64, "ENI device ready and set up");
                    return Ok(());
                }
                Err(PlumbingError::EniLinkNotFound { .. })
                    if started.elapsed() + pause <= self.ready_timeout =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(READY_POLL_MAX);
                }
                Err(PlumbingError::EniLinkNotFound { mac }) => {
                    return Err(HookError::Eni(format!(
                        "the device of ENI {} (MAC {mac}) did not appear on the node {}within {:?} of its attachment{}",
                        eni.id,
                        if listed {
                            ""
                        } else {
                            "nor in the instance metadata "
                        },
                        self.ready_timeout,
                        "; check the instance's ENI limit and dmesg for the driver"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn subnet_cidr(&self, subnet_id: &str) -> Result<Ipv4Net, HookError> {
        let known = |subnets: &Mutex<HashMap<String, Ipv4Net>>| {
            subnets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(subnet_id)
                .copied()
        };
        if let Some(cidr) = known(&self.subnets) {
            return Ok(cidr);
        }
        let listed = self
            .cloud
            .list_subnets()
            .await
            .map_err(|source| HookError::Cloud {
                context: format!("listing subnets to find {subnet_id}"),
                source,
            })?;
        self.subnets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(listed.into_iter().map(|s| (s.id, s.cidr)));
        known(&self.subnets)
            .ok_or_else(|| HookError::Eni(format!("subnet {subnet_id} is not in the node's VPC")))
    }

    async fn link(&self, eni: &Eni) -> Result<EniLink, HookError> {
        let device_index = eni
            .device_index()
            .ok_or_else(|| HookError::Eni(format!("ENI {} is not attached", eni.id)))?;
        Ok(EniLink {
            mac: eni.mac,
            device_index,
            subnet: self.subnet_cidr(&eni.subnet_id).await?,
            primary_ip: eni.primary_ip,
            mtu: self.mtu,
        })
    }
}

impl EniHooks for PlumbingHooks {
    fn node_metadata(&self) -> Option<weft_policy_sdk::subnet::Node> {
        self.kubernetes.as_ref()?.node()
    }

    fn on_attached<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async move {
            let link = self.link(eni).await?;
            self.setup_when_ready(eni, &link).await
        })
    }

    fn on_released<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async move {
            let link = self.link(eni).await?;
            Ok(self.plumbing.teardown_eni(&link).await?)
        })
    }

    fn routed<'a>(&'a self, ips: &'a [Ipv4Addr]) -> HookFuture<'a, Vec<Ipv4Addr>> {
        Box::pin(async move { Ok(self.plumbing.routed(ips).await?) })
    }
}
