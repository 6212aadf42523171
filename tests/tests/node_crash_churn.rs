//! Crash churn and load on a whole node (root only): the real `weftd` on
//! the embedded VPC simulator (a stand-in for EC2 only because no EC2 can
//! run here; it enforces the instance type's real limits) with its node side
//! in a namespace of its own, driven by the real `weft` plugin exec'd as a
//! runtime does, into real pod namespaces.
//!
//! * Crash churn: workers ADD and DEL pods while `weftd` is SIGKILLed at
//!   random moments and restarted. A failed ADD is followed by a DEL, as
//!   kubelet does. Afterwards no address is held twice, every pod whose ADD
//!   succeeded still has its address and reaches the node, and once every pod
//!   is deleted nothing is left: the simulated EC2, the datastore and the
//!   node's links, routes and rules agree, with no stray ENI.
//! * Load: 200 concurrent ADDs onto an empty pool: each succeeds or answers
//!   "try again later" (11), none hangs; weftd's memory is reported.
//!
//! Short by default (CI); `WEFT_LONG=1` runs the long variants. Figures go
//! to stderr (`--nocapture`) for RELIABILITY.md.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_tests::support::agent::{NODE_IP, TestAgent, exec_plugin, ok_json, pod_ip};
use weft_tests::support::binaries::weft_plugin_binary;
use weft_tests::support::netns::TestNetns;

fn long() -> bool {
    std::env::var_os("WEFT_LONG").is_some_and(|v| v == "1")
}

/// Calls the plugin as a runtime would; `Send`, so workers can share it
/// while the test restarts the agent.
#[derive(Clone)]
struct Runtime {
    plugin: PathBuf,
    netconf: Value,
}

impl Runtime {
    fn new(agent: &TestAgent, timeout_ms: u64) -> Runtime {
        let mut netconf = agent.netconf("1.0.0");
        netconf["timeout-ms"] = json!(timeout_ms);
        Runtime {
            plugin: weft_plugin_binary(),
            netconf,
        }
    }

    fn call(&self, command: &str, id: &str, netns: &TestNetns, pod: &str) -> Output {
        exec_plugin(
            None,
            &self.plugin,
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", &netns.path().display().to_string()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                (
                    "CNI_ARGS",
                    &format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=churn;K8S_POD_NAME={pod}"),
                ),
            ],
            &self.netconf.to_string(),
        )
    }

    /// DEL until it succeeds (the agent may be down for a moment).
    fn del_until_done(&self, id: &str, netns: &TestNetns, pod: &str, counts: &Counts) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.call("DEL", id, netns, pod);
            counts.record("DEL", &out);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "DEL of {id} never succeeds: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Outcomes by command and CNI code ("ok" for success).
#[derive(Default)]
struct Counts(Mutex<BTreeMap<(String, String), u32>>);

