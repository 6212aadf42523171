//! The node's egress rules (SNAT, NodePort return path) from the cloud's
//! facts and the `[egress]` configuration: applied at start, and again
//! whenever the VPC's CIDR blocks change (read every
//! `vpc-cidr-refresh-seconds`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::cloud::{Cloud, CloudError, NodeIdentity};
use crate::plumbing::Plumbing;
use crate::plumbing::egress::{EgressConfig, EgressSpec};
use crate::{Error, Result};

/// The node's egress rules in force and what they are made from.
pub struct EgressRules {
    plumbing: Arc<Plumbing>,
    cloud: Arc<dyn Cloud>,
    config: EgressConfig,
    applied: tokio::sync::Mutex<EgressSpec>,
}

impl EgressRules {
    /// Reads the node's primary IP and the VPC's CIDR blocks from the cloud,
    /// finds the primary ENI's interface, and applies the rules (with the
    /// IPv4 egress of IPv6 pods when `ipv6_pods`).
    pub async fn start(
        plumbing: Arc<Plumbing>,
        cloud: Arc<dyn Cloud>,
        config: &EgressConfig,
        node: &NodeIdentity,
        ipv6_pods: bool,
    ) -> Result<Arc<Self>> {
        let primary_ip = primary_ip(cloud.as_ref(), node).await?;
        let primary_link = plumbing.link_name(node.mac).await?;
        if primary_link.is_none() && config.node_port_support {
            tracing::warn!(
                mac = %node.mac,
                "no interface has the primary ENI's MAC: connections through it are not marked (NodePort return path off)"
            );
        }
        let vpc_cidrs = cloud.vpc_cidrs().await?;
        let spec = config.spec(
            primary_ip,
            primary_link,
            vpc_cidrs,
            &plumbing.config().veth_prefix,
            ipv6_pods,
        );
        plumbing.apply_egress(&spec).await?;
        tracing::info!(
            snat = ?spec.snat,
            %primary_ip,
            vpc_cidrs = ?spec.vpc_cidrs,
            excluded = ?spec.excluded_cidrs,
            node_port = spec.node_port && spec.primary_link.is_some(),
            ipv4_egress = ?spec.ipv4_egress.map(|(range, _)| range),
            "egress rules applied"
        );
        Ok(Arc::new(EgressRules {
            plumbing,
            cloud,
            config: config.clone(),
            applied: tokio::sync::Mutex::new(spec),
        }))
    }

    /// Reads the VPC's CIDR blocks again and re-applies the rules if they
    /// changed; whether they did.
    pub async fn refresh(&self) -> Result<bool> {
        let cidrs = self.cloud.vpc_cidrs().await?;
        let mut applied = self.applied.lock().await;
        if cidrs == applied.vpc_cidrs {
            return Ok(false);
        }
        let spec = EgressSpec {
            vpc_cidrs: cidrs,
            ..applied.clone()
        };
        self.plumbing.apply_egress(&spec).await?;
        tracing::info!(from = ?applied.vpc_cidrs, to = ?spec.vpc_cidrs, "the VPC's CIDR blocks changed: egress rules re-applied");
        *applied = spec;
        Ok(true)
    }

    /// Refreshes every `vpc-cidr-refresh-seconds` until aborted; a failed
    /// refresh is logged and tried again next time.
    pub(crate) fn spawn_refresh(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let period = Duration::from_secs(self.config.vpc_cidr_refresh_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(error) = self.refresh().await {
                    tracing::warn!(%error, "egress rules not refreshed; retrying next period");
                }
            }
        })
    }
}

/// The primary private IP of the node's primary ENI.
async fn primary_ip(cloud: &dyn Cloud, node: &NodeIdentity) -> Result<Ipv4Addr> {
    let enis = cloud.list_enis().await?;
    enis.iter()
        .find(|eni| eni.id == node.primary_eni_id)
        .map(|eni| eni.primary_ip)
        .ok_or_else(|| {
            Error::from(CloudError::NotFound {
                api: "DescribeNetworkInterfaces".into(),
                what: format!("primary ENI {}", node.primary_eni_id),
                detail: "the node's ENI list lacks its primary ENI, whose address egress SNAT uses"
                    .into(),
            })
        })
}
