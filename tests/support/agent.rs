//! A whole Weft node for end-to-end tests: `weftd run` on the embedded VPC
//! simulator with its node side in a namespace the test owns, and the real
//! `weft` plugin exec'd exactly as a container runtime does (env + stdin).

use super::binaries::{weft_plugin_binary, weftd_binary};
use super::netns::TestNetns;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The node's own address, on a stand-in primary NIC in the node namespace.
pub const NODE_IP: &str = "10.0.0.10";

/// What [`TestAgent::start_with`] varies.
pub struct AgentOptions<'a> {
    /// Keys of the `[agent]` table (default: both TCP endpoints off).
    pub agent_keys: &'a str,
    /// The simulated VPC's subnets; the first is the node's.
    pub subnets: &'a [&'a str],
    /// Where the agent writes its conflist; `<dir>/net.d` when unset.
    pub cni_conf_dir: Option<PathBuf>,
    /// Lines added to the `[cloud]` table.
    pub cloud: &'a str,
    /// EC2 instead of the simulator: the `[cloud]` table is `provider =
    /// "ec2"` and these lines (`instance_type`, `subnets` and `cloud` are
    /// then unused), and weftd gets the static test credentials moto takes.
    pub ec2: Option<&'a str>,
}

impl Default for AgentOptions<'_> {
    fn default() -> Self {
        AgentOptions {
            agent_keys: "metrics-address = \"off\"\nintrospection-address = \"off\"",
            subnets: &["10.0.0.0/22"],
            cni_conf_dir: None,
            cloud: "",
            ec2: None,
        }
    }
}

/// A running `weftd` whose node is a namespace of its own; stopped (SIGTERM)
/// and cleaned up on drop.
pub struct TestAgent {
    /// The node namespace.
    pub node: TestNetns,
    /// Temp dir with the config, socket and state.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Environment of the `weftd` process besides the test's own.
    env: Vec<(&'static str, &'static str)>,
}

impl TestAgent {
    /// Starts `weftd` with the simulator (`instance_type`, subnet
    /// `10.0.0.0/22`) and `extra` TOML appended to the configuration. The
    /// TCP endpoints are off and the conflist goes to `<dir>/net.d`.
    pub fn start(instance_type: &str, extra: &str) -> TestAgent {
        Self::start_with_options(instance_type, &AgentOptions::default(), extra)
    }

    /// [`TestAgent::start`] with `cloud` lines added to the `[cloud]` table.
    pub fn start_with(instance_type: &str, cloud: &str, extra: &str) -> TestAgent {
        let options = AgentOptions {
            cloud,
            ..AgentOptions::default()
        };
        Self::start_with_options(instance_type, &options, extra)
    }

    /// As [`TestAgent::start`], with `options`.
    pub fn start_with_options(
        instance_type: &str,
        options: &AgentOptions,
        extra: &str,
    ) -> TestAgent {
        let node = TestNetns::new("node");
        node.add_nic("ens5", "02:aa:00:00:00:05");
        node.ip(&["addr", "add", &format!("{NODE_IP}/22"), "dev", "ens5"]);
        Self::start_on(node, instance_type, options, extra)
    }

    /// [`TestAgent::start_with_options`] on a node namespace the caller
    /// prepared (on the simulated VPC fabric the simulator makes the primary NIC).
    pub fn start_on(
        node: TestNetns,
        instance_type: &str,
        options: &AgentOptions,
        extra: &str,
    ) -> TestAgent {
        // State on tmpfs, as in production (`/run/weft`): the checkpoint is
        // written before every ADD and DEL is answered.
        let dir = tempfile::Builder::new()
            .prefix("weft-test-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temp dir");
        let conf_dir = options
            .cni_conf_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("net.d"));
        let (agent_keys, subnets, cloud) = (options.agent_keys, options.subnets, options.cloud);
        let cloud_table = match options.ec2 {
            Some(ec2) => format!("provider = \"ec2\"\n{ec2}\n"),
            None => format!(
                "provider = \"sim\"\ninstance-type = \"{instance_type}\"\nsubnets = {subnets:?}\n\
                 materialise-enis = true\n{cloud}\n"
            ),
        };
        let env = match options.ec2 {
            Some(_) => vec![
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
            None => Vec::new(),
        };
        let config = format!(
            r#"[agent]
socket = "{dir}/weftd.sock"
state-dir = "{dir}/state"
{agent_keys}

[cni]
conf-dir = "{conf_dir}"

[cloud]
{cloud_table}
[plumbing]
node-netns = "{netns}"
{extra}
"#,
            dir = dir.path().display(),
            conf_dir = conf_dir.display(),
            netns = node.path().display(),
        );
        std::fs::write(dir.path().join("weftd.toml"), config).expect("write the config");
        let mut agent = TestAgent {
            node,
            dir,
            child: None,
            env,
        };
        agent.spawn();
        agent
    }

    /// (Re)starts the `weftd` process on the same configuration and state.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weftd.log"))
            .expect("open the agent log");
        let child = Command::new(weftd_binary())
            .args(["run", "--config"])
            .arg(self.dir.path().join("weftd.toml"))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weftd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.socket().exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("weftd exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "weftd did not open its socket:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops `weftd` with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("weftd.toml")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("weftd.sock")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weftd.log")).unwrap_or_default()
    }

