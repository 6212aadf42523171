//! Unit tests of the datastore.

use super::*;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::time::Duration;
use weft_policy_sdk::pool::InstanceLimits;

fn sg(ids: &[&str]) -> SgSet {
    SgSet::new(ids.iter().copied())
}

fn default_sg() -> SgSet {
    sg(&["sg-node"])
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn t0() -> Now {
    Now::system()
}

/// An ENI attached two minutes before `now`.
fn eni(id: &str, device_index: u32, group: SgSet, ips: &[u8], now: Now) -> Eni {
    Eni {
        id: id.into(),
        device_index,
        subnet_id: "subnet-1".into(),
        mac: format!("02:00:00:00:00:{device_index:02x}"),
        primary: device_index == 0,
        primary_ip: Ipv4Addr::new(10, 0, 9, u8::try_from(device_index).unwrap()),
        security_groups: group,
        ips: ips.iter().map(|l| ip(*l)).collect(),
        prefixes: vec![],
        attached_at: now.wall - Duration::from_secs(120),
    }
}

fn prefix(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn key(c: &str) -> AssignmentKey {
    AssignmentKey::new("weft", c, "eth0")
}

fn pod(name: &str) -> PodMeta {
    PodMeta {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn store() -> Datastore {
    Datastore::new(IpamConfig::new(default_sg()))
}

fn limits() -> InstanceLimits {
    InstanceLimits {
        max_enis: 3,
        ipv4_per_eni: 10,
        prefix_delegation: true,
        max_pods: 29,
    }
}

fn assign(ds: &mut Datastore, c: &str, group: &SgSet, now: Now) -> Result<Placement, IpamError> {
    ds.assign(key(c), group, pod(c), now)
}

#[test]
fn places_pods_only_on_enis_of_their_group() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2], now))
        .unwrap();
    ds.add_eni(eni("eni-1", 1, sg(&["sg-db"]), &[10], now))
        .unwrap();
    let p = assign(&mut ds, "a", &sg(&["sg-db"]), now).unwrap();
    assert_eq!(
        (p.ip, p.eni_id.as_str(), p.device_index),
        (ip(10), "eni-1", 1)
    );
    assert!(!p.primary_eni && p.fresh);
    let err = assign(&mut ds, "b", &sg(&["sg-db"]), now).unwrap_err();
    assert!(
        matches!(&err, IpamError::NoFreeAddress { why, .. } if why.contains("1 assigned")),
        "{err}"
    );
    let err = assign(&mut ds, "c", &sg(&["sg-web"]), now).unwrap_err();
    assert!(
        err.to_string()
            .contains("no ENI with exactly these security groups"),
        "{err}"
    );
    assert!(err.to_string().contains("sg-web"), "{err}");
    let p = assign(&mut ds, "d", &default_sg(), now).unwrap();
    assert!(p.primary_eni);
}

#[test]
fn assign_is_idempotent_per_key_and_never_hands_out_an_address_twice() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2, 3], now))
        .unwrap();
    let first = assign(&mut ds, "a", &default_sg(), now).unwrap();
    let again = assign(&mut ds, "a", &sg(&["sg-other"]), now).unwrap();
    assert_eq!(again.ip, first.ip);
    assert!(!again.fresh);
    let other_if = ds
        .assign(
            AssignmentKey::new("weft", "a", "eth1"),
            &default_sg(),
            pod("a"),
            now,
        )
        .unwrap();
    assert_ne!(other_if.ip, first.ip);
    let third = assign(&mut ds, "b", &default_sg(), now).unwrap();
    let mut ips = vec![first.ip, other_if.ip, third.ip];
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3);
    assert!(assign(&mut ds, "c", &default_sg(), now).is_err());
    assert_eq!(ds.assignments().count(), 3);
}

