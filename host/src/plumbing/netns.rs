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
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The threads opening `CNI_NETNS` paths: an open that hangs keeps its
/// thread until the kernel lets go (a hung mount may never), so past
/// [`MAX_OPENERS`] of them a new open is refused at once instead of leaving
/// one more thread behind.
static OPENERS: Openers = Openers::new(MAX_OPENERS, OPEN_TIMEOUT);

/// The most threads opening `CNI_NETNS` paths at once. A healthy open takes
/// microseconds, so this many only ever exist when opens hang.
const MAX_OPENERS: usize = 16;

/// A bounded set of threads that open namespace paths, each waited for at
/// most `timeout`.
struct Openers {
    running: AtomicUsize,
    max: usize,
    timeout: Duration,
}

/// One opener thread counted in [`Openers::running`], until it ends.
struct OpenerSlot(&'static Openers);

impl Drop for OpenerSlot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Openers {
    const fn new(max: usize, timeout: Duration) -> Self {
        Openers {
            running: AtomicUsize::new(0),
            max,
            timeout,
        }
    }

    /// A slot for one more opener thread, unless `max` are running.
    fn slot(&'static self) -> Option<OpenerSlot> {
        self.running
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| OpenerSlot(self))
    }

    /// [`Netns::open_untrusted`] with these bounds.
    async fn open(&'static self, path: &Path) -> Result<Arc<Netns>, PlumbingError> {
        let slot = self.slot().ok_or_else(|| PlumbingError::NetnsOpenersBusy {
            path: path.to_owned(),
            stuck: self.max,
        })?;
        let (tx, rx) = oneshot::channel();
        let owned = path.to_owned();
        thread::Builder::new()
            .name("weft-netns-open".into())
            .spawn(move || {
                let _slot = slot;
                let _ = tx.send(Netns::open_checked(&owned));
            })
            .map_err(|e| PlumbingError::io("spawn a thread to open a network namespace", e))?;
        match tokio::time::timeout(self.timeout, rx).await {
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
                        self.timeout.as_millis()
                    ),
                ),
            }),
        }
    }
}

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
    /// stuck in `open` is left to finish on its own; while [`MAX_OPENERS`]
    /// are stuck, this fails at once with
    /// [`PlumbingError::NetnsOpenersBusy`]). Refuses a file that is not a
    /// namespace.
    pub(crate) async fn open_untrusted(path: &Path) -> Result<Arc<Self>, PlumbingError> {
        OPENERS.open(path).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::{MntFlags, MsFlags};

    /// A FUSE file system whose server never answers: a lookup under it
    /// hangs, as on a hung mount, until the connection is aborted. Dropping
    /// it closes `/dev/fuse` (which aborts the connection: the hung opens
    /// fail) and detaches the mount.
    struct HungMount {
        dir: tempfile::TempDir,
        fuse: Option<File>,
    }

    impl HungMount {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let fuse = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
                .expect("/dev/fuse");
            let options = format!(
                "fd={},rootmode=40000,user_id=0,group_id=0",
                fuse.as_raw_fd()
            );
            nix::mount::mount(
                Some("weft-test-hung"),
                dir.path(),
                Some("fuse"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(options.as_str()),
            )
            .expect("mount a FUSE file system");
            HungMount {
                dir,
                fuse: Some(fuse),
            }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("netns")
        }
    }

    impl Drop for HungMount {
        fn drop(&mut self) {
            drop(self.fuse.take());
            let _ = nix::mount::umount2(self.dir.path(), MntFlags::MNT_DETACH);
        }
    }

    /// Two opener threads at most, each waited for 100 ms.
    static CAPPED: Openers = Openers::new(2, Duration::from_millis(100));

    /// Opens that hang (a FUSE mount that never answers) keep their threads;
    /// once two hang, the next open is refused at once without a thread, and
    /// when the hung opens end, opening works again. (Before the cap every
    /// ADD with such a path left one more thread stuck.)
    #[tokio::test]
    #[ignore = "needs root: network namespaces"]
    async fn hanging_opens_are_capped_and_the_next_is_refused_at_once() {
        let hung = HungMount::new();
        for _ in 0..2 {
            let error = CAPPED.open(&hung.path()).await.expect_err("hangs");
            assert!(matches!(error, PlumbingError::Netns { .. }), "{error}");
        }
        assert_eq!(CAPPED.running.load(Ordering::SeqCst), 2);
        let error = CAPPED.open(&hung.path()).await.expect_err("refused");
        assert!(
            matches!(error, PlumbingError::NetnsOpenersBusy { stuck: 2, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("CNI_NETNS"), "{error}");
        assert_eq!(CAPPED.running.load(Ordering::SeqCst), 2, "no thread more");
        drop(hung);
        for _ in 0..1000 {
            if CAPPED.running.load(Ordering::SeqCst) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            CAPPED.running.load(Ordering::SeqCst),
            0,
            "the hung opens ended"
        );
        CAPPED
            .open(Path::new(SELF_NETNS))
            .await
            .expect("the agent's own namespace opens again");
    }
}
