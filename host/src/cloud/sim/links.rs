//! Optional materialisation of attached ENIs as Linux links.
//!
//! On a real node an attached ENI appears as a network device with the ENI's MAC. The simulator
//! stays pure and calls an [`EniLinks`] hook on attach and detach; [`NetnsEniLinks`] creates a
//! device named `eth<device index>` with the ENI's MAC inside a given network namespace, so pod
//! plumbing can be tested end to end without EC2. Entering the namespace, the netlink connection
//! and link removal are the plumbing layer's own.
//!
//! On EC2 the device appears hundreds of milliseconds to seconds after
//! `AttachNetworkInterface` returns; [`NetnsEniLinks::with_delay`] makes the link appear that
//! long after the attach answered, so the agent's wait for new devices is exercised.
//!
//! The device is one end of a veth pair whose other end, `eth<device index>-vpc`, stays in the
//! same namespace and stands for the VPC fabric (a test can put the subnet gateway there). A veth
//! rather than a dummy device: it carries traffic, and some kernels (e.g. minimal VM kernels)
//! have no dummy driver. With [`NetnsEniLinks::with_fabric`] the other end goes into a namespace
//! playing the VPC router instead, which routes the ENI's addresses to it (see `fabric`).

use super::fabric::Fabric;
use crate::cloud::CloudFuture;
use crate::cloud::error::CloudError;
use crate::cloud::types::Eni;
use crate::plumbing::PlumbingError;
use crate::plumbing::links::{self, LinkRef};
use crate::plumbing::netns::{self, Netns};
use ipnet::Ipv4Net;
use std::path::PathBuf;

/// Called by the simulator when an ENI of the node is attached or detached.
pub trait EniLinks: Send + Sync {
    /// The ENI was attached: make its link appear.
    fn attached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()>;
    /// The ENI is being detached: make its link disappear (no error when already gone).
    fn detached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()>;
    /// The addresses of an attached ENI changed (assigned or released).
    fn addresses<'a>(&'a self, _eni: &'a Eni) -> CloudFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Materialises attached ENIs as veth links inside one network namespace.
#[derive(Debug, Clone)]
pub struct NetnsEniLinks {
    netns: PathBuf,
    delay: std::time::Duration,
    fabric: Option<Fabric>,
}

impl NetnsEniLinks {
    /// Links go into the namespace at `netns` (e.g. `/run/netns/<name>`).
    pub fn new(netns: impl Into<PathBuf>) -> Self {
        NetnsEniLinks {
            netns: netns.into(),
            delay: std::time::Duration::ZERO,
            fabric: None,
        }
    }

    /// Connects every ENI to the VPC router namespace at `router` (the
    /// simulated VPC fabric), which routes the ENI's addresses of `subnets`
    /// to it; the primary ENI gets its address and default route too.
    pub fn with_fabric(mut self, router: impl Into<PathBuf>, subnets: Vec<Ipv4Net>) -> Self {
        self.fabric = Some(Fabric {
            router: router.into(),
            subnets,
        });
        self
    }

    /// Links appear `delay` after the attach answered (in the background), as devices do on
    /// EC2.
    pub(crate) fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The link name of an ENI: `eth<device index>`, as on an EC2 instance.
    pub(crate) fn link_name(eni: &Eni) -> Option<String> {
        eni.device_index().map(|i| format!("eth{i}"))
    }

    /// The name of the fabric end of an ENI's veth pair: `eth<device index>-vpc` beside the
    /// ENI, or in the router namespace `v` and the ENI id's last 14 hex digits.
    pub fn fabric_name(&self, eni: &Eni) -> Option<String> {
        match &self.fabric {
            Some(_) => eni.device_index().map(|_| Fabric::link_name(eni)),
            None => Self::link_name(eni).map(|name| format!("{name}-vpc")),
        }
    }