#[test]
fn released_addresses_cool_down_before_reuse() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1], now))
        .unwrap();
    let a = assign(&mut ds, "a", &default_sg(), now).unwrap();
    let released = ds.release(&key("a"), now).unwrap();
    assert_eq!(released.ip, a.ip);
    assert_eq!(released.pod, pod("a"));
    assert!(
        ds.release(&key("a"), now).is_none(),
        "a second DEL is a no-op"
    );
    assert!(ds.release(&key("never"), now).is_none());
    assert!(matches!(
        ds.address(a.ip, now.mono).unwrap().state,
        AddressState::Cooling { .. }
    ));
    let err = assign(
        &mut ds,
        "b",
        &default_sg(),
        now.advance(Duration::from_secs(29)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("1 cooling down"), "{err}");
    assert_eq!(ds.cooling(now.mono).len(), 1);
    let later = now.advance(Duration::from_secs(30));
    assert!(ds.cooling(later.mono).is_empty());
    assert_eq!(assign(&mut ds, "b", &default_sg(), later).unwrap().ip, a.ip);
}

#[test]
fn a_zero_cooldown_frees_at_once() {
    let now = t0();
    let mut ds = Datastore::new(IpamConfig {
        cooldown: Duration::ZERO,
        ..IpamConfig::new(default_sg())
    });
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1], now))
        .unwrap();
    assign(&mut ds, "a", &default_sg(), now).unwrap();
    ds.release(&key("a"), now);
    assert_eq!(assign(&mut ds, "b", &default_sg(), now).unwrap().ip, ip(1));
}

#[test]
fn packs_pods_onto_the_fullest_eni_then_the_lowest_device_index() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-b", 2, default_sg(), &[20, 21, 22], now))
        .unwrap();
    ds.add_eni(eni("eni-a", 1, default_sg(), &[10, 11, 12], now))
        .unwrap();
    // Tie (nothing assigned): the lowest device index, lowest address.
    assert_eq!(
        assign(&mut ds, "p1", &default_sg(), now).unwrap().ip,
        ip(10)
    );
    // eni-a now has more assigned: it keeps winning.
    assert_eq!(
        assign(&mut ds, "p2", &default_sg(), now).unwrap().ip,
        ip(11)
    );

    let mut ds = store();
    ds.add_eni(eni("eni-b", 2, default_sg(), &[20, 21, 22], now))
        .unwrap();
    assign(&mut ds, "b1", &default_sg(), now).unwrap();
    assign(&mut ds, "b2", &default_sg(), now).unwrap();
    ds.add_eni(eni("eni-a", 1, default_sg(), &[10, 11, 12], now))
        .unwrap();
    // eni-b holds 2 pods, eni-a none: packing beats the device index.
    assert_eq!(
        assign(&mut ds, "b3", &default_sg(), now).unwrap().eni_id,
        "eni-b"
    );
    assert_eq!(
        assign(&mut ds, "a1", &default_sg(), now).unwrap().eni_id,
        "eni-a"
    );
}

#[test]
fn inside_an_eni_fills_started_prefixes_first() {
    let now = t0();
    let mut ds = store();
    let mut e = eni("eni-1", 1, default_sg(), &[], now);
    e.prefixes = vec![prefix("10.0.16.0/28"), prefix("10.0.16.16/28")];
    ds.add_eni(e).unwrap();
    ds.add_ips("eni-1", &[ip(5)]).unwrap();
    // All containers empty: lowest address (the secondary IP).
    assert_eq!(assign(&mut ds, "a", &default_sg(), now).unwrap().ip, ip(5));
    let b = assign(&mut ds, "b", &default_sg(), now).unwrap();
    assert_eq!(b.ip, Ipv4Addr::new(10, 0, 16, 0));
    assert_eq!(b.prefix, Some(prefix("10.0.16.0/28")));
    // Free the first prefix's address, occupy the second prefix: the
    // second now holds more and is filled first.
    ds.add_prefixes("eni-1", &[prefix("10.0.16.32/28")])
        .unwrap();
    let mut ds2 = ds.clone();
    ds2.release(&key("b"), now);
    let c = assign(&mut ds2, "c", &default_sg(), now).unwrap();
    assert_eq!(
        c.ip,
        Ipv4Addr::new(10, 0, 16, 1),
        "the cooling address keeps its prefix warm"
    );
    // Network and broadcast addresses of a prefix are usable.
    for i in 0..15 {
        assign(&mut ds, &format!("f{i}"), &default_sg(), now).unwrap();
    }
    assert_eq!(
        ds.assignment(&key("f14")).unwrap().ip,
        Ipv4Addr::new(10, 0, 16, 15)
    );
}