impl Counts {
    fn record(&self, command: &str, out: &Output) {
        let outcome = if out.status.success() {
            "ok".to_owned()
        } else {
            serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|e| e["code"].as_u64())
                .map_or_else(|| "no-answer".to_owned(), |c| c.to_string())
        };
        *self
            .0
            .lock()
            .unwrap()
            .entry((command.to_owned(), outcome))
            .or_default() += 1;
    }

    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }

    fn summary(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|((c, o), n)| format!("{c} {o}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One pod sandbox the runtime manages: its namespace, and the container
/// it last ADDed with the address it got (`None` while it has no pod).
struct Slot {
    netns: TestNetns,
    name: String,
    generation: u32,
    added: Option<String>,
    /// An ADD failed or was cut short: the runtime DELs before anything else.
    dirty: bool,
}

impl Slot {
    fn container(&self) -> String {
        format!("{}-{}", self.name, self.generation)
    }
}

/// One step of a worker on a random slot of its own: ADD an empty slot,
/// DEL a full or dirty one.
fn step(runtime: &Runtime, slot: &mut Slot, counts: &Counts) {
    let id = slot.container();
    if slot.added.is_some() || slot.dirty {
        let out = runtime.call("DEL", &id, &slot.netns, &slot.name);
        counts.record("DEL", &out);
        if out.status.success() {
            slot.added = None;
            slot.dirty = false;
            slot.generation += 1;
        }
    } else {
        let out = runtime.call("ADD", &id, &slot.netns, &slot.name);
        counts.record("ADD", &out);
        if out.status.success() {
            slot.added = Some(pod_ip(&ok_json(&out)));
        } else {
            slot.dirty = true;
        }
    }
}

/// What the node holds: addresses by container, per `/v1/pods`.
fn held(agent: &TestAgent) -> BTreeMap<String, String> {
    agent
        .get_json("/v1/pods")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["container_id"].as_str().unwrap().to_owned(),
                p["ip"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts that once no pod exists, nothing is left anywhere: no
/// assignment, no Weft veth, pod route or rule on the node, and the
/// simulated EC2 and the datastore agree on the node's ENIs and addresses
/// (no stray ENI).
fn assert_nothing_leaked(agent: &TestAgent) {
    assert_eq!(agent.get_json("/v1/pods"), json!([]), "no assignment left");
    // Veths go away in the background after DEL: allow the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let weft_links: Vec<Value> = agent
            .node
            .ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                l["ifalias"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("weft:"))
            })
            .cloned()
            .collect();
        if weft_links.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "Weft veths left: {weft_links:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rules = agent.node.ip_json(&["rule", "show"]);
    let pod_rules: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["priority"] == 512 || r["priority"] == 1536)
        .collect();
    assert!(pod_rules.is_empty(), "pod rules left: {pod_rules:?}");
    let routes = agent.node.ip_json(&["route", "show", "table", "main"]);
    let pod_routes: Vec<&Value> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dev"].as_str().is_some_and(|d| d.starts_with("eni")))
        .collect();
    assert!(pod_routes.is_empty(), "pod routes left: {pod_routes:?}");

    // EC2 (the simulator's VPC, as it keeps it on disk) and the datastore.
    let vpc: Value = serde_json::from_slice(
        &std::fs::read(agent.dir.path().join("state/sim-vpc.json")).expect("the simulated VPC"),
    )
    .expect("JSON");
    let ec2: BTreeMap<String, usize> = vpc["enis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                !e["attachment"].is_null(),
                "stray ENI (not attached to the node): {e}"
            );
            (
                e["id"].as_str().unwrap().to_owned(),
                e["secondary_ips"].as_array().unwrap().len(),
            )
        })
        .collect();
    let pool = agent.get_json("/v1/pool");
    let datastore: BTreeMap<String, usize> = pool["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["enis"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_owned(),
                e["ips"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(ec2, datastore, "EC2's ENIs and addresses = the datastore's");
    // netlink: every secondary ENI has its link and its table's default route.
    for eni in pool["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["enis"].as_array().unwrap().clone())
        .filter(|e| e["device-index"].as_u64() != Some(0))
    {
        let index = eni["device-index"].as_u64().unwrap();
        let table = (index + 1).to_string();
        let routes = agent.node.ip_json(&["route", "show", "table", &table]);
        assert!(
            routes
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["dst"] == "default" && r["dev"] == json!(format!("eth{index}"))),
            "ENI {} (eth{index}) has its table {table}: {routes}",
            eni["id"]
        );
    }
}

/// Resident and peak memory of a process, in KiB, from `/proc`.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
#[ignore = "needs root: network namespaces"]
fn pods_survive_weftd_being_killed_at_random_moments() {
    let (target_ops, target_kills, workers, slots_per_worker) = if long() {
        (3000, 40, 4, 6)
    } else {
        (300, 10, 3, 6)
    };
    let seed: u64 = std::env::var("WEFT_CHURN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9b);
    // m5.large: 3 ENIs x 9 pod addresses; 18 slots need secondary ENIs.
    let mut agent = TestAgent::start(
        "m5.large",
        "[pool]\ncooldown-seconds = 1\nadd-wait-ms = 5000\nmin-eni-age-seconds = 0\n",
    );
    let runtime = Runtime::new(&agent, 10_000);
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (runtime, counts, stop, ops) =
                (runtime.clone(), counts.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed + w as u64);
                let mut slots: Vec<Slot> = (0..slots_per_worker)
                    .map(|s| Slot {
                        netns: TestNetns::new(&format!("c{w}-{s}")),
                        name: format!("p{w}-{s}"),
                        generation: 0,
                        added: None,
                        dirty: false,
                    })
                    .collect();
                while !stop.load(Ordering::SeqCst) {
                    let slot = rng.random_range(0..slots.len());
                    step(&runtime, &mut slots[slot], &counts);
                    ops.fetch_add(1, Ordering::SeqCst);
                }
                slots
            })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    while kills < target_kills || ops.load(Ordering::SeqCst) < target_ops {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        if kills < target_kills {
            agent.kill();
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            agent.spawn();
            agent.wait_serving();
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut slots: Vec<Slot> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("worker"))
        .collect();
    let churn = started.elapsed();
    // Settle: the runtime DELs what it could not finish.
    for slot in slots.iter_mut().filter(|s| s.dirty) {
        runtime.del_until_done(&slot.container(), &slot.netns, &slot.name, &counts);
        slot.dirty = false;
        slot.generation += 1;
    }

    // No address held twice; every successful ADD still has its address,
    // its wiring and its reachability.
    let held = held(&agent);
    let distinct: BTreeSet<&String> = held.values().collect();
    assert_eq!(
        distinct.len(),
        held.len(),
        "an address is held twice: {held:?}"
    );
    let live: Vec<&Slot> = slots.iter().filter(|s| s.added.is_some()).collect();
    for slot in &live {
        let ip = slot.added.as_ref().unwrap();
        assert_eq!(
            held.get(&slot.container()),
            Some(ip),
            "{} keeps {ip}",
            slot.container()
        );
        let addrs = slot.netns.ip_json(&["addr", "show", "dev", "eth0"]);
        assert!(
            addrs.to_string().contains(ip.as_str()),
            "{ip} on eth0: {addrs}"
        );
        assert!(
            slot.netns.ping(NODE_IP),
            "{} ({ip}) reaches the node",
            slot.name
        );
    }
    assert_eq!(
        held.len(),
        live.len(),
        "no assignment without a pod: {held:?}"
    );
    let alive = live.len();

    // Every pod goes; then nothing is left anywhere.
    for slot in slots.iter_mut().filter(|s| s.added.is_some()) {
        runtime.del_until_done(&slot.container(), &slot.netns, &slot.name, &counts);
        slot.added = None;
    }
    assert_nothing_leaked(&agent);
    let (rss, peak) = agent.pid().map_or((0, 0), memory_kib);
    eprintln!(
        "crash churn: {} CNI calls ({}) in {:.1} s with {kills} SIGKILLs of weftd, {} pods \
         alive at the end and checked, nothing leaked; weftd after the last restart: RSS {rss} KiB, peak {peak} KiB",
        counts.total(),
        counts.summary(),
        churn.as_secs_f64(),
        alive,
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn two_hundred_concurrent_adds_on_an_empty_pool_each_succeed_or_try_again() {
    let pods = if long() { 400 } else { 200 };
    // c5.18xlarge: 15 ENIs x 49 pod addresses; the pool starts empty, so
    // every ADD waits for the reconciler to assign addresses and create ENIs.
    let agent = TestAgent::start("c5.18xlarge", "[pool]\nadd-wait-ms = 10000\n");
    let runtime = Runtime::new(&agent, 30_000);
    let namespaces: Vec<TestNetns> = (0..pods)
        .map(|i| TestNetns::new(&format!("l{i}")))
        .collect();
    let counts = Counts::default();
    let started = Instant::now();
    let results: Vec<(usize, Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let runtime = &runtime;
                scope.spawn(move || {
                    (
                        i,
                        runtime.call("ADD", &format!("l{i}"), ns, &format!("l{i}")),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let burst = started.elapsed();
    let mut succeeded = Vec::new();
    for (i, out) in &results {
        counts.record("ADD", out);
        if out.status.success() {
            succeeded.push((*i, pod_ip(&ok_json(out))));
        } else {
            let err: Value = serde_json::from_slice(&out.stdout).expect("a CNI error object");
            assert_eq!(
                err["code"],
                json!(11),
                "pod l{i}: only try-again is allowed: {err}"
            );
        }
    }
    let (rss, peak) = agent.pid().map_or((0, 0), memory_kib);
    let ips: BTreeSet<&String> = succeeded.iter().map(|(_, ip)| ip).collect();
    assert_eq!(ips.len(), succeeded.len(), "no address given twice");
    assert_eq!(held(&agent).len(), succeeded.len());
    let retried = results.len() - succeeded.len();
    for (i, ns) in namespaces.iter().enumerate() {
        runtime.del_until_done(&format!("l{i}"), ns, &format!("l{i}"), &counts);
    }
    assert_nothing_leaked(&agent);
    eprintln!(
        "load: {pods} concurrent ADDs on an empty c5.18xlarge pool in {:.1} s: {} ok, {retried} try-again (11); \
         weftd RSS {rss} KiB after the burst, peak {peak} KiB; calls: {}",
        burst.as_secs_f64(),
        succeeded.len(),
        counts.summary()
    );
}
