use super::*;
use weft_policy_sdk::pool::{Eni, InstanceLimits};
use weft_policy_sdk::testing::eni;

/// m5.large: 3 ENIs x 10 addresses, 9 IPs per ENI for pods.
fn state(enis: Vec<Eni>, pending: u32) -> PoolState {
    PoolState {
        group: vec!["sg-1".into()],
        default_group: true,
        node_enis: enis.len() as u32,
        node_addresses: enis.iter().map(|e| e.ips).sum(),
        node_assigned: enis.iter().map(|e| e.assigned).sum(),
        enis,
        limits: InstanceLimits {
            max_enis: 3,
            ipv4_per_eni: 10,
            prefix_delegation: true,
            max_pods: 29,
        },
        pending_adds: pending,
        activity: Default::default(),
    }
}

fn settings(json: &str) -> Settings {
    parse_settings(json).unwrap()
}

#[test]
fn warm_eni_fills_one_eni_per_pass_then_attaches_one_full_eni() {
    let s = Settings::default();
    // Empty primary: one call fills it (tryAssignIPs with a whole ENI's worth).
    let d = decide(&s, &state(vec![eni(0, 0, 0, 0, 600)], 0));
    assert_eq!(
        d.changes,
        vec![EniChange {
            eni_id: "eni-0".into(),
            add_ips: 9,
            ..Default::default()
        }]
    );
    assert!(d.create.is_empty());
    // Full primary with 2 pods: available 7 < 9, so one new full ENI.
    let d = decide(&s, &state(vec![eni(0, 9, 2, 0, 600)], 0));
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 9,
            prefixes: 0
        }]
    );
    // Available counts cooling addresses, as ipamd's AvailableAddresses.
    let d = decide(&s, &state(vec![eni(0, 9, 0, 5, 600)], 0));
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn waiting_pods_are_not_seen() {
    // ipamd has no notion of ADDs waiting: 9 available meets the target.
    let d = decide(&Settings::default(), &state(vec![eni(0, 9, 0, 0, 600)], 20));
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn warm_ip_target_asks_for_the_shortfall_and_releases_the_surplus() {
    let s = settings(r#"{"warm-ip-target": 3, "minimum-ip-target": 5}"#);
    // total 0: short max(3-0, 5-0) = 5.
    let d = decide(&s, &state(vec![eni(0, 0, 0, 0, 600)], 0));
    assert_eq!(d.changes[0].add_ips, 5);
    // Primary full, available 1 < 3: a new ENI with the shortfall only.
    let d = decide(&s, &state(vec![eni(0, 9, 8, 0, 600)], 0));
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 2,
            prefixes: 0
        }]
    );
    // 9 held, 1 assigned: over min(8-3, 9-5) = 4 released from the ENI.
    let d = decide(&s, &state(vec![eni(0, 9, 1, 0, 600)], 0));
    assert_eq!(d.changes[0].release_ips, 4);
}

#[test]
fn one_unused_old_eni_is_freed_per_pass() {
    let s = Settings::default();
    // 27 available >= (1 + 1) x 9: ENIs 1 and 2 are empty; only one goes,
    // the young one never.
    let enis = vec![
        eni(0, 9, 0, 0, 600),
        eni(1, 9, 0, 0, 600),
        eni(2, 9, 0, 0, 10),
    ];
    let d = decide(&s, &state(enis, 0));
    assert_eq!(d.release, vec!["eni-1".to_owned()]);
    // A cooling address keeps it.
    let enis = vec![
        eni(0, 9, 0, 0, 600),
        eni(1, 9, 0, 1, 600),
        eni(2, 9, 0, 0, 10),
    ];
    assert!(decide(&s, &state(enis, 0)).release.is_empty());
    // Under the ENI target's threshold nothing is freed.
    let enis = vec![eni(0, 9, 5, 0, 600), eni(1, 9, 0, 0, 600)];
    assert!(decide(&s, &state(enis, 0)).release.is_empty());
}

#[test]
fn an_eni_needed_for_the_warm_ip_target_stays() {
    let s = settings(r#"{"warm-ip-target": 5}"#);
    // The primary has 2 free: ENI 1 (5 free, no pods) is required.
    let enis = vec![eni(0, 9, 7, 0, 600), eni(1, 5, 0, 0, 600)];
    let d = decide(&s, &state(enis, 0));
    assert!(d.release.is_empty(), "{d:?}");
}
