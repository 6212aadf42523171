//! Node-side set-up of secondary ENIs, done by the plumbing when the pool
//! service attaches or releases one.

use crate::cloud::{Cloud, Eni};
use crate::kubernetes::Kubernetes;
use crate::plumbing::{EniLink, Plumbing};
use crate::reconcile::{EniHooks, HookFuture};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// [`EniHooks`] that give each secondary ENI its link settings, route table
/// and rule through [`Plumbing`].
pub struct PlumbingHooks {
    plumbing: Arc<Plumbing>,
    cloud: Arc<dyn Cloud>,
    mtu: u32,
    kubernetes: Option<Arc<Kubernetes>>,
    /// Subnet CIDRs by id: subnets never change their CIDR.
    subnets: Mutex<HashMap<String, Ipv4Net>>,
}

impl PlumbingHooks {
    /// Hooks over `plumbing`; ENI links get `mtu`; subnet CIDRs come from
    /// `cloud` (asked once per unknown subnet); the node's metadata from
    /// `kubernetes` when there is an API server.
    pub fn new(
        plumbing: Arc<Plumbing>,
        cloud: Arc<dyn Cloud>,
        mtu: u32,
        kubernetes: Option<Arc<Kubernetes>>,
    ) -> Self {
        PlumbingHooks {
            plumbing,
            cloud,
            mtu,
            kubernetes,
            subnets: Mutex::new(HashMap::new()),
        }
    }

    async fn subnet_cidr(&self, subnet_id: &str) -> Result<Ipv4Net, String> {
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
            .map_err(|e| format!("listing subnets to find {subnet_id}: {e}"))?;
        self.subnets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(listed.into_iter().map(|s| (s.id, s.cidr)));
        known(&self.subnets).ok_or_else(|| format!("subnet {subnet_id} is not in the node's VPC"))
    }

    async fn link(&self, eni: &Eni) -> Result<EniLink, String> {
        let device_index = eni
            .device_index()
            .ok_or_else(|| format!("ENI {} is not attached", eni.id))?;
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
        let node = self.kubernetes.as_ref()?.node()?;
        Some(weft_policy_sdk::subnet::Node {
            name: node.name,
            labels: node.labels,
            annotations: node.annotations,
        })
    }

    fn on_attached<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async move {
            let link = self.link(eni).await?;
            self.plumbing
                .setup_eni(&link)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn on_released<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async move {
            let link = self.link(eni).await?;
            self.plumbing
                .teardown_eni(&link)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