#[test]
fn custom_networking_keeps_pods_off_the_primary_eni() {
    let now = t0();
    let mut ds = Datastore::new(IpamConfig {
        primary_eni_serves_pods: false,
        ..IpamConfig::new(default_sg())
    });
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2], now))
        .unwrap();
    let err = assign(&mut ds, "a", &default_sg(), now).unwrap_err();
    assert!(matches!(err, IpamError::NoFreeAddress { .. }));
    assert_eq!(ds.groups(), vec![default_sg()]);
    let state = ds.pool_state(&default_sg(), &limits(), 1, now);
    assert!(state.enis.is_empty());
    assert_eq!(state.node_enis, 1);
    assert_eq!(state.node_addresses, 0);
    ds.add_eni(eni("eni-1", 1, default_sg(), &[10], now))
        .unwrap();
    assert_eq!(
        assign(&mut ds, "a", &default_sg(), now).unwrap().eni_id,
        "eni-1"
    );
}

#[test]
fn pool_state_describes_the_group() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2, 3], now))
        .unwrap();
    let mut e = eni("eni-1", 1, sg(&["sg-db"]), &[10], now);
    e.prefixes = vec![prefix("10.0.16.0/28")];
    ds.add_eni(e).unwrap();
    assign(&mut ds, "a", &default_sg(), now).unwrap();
    assign(&mut ds, "b", &default_sg(), now).unwrap();
    ds.release(&key("b"), now.advance(Duration::from_secs(1)));
    assign(&mut ds, "c", &sg(&["sg-db"]), now).unwrap();

    let later = now.advance(Duration::from_secs(5));
    let state = ds.pool_state(&default_sg(), &limits(), 2, later);
    assert_eq!(state.group, vec!["sg-node".to_owned()]);
    assert!(state.default_group);
    assert_eq!(state.enis.len(), 1);
    let e0 = &state.enis[0];
    assert_eq!((e0.ips, e0.prefixes, e0.assigned, e0.cooling), (3, 0, 1, 1));
    assert_eq!(e0.age_seconds, 125);
    assert_eq!(e0.free(), 1);
    assert_eq!(state.node_enis, 2);
    assert_eq!(state.node_addresses, 3 + 1 + 16);
    assert_eq!(state.node_assigned, 2);
    assert_eq!(state.pending_adds, 2);
    assert_eq!(state.limits, limits());
    assert_eq!(state.activity.adds_last_minute, 2);
    assert_eq!(state.activity.removes_last_minute, 1);
    assert_eq!(state.activity.seconds_since_last_add, Some(5));

    let db = ds.pool_state(&sg(&["sg-db"]), &limits(), 0, later);
    assert!(!db.default_group);
    assert_eq!(
        (db.enis[0].ips, db.enis[0].prefixes, db.enis[0].assigned),
        (1, 1, 1)
    );
    assert_eq!(db.activity.adds_last_minute, 1);
    assert_eq!(ds.free_count(&sg(&["sg-db"]), later.mono), 16);
    assert_eq!(ds.free_count(&default_sg(), later.mono), 1);
    assert_eq!(ds.groups(), vec![sg(&["sg-db"]), default_sg()]);
}

#[test]
fn growth_budget_stops_at_max_pods() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2, 3, 4], now))
        .unwrap();
    let b = ds.growth_budget(29, now.mono);
    assert_eq!((b.ips, b.prefixes), (25, 2));
    assert_eq!(
        ds.growth_budget(4, now.mono),
        GrowthBudget {
            ips: 0,
            prefixes: 0
        }
    );
    assert_eq!(ds.growth_budget(2, now.mono).ips, 0);
    assert_eq!(ds.growth_budget(5, now.mono).prefixes, 1);
}

