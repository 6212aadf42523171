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
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_tests::support::agent::{TestAgent, ok_json, pod_ip};
use weft_tests::support::churn::{
    self, Churn, Counts, Runtime, assert_node_clean, delete_all, held, long, settle_and_check_live,
};
use weft_tests::support::netns::TestNetns;

/// Asserts that once no pod exists, nothing is left anywhere: nothing on
/// the node, and the simulated EC2 and the datastore agree on the node's
/// ENIs and addresses (no stray ENI).
fn assert_nothing_leaked(agent: &TestAgent) {
    assert_node_clean(agent);
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
    let datastore: BTreeMap<String, usize> = churn::datastore_addresses(agent)
        .into_iter()
        .map(|(id, ips)| (id, ips.len()))
        .collect();
    assert_eq!(ec2, datastore, "EC2's ENIs and addresses = the datastore's");
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
    let churn = Churn::start(&runtime, &counts, workers, slots_per_worker, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    while kills < target_kills || churn.ops() < target_ops {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        if kills < target_kills {
            agent.kill();
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            agent.spawn();
            agent.wait_serving();
        }
    }
    let (mut slots, churn) = churn.stop();
    let alive = settle_and_check_live(&agent, &runtime, &mut slots, &counts);

    // Every pod goes; then nothing is left anywhere.
    delete_all(&runtime, &mut slots, &counts);
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
