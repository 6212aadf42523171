//! How long a node with 250 pods takes to serve again after an agent
//! restart: load the checkpoint from disk and rebuild the datastore from the
//! cloud's inventory (the EC2 describe call itself is not included). Also
//! measures one checkpoint write, which every pod ADD and DEL pays.
//!
//! Run: `cargo bench -p weft-host --bench restart`. The state directory is
//! a temporary directory, or `$WEFT_BENCH_DIR` to measure on the file
//! system the agent will really use.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use weft_host::ipam::{AssignmentKey, Datastore, Eni, IpamConfig, Now, PodMeta, SgSet};
use weft_host::state::{Checkpoint, DurableDatastore, StateDir};

const PODS: u32 = 250;
const ROUNDS: usize = 50;

/// Ten ENIs with 29 secondary IPs each (290 addresses), or one ENI with 16
/// prefixes (256 addresses).
fn inventory(prefix_mode: bool, now: Now) -> Vec<Eni> {
    let sg = SgSet::new(["sg-node"]);
    let enis: u32 = if prefix_mode { 1 } else { 10 };
    (0..enis)
        .map(|i| {
            let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8);
            Eni {
                id: format!("eni-{i:017x}"),
                device_index: i,
                subnet_id: "subnet-0123456789abcdef0".into(),
                mac: format!("02:00:00:00:00:{i:02x}"),
                primary: i == 0,
                primary_ip: Ipv4Addr::from(base + 1),
                security_groups: sg.clone(),
                ips: if prefix_mode {
                    vec![]
                } else {
                    (0..29).map(|n| Ipv4Addr::from(base + 10 + n)).collect()
                },
                prefixes: if prefix_mode {
                    (0..16)
                        .map(|n| Ipv4Net::new(Ipv4Addr::from(base + (1 << 12) + n * 16), 28))
                        .collect::<Result<_, _>>()
                        .expect("aligned /28")
                } else {
                    vec![]
                },
                attached_at: now.wall - Duration::from_secs(3600),
            }
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn run(prefix_mode: bool, dir: &StateDir) {
    let now = Now::system();
    let config = IpamConfig::new(SgSet::new(["sg-node"]));
    let inventory = inventory(prefix_mode, now);
    let mut store = Datastore::new(config.clone());
    store.reconcile_with_inventory(&inventory);
    for n in 0..PODS {
        let pod = PodMeta {
            namespace: "bench".into(),
            name: format!("pod-{n}"),
            uid: format!("0b4c6a1e-0000-4000-8000-{n:012}"),
        };
        let key = AssignmentKey::new("weft", format!("{n:064x}"), "eth0");
        store
            .assign(key, &SgSet::new(["sg-node"]), pod, now)
            .expect("the inventory has room for every pod");
    }

    let writes: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            dir.save_checkpoint(&Checkpoint::of(&store, now))
                .expect("write checkpoint");
            start.elapsed()
        })
        .collect();

    let restarts: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let checkpoint = dir.load_checkpoint().expect("load checkpoint");
            let (rebuilt, corrections) = Datastore::rebuild(
                config.clone(),
                &inventory,
                checkpoint.allocations,
                &checkpoint.cooling,
                &checkpoint.given_back,
                Now::system(),
            );
            let elapsed = start.elapsed();
            assert_eq!(rebuilt.assignments().count(), PODS as usize);
            assert_eq!(
                corrections.len(),
                inventory.len(),
                "one 'took ENI' line per ENI"
            );
            elapsed
        })
        .collect();

    // One pod ADD and its DEL through the durable datastore, with 250 pods
    // already on the node, as many times as the pool has room (released
    // addresses cool down).
    let bytes = std::fs::metadata(dir.checkpoint_path()).map_or(0, |m| m.len());
    let mut durable = DurableDatastore::new(store, dir);
    let room = durable
        .datastore()
        .free_count(&SgSet::new(["sg-node"]), now.mono)
        .min(20);
    let add_del: Vec<Duration> = (0..room)
        .map(|n| {
            let key = AssignmentKey::new("weft", format!("extra-{n}"), "eth0");
            let start = Instant::now();
            durable
                .assign(
                    key.clone(),
                    &SgSet::new(["sg-node"]),
                    PodMeta::default(),
                    now,
                )
                .expect("the pool has room");
            durable.release(&key, now).expect("release");
            start.elapsed()
        })
        .collect();

    let mode = if prefix_mode {
        "prefix mode (1 ENI x 16 prefixes)"
    } else {
        "secondary IPs (10 ENIs x 29 IPs)"
    };
    println!(
        "{PODS} pods, {mode}: restart (load checkpoint + rebuild) median {:?}, max {:?}; \
         checkpoint write ({bytes} bytes, fsync'd) median {:?}, max {:?}; \
         durable ADD+DEL median {:?}",
        median(restarts.clone()),
        restarts.iter().max().copied().unwrap_or_default(),
        median(writes.clone()),
        writes.iter().max().copied().unwrap_or_default(),
        median(add_del),
    );
}

fn main() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let base = std::env::var_os("WEFT_BENCH_DIR").map_or_else(|| tmp.path().to_owned(), Into::into);
    let dir = StateDir::open(base.join("weft-bench-state")).expect("open state directory");
    println!(
        "state directory: {} ({} build)",
        dir.path().display(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimised"
        }
    );
    run(false, &dir);
    run(true, &dir);
}