#[test]
fn scale_down_never_takes_assigned_or_cooling_addresses() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2, 3, 4], now))
        .unwrap();
    let a = assign(&mut ds, "a", &default_sg(), now).unwrap();
    let b = assign(&mut ds, "b", &default_sg(), now).unwrap();
    ds.release(&key("b"), now);
    let picked = ds.begin_release_ips("eni-0", 10, now.mono).unwrap();
    assert_eq!(picked, vec![ip(4), ip(3)]);
    assert!(!picked.contains(&a.ip) && !picked.contains(&b.ip));
    assert_eq!(
        ds.address(ip(4), now.mono).unwrap().state,
        AddressState::Releasing
    );
    // Releasing addresses are not handed out.
    assert!(assign(&mut ds, "c", &default_sg(), now).is_err());
    let state = ds.pool_state(&default_sg(), &limits(), 0, now);
    assert_eq!(
        state.enis[0].ips, 2,
        "addresses being released are not counted"
    );
    // The call failed: they come back.
    ds.abort_release("eni-0", &picked, &[]).unwrap();
    assert_eq!(ds.free_count(&default_sg(), now.mono), 2);
    let picked = ds.begin_release_ips("eni-0", 1, now.mono).unwrap();
    assert_eq!(picked, vec![ip(4)]);
    ds.remove_ips("eni-0", &picked, now.mono).unwrap();
    assert!(ds.address(ip(4), now.mono).is_none());
    // Removing held addresses is refused, without any change.
    let err = ds
        .remove_ips("eni-0", &[ip(3), a.ip], now.mono)
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::AddressInUse {
                state: "assigned",
                ..
            }
        ),
        "{err}"
    );
    assert!(ds.address(ip(3), now.mono).is_some());
    let err = ds.remove_ips("eni-0", &[b.ip], now.mono).unwrap_err();
    assert!(err.to_string().contains("cooling down"), "{err}");
    let err = ds.remove_ips("eni-0", &[ip(99)], now.mono).unwrap_err();
    assert!(matches!(err, IpamError::NotOnEni { .. }));
    // Once the cooldown is over the released address may go back.
    let later = now.advance(Duration::from_secs(31));
    let picked = ds.begin_release_ips("eni-0", 10, later.mono).unwrap();
    assert_eq!(picked, vec![ip(3), b.ip]);
}

#[test]
fn only_prefixes_without_held_addresses_are_released() {
    let now = t0();
    let mut ds = store();
    let mut e = eni("eni-1", 1, default_sg(), &[], now);
    e.prefixes = vec![
        prefix("10.0.16.0/28"),
        prefix("10.0.16.16/28"),
        prefix("10.0.16.32/28"),
    ];
    ds.add_eni(e).unwrap();
    assign(&mut ds, "a", &default_sg(), now).unwrap(); // in 10.0.16.0/28
    ds.assign(key("b"), &default_sg(), pod("b"), now).unwrap();
    ds.release(&key("b"), now); // still cooling, same prefix
    let picked = ds.begin_release_prefixes("eni-1", 5, now.mono).unwrap();
    assert_eq!(
        picked,
        vec![prefix("10.0.16.32/28"), prefix("10.0.16.16/28")]
    );
    let state = ds.pool_state(&default_sg(), &limits(), 0, now);
    assert_eq!(state.enis[0].prefixes, 1);
    assert_eq!(ds.free_count(&default_sg(), now.mono), 14);
    let err = ds
        .remove_prefixes("eni-1", &[prefix("10.0.16.0/28")], now.mono)
        .unwrap_err();
    assert!(matches!(err, IpamError::AddressInUse { .. }));
    ds.remove_prefixes("eni-1", &picked, now.mono).unwrap();
    assert_eq!(
        ds.eni("eni-1").unwrap().prefixes,
        vec![prefix("10.0.16.0/28")]
    );
    assert!(ds.address(Ipv4Addr::new(10, 0, 16, 40), now.mono).is_none());
}

