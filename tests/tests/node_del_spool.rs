//! DEL while `weftd` is down (root only): the real `weft` plugin, unable to
//! reach the real `weftd` (killed), keeps the DEL in the spool beside the
//! socket and answers success, as the CNI spec asks; `weftd` carries it out
//! before it serves again: the address is free and the pod's plumbing gone.
//! A kept DEL older than a later ADD of the same attachment leaves the new
//! address alone, and hostile files in the spool are refused without harm.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weft_cni::spool::{DelSpool, WRITERS_LOCK};
use weft_tests::support::agent::{TestAgent, pod_ip, succeeded};
use weft_tests::support::netns::TestNetns;

/// Every file in the spool but its writers' lock, which stays.
fn spool_files(agent: &TestAgent) -> Vec<PathBuf> {
    let dir = DelSpool::beside(&agent.socket()).dir().to_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| f.file_name().is_some_and(|n| n != WRITERS_LOCK));
    files.sort();
    files
}

/// The state of `ip` in the datastore (`assigned`, `cooling`, `free`, ...).
fn address_state(agent: &TestAgent, ip: &str) -> String {
    agent.get_json("/v1/enis")["enis"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["addresses"].as_array().unwrap().clone())
        .find(|a| a["ip"] == ip)
        .map(|a| a["state"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| "not in the pool".into())
}

/// Waits (at most 30 s) until nothing on the node carries `ip` or pod
/// `name`'s veth: no Weft veth, no rule, no route.
fn assert_unwired(agent: &TestAgent, name: &str, ip: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let veth = |l: &Value| {
        l["ifalias"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("/{name}/")))
    };
    // The veth goes away in the background after DEL.
    while agent
        .node
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .any(veth)
    {
        assert!(Instant::now() < deadline, "the host veth of {name} stays");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rules = agent.node.ip_json(&["rule", "show"]).to_string();
    assert!(
        !rules.contains(&format!("\"{ip}\"")),
        "rules of {ip} left: {rules}"
    );
    let routes = agent.node.ip_json(&["route", "show", ip]);
    assert_eq!(routes, json!([]), "routes to {ip} left");
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_del_while_weftd_is_down_succeeds_and_weftd_carries_it_out_before_serving() {
    let mut agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.1.0");
    let pod = TestNetns::new("pod");
    let ip = pod_ip(&agent.cni_add("a", &pod, &netconf));

    agent.kill();
    let out = agent.cni("DEL", "ctr-a", &pod.path(), "a", &netconf);
    succeeded(&out);
    assert!(out.stdout.is_empty(), "DEL prints nothing on success");
    assert_eq!(spool_files(&agent).len(), 1, "the DEL is kept for weftd");
    // What a plugin killed between its write and its rename leaves (no
    // plugin holds the spool's writers' lock: its writer is gone).
    let leftover = spool_files(&agent)[0].with_file_name(".tmp-4194304-del-0.json");
    std::fs::write(&leftover, b"{\"version\":").unwrap();

    agent.spawn();
    agent.wait_serving();
    // Carried out before the API answered anything.
    assert_eq!(agent.get_json("/v1/pods"), json!([]), "the address is free");
    assert_ne!(address_state(&agent, &ip), "assigned");
    assert_eq!(
        spool_files(&agent),
        Vec::<PathBuf>::new(),
        "the spool is empty, the dead plugin's temporary file gone"
    );
    assert_unwired(&agent, "a", &ip);
    assert!(
        agent
            .log()
            .contains("carried out a DEL kept while weftd could not answer")
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_kept_del_leaves_a_later_add_alone_and_hostile_spool_files_are_refused() {
    let mut agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.1.0");
    let pod = TestNetns::new("pod");
    let first = pod_ip(&agent.cni_add("b", &pod, &netconf));
    agent.kill();
    agent.cni_del("b", &pod, &netconf);
    let kept = spool_files(&agent).pop().expect("the kept DEL");
    let stash = agent.dir.path().join("stash.json");
    std::fs::copy(&kept, &stash).unwrap();

    // Hostile files beside it: garbage, a link to a file elsewhere, a FIFO.
    let dir = kept.parent().unwrap().to_owned();
    std::fs::write(dir.join("del-garbage.json"), b"\x00{not json").unwrap();
    let target = agent.dir.path().join("precious");
    std::fs::write(&target, b"keep me").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("del-link.json")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(dir.join("del-fifo.json"))
        .status()
        .expect("mkfifo (coreutils)");
    assert!(fifo.success());

    agent.spawn();
    agent.wait_serving();
    assert_eq!(agent.get_json("/v1/pods"), json!([]), "{first} is free");
    assert_eq!(
        spool_files(&agent),
        Vec::<PathBuf>::new(),
        "refused files go"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    assert_eq!(
        agent
            .log()
            .matches("refused a file in the DEL spool")
            .count(),
        3
    );

    // The runtime adds the same attachment again; then the stale DEL
    // appears (a plugin that raced weftd's start): the new address stays.
    let again = pod_ip(&agent.cni_add("b", &pod, &netconf));
    std::fs::copy(&stash, &kept).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while kept.exists() {
        assert!(Instant::now() < deadline, "weftd never reads the spool");
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = agent.get_json("/v1/pods");
    assert_eq!(held[0]["ip"], json!(again), "{held}");
    assert_eq!(address_state(&agent, &again), "assigned");
    assert!(
        pod.ip_json(&["addr", "show", "dev", "eth0"])
            .to_string()
            .contains(&again)
    );
    assert!(
        agent
            .log()
            .contains("predates the attachment's current address")
    );

    agent.cni_del("b", &pod, &netconf);
    assert_eq!(agent.get_json("/v1/pods"), json!([]));
}

/// A DEL kept by an older plugin (entry format 1, which carries wall-clock
/// time only) and stamped later than the attachment's current address by
/// the wall clock, although it came first: the clock was an hour ahead when
/// the plugin kept it and NTP stepped it back before the runtime added the
/// attachment again. Wall clocks cannot order the two, so weftd leaves the
/// address alone rather than free a live pod's address.
#[test]
#[ignore = "needs root: network namespaces"]
fn a_kept_del_never_frees_a_later_address_whatever_the_wall_clock_says() {
    let agent = TestAgent::start("m5.large", "");
    let netconf = agent.netconf("1.1.0");
    let pod = TestNetns::new("pod");
    let ip = pod_ip(&agent.cni_add("c", &pod, &netconf));
    let hour_ahead = SystemTime::now() + Duration::from_secs(3600);
    let entry = json!({
        "version": 1,
        "spooled-at-ms": hour_ahead.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        "request": {"network": netconf["name"], "container_id": "ctr-c", "ifname": "eth0"},
    });
    let dir = DelSpool::beside(&agent.socket()).dir().to_owned();
    let kept = dir.join("del-from-an-older-plugin.json");
    std::fs::write(&kept, entry.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while kept.exists() {
        assert!(Instant::now() < deadline, "weftd never reads the spool");
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = agent.get_json("/v1/pods");
    assert_eq!(held[0]["ip"], json!(ip), "{held}");
    assert_eq!(address_state(&agent, &ip), "assigned");
    agent.cni_del("c", &pod, &netconf);
    assert_eq!(agent.get_json("/v1/pods"), json!([]));
}
