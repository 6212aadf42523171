//! Network namespaces: open one by path, run blocking work inside it on a
//! dedicated thread, and open netlink connections bound to it.
//!
//! `setns(2)` changes the namespace of the calling thread only, so it is
//! never called on a tokio worker (tasks migrate between threads) nor on a
//! pooled blocking thread (which would be reused in the wrong namespace).
//! Every entry into a namespace happens on a fresh thread that ends right
//! after; a netlink socket opened there stays bound to that namespace
//! wherever it is used from afterwards.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sched::CloneFlags;
use rtnetlink::Handle;
use tokio::sync::oneshot;

use super::error::PlumbingError;

/// The namespace the agent process runs in.
const SELF_NETNS: &str = "/proc/self/ns/net";

/// How long opening a pod's namespace may take. The path comes from the
/// runtime: a FIFO, a device or a file on a hung mount must not hold up the
/// ADD (and, behind it, every other one).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// An open network namespace (a file descriptor of its nsfs file).
#[derive(Debug)]
pub(crate) struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Opens the namespace at `path` (for example `/var/run/netns/x` or
    /// `/proc/<pid>/ns/net`), or the process's own namespace for `None`.
    /// Blocks until the open returns: for paths the agent is configured
    /// with. Refuses a file that is not a namespace (not on nsfs).
    pub(crate) fn open(path: Option<&Path>) -> Result<Arc<Self>, PlumbingError> {
        Self::open_checked(path.unwrap_or(Path::new(SELF_NETNS))).map(Arc::new)
    }

    /// Opens a namespace path from untrusted input (`CNI_NETNS`) off the
    /// async runtime, giving up after [`OPEN_TIMEOUT`] (the thread that is
    /// stuck in `open` is left to finish on its own). Refuses a file that is
    /// not a namespace.
    pub(crate) async fn open_untrusted(path: &Path) -> Result<Arc<Self>, PlumbingError> {
        let (tx, rx) = oneshot::channel();
        let owned = path.to_owned();
        thread::Builder::new()
            .name("weft-netns-open".into())
            .spawn(move || {
                let _ = tx.send(Self::open_checked(&owned));
            })
            .map_err(|e| PlumbingError::io("spawn a thread to open a network namespace", e))?;
        match tokio::time::timeout(OPEN_TIMEOUT, rx).await {
            Ok(Ok(opened)) => opened.map(Arc::new),
            Ok(Err(_)) => Err(PlumbingError::io(
                format!("open network namespace {}", path.display()),
                io::Error::other("the opening thread panicked"),
            )),
            Err(_) => Err(PlumbingError::Netns {
                path: path.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "opening it took longer than {} ms (a FIFO, a device or a hung mount?)",
                        OPEN_TIMEOUT.as_millis()
                    ),
                ),
            }),
        }
    }

    /// Opens `path` without blocking on FIFOs or devices, and checks that it
    /// is an nsfs file.
    fn open_checked(path: &Path) -> Result<Self, PlumbingError> {
        let netns_error = |source| PlumbingError::Netns {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(netns_error)?;
        let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| netns_error(e.into()))?;
        if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
            return Err(PlumbingError::InvalidInput(format!(
                "{} is not a network namespace (not a file on nsfs): the runtime must pass a \
                 namespace such as /var/run/netns/<name> or /proc/<pid>/ns/net as CNI_NETNS",
                path.display()
            )));
        }
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The path the namespace was opened from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor, for netlink attributes such as `IFLA_NET_NS_FD`.
    /// Valid as long as `self` lives.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Runs `work` on a new thread that has entered `ns`; the result arrives on
/// the returned channel (which reports a closed channel only if `work`
/// panicked).
pub(crate) fn spawn_in<T, F>(
    ns: &Arc<Netns>,
    work: F,
) -> Result<oneshot::Receiver<Result<T, PlumbingError>>, PlumbingError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PlumbingError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let ns = Arc::clone(ns);
    thread::Builder::new()
        .name("weft-netns".into())
        .spawn(move || {
            let result = nix::sched::setns(&ns.file, CloneFlags::CLONE_NEWNET)
                .map_err(|errno| PlumbingError::Netns {
                    path: ns.path.clone(),
                    source: errno.into(),
                })
                .and_then(|()| work());
            // The receiver may have been dropped (a caller that does not wait).
            let _ = tx.send(result);
        })
        .map_err(|e| PlumbingError::io("spawn a thread to enter a network namespace", e))?;
    Ok(rx)
}

/// Awaits the result of [`spawn_in`].
pub(crate) async fn join<T>(
    rx: oneshot::Receiver<Result<T, PlumbingError>>,
) -> Result<T, PlumbingError> {
    rx.await.unwrap_or_else(|_| {
        Err(PlumbingError::io(
            "work inside a network namespace",
            std::io::Error::other("the namespace thread panicked"),
        ))
    })
}

/// Runs `work` inside `ns` on a dedicated thread and waits for it.
pub(crate) async fn run_in<T, F>(ns: &Arc<Netns>, work: F) -> Result<T, PlumbingError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PlumbingError> + Send + 'static,
{
    join(spawn_in(ns, work)?).await
}

/// Opens an rtnetlink connection bound to `ns`. The connection task ends
/// when the last clone of the returned handle is dropped.
pub(crate) async fn connect(ns: &Arc<Netns>) -> Result<Handle, PlumbingError> {
    let runtime = tokio::runtime::Handle::current();
    let path = ns.path().display().to_string();
    let (connection, handle, _unsolicited) = run_in(ns, move || {
        // The socket registers with the runtime's reactor from this thread.
        let _entered = runtime.enter();
        rtnetlink::new_connection()
            .map_err(|e| PlumbingError::io(format!("open a netlink socket in {path}"), e))
    })
    .await?;
    tokio::spawn(connection);
    Ok(handle)
}
