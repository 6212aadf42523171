use super::*;
use weft_policy_sdk::pool::{Activity, InstanceLimits};

fn eni(index: u32, ips: u32, assigned: u32, cooling: u32, age: u64) -> Eni {
    Eni {
        id: format!("eni-{index}"),
        device_index: index,
        subnet_id: "subnet-a".into(),
        ips,
        prefixes: 0,
        assigned,
        cooling,
        age_seconds: age,
    }
}

/// m5.2xlarge: 4 ENIs x 15 addresses (14 pod IPs each), 58 pods.
fn state(enis: Vec<Eni>, pending: u32, adds: u32, since: Option<u64>) -> PoolState {
    PoolState {
        group: vec!["sg-1".into()],
        default_group: true,
        node_enis: enis.len() as u32,
        node_addresses: enis.iter().map(|e| e.ips).sum(),
        node_assigned: enis.iter().map(|e| e.assigned).sum(),
        enis,
        limits: InstanceLimits {
            max_enis: 4,
            ipv4_per_eni: 15,
            prefix_delegation: true,
            max_pods: 58,
        },
        pending_adds: pending,
        activity: Activity {
            adds_last_minute: adds,
            removes_last_minute: 0,
            seconds_since_last_add: since,
        },
    }
}

#[test]
fn grows_for_the_last_minutes_adds_and_waiting_pods_in_one_batch() {
    let s = Settings::default();
    // 12 ADDs last minute, 3 waiting, 1 free: 14 short, one call on the
    // primary (its 4 free slots) and one new ENI for the other 10.
    let d = decide(&s, &state(vec![eni(0, 10, 9, 0, 600)], 3, 12, Some(1)));
    assert_eq!(
        d.changes,
        vec![EniChange {
            eni_id: "eni-0".into(),
            add_ips: 4,
            ..Default::default()
        }]
    );
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 10,
            prefixes: 0
        }]
    );
    // Cooling addresses are not warm.
    let d = decide(&s, &state(vec![eni(0, 14, 0, 14, 600)], 0, 0, None));
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 8,
            prefixes: 0
        }],
        "{d:?}"
    );
    // A small shortfall still asks for a whole batch.
    let d = decide(&s, &state(vec![eni(0, 2, 1, 0, 600)], 0, 0, Some(5)));
    assert_eq!(d.changes[0].add_ips, 8);
}

#[test]
fn keeps_an_enis_worth_while_busy_and_shrinks_to_the_target_when_quiet() {
    let s = Settings::default();
    // 28 free, target 2: busy keeps 2 + 14, so 12 go back.
    let enis = vec![eni(0, 14, 0, 0, 600), eni(1, 14, 0, 0, 600)];
    let d = decide(&s, &state(enis.clone(), 0, 0, Some(30)));
    let released: u32 = d.changes.iter().map(|c| c.release_ips).sum();
    assert_eq!(released, 12, "{d:?}");
    assert!(d.release.is_empty());
    // Quiet: 26 go, the secondary ENI as a whole.
    let d = decide(&s, &state(enis, 0, 0, Some(600)));
    assert_eq!(d.release, vec!["eni-1".to_owned()]);
    assert_eq!(d.changes[0].release_ips, 12);
    // A surplus under one batch stays.
    let d = decide(&s, &state(vec![eni(0, 9, 0, 0, 600)], 0, 0, None));
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn bad_settings_are_refused() {
    assert!(PredictivePool::configure(r#"{"batch": 0}"#).is_err());
    assert!(PredictivePool::configure(r#"{"window": 3}"#).is_err());
    assert!(PredictivePool::configure("{}").is_ok());
}