#[test]
fn eni_release_rules() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1], now))
        .unwrap();
    let mut young = eni("eni-1", 1, default_sg(), &[10, 11], now);
    young.attached_at = now.wall - Duration::from_secs(10);
    ds.add_eni(young).unwrap();
    let why = |ds: &Datastore, id, now| ds.eni_releasable(id, now).unwrap_err().to_string();
    assert!(why(&ds, "eni-0", now).contains("primary ENI"));
    assert!(why(&ds, "eni-1", now).contains("attached 10 s ago, the minimum age is 60 s"));
    assert!(matches!(
        ds.eni_releasable("eni-x", now),
        Err(IpamError::UnknownEni(_))
    ));
    let old = now.advance(Duration::from_secs(60));
    ds.assign(key("a"), &default_sg(), pod("a"), old).unwrap(); // eni-0 (1 ip)
    ds.assign(key("b"), &default_sg(), pod("b"), old).unwrap(); // eni-1
    assert!(why(&ds, "eni-1", old).contains("1 pod(s) have addresses on it"));
    ds.release(&key("b"), old);
    assert!(why(&ds, "eni-1", old).contains("cooling down"));
    let later = old.advance(Duration::from_secs(30));
    ds.begin_release_eni("eni-1", later).unwrap();
    assert!(why(&ds, "eni-1", later).contains("already being released"));
    // A draining ENI takes no pod and is not offered to the policy.
    ds.release(&key("a"), later);
    let after = later.advance(Duration::from_secs(30));
    assert_eq!(ds.free_count(&default_sg(), after.mono), 1);
    let state = ds.pool_state(&default_sg(), &limits(), 0, after);
    assert_eq!(state.enis.len(), 1);
    assert_eq!(state.node_enis, 2);
    ds.abort_release_eni("eni-1").unwrap();
    assert_eq!(ds.free_count(&default_sg(), after.mono), 3);
    ds.begin_release_eni("eni-1", after).unwrap();
    let removed = ds.remove_eni("eni-1", after.mono).unwrap();
    assert_eq!(removed.ips, vec![ip(10), ip(11)]);
    assert!(ds.address(ip(10), after.mono).is_none());
    assert!(ds.eni("eni-1").is_none());
}

#[test]
fn remove_eni_refuses_held_addresses() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-1", 1, default_sg(), &[10], now))
        .unwrap();
    assign(&mut ds, "a", &default_sg(), now).unwrap();
    assert!(matches!(
        ds.remove_eni("eni-1", now.mono),
        Err(IpamError::AddressInUse { .. })
    ));
    assert!(ds.eni("eni-1").is_some());
}

#[test]
fn add_refuses_conflicts_and_invalid_prefixes_without_changing_anything() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2], now))
        .unwrap();
    assert_eq!(
        ds.add_eni(eni("eni-0", 0, default_sg(), &[], now)),
        Err(IpamError::DuplicateEni("eni-0".into()))
    );
    let err = ds
        .add_eni(eni("eni-1", 1, default_sg(), &[3, 2], now))
        .unwrap_err();
    assert_eq!(
        err,
        IpamError::AddressConflict {
            ip: ip(2),
            owner: "eni-0".into()
        }
    );
    assert!(ds.eni("eni-1").is_none());
    assert!(ds.address(ip(3), now.mono).is_none());

    let mut bad = eni("eni-1", 1, default_sg(), &[], now);
    bad.prefixes = vec![prefix("10.0.16.8/28")];
    assert!(matches!(
        ds.add_eni(bad.clone()),
        Err(IpamError::InvalidPrefix(_))
    ));
    bad.prefixes = vec![prefix("10.0.16.0/27")];
    assert!(
        ds.add_eni(bad.clone())
            .unwrap_err()
            .to_string()
            .contains("aligned /28")
    );
    // An address inside the ENI's own prefix.
    bad.prefixes = vec![prefix("10.0.0.0/28")];
    bad.ips = vec![Ipv4Addr::new(10, 0, 0, 200)];
    assert!(matches!(
        ds.add_eni(bad),
        Err(IpamError::AddressConflict { .. })
    ));

    ds.add_eni(eni("eni-1", 1, default_sg(), &[3], now))
        .unwrap();
    // Re-applying the same result is harmless; a conflict changes nothing.
    ds.add_ips("eni-1", &[ip(3), ip(4), ip(4)]).unwrap();
    assert_eq!(ds.eni("eni-1").unwrap().ips, vec![ip(3), ip(4)]);
    assert!(ds.add_ips("eni-1", &[ip(5), ip(1)]).is_err());
    assert!(ds.address(ip(5), now.mono).is_none());
    assert!(matches!(
        ds.add_ips("eni-9", &[ip(9)]),
        Err(IpamError::UnknownEni(_))
    ));
    ds.add_prefixes("eni-1", &[prefix("10.0.16.0/28")]).unwrap();
    ds.add_prefixes("eni-1", &[prefix("10.0.16.0/28")]).unwrap();
    assert_eq!(ds.eni("eni-1").unwrap().prefixes.len(), 1);
    let err = ds
        .add_prefixes("eni-0", &[prefix("10.0.16.0/28")])
        .unwrap_err();
    assert!(matches!(err, IpamError::AddressConflict { .. }));
    assert!(ds.add_prefixes("eni-1", &[prefix("10.0.0.0/28")]).is_err());
}

