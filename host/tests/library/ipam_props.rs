//! Property tests of the pool datastore and its checkpoint: random
//! sequences of pod adds and deletes, scale-up and scale-down as the cloud
//! would carry them out, time passing, and agent restarts (the datastore is
//! dropped and rebuilt from the checkpoint on disk and the cloud's
//! inventory). After every step:
//!
//! * no address is assigned twice, and the datastore's assignments are
//!   exactly the model's (no assignment is lost, even across restarts);
//! * a pod's address is on an ENI of its security-group set;
//! * every address the cloud reports is in the pool (assigned, cooling,
//!   free or being released) and the pool has no other;
//! * an address released by a pod stays cooling for the whole cooldown;
//! * nothing handed back to the cloud was assigned or cooling.

use ipnet::Ipv4Net;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;
use weft_host::ipam::{
    AddressState, AssignmentKey, Datastore, Eni, IpamConfig, IpamError, Now, PodMeta, SgSet,
};
use weft_host::state::{Checkpoint, StateDir};

const COOLDOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Op {
    Assign { pod: u8, db: bool },
    Release { pod: u8 },
    AddIps { eni: u8, n: u8 },
    AddPrefix { eni: u8 },
    AddEni { db: bool, ips: u8, prefixes: u8 },
    BeginReleaseIps { eni: u8, n: u8 },
    BeginReleasePrefixes { eni: u8, n: u8 },
    FinishRelease { which: u8, succeed: bool },
    ReleaseEni { eni: u8 },
    Advance { secs: u8 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..16, any::<bool>()).prop_map(|(pod, db)| Op::Assign { pod, db }),
        4 => (0u8..16).prop_map(|pod| Op::Release { pod }),
        2 => (0u8..6, 1u8..4).prop_map(|(eni, n)| Op::AddIps { eni, n }),
        1 => (0u8..6).prop_map(|eni| Op::AddPrefix { eni }),
        1 => (any::<bool>(), 0u8..4, 0u8..2)
            .prop_map(|(db, ips, prefixes)| Op::AddEni { db, ips, prefixes }),
        2 => (0u8..6, 1u8..5).prop_map(|(eni, n)| Op::BeginReleaseIps { eni, n }),
        1 => (0u8..6, 1u8..3).prop_map(|(eni, n)| Op::BeginReleasePrefixes { eni, n }),
        2 => (any::<u8>(), any::<bool>())
            .prop_map(|(which, succeed)| Op::FinishRelease { which, succeed }),
        1 => (0u8..6).prop_map(|eni| Op::ReleaseEni { eni }),
        3 => (1u8..40).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Restart),
    ]
}

fn node_sg() -> SgSet {
    SgSet::new(["sg-node"])
}

fn db_sg() -> SgSet {
    SgSet::new(["sg-db"])
}

fn key(pod: u8) -> AssignmentKey {
    AssignmentKey::new("weft", format!("c{pod}"), "eth0")
}

fn prefix_addresses(p: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(p.network())..=u32::from(p.broadcast())).map(Ipv4Addr::from)
}

/// A release handed to the cloud and not yet answered.
#[derive(Debug)]
struct InFlight {
    eni: String,
    ips: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Net>,
}

/// The cloud, the agent's durable state, and what the test expects.
struct World {
    now: Now,
    state: StateDir,
    config: IpamConfig,
    store: Datastore,
    /// What EC2 has attached to the node.
    cloud: BTreeMap<String, Eni>,
    next_ip: u32,
    next_prefix: u32,
    next_device: u32,
    /// The last checkpoint written (the agent writes it on every assign and
    /// release, before answering).
    checkpoint: Vec<u8>,
    /// Expected assignments: key → (address, group).
    assigned: HashMap<AssignmentKey, (Ipv4Addr, SgSet)>,
    /// Expected cooldowns: address → when it was released.
    released: HashMap<Ipv4Addr, Now>,
    in_flight: Vec<InFlight>,
}

impl World {
    fn new(state: StateDir) -> Self {
        let now = Now::system();
        let config = IpamConfig {
            cooldown: COOLDOWN,
            ..IpamConfig::new(node_sg())
        };
        let mut world = World {
            now,
            state,
            store: Datastore::new(config.clone()),
            config,
            cloud: BTreeMap::new(),
            next_ip: u32::from(Ipv4Addr::new(10, 1, 0, 1)),
            next_prefix: u32::from(Ipv4Addr::new(10, 2, 0, 0)),
            next_device: 0,
            checkpoint: Vec::new(),
            assigned: HashMap::new(),
            released: HashMap::new(),
            in_flight: Vec::new(),
        };
        world.add_eni(false, 3, 0);
        world.checkpoint = Checkpoint::of(&world.store, now).to_json();
        world
    }

    fn fresh_ips(&mut self, n: u8) -> Vec<Ipv4Addr> {
        (0..n)
            .map(|_| {
                self.next_ip += 1;
                Ipv4Addr::from(self.next_ip)
            })
            .collect()
    }

    fn fresh_prefixes(&mut self, n: u8) -> Vec<Ipv4Net> {
        (0..n)
            .map(|_| {
                self.next_prefix += 16;
                Ipv4Net::new(Ipv4Addr::from(self.next_prefix), 28).unwrap()
            })
            .collect()
    }

