//! The DELs the plugin kept while weftd could not answer
//! ([`weft_cni::spool`]): carried out before the API serves, so every ADD
//! after a restart finds the addresses they free, and then whenever new
//! ones appear. Each runs as a DEL does, under its attachment's lock; one
//! whose attachment was added again after it was kept leaves the new
//! address alone ([`Kept::predates`]: on the node's boot clock, which
//! plugin and weftd both read and which never steps, unlike wall-clock
//! time). Files in the spool are hostile input: one that is not a
//! valid entry is logged and removed, never trusted. Temporary files of
//! plugins killed mid-write are removed when no plugin is writing.

use super::Agent;
use super::backend::Held;
use std::time::{Duration, SystemTime};
use weft_cni::boottime::{BootInstant, current_boot_id};
use weft_cni::spool::{DelSpool, SpoolError, SpooledAt};

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
        let current_boot = match current_boot_id() {
            Ok(id) => id,
            Err(error) => {
                tracing::error!(%error, "cannot read the boot id (is /proc mounted?): kept DELs wait");
                return 0;
            }
        };
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
            let kept = Kept {
                at: spooled.spooled_at,
                current_boot,
            };
            match self.del_locked(req, Some(&kept)).await {
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

/// When a DEL was kept, and the boot the node runs now.
pub(super) struct Kept {
    at: SpooledAt,
    current_boot: u128,
}

impl Kept {
    /// Whether `held` was assigned after the DEL was kept (it belongs to a
    /// later ADD: the DEL leaves it alone).
    pub(super) fn predates(&self, held: &Held) -> bool {
        predates(
            self.at,
            held.assigned_at,
            held.assigned_boot,
            self.current_boot,
        )
    }
}

/// [`Kept::predates`] on its parts.
///
/// * Both on the boot clock: the clock decides ([`BootInstant::is_after`]).
/// * An assignment without boot-clock time was made by a weftd older than
///   this one, which was gone before a plugin that stamps DELs on the boot
///   clock was installed (weftd installs its plugin when it starts): the
///   DEL is later.
/// * A DEL of an older plugin (wall-clock time only) and an assignment of
///   this weftd cannot be ordered: the address stays (the runtime's next
///   DEL or CNI GC frees it), as freeing a live pod's address would hand it
///   out twice.
/// * Both from before the upgrade: wall-clock time is all either has.
fn predates(
    at: SpooledAt,
    assigned_at: SystemTime,
    assigned_boot: Option<BootInstant>,
    current_boot: u128,
) -> bool {
    match (at, assigned_boot) {
        (SpooledAt::Boot(kept), Some(assigned)) => assigned.is_after(&kept, current_boot),
        (SpooledAt::Boot(_), None) => false,
        (SpooledAt::Wall(_), Some(_)) => true,
        (SpooledAt::Wall(kept), None) => assigned_at > kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const BOOT: u128 = 7;

    fn boot(boot_id: u128, boottime_ns: u64) -> BootInstant {
        BootInstant {
            boot_id,
            boottime_ns,
        }
    }

    fn wall(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_boot_clock_orders_a_kept_del_whatever_the_wall_clock_did() {
        // Kept at boot-clock 100 s; the wall clock has since stepped back
        // an hour, so the later ADD's wall time is earlier than the DEL's.
        let kept = SpooledAt::Boot(boot(BOOT, 100_000_000_000));
        let later = Some(boot(BOOT, 160_000_000_000));
        assert!(predates(kept, wall(1_000), later, BOOT));
        // Stepped forward: an earlier ADD looks later by the wall clock.
        let earlier = Some(boot(BOOT, 40_000_000_000));
        assert!(!predates(kept, wall(9_000_000), earlier, BOOT));
        // An assignment of an earlier boot (its pod died with that boot).
        assert!(!predates(
            kept,
            wall(9_000_000),
            Some(boot(6, 900_000_000_000)),
            BOOT
        ));
        // A DEL kept in an earlier boot (a spool that survived a reboot).
        let before_reboot = SpooledAt::Boot(boot(6, 900_000_000_000));
        assert!(predates(before_reboot, wall(0), Some(boot(BOOT, 1)), BOOT));
    }

    #[test]
    fn entries_and_assignments_without_the_boot_clock() {
        // Assigned by an older weftd: the stamped DEL is later.
        let kept = SpooledAt::Boot(boot(BOOT, 100));
        assert!(!predates(kept, wall(9_000_000), None, BOOT));
        // Kept by an older plugin, assigned by this weftd: unknown order,
        // the address stays whatever the wall clocks say.
        let old = SpooledAt::Wall(wall(5_000));
        assert!(predates(old, wall(1_000), Some(boot(BOOT, 1)), BOOT));
        assert!(predates(old, wall(9_000), Some(boot(BOOT, 1)), BOOT));
        // Both from before the upgrade: the wall clock, as before.
        assert!(predates(old, wall(9_000), None, BOOT));
        assert!(!predates(old, wall(1_000), None, BOOT));
    }
}
