//! Pod setup/teardown latency of the plumbing layer, in process (no CNI
//! exec, no agent round trip): 50 pods set up, then torn down, one at a
//! time, in a throw-away node namespace. Needs root.
//!
//! `cargo bench -p weft-host --bench plumbing` prints p50/p90 of
//! * ADD: `setup_pod`;
//! * DEL: `teardown_pod` as the agent answers it (rules and route removed,
//!   veth removal started in the background);
//! * DEL+wait: `teardown_pod` plus waiting for the veth to be gone.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use weft_host::plumbing::{Plumbing, PlumbingConfig, PodNetwork};
use weft_tests::support::netns::{TestNetns, root_or_skip};

const PODS: u8 = 50;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    // Nearest rank; `samples` is never empty here.
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

fn report(what: &str, samples: &mut [Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<9} n={:<3} p50 {:>7.3} ms   p90 {:>7.3} ms",
        samples.len(),
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.9))
    );
}

fn pod(ns: &TestNetns, i: u8) -> PodNetwork {
    PodNetwork {
        netns: ns.path(),
        ifname: "eth0".into(),
        pod_namespace: "bench".into(),
        pod_name: format!("pod-{i}"),
        ip: Ipv4Addr::new(10, 0, 1, 10 + i).into(),
        eni_table: (i % 2 == 1).then_some(2),
        mtu: None,
    }
}

async fn round(
    plumbing: &Plumbing,
    pods: &[PodNetwork],
    wait: bool,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut add = Vec::new();
    let mut del = Vec::new();
    for pod in pods {
        let start = Instant::now();
        plumbing.setup_pod(pod).await.expect("setup_pod");
        add.push(start.elapsed());
    }
    for pod in pods {
        let start = Instant::now();
        let removal = plumbing.teardown_pod(pod).await.expect("teardown_pod");
        if wait {
            removal.wait().await.expect("veth removal");
        }
        del.push(start.elapsed());
    }
    (add, del)
}

#[tokio::main]
async fn main() {
    if !root_or_skip("plumbing bench") {
        return;
    }
    let node = TestNetns::new("bnode");
    let config = PlumbingConfig {
        node_netns: Some(node.path()),
        ..Default::default()
    };
    let plumbing = Plumbing::new(config).await.expect("plumbing");
    let namespaces: Vec<TestNetns> = (0..PODS)
        .map(|i| TestNetns::new(&format!("b{i}")))
        .collect();
    let pods: Vec<PodNetwork> = namespaces
        .iter()
        .zip(0..)
        .map(|(ns, i)| pod(ns, i))
        .collect();

    // Warm-up (first thread spawns, page faults); not reported.
    round(&plumbing, &pods[..5], true).await;

    let (mut add, mut del) = round(&plumbing, &pods, false).await;
    report("ADD", &mut add);
    report("DEL", &mut del);
    // Let the background removals finish before the next round.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, mut del_wait) = round(&plumbing, &pods, true).await;
    report("DEL+wait", &mut del_wait);
}