#[test]
fn inventory_reconciliation_reports_every_correction() {
    let now = t0();
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2], now))
        .unwrap();
    ds.add_eni(eni("eni-1", 1, sg(&["sg-db"]), &[10, 11], now))
        .unwrap();
    ds.add_eni(eni("eni-2", 2, sg(&["sg-db"]), &[20], now))
        .unwrap();
    assign(&mut ds, "on-1", &default_sg(), now).unwrap(); // 10.0.0.1
    assign(&mut ds, "on-2", &default_sg(), now).unwrap(); // 10.0.0.2
    ds.assign(key("db"), &sg(&["sg-db"]), pod("db"), now)
        .unwrap(); // 10.0.0.10
    ds.assign(key("gone"), &sg(&["sg-db"]), pod("gone"), now)
        .unwrap(); // 10.0.0.11
    let p = ds.assign(key("x"), &sg(&["sg-db"]), pod("x"), now).unwrap();
    assert_eq!(p.eni_id, "eni-2");

    // EC2 now: eni-0 lost .2 and gained .3; eni-1 moved .11 to a new eni-3
    // and changed security groups; eni-2 is gone.
    let mut e1 = eni("eni-1", 1, sg(&["sg-db", "sg-x"]), &[10], now);
    e1.prefixes = vec![prefix("10.0.16.0/28")];
    let inventory = vec![
        eni("eni-0", 0, default_sg(), &[1, 3], now),
        e1,
        eni("eni-3", 3, sg(&["sg-db"]), &[11], now),
    ];
    let corrections = ds.reconcile_with_inventory(&inventory);
    let text: Vec<String> = corrections.iter().map(ToString::to_string).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("removed ENI eni-2"), "{text:#?}");
    assert!(
        has("dropped assignment of 10.0.0.20 to pod default/x"),
        "{text:#?}"
    );
    assert!(
        has("dropped assignment of 10.0.0.2 to pod default/on-2"),
        "{text:#?}"
    );
    assert!(
        has("dropped assignment of 10.0.0.11 to pod default/gone"),
        "{text:#?}"
    );
    assert!(
        has("ENI eni-1: security groups changed from sg-db to sg-db,sg-x"),
        "{text:#?}"
    );
    assert!(has("ENI eni-0 lost 1 pod addresses"), "{text:#?}");
    assert!(
        has("ENI eni-0 has 1 pod addresses the pool did not know"),
        "{text:#?}"
    );
    assert!(has("ENI eni-1 has 16 pod addresses"), "{text:#?}");
    assert!(has("took ENI eni-3 with 1 pod addresses"), "{text:#?}");
    assert!(has("ENI eni-1 lost 1 pod addresses"), "{text:#?}");
    assert_eq!(text.len(), 10, "{text:#?}");

    assert_eq!(ds.assignments().count(), 2);
    assert_eq!(ds.assignment(&key("db")).unwrap().ip, ip(10));
    assert_eq!(ds.address(ip(11), now.mono).unwrap().eni_id, "eni-3");
    assert_eq!(
        ds.address(ip(11), now.mono).unwrap().state,
        AddressState::Free
    );
    assert_eq!(
        ds.address(ip(3), now.mono).unwrap().state,
        AddressState::Free
    );
    assert!(ds.release(&key("gone"), now).is_none());
    // A second pass over the same inventory changes nothing.
    assert!(ds.reconcile_with_inventory(&inventory).is_empty());
}

