//! One `moto_server` per test binary, shared by its tests one at a time.
//!
//! The binary is found through `WEFT_MOTO_SERVER`, then `<repo>/.venv/bin/moto_server`, then
//! `PATH`. Missing, the test fails with how to install it. The server listens on a free
//! 127.0.0.1 port, is reset (`POST /moto-api/reset`) before each test, and dies with the test
//! process (parent-death signal) or when a [`Moto`] owned by a test is dropped.

use super::tcp::free_port;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

const INSTALL: &str =
    "install moto[server]: python3 -m venv .venv && .venv/bin/pip install 'moto[server]'";

/// A running moto server.
pub struct Moto {
    child: Child,
    addr: SocketAddr,
}

fn find_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEFT_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = repo.join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("moto_server not found (WEFT_MOTO_SERVER, .venv, PATH); {INSTALL}")
        })
}

/// A minimal blocking HTTP/1.1 request to moto's control API; returns the status code.
fn control(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:.80}")))
}

impl Moto {
    /// Starts a server and waits until `GET /moto-api/` answers.
    pub fn start() -> Moto {
        let binary = find_binary();
        let port = free_port();
        let mut command = Command::new(&binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the child dies when the thread that spawned it
        // exits (the dedicated thread of `shared`, which lives as long as the process).
        #[allow(
            unsafe_code,
            reason = "the standard library offers no safe way to run code between fork and exec"
        )]
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}; {INSTALL}", binary.display()));
        let moto = Moto {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(control(moto.addr, "GET", "/moto-api/"), Ok(200)) {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {} within 60 s; {INSTALL}",
                moto.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The EC2 endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Clears all state.
    pub fn reset(&self) {
        let status = control(self.addr, "POST", "/moto-api/reset").expect("moto reset");
        assert_eq!(status, 200, "moto reset answered {status}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exclusive use of the test binary's shared, freshly reset moto server.
pub struct MotoSession {
    _guard: MutexGuard<'static, ()>,
    moto: &'static Moto,
}

impl std::ops::Deref for MotoSession {
    type Target = Moto;

    fn deref(&self) -> &Moto {
        self.moto
    }
}

/// The shared server (started on first use), reset and locked for the calling test.
pub fn session() -> MotoSession {
    static LOCK: Mutex<()> = Mutex::new(());
    static MOTO: OnceLock<&'static Moto> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let moto = *MOTO.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = std::panic::catch_unwind(Moto::start).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "moto_server failed to start".into())
            });
            let started = started.map(|moto| &*Box::leak(Box::new(moto)));
            tx.send(started).expect("test thread waits");
            // Keep the spawning thread (the parent-death signal's anchor) alive.
            loop {
                std::thread::park();
            }
        });
        match rx.recv() {
            Ok(Ok(moto)) => moto,
            Ok(Err(message)) => panic!("{message}"),
            Err(_) => panic!("the moto_server thread died; {INSTALL}"),
        }
    });
    moto.reset();
    MotoSession {
        _guard: guard,
        moto,
    }
}
