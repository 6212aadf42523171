//! TCP inside test namespaces: a server that tells each client the address it
//! sees the client connect from (what NAT did on the way), and a client.
//! Both run on threads that entered the namespace (`setns` is per thread).

use super::netns::TestNetns;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a client waits to connect and for the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// A local TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Runs `work` on a new thread inside `ns` and returns its result.
pub fn in_netns<T: Send + 'static>(ns: &TestNetns, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        enter(&path);
        work()
    })
    .join()
    .expect("the namespace thread panicked")
}

fn enter(path: &PathBuf) {
    let file = std::fs::File::open(path).expect("open the namespace");
    // Affects this thread only.
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
}

/// A server in a namespace answering every connection with the client's
/// address as it sees it; stops on drop.
pub struct PeerEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeerEcho {
    /// Listens on `addr` inside `ns`.
    pub fn start(ns: &TestNetns, addr: &str) -> PeerEcho {
        let (path, addr) = (ns.path(), addr.to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&path);
            let listener = TcpListener::bind(&addr).expect("bind the echo server");
            listener.set_nonblocking(true).expect("non-blocking");
            ready_tx.send(()).expect("ready");
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(peer.ip().to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv().expect("the echo server starts");
        PeerEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PeerEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connects from inside `ns` to `addr` and returns what a [`PeerEcho`] there
/// answered: the address it saw this client come from; `None` when the
/// connection or the answer did not come through in time.
pub fn peer_seen(ns: &TestNetns, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    in_netns(ns, move || {
        let mut stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT)).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer).filter(|a| !a.is_empty())
    })
}