    /// A netconf for this agent, in `cni_version`.
    pub fn netconf(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "name": "weft",
            "type": "weft",
            "socket": self.socket(),
        })
    }

    /// Waits (at most a minute) until the agent answers `GET /v1/status`:
    /// after [`TestAgent::spawn`] following a crash, the stale socket exists
    /// before the new agent serves.
    pub fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answered = Command::new("curl")
                .args(["-sf", "--max-time", "5", "--unix-socket"])
                .arg(self.socket())
                .arg("http://weft/v1/status")
                .output()
                .is_ok_and(|o| o.status.success());
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weftd does not serve:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The answer to `GET path` on the agent's socket (through curl).
    pub fn get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "30", "--unix-socket"])
            .arg(self.socket())
            .arg(format!("http://weft{path}"))
            .output()
            .expect("curl (scripts/setup installs it)");
        assert!(out.status.success(), "GET {path}");
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// [`TestAgent::get`] parsed as JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.get(path)).expect("JSON")
    }

    /// The process id of the running `weftd`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills `weftd` with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Execs the plugin for `command` on container `id` in `netns` for pod
    /// `name` with `netconf` on stdin.
    pub fn cni(
        &self,
        command: &str,
        id: &str,
        netns: &Path,
        name: &str,
        netconf: &serde_json::Value,
    ) -> Output {
        self.cni_if(command, id, netns, name, "eth0", netconf)
    }

    /// ADD of container `ctr-<pod>` of pod `pod` in `netns`, which must succeed; its result.
    pub fn cni_add(
        &self,
        pod: &str,
        netns: &TestNetns,
        netconf: &serde_json::Value,
    ) -> serde_json::Value {
        ok_json(&self.cni("ADD", &format!("ctr-{pod}"), &netns.path(), pod, netconf))
    }

    /// DEL of container `ctr-<pod>` of pod `pod` in `netns`, which must succeed.
    pub fn cni_del(&self, pod: &str, netns: &TestNetns, netconf: &serde_json::Value) {
        succeeded(&self.cni("DEL", &format!("ctr-{pod}"), &netns.path(), pod, netconf));
    }

    /// A new pod `name` in a namespace of its own (added with CNI 1.0.0): the namespace and the
    /// pod's address.
    pub fn new_pod(&self, name: &str) -> (TestNetns, String) {
        let ns = TestNetns::new(name);
        let ip = pod_ip(&self.cni_add(name, &ns, &self.netconf("1.0.0")));
        (ns, ip)
    }

    /// CNI GC with `netconf` and `valid` as `cni.dev/valid-attachments`.
    pub fn cni_gc(&self, netconf: &serde_json::Value, valid: serde_json::Value) -> Output {
        let mut gc = netconf.clone();
        gc["cni.dev/valid-attachments"] = valid;
        self.cni("GC", "", Path::new(""), "", &gc)
    }

    /// [`TestAgent::cni`] for interface `ifname` of the pod.
    pub fn cni_if(
        &self,
        command: &str,
        id: &str,
        netns: &Path,
        name: &str,
        ifname: &str,
        netconf: &serde_json::Value,
    ) -> Output {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=e2e;K8S_POD_NAME={name}");
        self.exec(command, id, netns, ifname, &args, netconf)
    }

    /// Execs the plugin on `eth0` with `CNI_ARGS` = `args`.
    pub fn cni_args(
        &self,
        command: &str,
        id: &str,
        netns: &Path,
        args: &str,
        netconf: &serde_json::Value,
    ) -> Output {
        self.exec(command, id, netns, "eth0", args, netconf)
    }

    fn exec(
        &self,
        command: &str,
        id: &str,
        netns: &Path,
        ifname: &str,
        args: &str,
        netconf: &serde_json::Value,
    ) -> Output {
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &netns.display().to_string()),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", args),
        ];
        exec_plugin(None, &weft_plugin_binary(), &env, &netconf.to_string())
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a CNI plugin binary as a runtime does: a clean environment with the
/// given `CNI_*` variables and the netconf on stdin; inside `netns` when given
/// (the reference plugins act on the namespace they run in).
pub fn exec_plugin(
    netns: Option<&TestNetns>,
    binary: &Path,
    env: &[(&str, &str)],
    stdin: &str,
) -> Output {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    let mut child = command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("exec {}: {e}", binary.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write the netconf");
    child.wait_with_output().expect("wait for the plugin")
}

/// The JSON a successful plugin call printed; panics with the plugin's
/// output otherwise.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "plugin failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the plugin prints JSON")
}

/// The pod address (without `/32`, or `/128` for IPv6) of an ADD result.
pub fn pod_ip(result: &serde_json::Value) -> String {
    let cidr = result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address");
    let (ip, len) = cidr
        .split_once('/')
        .expect("an address with a prefix length");
    let host_len = if ip.contains(':') { "128" } else { "32" };
    assert_eq!(len, host_len, "pod address is a host address: {cidr}");
    ip.to_owned()
}

/// Asserts a plugin call that prints no result (DEL) succeeded.
pub fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "plugin failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CNI error object a failed plugin call printed.
pub fn cni_error(out: &Output) -> serde_json::Value {
    assert!(!out.status.success(), "the plugin call succeeded");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the plugin prints a CNI error object ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