    fn eni_id(&self, index: u8) -> Option<String> {
        let ids: Vec<&String> = self.cloud.keys().collect();
        (!ids.is_empty()).then(|| ids[usize::from(index) % ids.len()].clone())
    }

    fn add_eni(&mut self, db: bool, ips: u8, prefixes: u8) {
        let device_index = self.next_device;
        self.next_device += 1;
        let eni = Eni {
            id: format!("eni-{device_index:03}"),
            device_index,
            subnet_id: "subnet-1".into(),
            mac: format!("02:00:00:00:01:{device_index:02x}"),
            primary: device_index == 0,
            primary_ip: Ipv4Addr::new(10, 0, 0, u8::try_from(device_index % 250).unwrap()),
            security_groups: if db { db_sg() } else { node_sg() },
            ips: self.fresh_ips(ips),
            prefixes: self.fresh_prefixes(prefixes),
            attached_at: self.now.wall,
        };
        self.store.add_eni(eni.clone()).unwrap();
        self.cloud.insert(eni.id.clone(), eni);
    }

    fn save_checkpoint(&mut self) {
        self.checkpoint = Checkpoint::of(&self.store, self.now).to_json();
    }

    fn is_cooling(&self, ip: Ipv4Addr) -> bool {
        self.released
            .get(&ip)
            .is_some_and(|at| self.now.mono < at.mono + COOLDOWN)
    }

    /// Checks that nothing about to go back to EC2 is assigned or cooling.
    fn check_handed_back(&self, ips: &[Ipv4Addr]) {
        let held: HashSet<Ipv4Addr> = self.assigned.values().map(|(ip, _)| *ip).collect();
        for ip in ips {
            assert!(!held.contains(ip), "{ip} is assigned but goes back to EC2");
            assert!(
                !self.is_cooling(*ip),
                "{ip} is cooling but goes back to EC2"
            );
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Assign { pod, db } => {
                let group = if db { db_sg() } else { node_sg() };
                let meta = PodMeta {
                    namespace: "ns".into(),
                    name: format!("p{pod}"),
                    uid: format!("u{pod}"),
                };
                match self.store.assign(key(pod), &group, meta, self.now) {
                    Ok(placed) => {
                        if let Some((ip, _)) = self.assigned.get(&key(pod)) {
                            assert_eq!(placed.ip, *ip, "a repeated ADD must get the same address");
                            assert!(!placed.fresh);
                        } else {
                            assert!(placed.fresh);
                            assert!(
                                !self.is_cooling(placed.ip),
                                "{} handed out while cooling",
                                placed.ip
                            );
                            let eni = &self.cloud[&placed.eni_id];
                            assert_eq!(eni.security_groups, group);
                            self.assigned.insert(key(pod), (placed.ip, group));
                            self.released.remove(&placed.ip);
                        }
                        self.save_checkpoint();
                    }
                    Err(IpamError::NoFreeAddress { .. }) => {
                        assert!(!self.assigned.contains_key(&key(pod)));
                    }
                    Err(e) => panic!("assign: {e}"),
                }
            }
            Op::Release { pod } => {
                let got = self.store.release(&key(pod), self.now);
                let expected = self.assigned.remove(&key(pod)).map(|(ip, _)| ip);
                assert_eq!(got.map(|a| a.ip), expected);
                if let Some(ip) = expected {
                    self.released.insert(ip, self.now);
                }
                self.save_checkpoint();
            }
            Op::AddIps { eni, n } => {
                let Some(id) = self.eni_id(eni) else { return };
                let ips = self.fresh_ips(n);
                self.store.add_ips(&id, &ips).unwrap();
                self.cloud.get_mut(&id).unwrap().ips.extend(ips);
            }
            Op::AddPrefix { eni } => {
                let Some(id) = self.eni_id(eni) else { return };
                let prefixes = self.fresh_prefixes(1);
                self.store.add_prefixes(&id, &prefixes).unwrap();
                self.cloud.get_mut(&id).unwrap().prefixes.extend(prefixes);
            }
            Op::AddEni { db, ips, prefixes } => self.add_eni(db, ips, prefixes),
            Op::BeginReleaseIps { eni, n } => {
                let Some(id) = self.eni_id(eni) else { return };
                let ips = self
                    .store
                    .begin_release_ips(&id, u32::from(n), self.now.mono)
                    .unwrap();
                self.check_handed_back(&ips);
                self.in_flight.push(InFlight {
                    eni: id,
                    ips,
                    prefixes: vec![],
                });
            }
            Op::BeginReleasePrefixes { eni, n } => {
                let Some(id) = self.eni_id(eni) else { return };
                let prefixes = self
                    .store
                    .begin_release_prefixes(&id, u32::from(n), self.now.mono)
                    .unwrap();
                let addresses: Vec<Ipv4Addr> =
                    prefixes.iter().flat_map(|p| prefix_addresses(*p)).collect();
                self.check_handed_back(&addresses);
                self.in_flight.push(InFlight {
                    eni: id,
                    ips: vec![],
                    prefixes,
                });
            }
            Op::FinishRelease { which, succeed } => {
                if self.in_flight.is_empty() {
                    return;
                }
                let f = self
                    .in_flight
                    .remove(usize::from(which) % self.in_flight.len());
                if succeed {
                    self.cloud_forget(&f);
                    self.store
                        .remove_ips(&f.eni, &f.ips, self.now.mono)
                        .unwrap();
                    self.store
                        .remove_prefixes(&f.eni, &f.prefixes, self.now.mono)
                        .unwrap();
                } else {
                    self.store
                        .abort_release(&f.eni, &f.ips, &f.prefixes)
                        .unwrap();
                }
            }
            Op::ReleaseEni { eni } => {
                let Some(id) = self.eni_id(eni) else { return };
                if self.in_flight.iter().any(|f| f.eni == id) {
                    return;
                }
                if self.store.begin_release_eni(&id, self.now).is_ok() {
                    let eni = &self.cloud[&id];
                    assert!(!eni.primary, "the primary ENI must never be released");
                    let addresses: Vec<Ipv4Addr> = eni
                        .ips
                        .iter()
                        .copied()
                        .chain(eni.prefixes.iter().flat_map(|p| prefix_addresses(*p)))
                        .collect();
                    self.check_handed_back(&addresses);
                    self.store.remove_eni(&id, self.now.mono).unwrap();
                    self.cloud.remove(&id);
                }
            }
            Op::Advance { secs } => self.now = self.now.advance(Duration::from_secs(secs.into())),
            Op::Restart => self.restart(),
        }
    }

