//! Per-pod ADD and DEL latency of `weft` against the reference `ptp` +
//! `host-local` from Debian's containernetworking-plugins, measured in one
//! run on the same machine, with the same namespaces and the same way of
//! exec'ing a plugin (env + stdin, exec to exit).
//!
//! ```sh
//! cargo bench -p weft-tests --bench cni_latency        # root; 50 pods each
//! WEFT_BENCH_PODS=100 cargo bench -p weft-tests --bench cni_latency
//! ```
//!
//! Weft runs with a warm pool (the pool-sizing policy keeps enough
//! addresses, so no ADD waits for the simulated EC2), and a second agent in
//! IPv6 mode (`[pool] ip-family = "ipv6"`: addresses of the primary ENI's
//! /80, IPv6 wiring); the reference runs with `ipMasq` off. All are exec'd
//! from inside their node namespace so none pays for an `ip netns exec`.

use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_host::api::PoolView;
use weft_tests::support::agent::{TestAgent, exec_plugin};
use weft_tests::support::netns::{TestNetns, root_or_skip};
use weft_tests::weft_plugin_binary;

fn main() {
    if !root_or_skip("cni_latency") {
        return;
    }
    let pods: usize = std::env::var("WEFT_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let plugin = weft_plugin_binary();
    let agent = TestAgent::start(
        "m5.2xlarge",
        &format!(
            "[policies.pool-sizing]\nsettings = {{ minimum-ip-target = {}, warm-ip-target = 4 }}\n",
            pods + 2
        ),
    );
    wait_for_warm_pool(&agent, pods);
    // Started before this thread leaves its namespace.
    let agent6 = TestAgent::start("m5.2xlarge", "[pool]\nip-family = \"ipv6\"\n");
    // Spawned plugins inherit the node namespace from this thread.
    enter(&agent.node);

    let netconf = agent.netconf("1.0.0");
    let weft = measure(pods, |cmd, ns, i| run(&plugin, cmd, ns, i, &netconf));

    let data = tempfile::tempdir().expect("temp dir");
    let reference_conf = json!({
        "cniVersion": "1.0.0",
        "name": "reference",
        "type": "ptp",
        "ipMasq": false,
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/16", "dataDir": data.path()},
    });
    let ptp = Path::new("/usr/lib/cni/ptp");
    assert!(
        ptp.is_file(),
        "install containernetworking-plugins (scripts/setup)"
    );
    let reference = measure(pods, |cmd, ns, i| run(ptp, cmd, ns, i, &reference_conf));

    enter(&agent6.node);
    let netconf6 = agent6.netconf("1.0.0");
    let weft6 = measure(pods, |cmd, ns, i| run(&plugin, cmd, ns, i, &netconf6));

    println!("CNI latency, {pods} pods sequentially, exec to exit (ms):");
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}",
        "", "ADD p50", "ADD p90", "DEL p50", "DEL p90"
    );
    for (name, t) in [
        ("weft (warm pool)", &weft),
        ("weft IPv6 (/80)", &weft6),
        ("ptp + host-local", &reference),
    ] {
        println!(
            "{name:<22} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            ms(pct(&t.add, 50)),
            ms(pct(&t.add, 90)),
            ms(pct(&t.del, 50)),
            ms(pct(&t.del, 90))
        );
    }
    println!(
        "ratio weft/reference: ADD p50 {:.2}x, DEL p50 {:.2}x (targets <= 0.5x)",
        ms(pct(&weft.add, 50)) / ms(pct(&reference.add, 50)),
        ms(pct(&weft.del, 50)) / ms(pct(&reference.del, 50)),
    );
}

struct Timings {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

/// ADDs `pods` pods one after another, then DELs them, timing each exec.
fn measure(pods: usize, mut plugin: impl FnMut(&str, &TestNetns, usize) -> Duration) -> Timings {
    let namespaces: Vec<TestNetns> = (0..pods)
        .map(|i| TestNetns::new(&format!("b{i}")))
        .collect();
    let add = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| plugin("ADD", ns, i))
        .collect();
    let del = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| plugin("DEL", ns, i))
        .collect();
    Timings { add, del }
}

fn run(binary: &Path, command: &str, ns: &TestNetns, i: usize, netconf: &Value) -> Duration {
    let id = format!("bench-{i}");
    let netns = ns.path().display().to_string();
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{i}");
    let env = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", id.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
        ("CNI_ARGS", args.as_str()),
    ];
    let stdin = netconf.to_string();
    let start = Instant::now();
    let out = exec_plugin(None, binary, &env, &stdin);
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{} {command} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    elapsed
}

fn wait_for_warm_pool(agent: &TestAgent, pods: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-sf", "--unix-socket"])
            .arg(agent.socket())
            .arg("http://weft/v1/pool")
            .output()
            .expect("curl");
        // The pool exactly as the pool-sizing policy sees it.
        let pool: Option<PoolView> = serde_json::from_slice(&out.stdout).ok();
        let free: u32 = pool
            .iter()
            .flat_map(|p| &p.groups)
            .flat_map(|g| &g.enis)
            .map(|e| e.free())
            .sum();
        if free as usize >= pods {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not warm to {pods} addresses: {pool:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Moves this thread (and so every process it spawns) into `ns`.
fn enter(ns: &TestNetns) {
    let file = std::fs::File::open(ns.path()).expect("open the node namespace");
    // This bench is single-threaded when it spawns plugins.
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("setns into the node namespace");
}

fn pct(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