#[test]
fn inventory_conflicts_are_ignored_and_reported() {
    let now = t0();
    let mut ds = store();
    let mut twice = eni("eni-1", 1, default_sg(), &[10], now);
    twice.prefixes = vec![prefix("10.0.16.4/28")];
    let inventory = vec![eni("eni-0", 0, default_sg(), &[1, 10], now), twice];
    let corrections = ds.reconcile_with_inventory(&inventory);
    let text: Vec<String> = corrections.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t
            .contains("ignored 10.0.0.10 of ENI eni-1: address 10.0.0.10 is already on ENI eni-0")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("ignored 10.0.16.4/28")),
        "{text:#?}"
    );
    assert_eq!(ds.address(ip(10), now.mono).unwrap().eni_id, "eni-0");
}

#[test]
fn rebuild_lays_the_checkpoint_over_the_inventory() {
    let now = t0();
    let inventory = vec![eni("eni-0", 0, default_sg(), &[1, 2, 3, 4], now)];
    let at = |c: &str, l: u8| Assignment {
        key: key(c),
        ip: ip(l),
        pod: pod(c),
        assigned_at: now.wall,
        assigned_boot: now.boot,
    };
    let allocations = vec![
        at("a", 1),
        at("a", 1), // repeated line: harmless
        at("lost", 99),
        at("dup", 1),
        at("a", 2), // same key, other address
        at("b", 2),
    ];
    let cooling = vec![
        CoolingAddress {
            ip: ip(3),
            released_at: now.wall - Duration::from_secs(20),
        },
        CoolingAddress {
            ip: ip(4),
            released_at: now.wall - Duration::from_secs(40),
        },
    ];
    let (mut ds, corrections) = Datastore::rebuild(
        IpamConfig::new(default_sg()),
        &inventory,
        allocations,
        &cooling,
        &GivenBack::default(),
        now,
    );
    let text: Vec<String> = corrections.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 5, "{text:#?}");
    assert!(text[0].contains("took ENI eni-0 with 4"), "{text:#?}");
    assert!(
        text[1].contains("10.0.0.99") && text[1].contains("on no ENI"),
        "{text:#?}"
    );
    // Its pod may still run: the address is not handed out meanwhile.
    assert!(text[2].contains("quarantined 10.0.0.99"), "{text:#?}");
    assert!(
        text[3].contains("already assigned to weft/a/eth0"),
        "{text:#?}"
    );
    assert!(text[4].contains("key already holds 10.0.0.1"), "{text:#?}");
    assert_eq!(ds.assignment(&key("a")).unwrap().ip, ip(1));
    assert_eq!(ds.assignment(&key("b")).unwrap().ip, ip(2));
    // .3 has 10 s of cooldown left, .4 none.
    match ds.address(ip(3), now.mono).unwrap().state {
        AddressState::Cooling { until } => assert_eq!(until - now.mono, Duration::from_secs(10)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ds.address(ip(4), now.mono).unwrap().state,
        AddressState::Free
    );
    assert_eq!(assign(&mut ds, "c", &default_sg(), now).unwrap().ip, ip(4));
    assert_eq!(
        assign(
            &mut ds,
            "d",
            &default_sg(),
            now.advance(Duration::from_secs(10))
        )
        .unwrap()
        .ip,
        ip(3)
    );
}

/// A store with grace 10 s and 3 confirming reads, one ENI with .1 and .2,
/// pod "a" on .1.
fn observed(now: Now) -> Datastore {
    let mut ds = store();
    ds.add_eni(eni("eni-0", 0, default_sg(), &[1, 2], now))
        .unwrap();
    assign(&mut ds, "a", &default_sg(), now).unwrap();
    ds
}

