//! Agent restarts through the real state directory: assignments written
//! before a crash come back whatever step of the next write the crash hit,
//! and EC2 operations in flight are handed back.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use weft_host::ipam::{AssignmentKey, Correction, Datastore, Eni, IpamConfig, Now, PodMeta, SgSet};
use weft_host::state::{Checkpoint, Operation, StateDir, StateError};

fn node_sg() -> SgSet {
    SgSet::new(["sg-node"])
}

fn inventory(now: Now) -> Vec<Eni> {
    vec![Eni {
        id: "eni-0".into(),
        device_index: 0,
        subnet_id: "subnet-1".into(),
        mac: "02:00:00:00:00:01".into(),
        primary: true,
        primary_ip: Ipv4Addr::new(10, 0, 0, 1),
        security_groups: node_sg(),
        ips: (10..40).map(|l| Ipv4Addr::new(10, 0, 0, l)).collect(),
        prefixes: vec![],
        attached_at: now.wall - Duration::from_secs(600),
    }]
}

fn add_pod(store: &mut Datastore, n: u32, now: Now) {
    let pod = PodMeta {
        namespace: "default".into(),
        name: format!("pod-{n}"),
        uid: format!("uid-{n}"),
    };
    store
        .assign(
            AssignmentKey::new("weft", format!("c{n}"), "eth0"),
            &node_sg(),
            pod,
            now,
        )
        .unwrap();
}

/// A temporary directory and the state directory's path inside it.
fn temp_state() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state");
    (tmp, path)
}

/// An agent's first start: a new state directory at `path` and a datastore
/// that has taken in the inventory.
fn first_start(path: &Path, now: Now) -> (StateDir, Datastore) {
    let dir = StateDir::open(path).unwrap();
    let mut store = Datastore::new(IpamConfig::new(node_sg()));
    store.reconcile_with_inventory(&inventory(now));
    (dir, store)
}

/// What a restarted agent sees: a new lock on the directory, the
/// checkpoint, and the cloud's inventory.
fn restart(path: &Path, now: Now) -> (StateDir, Datastore, Vec<Correction>) {
    restart_with(path, &inventory(now), now)
}

/// [`restart`] with the cloud reporting `inventory`.
fn restart_with(
    path: &Path,
    inventory: &[Eni],
    now: Now,
) -> (StateDir, Datastore, Vec<Correction>) {
    let dir = StateDir::open(path).unwrap();
    let checkpoint = dir.load_checkpoint().unwrap();
    let (store, corrections) = Datastore::rebuild(
        IpamConfig::new(node_sg()),
        inventory,
        checkpoint.allocations,
        &checkpoint.cooling,
        &checkpoint.given_back,
        now,
    );
    (dir, store, corrections)
}

#[test]
fn assignments_survive_a_crash_at_any_step_of_the_next_write() {
    let (_tmp, path) = temp_state();
    let now = Now::system();
    let (dir, mut store) = first_start(&path, now);
    for n in 0..20 {
        add_pod(&mut store, n, now);
        dir.save_checkpoint(&Checkpoint::of(&store, now)).unwrap();
    }
    let saved = Checkpoint::of(&store, now);
    // A release just before the crash: it must still cool down afterwards.
    store.release(&AssignmentKey::new("weft", "c0", "eth0"), now);
    dir.save_checkpoint(&Checkpoint::of(&store, now)).unwrap();
    let before_crash = Checkpoint::of(&store, now);
    assert_ne!(saved.to_json(), before_crash.to_json());

    // The next ADD's write is interrupted while the temp file is written.
    add_pod(&mut store, 20, now);
    let next = Checkpoint::of(&store, now).to_json();
    let temp = dir.checkpoint_path().with_extension("json.tmp");
    drop(dir);
    let later = now.advance(Duration::from_secs(5));
    for len in [0, 1, next.len() / 3, next.len() - 1, next.len()] {
        std::fs::write(&temp, &next[..len]).unwrap();
        let (dir, restored, corrections) = restart(&path, later);
        // Compared as written: timestamps are kept to the millisecond.
        assert_eq!(
            Checkpoint::of(&restored, later).to_json(),
            before_crash.to_json(),
            "temp cut at {len}"
        );
        assert_eq!(
            corrections.len(),
            1,
            "only 'took ENI eni-0': {corrections:?}"
        );
        let released = Ipv4Addr::new(10, 0, 0, 10);
        assert!(
            restored
                .cooling(later.mono)
                .iter()
                .any(|c| c.ip == released),
            "the address released before the crash still cools down"
        );
        drop(dir);
    }
    // The rename was reached: the new state, whole.
    std::fs::rename(&temp, path.join("ipam-checkpoint.json")).unwrap();
    let (_dir, restored, _) = restart(&path, later);
    assert_eq!(restored.assignments().count(), 20);
    assert!(
        restored
            .assignment(&AssignmentKey::new("weft", "c20", "eth0"))
            .is_some()
    );
}

#[test]
fn an_address_lost_while_the_agent_was_down_is_reported() {
    let (_tmp, path) = temp_state();
    let now = Now::system();
    {
        let (dir, mut store) = first_start(&path, now);
        add_pod(&mut store, 1, now);
        dir.save_checkpoint(&Checkpoint::of(&store, now)).unwrap();
    }
    let mut shrunk = inventory(now);
    shrunk[0]
        .ips
        .retain(|ip| *ip != Ipv4Addr::new(10, 0, 0, 10));
    let (_dir, store, corrections) = restart_with(&path, &shrunk, now);
    assert_eq!(store.assignments().count(), 0);
    let text: Vec<String> = corrections.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t
            == "dropped assignment of 10.0.0.10 to pod default/pod-1 (weft/c1/eth0): \
                the address is on no ENI attached to the node"),
        "{text:#?}"
    );
}

#[test]
fn ec2_operations_in_flight_are_handed_back_after_a_crash() {
    let (_tmp, path) = temp_state();
    let create = Operation::CreateEni {
        subnet_id: "subnet-1".into(),
        security_groups: node_sg(),
        ips: 9,
        prefixes: 0,
    };
    let (attach_id, delete_id) = {
        let dir = StateDir::open(&path).unwrap();
        let (mut journal, pending) = dir.open_journal().unwrap();
        assert!(pending.is_empty());
        let created = journal.begin(create, SystemTime::now()).unwrap();
        // CreateNetworkInterface answered eni-9: the attach intent is
        // recorded before the create one is finished.
        let attach = journal
            .begin(
                Operation::AttachEni {
                    eni_id: "eni-9".into(),
                    device_index: 1,
                },
                SystemTime::now(),
            )
            .unwrap();
        journal.finish(&created.id).unwrap();
        let delete = journal
            .begin(
                Operation::DeleteEni {
                    eni_id: "eni-7".into(),
                },
                SystemTime::now(),
            )
            .unwrap();
        // The agent dies here.
        (attach.id, delete.id)
    };
    let dir = StateDir::open(&path).unwrap();
    let (journal, pending) = dir.open_journal().unwrap();
    let ids: Vec<_> = pending.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, vec![attach_id, delete_id]);
    assert_eq!(journal.pending(), pending.as_slice());
    assert!(matches!(
        pending[0].op,
        Operation::AttachEni { ref eni_id, device_index: 1 } if eni_id == "eni-9"
    ));
    // The directory stays locked while this agent runs.
    assert!(matches!(
        StateDir::open(&path),
        Err(StateError::Locked { .. })
    ));
}
