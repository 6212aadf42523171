//! Reloading the policy directory when it changes (inotify, debounced) and
//! on SIGHUP.
//!
//! The directory itself is watched, not its files: editors and ConfigMap
//! updates replace files by rename (a ConfigMap swaps its `..data` symlink),
//! and every change, whatever it touched, rescans the whole directory.

use super::set::PolicySet;
use inotify::{Inotify, WatchMask};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Quiet time after the last change before the directory is read: a copy
/// or a ConfigMap update is a burst of events.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Starts watching the policy directory of `set` (if one is configured):
/// every change and every SIGHUP reloads it. Must be called inside a tokio
/// runtime; the task runs until aborted.
pub fn watch_directory(set: Arc<PolicySet>) -> Option<JoinHandle<()>> {
    let dir = set.dir.clone()?;
    let (tx, rx) = mpsc::unbounded_channel();
    Some(tokio::spawn(run(set, dir, tx, rx)))
}

async fn run(
    set: Arc<PolicySet>,
    dir: PathBuf,
    tx: mpsc::UnboundedSender<()>,
    mut changes: mpsc::UnboundedReceiver<()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    // SIGHUP first: once the watch's outcome is logged, a SIGHUP is caught.
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::error!(
                "cannot listen for SIGHUP: {e}; only changes reload the policy directory"
            );
            None
        }
    };
    let mut watching = start_watching(&dir, &tx);
    loop {
        let why = tokio::select! {
            Some(()) = changes.recv() => {
                // Wait for the burst to end.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                "the directory changed"
            }
            Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
            else => return,
        };
        if !watching {
            // The directory may have been created since.
            watching = start_watching(&dir, &tx);
        }
        tracing::info!(dir = %dir.display(), "{why}: reading the policy directory");
        let set = set.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || set.apply_directory()).await {
            tracing::error!("reading the policy directory failed: {e}");
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
