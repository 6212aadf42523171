//! Helpers shared by the plumbing tests and benchmark: throw-away network
//! namespaces and `ip` invocations. Everything a test creates lives inside
//! namespaces it owns; dropping a [`TestNetns`] deletes the namespace and
//! with it every link, route and rule inside.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether a benchmark can create namespaces; prints why not otherwise.
/// (Tests that need root are `#[ignore = "needs root: network namespaces"]`.)
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root to create network namespaces");
    }
    root
}

/// Runs a command and returns its output; panics with stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = output(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and returns whatever happened; panics only if it cannot
/// start (with what to install).
pub fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install iproute2 and iputils-ping"))
}

/// The entries of a JSON array: `ip -j` output as [`TestNetns::ip_json`]
/// returns it, or a listing of the agent's API.
pub fn entries(json: &serde_json::Value) -> &[serde_json::Value] {
    json.as_array()
        .unwrap_or_else(|| panic!("a JSON array: {json}"))
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct TestNetns {
    /// Name under `/var/run/netns`.
    pub name: String,
}

impl TestNetns {
    /// Creates `wt-<pid>-<n>-<tag>`.
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("wt-{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's path, as `CNI_NETNS` would give it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// `ip -n <ns> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -n <ns> -j <args>` parsed as JSON (an empty array for no output).
    pub fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let text = self.ip(&full);
        if text.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ip -j {args:?} gave invalid JSON ({e}): {text}"))
    }

    /// The entries of `ip -n <ns> -j <args>` (none for no output).
    pub fn ip_entries(&self, args: &[&str]) -> Vec<serde_json::Value> {
        entries(&self.ip_json(args)).to_vec()
    }

    /// A command run inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        output("ip", &full)
    }

    /// A sysctl value inside the namespace.
    pub fn sysctl(&self, key: &str) -> String {
        let out = self.exec("sysctl", &["-n", key]);
        assert!(
            out.status.success(),
            "sysctl {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Whether one ping from this namespace to `ip` is answered.
    pub fn ping(&self, ip: &str) -> bool {
        self.exec("ping", &["-c1", "-W1", "-n", ip])
            .status
            .success()
    }

    /// Starts `program` inside the namespace; killed when the guard drops.
    pub fn spawn(&self, program: &str, args: &[&str]) -> ChildGuard {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {}: {e}", self.name));
        ChildGuard(child)
    }

    /// Adds a stand-in for a NIC: a veth `name` with `mac` whose peer stays
    /// in this namespace, both up.
    pub fn add_nic(&self, name: &str, mac: &str) {
        let peer = format!("{name}p");
        self.ip(&[
            "link", "add", name, "address", mac, "type", "veth", "peer", "name", &peer,
        ]);
        self.ip(&["link", "set", &peer, "up"]);
        self.ip(&["link", "set", name, "up"]);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        // Removes every link, route and rule inside; errors are moot here.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A process started by [`TestNetns::spawn`], killed and reaped on drop.
pub struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
