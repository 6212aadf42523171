//! The DELs the plugin kept while weftd could not answer
//! ([`weft_cni::spool`]): carried out before the API serves, so every ADD
//! after a restart finds the addresses they free, and then whenever new
//! ones appear. Each runs as a DEL does, under its attachment's lock; one
//! whose attachment was added again after it was kept leaves the new
//! address alone. Files in the spool are hostile input: one that is not a
//! valid entry is logged and removed, never trusted. Temporary files of
//! plugins killed mid-write are removed when no plugin is writing.

use super::Agent;
use std::time::Duration;
use weft_cni::spool::{DelSpool, SpoolError};

/// How often the running agent looks for new entries.
const SCAN_PERIOD: Duration = Duration::from_secs(1);

impl Agent {
    /// Creates the spool directory when missing (so the plugin can use it)
    /// and carries out what it holds. A spool that is unsafe (not a 0700
    /// directory of ours) is reported and left alone: the plugin refuses it
    /// too, and DELs then fail with "try again later" as without a spool.
    pub(super) async fn drain_del_spool(&self, spool: &DelSpool) -> usize {
        if let Err(error) = spool.open() {
            tracing::error!(%error, "the DEL spool cannot be used: DELs that find weftd down fail until it is fixed");
            return 0;
        }
        match spool.remove_leftovers() {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                "removed temporary files of plugins killed while they spooled a DEL"
            ),
            Err(error) => tracing::warn!(%error, "cannot remove leftovers from the DEL spool"),
        }
        let entries = match spool.entries() {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(%error, "cannot list the DEL spool");
                return 0;
            }
        };
        let mut done = 0;
        for path in entries {
            let spooled = match DelSpool::read(&path) {
                Ok(spooled) => spooled,
                Err(SpoolError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "refused a file in the DEL spool; removing it");
                    if let Err(error) = DelSpool::remove(&path) {
                        tracing::warn!(%error, "cannot remove a refused file of the DEL spool");
                    }
                    continue;
                }
            };
            let req = spooled.request.clone();
            let _attachment = self.attachments.lock(&req.container_id, &req.ifname).await;
            match self.del_locked(req, Some(spooled.spooled_at())).await {
                Ok(answer) => {
                    tracing::info!(
                        container = %spooled.request.container_id,
                        ifname = %spooled.request.ifname,
                        released = ?answer.released,
                        "carried out a DEL kept while weftd could not answer"
                    );
                    if let Err(error) = DelSpool::remove(&path) {
                        tracing::warn!(%error, "cannot remove a carried-out DEL from the spool");
                    }
                    done += 1;
                }
                Err(error) => tracing::warn!(
                    container = %spooled.request.container_id,
                    %error,
                    "a DEL kept while weftd could not answer failed; retrying it later"
                ),
            }
        }
        done
    }

    /// Carries out new spool entries every [`SCAN_PERIOD`], for ever (an
    /// unsafe spool, reported at start, stays untouched and unreported).
    pub(super) async fn keep_draining_del_spool(&self, spool: DelSpool) {
        loop {
            tokio::time::sleep(SCAN_PERIOD).await;
            if spool.open().is_ok() && spool.is_empty().is_ok_and(|empty| !empty) {
                self.drain_del_spool(&spool).await;
            }
        }
    }
}
