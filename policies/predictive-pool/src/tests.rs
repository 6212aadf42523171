use super::*;
use weft_policy_sdk::pool::{Activity, InstanceLimits};
use weft_policy_sdk::testing::eni;

/// m5.2xlarge: 4 ENIs x 15 addresses (14 pod IPs each), 58 pods; one
/// ADD seen `since` seconds ago, and the given history.
fn state(enis: Vec<Eni>, pending: u32, history: Vec<Minute>, since: Option<u64>) -> PoolState {
    PoolState {
        group: vec!["sg-1".into()],
        default_group: true,
        node_enis: enis.len() as u32,
        node_addresses: enis.iter().map(|e| e.ips).sum(),
        node_assigned: enis.iter().map(|e| e.assigned).sum::<u32>().max(1),
        enis,
        limits: InstanceLimits {
            max_enis: 4,
            ipv4_per_eni: 15,
            prefix_delegation: true,
            max_pods: 58,
        },
        pending_adds: pending,
        activity: Activity {
            adds_last_minute: history.first().map_or(0, |m| m.adds),
            removes_last_minute: 0,
            seconds_since_last_add: since,
            history,
        },
    }
}

/// A history of `minutes` minutes with `adds` ADDs at the given ages.
fn history(minutes: usize, adds: &[(usize, u32)]) -> Vec<Minute> {
    let mut h = vec![Minute::default(); minutes];
    for &(ago, n) in adds {
        h[ago].adds = n;
    }
    h
}

/// A history of `minutes` minutes with bursts of `adds` ADDs whose median
/// ADD came `age` seconds ago, for each `(age, adds)`.
fn timed(minutes: usize, bursts: &[(u32, u32)]) -> Vec<Minute> {
    let mut h = vec![Minute::default(); minutes];
    for &(age, adds) in bursts {
        h[(age / 60) as usize] = Minute {
            adds,
            removes: 0,
            median_add_age: Some(age),
        };
    }
    h
}

/// The size of the burst due, as `expected_burst` forecasts it.
fn due(history: &[Minute], early: u32, late: u32) -> Option<u32> {
    expected_burst(history, 6, early, late).map(|f| f.size)
}

/// The default settings without spare ENIs: the sizing alone.
fn sizing_only() -> Settings {
    Settings {
        spare_enis: 0,
        ..Settings::default()
    }
}

/// A minute of churn.
fn minute(adds: u32, removes: u32) -> Minute {
    Minute {
        adds,
        removes,
        ..Minute::default()
    }
}

fn added(d: &PoolDecision) -> Vec<(String, u32)> {
    d.changes
        .iter()
        .map(|c| (c.eni_id.clone(), c.add_ips))
        .collect()
}

#[test]
fn grows_for_recent_adds_filling_every_eni_it_touches() {
    let s = sizing_only();
    // 12 ADDs in the busier of the last two minutes, 3 waiting, 1 free:
    // 14 short. The primary's 4 free slots in
    // one call, then a new ENI, full.
    let d = decide(
        &s,
        &state(
            vec![eni(0, 10, 9, 0, 600)],
            3,
            history(5, &[(1, 12)]),
            Some(70),
        ),
    );
    assert_eq!(added(&d), vec![("eni-0".to_owned(), 4)]);
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 14,
            prefixes: 0
        }]
    );
}

/// While demand is steady EC2 is asked for the shortfall, and at least
/// min-warm a call; in a burst (here: the last minute busy) for every
/// touched ENI's whole room.
#[test]
fn tops_up_by_the_shortfall_while_steady_and_fills_enis_in_a_burst() {
    let s = sizing_only();
    let enis = vec![eni(0, 14, 11, 0, 600), eni(1, 0, 0, 0, 600)];
    // One address short of min-warm: min-warm (4) on the attached,
    // emptied ENI (one call, no attach), not one (a ramp asked one
    // address a call).
    let d = decide(&s, &state(enis.clone(), 0, history(5, &[]), Some(5)));
    assert_eq!(added(&d), vec![("eni-1".to_owned(), 4)]);
    assert!(d.reason.contains("topping up"), "{}", d.reason);
    // No room on an attached ENI: a new ENI with the shortfall only.
    let d = decide(&s, &state(vec![eni(0, 14, 13, 0, 600)], 0, vec![], Some(5)));
    assert!(added(&d).is_empty(), "{d:?}");
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 4,
            prefixes: 0
        }]
    );
    let mut larger = sizing_only();
    larger.min_warm = 6;
    let d = decide(
        &larger,
        &state(vec![eni(0, 14, 6, 0, 600)], 0, vec![], Some(5)),
    );
    assert!(d.is_noop(), "{d:?}");
    let d = decide(
        &larger,
        &state(vec![eni(0, 10, 5, 0, 600)], 0, vec![], Some(5)),
    );
    assert_eq!(added(&d), vec![("eni-0".to_owned(), 4)], "room for 4 only");
    // 8 ADDs in the last minute (busy: 6 above a usual 0): 5 short, and
    // ENI 1 is filled to its room.
    let d = decide(&s, &state(enis, 0, history(5, &[(0, 8)]), Some(5)));
    assert_eq!(added(&d), vec![("eni-1".to_owned(), 14)]);
    assert!(d.reason.starts_with("5 short"), "{}", d.reason);
}

