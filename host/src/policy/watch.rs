//! Reloading policies without a restart: the policy directory when it
//! changes (inotify, debounced), and on SIGHUP the modules of the main
//! configuration (re-read from their files) and then the directory.
//!
//! The directory itself is watched, not its files: editors and ConfigMap
//! updates replace files by rename (a ConfigMap swaps its `..data` symlink),
//! and every change, whatever it touched, rescans the whole directory.

use super::set::PolicySet;
use inotify::{Inotify, WatchMask};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Quiet time after the last change before the directory is read: a copy
/// or a ConfigMap update is a burst of events.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// What set off a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    DirectoryChanged,
    Hangup,
}

/// Starts reloading the policies of `set`: on SIGHUP, and when its policy
/// directory (if one is configured) changes. Must be called inside a tokio
/// runtime; the task runs until aborted.
pub(crate) fn watch(set: Arc<PolicySet>) -> JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(set, tx, rx))
}

async fn run(
    set: Arc<PolicySet>,
    tx: mpsc::UnboundedSender<()>,
    mut changes: mpsc::UnboundedReceiver<()>,
) {
    let dir: Option<PathBuf> = set.dir.clone();
    // SIGHUP first: once the watch's outcome is logged, a SIGHUP is caught.
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::error!(
                "cannot listen for SIGHUP: {e}; only changes of the policy directory reload policies"
            );
            None
        }
    };
    let mut watching = dir.as_deref().is_some_and(|dir| start_watching(dir, &tx));
    loop {
        let trigger = tokio::select! {
            Some(()) = changes.recv() => {
                // Wait for the burst to end.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                Trigger::DirectoryChanged
            }
            Some(()) = async { hangup.as_mut()?.recv().await } => Trigger::Hangup,
            else => return,
        };
        if let Some(dir) = dir.as_deref()
            && !watching
        {
            // The directory may have been created since.
            watching = start_watching(dir, &tx);
        }
        tracing::info!(?trigger, "reloading policies");
        let set = set.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            if trigger == Trigger::Hangup {
                set.reload_config_modules();
            }
            set.apply_directory();
        });
        if let Err(e) = reloaded.await {
            tracing::error!("reloading policies failed: {e}");
        }
    }
}

/// Watches `dir` from a thread of its own that sends one message per
/// batch of events to `tx` (and ends when `tx`'s receiver is gone); `false`
/// when the directory cannot be watched (yet).
fn start_watching(dir: &Path, tx: &mpsc::UnboundedSender<()>) -> bool {
    let watched = Inotify::init().and_then(|inotify| {
        inotify.watches().add(
            dir,
            WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MODIFY
                | WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::ATTRIB
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF,
        )?;
        Ok(inotify)
    });
    let mut inotify = match watched {
        Ok(inotify) => inotify,
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                "cannot watch the policy directory ({e}); create it and send SIGHUP"
            );
            return false;
        }
    };
    let tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("weft-policy-watch".into())
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                match inotify.read_events_blocking(&mut buffer) {
                    Ok(_) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(
                            "watching the policy directory failed: {e}; only SIGHUP reloads it now"
                        );
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the policy directory watch: {e}; only SIGHUP reloads it");
        return false;
    }
    true
}
