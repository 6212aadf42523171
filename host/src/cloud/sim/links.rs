//! Optional materialisation of attached ENIs as Linux links.
//!
//! On a real node an attached ENI appears as a network device with the ENI's MAC. The simulator
//! stays pure and calls an [`EniLinks`] hook on attach and detach; [`NetnsEniLinks`] creates a
//! device named `eth<device index>` with the ENI's MAC inside a given network namespace, so pod
//! plumbing can be tested end to end without EC2.
//!
//! On EC2 the device appears hundreds of milliseconds to seconds after
//! `AttachNetworkInterface` returns; [`NetnsEniLinks::with_delay`] makes the link appear that
//! long after the attach answered, so the agent's wait for new devices is exercised.
//!
//! The device is one end of a veth pair whose other end, `eth<device index>-vpc`, stays in the
//! same namespace and stands for the VPC fabric (a test can put the subnet gateway there). A veth
//! rather than a dummy device: it carries traffic, and some kernels (e.g. minimal VM kernels)
//! have no dummy driver.

use crate::cloud::CloudFuture;
use crate::cloud::error::CloudError;
use crate::cloud::types::Eni;
use futures::TryStreamExt;
use std::fs::File;
use std::path::PathBuf;

/// Called by the simulator when an ENI of the node is attached or detached.
pub trait EniLinks: Send + Sync {
    /// The ENI was attached: make its link appear.
    fn attached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()>;
    /// The ENI is being detached: make its link disappear (no error when already gone).
    fn detached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()>;
}

/// Materialises attached ENIs as veth links inside one network namespace.
#[derive(Debug, Clone)]
pub struct NetnsEniLinks {
    netns: PathBuf,
    delay: std::time::Duration,
}

impl NetnsEniLinks {
    /// Links go into the namespace at `netns` (e.g. `/run/netns/<name>`).
    pub fn new(netns: impl Into<PathBuf>) -> Self {
        NetnsEniLinks {
            netns: netns.into(),
            delay: std::time::Duration::ZERO,
        }
    }

    /// Links appear `delay` after the attach answered (in the background), as devices do on
    /// EC2.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The link name of an ENI: `eth<device index>`, as on an EC2 instance.
    pub fn link_name(eni: &Eni) -> Option<String> {
        eni.device_index().map(|i| format!("eth{i}"))
    }

    /// The name of the fabric end of an ENI's veth pair: `eth<device index>-vpc`.
    pub fn fabric_name(eni: &Eni) -> Option<String> {
        Self::link_name(eni).map(|name| format!("{name}-vpc"))
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

    /// Runs `work` with a netlink handle opened inside the namespace, on a dedicated thread
    /// (`setns` affects only the calling thread, so never a tokio worker).
    async fn in_netns<F, Fut>(&self, eni: &Eni, work: F) -> Result<(), CloudError>
    where
        F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), rtnetlink::Error>>,
    {
        let netns = self.netns.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result = (|| -> Result<(), String> {
                let file = File::open(&netns).map_err(|e| format!("open: {e}"))?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("runtime: {e}"))?;
                runtime.block_on(async {
                    let (connection, handle, _) =
                        rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
                    tokio::spawn(connection);
                    work(handle).await.map_err(|e| format!("netlink: {e}"))
                })
            })();
            // The receiver only disappears when the caller was cancelled.
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| self.error(eni, "worker thread died"))?
            .map_err(|e| self.error(eni, e))
    }
}

impl EniLinks for NetnsEniLinks {
    fn attached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let (Some(name), Some(fabric)) = (Self::link_name(eni), Self::fabric_name(eni)) else {
                return Err(self.error(eni, "not attached"));
            };
            let mac = eni.mac.0.to_vec();
            let add = move |handle: rtnetlink::Handle| async move {
                handle
                    .link()
                    .add(
                        rtnetlink::LinkVeth::new(&name, &fabric)
                            .address(mac)
                            .build(),
                    )
                    .execute()
                    .await
            };
            if self.delay.is_zero() {
                return self.in_netns(eni, add).await;
            }
            let (links, eni, delay) = (self.clone(), eni.clone(), self.delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(error) = links.in_netns(&eni, add).await {
                    tracing::warn!(eni = %eni.id, %error, "delayed simulated link not created");
                }
            });
            Ok(())
        })
    }

    fn detached<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            let Some(name) = Self::link_name(eni) else {
                return Ok(());
            };
            self.in_netns(eni, move |handle| async move {
                let link = handle
                    .link()
                    .get()
                    .match_name(name)
                    .execute()
                    .try_next()
                    .await;
                match link {
                    Ok(Some(link)) => handle.link().del(link.header.index).execute().await,
                    Ok(None) => Ok(()),
                    // ENODEV: already gone.
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
            .await
        })
    }
}