/// A cooling address is back within the host's cooldown, before the
/// coming minute is over: it counts for that minute's demand, not for ADDs
/// waiting now, nor for a burst due now.
#[test]
fn cooling_addresses_count_for_the_coming_minute_only() {
    let s = sizing_only();
    let cooling = || vec![eni(0, 14, 2, 12, 600)];
    let d = decide(&s, &state(cooling(), 0, vec![], Some(5)));
    assert!(d.is_noop(), "{d:?}");
    let d = decide(&s, &state(cooling(), 1, vec![], Some(5)));
    assert_eq!(d.create.len(), 1, "{d:?}");
    // Bursts of 10 started 14 and 29 minutes ago: due in a minute.
    let due = history(40, &[(14, 10), (29, 10)]);
    let d = decide(&s, &state(cooling(), 0, due, Some(100)));
    assert_eq!(d.create.len(), 1, "{d:?}");
}

#[test]
fn finds_bursts_and_when_the_next_is_due() {
    // Bursts of 40 that came 900 and 1800 s ago (the second lasting two
    // minutes), background churn of 2 a minute.
    let mut h = timed(40, &[(900, 40), (1800, 35)]);
    h[29].adds = 7;
    for m in h.iter_mut().filter(|m| m.adds == 0) {
        m.adds = 2;
    }
    let burst = |age, size| Burst { age, size };
    assert_eq!(bursts(&h, 6), vec![burst(900, 40), burst(1800, 42)]);
    assert_eq!(
        expected_burst(&h, 6, 0, 0),
        Some(Forecast {
            size: 40,
            period: 900
        })
    );
    // Period 900 s: due now, so expected with any lead.
    assert_eq!(due(&h, 0, 0), Some(40));
    // 100 s earlier (every age 100 s less): due in 100 s.
    let earlier = timed(40, &[(800, 40), (1700, 40)]);
    assert_eq!(due(&earlier, 100, 0), Some(40));
    assert_eq!(due(&earlier, 99, 0), None);
    // 61 s overdue: no longer expected a minute late.
    let late = timed(40, &[(961, 40), (1861, 40)]);
    assert_eq!(due(&late, 0, 61), Some(40));
    assert_eq!(due(&late, 0, 60), None);
    // Without timing a burst came at its first minute's older end.
    let untimed = history(40, &[(14, 40), (29, 40)]);
    assert_eq!(bursts(&untimed, 6)[0].age, 14 * 60 + 59);
    assert_eq!(due(&untimed, 1, 0), Some(40));
    // One burst is no pattern; continuous churn is one long burst.
    assert_eq!(due(&h[..20], 120, 120), None);
    assert_eq!(due(&history(60, &[]), 120, 120), None);
    let busy = vec![minute(12, 12); 60];
    assert_eq!(due(&busy, 120, 120), None);
}