    /// Makes the cloud forget what a release gave back.
    fn cloud_forget(&mut self, f: &InFlight) {
        let eni = self.cloud.get_mut(&f.eni).unwrap();
        eni.ips.retain(|ip| !f.ips.contains(ip));
        eni.prefixes.retain(|p| !f.prefixes.contains(p));
    }

    /// The agent dies and starts again. EC2 carried out every release that
    /// was in flight (the worst case: the agent never heard back).
    fn restart(&mut self) {
        for f in std::mem::take(&mut self.in_flight) {
            self.cloud_forget(&f);
        }
        std::fs::write(self.state.checkpoint_path(), &self.checkpoint).unwrap();
        // Leave a torn temp file behind, as a crash in mid-write would.
        std::fs::write(
            self.state.checkpoint_path().with_extension("json.tmp"),
            b"{\"ver",
        )
        .unwrap();
        let checkpoint = self.state.load_checkpoint().unwrap();
        let inventory: Vec<Eni> = self.cloud.values().cloned().collect();
        let (store, corrections) = Datastore::rebuild(
            self.config.clone(),
            &inventory,
            checkpoint.allocations,
            &checkpoint.cooling,
            &checkpoint.given_back,
            self.now,
        );
        let dropped: Vec<String> = corrections
            .iter()
            .filter(|c| c.to_string().contains("dropped"))
            .map(ToString::to_string)
            .collect();
        assert!(
            dropped.is_empty(),
            "a restart lost assignments: {dropped:?}"
        );
        self.store = store;
    }

    fn check(&self) {
        let now = self.now.mono;
        // Assignments: exactly the model's, no address twice.
        let mut seen = HashSet::new();
        let mut count = 0;
        for a in self.store.assignments() {
            count += 1;
            assert!(seen.insert(a.ip), "{} assigned twice", a.ip);
            let (ip, group) = &self.assigned[&a.key];
            assert_eq!(a.ip, *ip);
            let info = self.store.address(a.ip, now).unwrap();
            assert_eq!(info.state, AddressState::Assigned(a.key.clone()));
            assert_eq!(&self.cloud[&info.eni_id].security_groups, group);
        }
        assert_eq!(count, self.assigned.len());
        // Every cloud address is in the pool, on the right ENI; no other is.
        let mut cloud_addresses = 0;
        for eni in self.cloud.values() {
            let addresses = eni
                .ips
                .iter()
                .copied()
                .chain(eni.prefixes.iter().flat_map(|p| prefix_addresses(*p)));
            for ip in addresses {
                cloud_addresses += 1;
                let info = self
                    .store
                    .address(ip, now)
                    .unwrap_or_else(|| panic!("{ip} of {} is not in the pool", eni.id));
                assert_eq!(info.eni_id, eni.id);
                if self.is_cooling(ip) {
                    assert!(
                        matches!(info.state, AddressState::Cooling { .. }),
                        "{ip} should be cooling, is {:?}",
                        info.state
                    );
                }
            }
        }
        let pool_addresses: usize = self
            .store
            .enis()
            .iter()
            .map(|e| e.ips.len() + 16 * e.prefixes.len())
            .sum();
        assert_eq!(pool_addresses, cloud_addresses);
        assert_eq!(self.store.enis().len(), self.cloud.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn pool_invariants_hold_across_any_sequence(ops in proptest::collection::vec(op(), 1..80)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut world = World::new(StateDir::open(tmp.path().join("state")).unwrap());
        for op in ops {
            world.apply(op);
            world.check();
        }
        world.restart();
        world.check();
    }
}
