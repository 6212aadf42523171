//! Drop-in policies on a running node (root only): the real `weftd` on the
//! embedded VPC simulator watching a policy directory the test writes into
//! while pods come and go through the real `weft` plugin.

use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weft_test_artifacts::{SG_SELECTOR, VPC_CNI_COMPAT, WARM_POOL};
use weft_tests::support::agent::TestAgent;
use weft_tests::support::binaries::weftd_binary;
use weft_tests::support::netns::TestNetns;

/// How long the agent may take to notice a change and act on it; a bound
/// against hanging, not a timed assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// The simulator's node security group (the built-in `sg-selector` gives
/// every pod the node's groups).
const NODE_SG: &str = "sg-0a1b2c3d4e5f60718";

/// Warm-pool settings no default reaches on an m5.large with a few pods:
/// at least 25 addresses means a third ENI.
const BIG_POOL: &str = "settings = { minimum-ip-target = 25, warm-ip-target = 1 }\n";

fn curl(agent: &TestAgent, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(agent.socket())
        .arg(format!("http://weft{path}"))
        .output()
        .expect("curl (scripts/setup installs it)");
    assert!(out.status.success(), "curl {path}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn get(agent: &TestAgent, path: &str) -> Value {
    serde_json::from_str(&curl(agent, path)).expect("JSON")
}

fn role(agent: &TestAgent, role: &str) -> Value {
    get(agent, "/v1/policies")["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["role"] == role)
        .cloned()
        .expect("the role")
}

/// Addresses in the pool, across groups and ENIs.
fn pool_addresses(agent: &TestAgent) -> u64 {
    get(agent, "/v1/pool")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["enis"].as_array().expect("enis").iter())
        .map(|e| e["ips"].as_u64().expect("ips"))
        .sum()
}

/// Polls `check` until it holds; panics with `what` and the agent's log.
fn wait_for(agent: &TestAgent, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `bytes` to `path` as an operator would: a hidden temp file
/// renamed into place.
fn put(path: &Path, bytes: &[u8]) {
    let name = path.file_name().expect("name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("policy artifact")
}

fn sha256(path: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    text.split_whitespace().next().expect("digest").to_owned()
}

/// ADDs and DELs pods in a loop until `stop`; counts ADDs and failures.
struct Churn {
    stop: AtomicBool,
    adds: AtomicUsize,
    failures: AtomicUsize,
}

impl Churn {
    fn new() -> Self {
        Churn {
            stop: AtomicBool::new(false),
            adds: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        }
    }

    fn run(&self, agent: &TestAgent, pods: &[TestNetns]) {
        let netconf = agent.netconf("1.0.0");
        let mut round = 0;
        while !self.stop.load(Ordering::Relaxed) {
            for (i, ns) in pods.iter().enumerate() {
                let id = format!("churn-{i}");
                let add = agent.cni("ADD", &id, &ns.path(), &format!("churn-{i}"), &netconf);
                self.adds.fetch_add(1, Ordering::Relaxed);
                if !add.status.success() {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "ADD {id} failed in round {round}: {}",
                        String::from_utf8_lossy(&add.stdout)
                    );
                }
                let del = agent.cni("DEL", &id, &ns.path(), &format!("churn-{i}"), &netconf);
                assert!(del.status.success(), "DEL {id}: {del:?}");
            }
            round += 1;
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_dropped_in_pool_policy_takes_over_while_pods_churn_a_broken_one_is_refused_and_removal_restores_the_default()
 {
    let policies = tempfile::tempdir().expect("policy dir");
    // Churned addresses would otherwise cool down for 30 s each and run an
    // m5.large's 27 dry within the test, whatever the policy.
    let agent = TestAgent::start(
        "m5.large",
        &format!(
            "[pool]\ncooldown-seconds = 0\n\n[policies]\ndir = \"{}\"\n",
            policies.path().display()
        ),
    );
    let pods: Vec<TestNetns> = (0..3)
        .map(|i| TestNetns::new(&format!("churn{i}")))
        .collect();
    let churn = Churn::new();
    std::thread::scope(|scope| {
        scope.spawn(|| churn.run(&agent, &pods));
        let builtin = role(&agent, "pool-sizing");
        assert_eq!(builtin["source"], "builtin", "{builtin}");
        wait_for(&agent, "some pods to come and go", || {
            churn.adds.load(Ordering::Relaxed) >= 6
        });
        assert!(pool_addresses(&agent) < 25, "the default keeps fewer");

        // Dropped in: the pool grows to the new policy's minimum.
        std::fs::write(policies.path().join("big.toml"), BIG_POOL).expect("toml");
        put(&policies.path().join("big.wasm"), &read(WARM_POOL));
        let sha = sha256(WARM_POOL);
        wait_for(&agent, "big.wasm in force", || {
            role(&agent, "pool-sizing")["sha256"] == json!(sha)
        });
        let pool = role(&agent, "pool-sizing");
        assert_eq!(pool["source"], "directory", "{pool}");
        assert_eq!(pool["policy"], "big", "{pool}");
        wait_for(&agent, "the pool to grow to 25 addresses", || {
            pool_addresses(&agent) >= 25
        });
        let adds_then = churn.adds.load(Ordering::Relaxed);
        wait_for(&agent, "pods to keep coming", || {
            churn.adds.load(Ordering::Relaxed) >= adds_then + 3
        });

        // Broken: refused, shown in /v1/status, the old module stays.
        put(&policies.path().join("big.wasm"), b"\0asm garbage");
        wait_for(&agent, "the refusal in /v1/status", || {
            get(&agent, "/v1/status")["warnings"]
                .as_array()
                .is_some_and(|w| {
                    w.iter()
                        .any(|m| m.as_str().unwrap_or("").contains("big.wasm"))
                })
        });
        let pool = role(&agent, "pool-sizing");
        assert_eq!(pool["sha256"], json!(sha), "the old module stays: {pool}");
        assert!(
            pool["last-refusal"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("big.wasm")),
            "{pool}"
        );

        // Removed: back to the built-in default.
        std::fs::remove_file(policies.path().join("big.wasm")).expect("remove");
        wait_for(&agent, "the built-in back in force", || {
            role(&agent, "pool-sizing")["source"] == "builtin"
        });
        assert!(get(&agent, "/v1/status").get("warnings").is_none());
        churn.stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(churn.failures.load(Ordering::Relaxed), 0, "no ADD failed");
    let log = agent.log();
    assert_eq!(log.matches("agent ready").count(), 1, "no restart:\n{log}");
    assert!(log.contains("big.wasm refused"), "{log}");
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_configmap_update_swapping_the_data_symlink_is_picked_up() {
    // A ConfigMap volume: files in a timestamped directory, `..data`
    // pointing at it, and one symlink per key through `..data`.
    let dir = tempfile::tempdir().expect("policy dir");
    let version = |name: &str, toml: &str, wasm: &[u8]| {
        let v = dir.path().join(name);
        std::fs::create_dir(&v).expect("mkdir");
        std::fs::write(v.join("pool.toml"), toml).expect("toml");
        std::fs::write(v.join("pool.wasm"), wasm).expect("wasm");
    };
    let swap = |to: &str| {
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(to, &tmp).expect("symlink");
        std::fs::rename(&tmp, dir.path().join("..data")).expect("swap ..data");
    };
    version(
        "..v1",
        &format!("name = \"cm-v1\"\n{BIG_POOL}"),
        &read(WARM_POOL),
    );
    swap("..v1");
    for key in ["pool.wasm", "pool.toml"] {
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.path().join(key)).expect("key");
    }
    let agent = TestAgent::start(
        "m5.large",
        &format!("[policies]\ndir = \"{}\"\n", dir.path().display()),
    );
    assert_eq!(role(&agent, "pool-sizing")["policy"], "cm-v1");

    version("..v2", "name = \"cm-v2\"\n", &read(WARM_POOL));
    swap("..v2");
    wait_for(&agent, "cm-v2 in force", || {
        role(&agent, "pool-sizing")["policy"] == "cm-v2"
    });

    version("..v3", "name = \"cm-v3\"\n", b"not wasm");
    swap("..v3");
    wait_for(&agent, "the broken version refused", || {
        role(&agent, "pool-sizing")["last-refusal"].is_object()
    });
    assert_eq!(role(&agent, "pool-sizing")["policy"], "cm-v2");

    // The key is deleted from the ConfigMap: its symlink goes.
    std::fs::create_dir(dir.path().join("..v4")).expect("mkdir");
    swap("..v4");
    for key in ["pool.wasm", "pool.toml"] {
        std::fs::remove_file(dir.path().join(key)).expect("unlink key");
    }
    wait_for(&agent, "the built-in back", || {
        role(&agent, "pool-sizing")["source"] == "builtin"
    });
}

#[test]
#[ignore = "needs root: network namespaces"]
fn sighup_reads_a_directory_that_could_not_be_watched() {
    // The directory does not exist when the agent starts, so nothing
    // watches it: only SIGHUP makes the agent read it once it exists.
    let parent = tempfile::tempdir().expect("tempdir");
    let policies = parent.path().join("policies.d");
    let agent = TestAgent::start(
        "m5.large",
        &format!("[policies]\ndir = \"{}\"\n", policies.display()),
    );
    assert_eq!(role(&agent, "pool-sizing")["source"], "builtin");
    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(policies.join("big.toml"), BIG_POOL).expect("toml");
    put(&policies.join("big.wasm"), &read(WARM_POOL));
    // Logged after the agent listens for SIGHUP.
    wait_for(&agent, "the agent to give up watching", || {
        agent.log().contains("cannot watch the policy directory")
    });
    let pid = agent.pid().expect("running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    wait_for(&agent, "big.wasm in force after SIGHUP", || {
        role(&agent, "pool-sizing")["policy"] == "big"
    });
}

/// `NAME.toml` of an `sg-selector` giving pods of namespace `e2e` (every
/// test pod) another group than the node's.
const E2E_RULE: &str = r#"settings = { rules = [ { namespaces = ["e2e"], security-groups = ["sg-0123456789abcdef0"] } ] }"#;

#[test]
#[ignore = "needs root: network namespaces"]
fn a_shadow_sg_policy_that_disagrees_is_counted_and_listed_and_pods_get_the_active_groups() {
    let dir = tempfile::tempdir().expect("policy dir");
    std::fs::copy(SG_SELECTOR, dir.path().join("strict.shadow.wasm")).expect("copy");
    std::fs::write(dir.path().join("strict.shadow.toml"), E2E_RULE).expect("toml");
    let agent = TestAgent::start(
        "m5.large",
        &format!("[policies]\ndir = \"{}\"\n", dir.path().display()),
    );
    let netconf = agent.netconf("1.0.0");
    let a = TestNetns::new("shadow-a");
    let b = TestNetns::new("shadow-b");
    for (id, ns, name) in [("ctr-a", &a, "a"), ("ctr-b", &b, "b")] {
        let out = agent.cni("ADD", id, &ns.path(), name, &netconf);
        assert!(out.status.success(), "ADD {name}: {out:?}");
    }

    // Pods got the active (built-in) policy's groups: one group, the node's.
    let groups: Vec<Value> = get(&agent, "/v1/pool")["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["group"].clone())
        .collect();
    assert_eq!(groups, vec![json!([NODE_SG])]);

    let sg = role(&agent, "security-groups");
    assert_eq!(sg["source"], "builtin", "{sg}");
    let shadow = &sg["shadow"];
    assert_eq!(shadow["policy"], "strict", "{sg}");
    assert_eq!(shadow["disagreements"], 2, "{sg}");
    let recent = shadow["recent"].as_array().expect("recent");
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0]["input"], "pod e2e/a");
    assert_eq!(recent[0]["active"], json!({ "ok": [NODE_SG] }));
    assert_eq!(
        recent[0]["shadow"],
        json!({ "ok": ["sg-0123456789abcdef0"] })
    );
    let metrics = curl(&agent, "/metrics");
    let line =
        r#"weft_policy_shadow_disagreements_total{role="security-groups",policy="strict"} 2"#;
    assert!(metrics.contains(line), "{line} in:\n{metrics}");

    // `weftd status` prints the same.
    let status = std::process::Command::new(weftd_binary())
        .args(["status", "--socket"])
        .arg(agent.socket())
        .output()
        .expect("weftd status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(
        text.contains("shadow strict") && text.contains("2 disagreements"),
        "{text}"
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn eval_live_prints_the_candidates_decisions_next_to_the_active_ones() {
    let agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.0.0");
    let pod = TestNetns::new("live-a");
    let out = agent.cni("ADD", "ctr-live", &pod.path(), "live", &netconf);
    assert!(out.status.success(), "ADD: {out:?}");

    let eval = |policy: &str, settings: &str| {
        let out = std::process::Command::new(weftd_binary())
            .args([
                "policy",
                "eval",
                "--live",
                "--policy",
                policy,
                "--settings",
                settings,
            ])
            .arg("--socket")
            .arg(agent.socket())
            .output()
            .expect("weftd policy eval --live");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };

    let rule =
        r#"{"rules": [{"namespaces": ["e2e"], "security-groups": ["sg-0123456789abcdef0"]}]}"#;
    let text = eval(SG_SELECTOR, rule);
    for expected in [
        "security-groups: pod e2e/live  [differs]",
        &format!(r#"  active:    {{"ok":["{NODE_SG}"]}}"#),
        r#"  candidate: {"ok":["sg-0123456789abcdef0"]}"#,
        "1 security-groups input(s), 1 decided differently",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    // The default pool policy as Wasm decides as the built-in does.
    let text = eval(WARM_POOL, "{}");
    assert!(
        text.contains(&format!("pool-sizing: group {NODE_SG}")),
        "{text}"
    );
    assert!(text.contains("  candidate: {"), "{text}");
    assert!(text.contains("input(s), 0 decided differently"), "{text}");
}

/// SIGHUP re-reads the modules of the main configuration: a replaced file
/// takes over, a broken one is refused with the last good one kept.
#[test]
#[ignore = "needs root: network namespaces"]
fn sighup_reloads_the_modules_of_the_main_configuration() {
    let files = tempfile::tempdir().expect("module dir");
    let module = files.path().join("pool.wasm");
    std::fs::write(&module, read(WARM_POOL)).expect("module");
    let agent = TestAgent::start(
        "m5.large",
        &format!(
            "[policies.pool-sizing]\nname = \"configured\"\nmodule = \"{}\"\n",
            module.display()
        ),
    );
    let hangup = || {
        let pid = agent.pid().expect("weftd runs");
        let killed = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
    };
    let pool = role(&agent, "pool-sizing");
    assert_eq!(pool["source"], "config", "{pool}");
    assert_eq!(pool["sha256"], json!(sha256(WARM_POOL)), "{pool}");

    put(&module, &read(VPC_CNI_COMPAT));
    hangup();
    wait_for(&agent, "the replaced module in force", || {
        role(&agent, "pool-sizing")["sha256"] == json!(sha256(VPC_CNI_COMPAT))
    });

    put(&module, b"\0asm garbage");
    hangup();
    wait_for(&agent, "the broken module refused", || {
        role(&agent, "pool-sizing")["last-refusal"].is_object()
    });
    let pool = role(&agent, "pool-sizing");
    assert_eq!(pool["sha256"], json!(sha256(VPC_CNI_COMPAT)), "{pool}");
    assert!(
        pool["last-refusal"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[policies.pool-sizing] reload refused")),
        "{pool}"
    );
    assert_eq!(agent.log().matches("agent ready").count(), 1, "no restart");
}