#[test]
fn prewarms_a_recurring_burst_before_it_is_due() {
    let s = sizing_only();
    // 8 pods on the primary, 6 free; bursts of 40 started 14 and 29
    // minutes ago: the next is due in a minute.
    let h = history(40, &[(14, 40), (29, 40)]);
    let enis = vec![eni(0, 14, 8, 0, 3000), eni(1, 0, 0, 0, 3000)];
    let d = decide(&s, &state(enis.clone(), 0, h, Some(100)));
    assert_eq!(added(&d), vec![("eni-1".to_owned(), 14)]);
    assert_eq!(d.create.len(), 2, "{d:?}");
    assert!(d.reason.contains("burst taking 40"), "{}", d.reason);
    // Without the history (the older world) it only keeps min-warm.
    let d = decide(&s, &state(enis, 0, vec![], Some(100)));
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn gives_unused_enis_back_keeping_them_attached_until_quiet() {
    let s = sizing_only();
    // 10 pods on the primary, ENI 1 half cooling, ENI 2 unused: only ENI
    // 2's IPs go, in one call; the ENI stays.
    let enis = vec![
        eni(0, 14, 10, 0, 3000),
        eni(1, 14, 0, 7, 3000),
        eni(2, 14, 0, 0, 3000),
    ];
    let d = decide(&s, &state(enis, 0, history(5, &[]), Some(120)));
    assert_eq!(
        d.changes,
        vec![EniChange {
            eni_id: "eni-2".into(),
            release_ips: 14,
            ..EniChange::default()
        }]
    );
    assert!(d.release.is_empty());
    // An unused ENI keeps the IPs the target still needs (min-warm: 2 on
    // the primary, 2 of its 14).
    let enis = vec![eni(0, 14, 12, 0, 3000), eni(1, 14, 0, 0, 3000)];
    let d = decide(&s, &state(enis, 0, history(5, &[]), Some(120)));
    assert_eq!(
        d.changes,
        vec![EniChange {
            eni_id: "eni-1".into(),
            release_ips: 12,
            ..EniChange::default()
        }]
    );
    // An emptied ENI is detached only once the group is quiet.
    let enis = vec![eni(0, 14, 2, 0, 3000), eni(1, 0, 0, 0, 3000)];
    let busy = decide(&s, &state(enis.clone(), 0, vec![], Some(600)));
    assert!(busy.is_noop(), "{busy:?}");
    let quiet = decide(&s, &state(enis, 0, vec![], Some(1800)));
    assert_eq!(quiet.release, vec!["eni-1".to_owned()]);
}

#[test]
fn a_new_node_prepares_for_the_pods_held_for_it() {
    let s = sizing_only();
    let mut fresh = state(vec![eni(0, 0, 0, 0, 5)], 0, vec![], None);
    fresh.node_assigned = 0;
    let d = decide(&s, &fresh);
    // Two ENIs' worth: the primary and one new ENI, full.
    assert_eq!(added(&d), vec![("eni-0".to_owned(), 14)]);
    assert_eq!(d.create.len(), 1, "{d:?}");
    // Two on a large instance too (c5.18xlarge: 15 ENIs of 49 pod IPs), not
    // half of them: 343 addresses asked in 19 calls, most given back.
    fresh.limits.max_enis = 15;
    fresh.limits.ipv4_per_eni = 50;
    fresh.limits.max_pods = 250;
    let d = decide(&s, &fresh);
    assert_eq!(added(&d), vec![("eni-0".to_owned(), 49)]);
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 49,
            prefixes: 0
        }]
    );
    // Once a pod came, min-warm is enough.
    let d = decide(&s, &state(vec![eni(0, 14, 1, 0, 60)], 0, vec![], Some(1)));
    assert!(d.is_noop(), "{d:?}");
}

/// A new node's pods arrive over its first minutes: what `start-warm`
/// prepared is not given back in its first three minutes.
#[test]
fn a_new_node_keeps_its_start_for_its_first_minutes() {
    let s = sizing_only();
    let enis = || vec![eni(0, 14, 9, 0, 200), eni(1, 14, 0, 0, 200)];
    // In its first two minutes the node is new or its first minute busy;
    // the third is kept for the start alone.
    for minutes in 1..=3 {
        let d = decide(
            &s,
            &state(enis(), 0, history(minutes, &[(minutes - 1, 9)]), Some(60)),
        );
        assert!(d.is_noop(), "{minutes} minutes in: {d:?}");
    }
    let d = decide(&s, &state(enis(), 0, history(3, &[(2, 9)]), Some(60)));
    assert!(
        d.reason.contains("the group's first minutes"),
        "{}",
        d.reason
    );
    let d = decide(&s, &state(enis(), 0, history(4, &[(3, 9)]), Some(60)));
    assert_eq!(d.changes.len(), 1, "{d:?}");
}

