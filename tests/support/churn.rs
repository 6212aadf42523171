//! Pod churn on a whole node, as a container runtime makes it: workers ADD
//! and DEL pods through the real `weft` plugin into real pod namespaces (a
//! failed ADD is followed by DEL until it succeeds, as kubelet does), and the
//! checks that follow: no address held twice, every pod whose ADD succeeded
//! keeps its address and reaches the node, and once every pod is gone no
//! Weft veth, pod route or rule is left on the node.

use super::agent::{NODE_IP, TestAgent, exec_plugin, ok_json, pod_ip};
use super::binaries::weft_plugin_binary;
use super::netns::TestNetns;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Whether the long variants run (`WEFT_LONG=1`).
pub fn long() -> bool {
    std::env::var_os("WEFT_LONG").is_some_and(|v| v == "1")
}

/// Calls the plugin as a runtime would; `Send`, so workers can share it
/// while the test restarts the agent.
#[derive(Clone)]
pub struct Runtime {
    plugin: PathBuf,
    netconf: Value,
}

impl Runtime {
    /// The plugin with `agent`'s netconf, waiting `timeout_ms` for it.
    pub fn new(agent: &TestAgent, timeout_ms: u64) -> Runtime {
        let mut netconf = agent.netconf("1.0.0");
        netconf["timeout-ms"] = json!(timeout_ms);
        Runtime {
            plugin: weft_plugin_binary(),
            netconf,
        }
    }

    /// Execs the plugin for `command` on container `id` of pod `pod` in `netns`.
    pub fn call(&self, command: &str, id: &str, netns: &TestNetns, pod: &str) -> Output {
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
    pub fn del_until_done(&self, id: &str, netns: &TestNetns, pod: &str, counts: &Counts) {
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
pub struct Counts(Mutex<BTreeMap<(String, String), u32>>);

impl Counts {
    /// Counts the outcome of one call.
    pub fn record(&self, command: &str, out: &Output) {
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

    /// Calls counted.
    pub fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }

    /// Calls of `command` with `outcome` ("ok" or a CNI code).
    pub fn get(&self, command: &str, outcome: &str) -> u32 {
        self.0
            .lock()
            .unwrap()
            .get(&(command.to_owned(), outcome.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every count, e.g. `ADD ok: 3, DEL 11: 1`.
    pub fn summary(&self) -> String {
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
pub struct Slot {
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

    /// One step: ADD an empty slot, DEL a full or dirty one.
    fn step(&mut self, runtime: &Runtime, counts: &Counts) {
        let id = self.container();
        if self.added.is_some() || self.dirty {
            let out = runtime.call("DEL", &id, &self.netns, &self.name);
            counts.record("DEL", &out);
            if out.status.success() {
                self.added = None;
                self.dirty = false;
                self.generation += 1;
            }
        } else {
            let out = runtime.call("ADD", &id, &self.netns, &self.name);
            counts.record("ADD", &out);
            if out.status.success() {
                self.added = Some(pod_ip(&ok_json(&out)));
            } else {
                self.dirty = true;
            }
        }
    }
}

/// Workers stepping on random slots of their own until stopped.
pub struct Churn {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU32>,
    handles: Vec<JoinHandle<Vec<Slot>>>,
    started: Instant,
}

impl Churn {
    /// Starts `workers` workers, each with `slots` pod namespaces, their
    /// random choices seeded from `seed`.
    pub fn start(
        runtime: &Runtime,
        counts: &Arc<Counts>,
        workers: u32,
        slots: u32,
        seed: u64,
    ) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU32::new(0));
        let handles = (0..workers)
            .map(|w| {
                let (runtime, counts, stop, ops) =
                    (runtime.clone(), counts.clone(), stop.clone(), ops.clone());
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed + u64::from(w));
                    let mut slots: Vec<Slot> = (0..slots)
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
                        slots[slot].step(&runtime, &counts);
                        ops.fetch_add(1, Ordering::SeqCst);
                    }
                    slots
                })
            })
            .collect();
        Churn {
            stop,
            ops,
            handles,
            started: Instant::now(),
        }
    }

    /// Steps taken so far.
    pub fn ops(&self) -> u32 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Stops the workers; returns their slots and how long they ran.
    pub fn stop(self) -> (Vec<Slot>, Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let slots = self
            .handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect();
        (slots, self.started.elapsed())
    }
}

/// What the node holds: addresses by container, per `/v1/pods`.
pub fn held(agent: &TestAgent) -> BTreeMap<String, String> {
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

/// After the churn: DELs what the runtime could not finish, then checks that
/// no address is held twice and that every pod whose ADD succeeded still
/// holds its address, has it on `eth0` and reaches the node. Returns how
/// many pods are alive.
pub fn settle_and_check_live(
    agent: &TestAgent,
    runtime: &Runtime,
    slots: &mut [Slot],
    counts: &Counts,
) -> usize {
    for slot in slots.iter_mut().filter(|s| s.dirty) {
        runtime.del_until_done(&slot.container(), &slot.netns, &slot.name, counts);
        slot.dirty = false;
        slot.generation += 1;
    }
    let held = held(agent);
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
    live.len()
}

/// DELs every pod that is alive.
pub fn delete_all(runtime: &Runtime, slots: &mut [Slot], counts: &Counts) {
    for slot in slots.iter_mut().filter(|s| s.added.is_some()) {
        runtime.del_until_done(&slot.container(), &slot.netns, &slot.name, counts);
        slot.added = None;
    }
}

/// Asserts that once no pod exists nothing of them is left on the node: no
/// assignment, no veth with Weft's alias, no pod rule or route; and that
/// every secondary ENI of the datastore has its route table.
pub fn assert_node_clean(agent: &TestAgent) {
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
    // netlink: every secondary ENI has its link and its table's default route.
    let enis = agent.get_json("/v1/enis");
    for eni in enis["enis"]
        .as_array()
        .unwrap()
        .iter()
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

/// The datastore's secondary addresses by ENI, per `/v1/enis`.
pub fn datastore_addresses(agent: &TestAgent) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    agent.get_json("/v1/enis")["enis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let ips = e["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["ip"].as_str().unwrap().parse().expect("an IPv4 address"))
                .collect();
            (e["id"].as_str().unwrap().to_owned(), ips)
        })
        .collect()
}