#[test]
fn one_stale_read_drops_nothing_and_hands_nothing_doubtful_out() {
    let now = t0();
    let mut ds = observed(now);
    // A read without .1 and .2 (stale, or EC2 really took them).
    let read = vec![eni("eni-0", 0, default_sg(), &[], now)];
    assert!(ds.observe_inventory(&read, now.mono).is_empty());
    assert_eq!(ds.assignment(&key("a")).unwrap().ip, ip(1));
    // .2 is doubtful: not handed out until a read shows it again.
    assert!(assign(&mut ds, "b", &default_sg(), now).is_err());
    let back = vec![eni("eni-0", 0, default_sg(), &[1, 2], now)];
    assert!(ds.observe_inventory(&back, now.mono).is_empty());
    assert_eq!(assign(&mut ds, "b", &default_sg(), now).unwrap().ip, ip(2));
}

#[test]
fn an_address_leaves_after_enough_reads_over_the_grace_period_and_a_pods_is_quarantined() {
    let now = t0();
    let mut ds = observed(now);
    let read = vec![eni("eni-0", 0, default_sg(), &[2], now)];
    // Three reads within a second: not yet (the grace period is 10 s).
    for ms in [0, 500, 1000] {
        let at = now.mono + Duration::from_millis(ms);
        assert!(ds.observe_inventory(&read, at).is_empty());
    }
    let later = now.mono + Duration::from_secs(11);
    let corrections = ds.observe_inventory(&read, later);
    let text: Vec<String> = corrections.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("dropped assignment of 10.0.0.1")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|t| t.contains("quarantined 10.0.0.1")),
        "{text:#?}"
    );
    assert_eq!(ds.quarantined(), vec![ip(1)]);
    // It comes back in a read: still not handed out while quarantined.
    let back = vec![eni("eni-0", 0, default_sg(), &[1, 2], now)];
    ds.observe_inventory(&back, later);
    assert!(ds.address(ip(1), later).is_none());
    // The node no longer routes it: the next read brings it back as free.
    assert_eq!(ds.lift_quarantine(&[ip(1)]).len(), 1);
    ds.observe_inventory(&back, later);
    assert_eq!(ds.address(ip(1), later).unwrap().state, AddressState::Free);
}

#[test]
fn reads_do_not_count_while_weft_just_changed_the_eni() {
    let now = t0();
    let mut ds = observed(now);
    ds.add_ips("eni-0", &[ip(3)]).unwrap();
    ds.touch("eni-0", now.mono);
    // Reads lag the assign: .3 is missing for longer than the grace period
    // counted from the first miss, but Weft changed the ENI within it.
    let stale = vec![eni("eni-0", 0, default_sg(), &[1, 2], now)];
    for s in [0, 4, 8] {
        assert!(
            ds.observe_inventory(&stale, now.mono + Duration::from_secs(s))
                .is_empty()
        );
    }
    assert!(ds.address(ip(3), now.mono).is_some());
}

#[test]
fn a_released_address_is_not_taken_back_from_a_stale_read() {
    let now = t0();
    let mut ds = observed(now);
    ds.begin_release_ips("eni-0", 1, now.mono).unwrap();
    ds.remove_ips("eni-0", &[ip(2)], now.mono).unwrap();
    // The read still shows .2 (from before the unassign).
    let stale = vec![eni("eni-0", 0, default_sg(), &[1, 2], now)];
    ds.observe_inventory(&stale, now.mono + Duration::from_secs(1));
    assert!(ds.address(ip(2), now.mono).is_none(), "came back as free");
    // Long after the grace period a read that still shows it is believed.
    ds.observe_inventory(&stale, now.mono + Duration::from_secs(11));
    assert!(ds.address(ip(2), now.mono).is_some());
}

#[test]
fn an_eni_missing_from_reads_leaves_only_when_confirmed() {
    let now = t0();
    let mut ds = observed(now);
    ds.add_eni(eni("eni-1", 1, default_sg(), &[10], now))
        .unwrap();
    let without = vec![eni("eni-0", 0, default_sg(), &[1, 2], now)];
    ds.observe_inventory(&without, now.mono);
    assert!(ds.eni("eni-1").is_some());
    ds.observe_inventory(&without, now.mono + Duration::from_secs(5));
    assert!(ds.eni("eni-1").is_some());
    let corrections = ds.observe_inventory(&without, now.mono + Duration::from_secs(10));
    assert!(ds.eni("eni-1").is_none(), "{corrections:?}");
}