    /// Makes the ENI's link (unless it exists: an agent restart) and connects it to the fabric.
    async fn materialise(&self, eni: &Eni) -> Result<(), CloudError> {
        let (Some(name), Some(fabric)) = (Self::link_name(eni), self.fabric_name(eni)) else {
            return Err(self.error(eni, "not attached"));
        };
        let mac = eni.mac.0.to_vec();
        let link = name.clone();
        let made = self
            .in_netns(eni, move |handle| async move {
                if links::by_name(&handle, &link).await?.is_some() {
                    return Ok(false);
                }
                handle
                    .link()
                    .add(
                        rtnetlink::LinkVeth::new(&link, &fabric)
                            .address(mac)
                            .build(),
                    )
                    .execute()
                    .await
                    .map(|()| true)
            })
            .await?;
        match &self.fabric {
            Some(vpc) if made => vpc
                .connect(&self.netns, eni, &name)
                .await
                .map_err(|e| self.error_fabric(e)),
            _ => Ok(()),
        }
    }

    fn error_fabric(&self, detail: PlumbingError) -> CloudError {
        CloudError::Fatal {
            api: "simulator fabric".into(),
            detail: format!("connecting an ENI to the simulated VPC router: {detail} (needs root)"),
        }
    }

    fn error(&self, eni: &Eni, detail: impl std::fmt::Display) -> CloudError {
        CloudError::Fatal {
            api: "simulator link".into(),
            detail: format!(
                "materialising {} in network namespace {}: {detail} (needs root)",
                eni.id,
                self.netns.display()
            ),
        }
    }

    /// Runs `work` with a netlink handle bound to the namespace (opened the plumbing's way:
    /// on a short-lived thread that entered it, never on a tokio worker).
    async fn in_netns<T, F, Fut>(&self, eni: &Eni, work: F) -> Result<T, CloudError>
    where
        T: Send + 'static,
        F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, rtnetlink::Error>>,
    {
        let ns = Netns::open(Some(&self.netns)).map_err(|e| self.error(eni, e))?;
        let handle = netns::connect(&ns).await.map_err(|e| self.error(eni, e))?;
        work(handle)
            .await
            .map_err(|e| self.error(eni, format!("netlink: {e}")))
    }
}

impl EniLinks for NetnsEniLinks {
    fn attached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            if self.delay.is_zero() {
                return self.materialise(eni).await;
            }
            let (links, eni, delay) = (self.clone(), eni.clone(), self.delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(error) = links.materialise(&eni).await {
                    tracing::warn!(eni = %eni.id, %error, "delayed simulated link not created");
                }
            });
            Ok(())
        })
    }

    fn addresses<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let Some(vpc) = &self.fabric else {
                return Ok(());
            };
            vpc.route(eni).await.map_err(|e| self.error_fabric(e))
        })
    }

    fn detached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let Some(name) = Self::link_name(eni) else {
                return Ok(());
            };
            // Deleting one end of the pair deletes both; a link already gone is fine.
            let ns = Netns::open(Some(&self.netns)).map_err(|e| self.error(eni, e))?;
            links::remove(&ns, LinkRef::Name(name))
                .await
                .map_err(|e| self.error(eni, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{AddressRequest, Cloud, CreateEni, SimCloud};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_create_whose_link_cannot_be_made_is_undone() {
        let links: Arc<dyn EniLinks> = Arc::new(NetnsEniLinks::new("/nonexistent/netns"));
        let sim = SimCloud::builder()
            .subnet("10.0.0.0/24")
            .links(links)
            .build()
            .expect("sim");
        let free = sim.list_subnets().await.expect("subnets")[0].free_ips;
        let node = sim.identity().await.expect("identity");
        let error = sim
            .create_eni(&CreateEni {
                subnet_id: node.subnet_id,
                security_groups: node.security_groups,
                addresses: AddressRequest::Ips(2),
                tags: Default::default(),
            })
            .await
            .expect_err("no such namespace");
        assert!(error.to_string().contains("/nonexistent/netns"), "{error}");
        assert_eq!(sim.all_enis().len(), 1, "only the primary ENI is left");
        assert_eq!(sim.list_subnets().await.expect("subnets")[0].free_ips, free);
    }
}
