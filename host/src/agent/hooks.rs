//! Node-side set-up of secondary ENIs, done by the plumbing when the pool
//! service attaches or releases one.

use crate::cloud::Eni;
use crate::plumbing::{EniLink, Plumbing};
use crate::reconcile::{EniHooks, HookFuture};
use std::sync::Arc;

/// [`EniHooks`] that give each secondary ENI its link settings, route table
/// and rule through [`Plumbing`].
pub struct PlumbingHooks {
    plumbing: Arc<Plumbing>,
    mtu: u32,
}

impl PlumbingHooks {
    /// Hooks over `plumbing`; ENI links get `mtu`.
    pub fn new(plumbing: Arc<Plumbing>, mtu: u32) -> Self {
        PlumbingHooks { plumbing, mtu }
    }

    fn link(&self, eni: &Eni) -> Result<EniLink, String> {
        let subnet = eni
            .subnet_cidr
            .ok_or_else(|| format!("ENI {} has no known subnet CIDR", eni.id))?;
        Ok(EniLink {
            mac: eni.mac.to_string().parse().map_err(|e| format!("ENI {}: {e}", eni.id))?,
            device_index: eni.device_index,
            subnet,
            primary_ip: eni.primary_ip,
            mtu: self.mtu,
        })
    }
}

impl EniHooks for PlumbingHooks {
    fn on_attached<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async move {
            let link = self.link(eni)?;
            self.plumbing
                .setup_eni(&link)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn on_released<'a>(&'a self, eni: &'a Eni) -> HookFuture<'a> {
        Box::pin(async move {
            let link = self.link(eni)?;
            self.plumbing
                .teardown_eni(&link)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