/// A node whose first minute brought 24 pods (the rollout's replicas,
/// held for it): the next minute keeps `min-warm` free, not an ENI's
/// worth for a rate that was a start. An hour-long history's oldest minute
/// is an ordinary minute.
#[test]
fn the_first_minutes_pods_are_a_start_not_a_rate() {
    let s = sizing_only();
    let enis = || vec![eni(0, 14, 14, 0, 120), eni(1, 14, 10, 0, 120)];
    let started = history(2, &[(1, 24)]);
    let d = decide(&s, &state(enis(), 0, started, Some(65)));
    assert!(added(&d).is_empty() && d.create.is_empty(), "{d:?}");
    // The same minute one minute ago in a full hour is demand.
    let mut hour = history(HISTORY_MINUTES, &[(1, 24)]);
    hour[59].adds = 1;
    let d = decide(&s, &state(enis(), 0, hour, Some(65)));
    assert_eq!(d.create.len(), 1, "{d:?}");
}

#[test]
fn bad_settings_are_refused() {
    assert!(PredictivePool::configure(r#"{"burst-adds": 0}"#).is_err());
    assert!(PredictivePool::configure(r#"{"window": 3}"#).is_err());
    let long = PredictivePool::configure(r#"{"lead-seconds": 4294967295}"#).unwrap_err();
    assert!(long.contains("lead-seconds must be at most 3600"), "{long}");
    assert!(PredictivePool::configure(r#"{"lead-seconds": 3600}"#).is_ok());
    assert!(PredictivePool::configure("{}").is_ok());
}

#[test]
fn gives_nothing_back_while_a_burst_arrives_or_is_due() {
    let s = sizing_only();
    let enis = vec![eni(0, 14, 10, 0, 3000), eni(1, 14, 0, 0, 3000)];
    // Idle: ENI 1's IPs go.
    let d = decide(&s, &state(enis.clone(), 0, history(30, &[]), Some(120)));
    assert_eq!(d.changes.len(), 1, "{d:?}");
    // 8 ADDs in the last minute (all on the primary, so far).
    let d = decide(&s, &state(enis.clone(), 0, history(30, &[(0, 8)]), Some(5)));
    assert!(d.is_noop(), "{d:?}");
    // Bursts of 10 that came 400 and 1000 s ago: the next is due in 200
    // s, the hold (180 s) and the lead (20 s) before it: nothing goes
    // back. Due in 201 s: ENI 1's IPs go.
    let held = timed(30, &[(400, 10), (1000, 10)]);
    let d = decide(&s, &state(enis.clone(), 0, held, Some(300)));
    assert!(d.is_noop(), "{d:?}");
    assert!(d.reason.contains("arriving or due"), "{}", d.reason);
    let not_yet = timed(30, &[(399, 10), (1000, 10)]);
    let d = decide(&s, &state(enis, 0, not_yet, Some(300)));
    assert_eq!(d.changes.len(), 1, "{d:?}");
}

/// A median ADD age outside its minute's window (a hostile or broken
/// input) is taken to the window's nearest end: no forecast from bursts
/// that would come out of order, and no panic.
#[test]
fn ages_outside_their_minute_are_taken_to_its_ends() {
    // Minute 2 claims its median ADD came 500 s ago, minute 5 that its came
    // now: as given, the later burst would be the older.
    let mut h = timed(10, &[]);
    h[2] = Minute {
        adds: 40,
        removes: 0,
        median_add_age: Some(500),
    };
    h[5] = Minute {
        adds: 40,
        removes: 0,
        median_add_age: Some(0),
    };
    let ages: Vec<u32> = bursts(&h, 6).iter().map(|b| b.age).collect();
    assert_eq!(ages, vec![179, 300]);
    // Period 121 s, the last 179 s ago: due 58 s ago, still expected.
    assert_eq!(due(&h, 0, 58), Some(40));
    assert_eq!(due(&h, 0, 57), None);
    let d = decide(
        &sizing_only(),
        &state(vec![eni(0, 14, 2, 0, 3000)], 0, h, Some(100)),
    );
    assert!(d.reason.contains("every 121 s"), "{}", d.reason);
}

#[test]
fn expects_at_most_an_enis_worth_from_the_last_minutes() {
    let s = sizing_only();
    // 40 ADDs last minute, now on 3 ENIs with 6 free: 8 short of one
    // ENI's worth (14), not 34 short of 40.
    let enis = vec![
        eni(0, 14, 14, 0, 3000),
        eni(1, 14, 14, 0, 3000),
        eni(2, 14, 8, 0, 3000),
    ];
    let d = decide(&s, &state(enis, 0, history(3, &[(0, 40)]), Some(5)));
    assert!(d.changes.is_empty(), "{d:?}");
    assert_eq!(
        d.create,
        vec![NewEni {
            ips: 14,
            prefixes: 0
        }]
    );
    assert!(d.reason.starts_with("8 short"), "{}", d.reason);
}

/// A CronJob starting 12 pods every minute: between runs its addresses
/// look spare (free or cooling), but the next run takes them again, so
/// nothing goes back; and a usual minute of 12 is no burst.
#[test]
fn keeps_what_a_usual_minute_takes_between_runs() {
    let s = sizing_only();
    let mut h = vec![minute(12, 12); 10];
    h[0].removes = 9;
    let enis = vec![
        eni(0, 14, 6, 4, 3000),
        eni(1, 14, 0, 2, 3000),
        eni(2, 2, 0, 0, 3000),
    ];
    let d = decide(&s, &state(enis, 0, h.clone(), Some(40)));
    assert!(d.is_noop(), "{d:?}");
    assert!(d.reason.contains("12 ADDs a usual minute"), "{}", d.reason);
    // During a run: 12 more assigned, 2 cooling; free and cooling cover
    // the next minute's 12 with 2 to spare: no call.
    let enis = vec![
        eni(0, 14, 14, 0, 3000),
        eni(1, 14, 4, 2, 3000),
        eni(2, 2, 0, 0, 3000),
    ];
    let d = decide(&s, &state(enis, 0, h, Some(2)));
    assert!(d.is_noop(), "{d:?}");
}

/// A rollout's new pods replace old ones: the addresses it takes are its
/// ADDs less its REMOVEs, in the last minutes and in a recurring burst.
#[test]
fn demand_is_adds_less_removes() {
    let s = sizing_only();
    let mut h = history(5, &[]);
    h[0] = minute(10, 10);
    // 4 free: min-warm, and the 10 replacements took nothing more.
    let enis = || vec![eni(0, 14, 10, 0, 600)];
    let d = decide(&s, &state(enis(), 0, h, Some(5)));
    assert!(d.is_noop(), "{d:?}");
    // 10 ADDs without REMOVEs took 10: 6 short.
    let d = decide(&s, &state(enis(), 0, history(5, &[(0, 10)]), Some(5)));
    assert!(d.reason.starts_with("6 short"), "{}", d.reason);
    // Rollouts started 15 and 30 minutes ago, each 12 new pods then 8
    // (the second minute's 16 REMOVEs the old pods going): each took at
    // most 8 addresses, the next is expected to take as many.
    let mut h = history(40, &[]);
    for start in [15, 30] {
        h[start] = minute(12, 4);
        h[start - 1] = minute(8, 16);
    }
    assert_eq!(due(&h[1..], 1, 1), Some(8));
    let st = state(vec![eni(0, 14, 8, 0, 3000)], 0, h[1..].to_vec(), Some(100));
    assert_eq!(need(&s, &st).now, 8);
}

/// Nothing goes back while either of the last two minutes was busy: the
/// burst has not shown its size; from the third minute on, it may.
#[test]
fn gives_nothing_back_for_two_minutes_after_a_busy_minute() {
    let s = sizing_only();
    let enis = || vec![eni(0, 14, 10, 0, 3000), eni(1, 14, 0, 0, 3000)];
    // Busy 60 to 120 s ago, quiet since (an ADD 20 minutes before: not the
    // group's first): the last 60 s are not busy.
    let d = decide(
        &s,
        &state(enis(), 0, history(30, &[(1, 8), (20, 1)]), Some(70)),
    );
    assert!(d.is_noop(), "{d:?}");
    assert!(d.reason.contains("nothing given back"), "{}", d.reason);
    // Busy 120 to 180 s ago: ENI 1's IPs go.
    let d = decide(
        &s,
        &state(enis(), 0, history(30, &[(2, 8), (20, 1)]), Some(130)),
    );
    assert_eq!(d.changes.len(), 1, "{d:?}");
    assert_eq!(d.changes[0].release_ips, 14, "{d:?}");
}

/// A CronJob's 12 ADDs every minute are its usual minute: they are no
/// burst (the spare ENI's addresses may go back); a minute is busy at
/// `burst-adds` (6) above them, 18.
#[test]
fn a_minute_is_busy_at_burst_adds_above_the_usual_minute() {
    let s = sizing_only();
    let cronjob = |last_adds: u32| {
        let mut h = vec![minute(12, 12); 10];
        h[0] = minute(last_adds, last_adds);
        // 4 free and 4 cooling on the primary, 12 free and 2 cooling on
        // ENI 1, ENI 2 unused: 30 free and 6 cooling for 12 and a usual
        // minute more, 12 spare.
        let enis = vec![
            eni(0, 14, 6, 4, 3000),
            eni(1, 14, 0, 2, 3000),
            eni(2, 14, 0, 0, 3000),
        ];
        decide(&s, &state(enis, 0, h, Some(20)))
    };
    for adds in [12, 17] {
        let d = cronjob(adds);
        assert_eq!(
            d.changes,
            vec![EniChange {
                eni_id: "eni-2".into(),
                release_ips: 12,
                ..EniChange::default()
            }],
            "{adds} ADDs"
        );
    }
    let d = cronjob(18);
    assert!(d.is_noop(), "{d:?}");
    assert!(d.reason.contains("nothing given back"), "{}", d.reason);
}

/// ADDs wait in a burst: every attached ENI with room grows (one call
/// each), not only as many as the shortfall needs. One ADD waiting in a
/// quiet hour is a late top-up: what it needs, and min-warm.
#[test]
fn fills_every_attached_eni_while_adds_wait_in_a_burst() {
    let s = sizing_only();
    let enis = vec![
        eni(0, 14, 14, 0, 600),
        eni(1, 4, 4, 0, 600),
        eni(2, 4, 4, 0, 600),
    ];
    // 2 waiting after 4 ADDs (6: busy), min-warm 4: 6 short, which ENI
    // 1's room of 10 covers.
    let d = decide(&s, &state(enis.clone(), 2, history(5, &[(0, 4)]), Some(1)));
    assert_eq!(
        added(&d),
        vec![("eni-1".to_owned(), 10), ("eni-2".to_owned(), 10)]
    );
    assert!(d.create.is_empty(), "{d:?}");
    // 1 waiting, 1 ADD in the hour: 5 short, on ENI 1 alone.
    let d = decide(&s, &state(enis, 1, history(5, &[(0, 1)]), Some(1)));
    assert_eq!(added(&d), vec![("eni-1".to_owned(), 5)], "{d:?}");
    assert!(d.reason.contains("topping up"), "{}", d.reason);
}

/// ADDs outran the pool: the burst has not shown its size, and the coming
/// minute is expected to bring as many as the last one did, beyond those
/// waiting (here the last minute's ADDs replaced pods, so without this it
/// would be min-warm and those waiting).
#[test]
fn waiting_adds_expect_the_last_minutes_adds_again() {
    let s = sizing_only();
    let mut h = history(5, &[]);
    h[0] = minute(10, 10);
    let mut st = state(vec![eni(0, 14, 14, 0, 600)], 5, h, Some(1));
    assert_eq!(need(&s, &st).soon, 15);
    st.pending_adds = 0;
    assert_eq!(need(&s, &st).soon, 4);
}

/// A new node's `start-warm` counts every address it holds, cooling ones
/// included (pods held for it that came and went already).
#[test]
fn a_new_nodes_start_counts_cooling_addresses_as_held() {
    let s = sizing_only();
    // First minute: 10 ADDs, 6 of them gone again; half of 4 ENIs' worth
    // is 28, 10 held: 18 more must be free.
    let h = vec![minute(10, 6)];
    let st = state(vec![eni(0, 14, 4, 6, 30)], 0, h, Some(5));
    let need = need(&s, &st);
    assert_eq!(need.now, 18);
    assert!(need.burst);
}

/// A burst's addresses are ready `lead-seconds` (20) before it is due,
/// timed by its median ADD, not a minute before.
#[test]
fn prepares_for_a_burst_lead_seconds_before_it_is_due() {
    let s = sizing_only();
    let enis = || vec![eni(0, 14, 8, 0, 3000), eni(1, 14, 0, 0, 3000)];
    // Due in 30 s: not yet (but nothing is given back).
    let in_30 = timed(40, &[(870, 40), (1770, 40)]);
    let d = decide(&s, &state(enis(), 0, in_30, Some(100)));
    assert!(d.is_noop(), "{d:?}");
    assert!(d.reason.contains("nothing given back"), "{}", d.reason);
    // Due in 15 s: now.
    let in_15 = timed(40, &[(885, 40), (1785, 40)]);
    let d = decide(&s, &state(enis(), 0, in_15, Some(100)));
    assert_eq!(d.create.len(), 2, "{d:?}");
    assert!(d.reason.contains("every 900 s"), "{}", d.reason);
}

/// Addresses are kept for a burst due until it is no longer expected (a
/// minute after it was due), not longer: what the forecast no longer
/// prepares for, it does not hold either.
#[test]
fn gives_back_once_a_due_burst_is_no_longer_expected() {
    let s = sizing_only();
    let enis = || vec![eni(0, 14, 10, 0, 3000), eni(1, 14, 0, 0, 3000)];
    // Due 50 s ago: still expected, its 10 are kept free, nothing goes back.
    let late = timed(40, &[(950, 10), (1850, 10)]);
    let d = decide(&s, &state(enis(), 0, late, Some(900)));
    assert!(d.is_noop(), "{d:?}");
    assert!(d.reason.contains("burst taking 10"), "{}", d.reason);
    // Due 70 s ago: no longer expected, ENI 1's IPs go.
    let later = timed(40, &[(970, 10), (1870, 10)]);
    let d = decide(&s, &state(enis(), 0, later, Some(960)));
    assert_eq!(
        d.changes,
        vec![EniChange {
            eni_id: "eni-1".into(),
            release_ips: 14,
            ..EniChange::default()
        }]
    );
}

#[test]
fn keeps_one_empty_eni_attached_ahead_of_need() {
    let s = Settings::default();
    let empty = NewEni {
        ips: 0,
        prefixes: 0,
    };
    // Warm enough on the primary: the sizing asks nothing, the spare ENI
    // is created without addresses.
    let primary = eni(0, 14, 2, 0, 600);
    let d = decide(
        &s,
        &state(vec![primary.clone()], 0, history(5, &[]), Some(120)),
    );
    assert!(d.changes.is_empty(), "{d:?}");
    assert_eq!(d.create, vec![empty.clone()]);
    // It is there: nothing more.
    let spare = eni(1, 0, 0, 0, 600);
    let d = decide(
        &s,
        &state(
            vec![primary.clone(), spare.clone()],
            0,
            history(5, &[]),
            Some(120),
        ),
    );
    assert!(d.is_noop(), "{d:?}");
    // Growing into new ENIs keeps one more empty beside them, within the
    // instance's four.
    let d = decide(
        &s,
        &state(vec![eni(0, 14, 14, 0, 600)], 20, history(5, &[]), Some(1)),
    );
    assert_eq!(d.create.len(), 3, "{d:?}");
    assert_eq!(d.create.iter().filter(|n| n.ips == 0).count(), 1, "{d:?}");
    let full: Vec<_> = (0..4).map(|i| eni(i, 14, 14, 0, 600)).collect();
    let d = decide(&s, &state(full, 3, history(5, &[]), Some(1)));
    assert!(d.create.is_empty(), "{d:?}");
}

#[test]
fn keeps_no_spare_eni_when_another_group_has_an_eni_on_the_node() {
    let s = Settings::default();
    let mut st = state(vec![eni(0, 14, 2, 0, 600)], 0, history(5, &[]), Some(120));
    st.node_enis = 2;
    let d = decide(&s, &st);
    assert!(d.create.is_empty(), "{d:?}");
}

#[test]
fn a_spare_eni_is_never_released_but_one_beyond_it_is_when_quiet() {
    let s = Settings::default();
    let enis = vec![
        eni(0, 14, 2, 0, 7200),
        eni(1, 0, 0, 0, 7200),
        eni(2, 0, 0, 0, 7200),
    ];
    let d = decide(&s, &state(enis, 0, history(60, &[]), Some(7200)));
    assert_eq!(d.release, vec!["eni-2".to_owned()], "{d:?}");
    assert!(d.create.is_empty(), "{d:?}");
}

#[test]
fn a_give_back_returns_at_least_min_warm_addresses() {
    let s = sizing_only();
    // 3 free on the primary and 5 on an unused ENI, 4 needed: 4 spare, no
    // more than a top-up asks (min-warm): kept (a CronJob's run gave one
    // address back and asked for it again every minute).
    let enis = vec![eni(0, 14, 11, 0, 3000), eni(1, 5, 0, 0, 3000)];
    let d = decide(&s, &state(enis, 0, history(5, &[]), Some(120)));
    assert!(d.is_noop(), "{d:?}");
    // 5 spare: an unused ENI holding fewer goes back whole (2), the 3
    // left are not worth a call of their own.
    let enis = vec![
        eni(0, 14, 14, 0, 3000),
        eni(1, 7, 0, 0, 3000),
        eni(2, 2, 0, 0, 3000),
    ];
    let d = decide(&s, &state(enis, 0, history(5, &[]), Some(120)));
    assert_eq!(
        d.changes,
        vec![EniChange {
            eni_id: "eni-2".into(),
            release_ips: 2,
            ..EniChange::default()
        }]
    );
}

#[test]
fn a_burst_that_took_the_spare_gets_a_full_one() {
    let s = Settings::default();
    // A burst took the spare (ENI 2, filled); what is free still serves
    // the sizing, so nothing else is asked: the new spare comes with an
    // ENI's addresses, for the burst's pods still to come.
    let enis = vec![
        eni(0, 14, 14, 0, 600),
        eni(1, 14, 0, 0, 600),
        eni(2, 14, 0, 0, 5),
    ];
    let arriving = decide(&s, &state(enis.clone(), 0, history(5, &[(0, 20)]), Some(1)));
    assert!(arriving.changes.is_empty(), "{arriving:?}");
    assert_eq!(
        arriving.create,
        vec![NewEni {
            ips: 14,
            prefixes: 0
        }]
    );
    // Without a burst, the spare holds no address.
    let quiet = decide(&s, &state(enis, 0, history(5, &[(0, 2)]), Some(1)));
    assert_eq!(quiet.create, vec![NewEni::default()], "{quiet:?}");
}

#[test]
fn an_add_waiting_fills_enis_with_addresses_and_keeps_the_spare() {
    let s = Settings::default();
    // One ADD waits, the last minute quiet: ENI 1 grows to its room in
    // one call; the spare (ENI 2, empty) stays empty and attached, for a
    // burst (filling it, then creating another, took four calls).
    let enis = vec![
        eni(0, 14, 12, 0, 600),
        eni(1, 10, 9, 0, 600),
        eni(2, 0, 0, 0, 600),
    ];
    let d = decide(&s, &state(enis.clone(), 1, history(5, &[(0, 1)]), Some(1)));
    assert_eq!(added(&d), vec![("eni-1".to_owned(), 4)], "{d:?}");
    assert!(d.create.is_empty(), "{d:?}");
    // More waiting than the others' room: the spare too.
    let d = decide(&s, &state(enis, 9, history(5, &[(0, 9)]), Some(1)));
    assert_eq!(
        added(&d),
        vec![("eni-1".to_owned(), 4), ("eni-2".to_owned(), 14)],
        "{d:?}"
    );
}

#[test]
fn keeps_an_address_free_not_only_cooling_while_adds_come_every_minute() {
    let s = sizing_only();
    // 5 cooling cover the coming minute (min-warm 4), but none is free:
    // an ADD before one is back would wait.
    let enis = vec![eni(0, 14, 9, 5, 600), eni(1, 0, 0, 0, 600)];
    let d = decide(&s, &state(enis.clone(), 0, vec![minute(2, 2); 5], Some(20)));
    assert_eq!(added(&d), vec![("eni-1".to_owned(), 4)], "{d:?}");
    // No ADD in the usual minute: the cooling ones are enough.
    let d = decide(&s, &state(enis, 0, history(5, &[]), Some(600)));
    assert!(d.is_noop(), "{d:?}");
}

#[test]
fn gives_back_from_enis_with_pods_once_calm_for_hold_seconds() {
    let s = sizing_only();
    // A burst's last pods pin two ENIs' free addresses: 35 free, 4
    // needed. After half an hour without a busy minute they go back too,
    // fewest pods first, half an ENI's (7) a call at least.
    let enis = vec![
        eni(0, 14, 4, 0, 7200),
        eni(1, 14, 1, 0, 7200),
        eni(2, 14, 2, 0, 7200),
    ];
    let calm = vec![minute(1, 1); 30];
    let d = decide(&s, &state(enis.clone(), 0, calm.clone(), Some(60)));
    let released: Vec<_> = d
        .changes
        .iter()
        .map(|c| (c.eni_id.as_str(), c.release_ips))
        .collect();
    assert_eq!(released, vec![("eni-1", 13), ("eni-2", 12)], "{d:?}");
    // A busy minute 20 minutes ago, or a group younger than the half
    // hour: the burst may come back, they stay.
    let mut burst = calm.clone();
    burst[20] = minute(20, 0);
    let d = decide(&s, &state(enis.clone(), 0, burst, Some(60)));
    assert!(d.is_noop(), "{d:?}");
    let d = decide(&s, &state(enis, 0, calm[..20].to_vec(), Some(60)));
    assert!(d.is_noop(), "{d:?}");
}
