//! Hostile policies (tests/chaos-policy and hand-written components) against
//! the sandbox's outer limits: deadlines that host code cannot escape,
//! deterministic randomness, per-component pooling limits, host-call fuel,
//! and every string a policy returns or logs capped and sanitised.

use crate::support::policy as common;

use common::*;
use std::time::{Duration, Instant};
use weft_host::policy::{
    CompiledPolicy, FailureKind, LOG_BURST, LOG_RATE_PER_SECOND, OnFailure, PoliciesConfig,
    PolicyConfig,
};
use weft_policy_sdk::{SecurityGroups, subnet};
use weft_test_artifacts::{CHAOS_POOL, CHAOS_SG, CHAOS_SUBNET, SG_SELECTOR};

/// How long the chaos policy's `sleep` mode sleeps.
const CHAOS_SLEEP: Duration = Duration::from_secs(5);

/// The security-groups entry of a chaos module in `mode`, with the
/// default 10 ms deadline.
fn sg_entry(mode: &str, on_failure: OnFailure) -> PolicyConfig {
    PolicyConfig {
        name: Some("sleepy".into()),
        settings: serde_json::from_str(&chaos(mode)).expect("json"),
        deadline_ms: 10,
        on_failure: Some(on_failure),
        ..PolicyConfig::module(CHAOS_SG)
    }
}

fn builtin_groups() -> Vec<String> {
    sg_selector::SgSelector::configure("{}")
        .expect("built-in")
        .select_security_groups(&sg_request())
        .expect("node groups")
}

#[test]
fn a_policy_that_sleeps_fails_at_its_deadline_and_gets_its_failure_mode() {
    for on_failure in [OnFailure::FailClosed, OnFailure::Fallback] {
        let (set, metrics) = set(PoliciesConfig {
            security_groups: Some(sg_entry("sleep", on_failure)),
            ..Default::default()
        });
        let started = Instant::now();
        let answer = set.select_security_groups(&sg_request());
        let elapsed = started.elapsed();
        eprintln!("{on_failure:?}: a 5 s sleep under a 10 ms deadline answered in {elapsed:?}");
        match on_failure {
            OnFailure::FailClosed => {
                let err = answer.expect_err("fails closed");
                assert_eq!(err.kind, FailureKind::Deadline, "{err}");
                assert!(
                    err.to_string()
                        .starts_with("security-groups policy `sleepy` exceeded its deadline"),
                    "{err}"
                );
            }
            OnFailure::Fallback => assert_eq!(answer, Ok(builtin_groups())),
        }
        assert_eq!(counted(&metrics, "security-groups", "deadline"), 1);
        // Not a timing claim: the sleep did not happen.
        assert!(elapsed < CHAOS_SLEEP, "{elapsed:?}");
    }
}

#[test]
fn a_policy_that_sleeps_at_configure_fails_its_load() {
    let settings = r#"{"mode": "sleep", "during": "configure"}"#;
    let err = load_with(&engine(), CHAOS_POOL, settings, limits(10, 32))
        .err()
        .expect("load fails");
    assert_eq!(err.kind, FailureKind::Load, "{err}");
    assert!(err.message.contains("std::thread::sleep"), "{err}");
}

#[test]
fn randomness_is_the_same_in_every_decision() {
    // The `random` mode refuses with 32 bytes of wasi:random/random.
    let refusal = |engine: &weft_host::policy::PolicyEngine| {
        let module = load(engine, CHAOS_SG, &chaos("random")).expect("loads");
        let (answer, _) = module
            .select_security_groups(&sg_request())
            .expect("answers");
        answer.expect_err("the refusal carries the bytes")
    };
    let first = refusal(&engine());
    assert_eq!(first.len(), 64, "{first}");
    assert_eq!(refusal(&engine()), first, "another engine, same bytes");
    let engine = engine();
    assert_eq!(
        refusal(&engine),
        refusal(&engine),
        "another decision, same bytes"
    );
}

/// A component of `instances` core instances of one module that defines
/// `memories` memories and `tables` tables. It implements no world: the
/// point is whether the engine takes it at all.
fn many_instances(instances: usize, memories: usize, tables: usize) -> String {
    let mut wat = String::from("(component (core module $m");
    wat.push_str(&" (memory 1)".repeat(memories));
    wat.push_str(&" (table 1 funcref)".repeat(tables));
    wat.push(')');
    for _ in 0..instances {
        wat.push_str(" (core instance (instantiate $m))");
    }
    wat.push(')');
    wat
}

#[test]
fn a_component_with_a_thousand_memories_fails_its_own_load_only() {
    let engine = engine();
    let good = load(&engine, SG_SELECTOR, "{}").expect("the default loads");
    for (what, wat, expected) in [
        // The instance count is checked first.
        (
            "1000 memories",
            many_instances(1000, 1, 0),
            "1000 core module instances",
        ),
        (
            "3 memories",
            many_instances(3, 1, 0),
            "3 Wasm linear memories",
        ),
        (
            "100 core instances",
            many_instances(100, 0, 0),
            "100 core module instances",
        ),
        ("5 tables", many_instances(5, 0, 1), "5 tables"),
    ] {
        let err = CompiledPolicy::from_bytes(&engine, wat.as_bytes(), "greedy", None, None)
            .err()
            .expect("refused");
        assert_eq!(err.kind, FailureKind::Load, "{what}: {err}");
        assert!(
            err.message.contains(expected) && err.message.contains("exceeds"),
            "{what}: {err}"
        );
        // The other policy keeps deciding on the same engine.
        let (answer, _) = good
            .select_security_groups(&sg_request())
            .expect("still decides");
        assert_eq!(answer, Ok(builtin_groups()), "{what}");
    }
}

#[test]
fn what_a_policy_passes_to_the_host_is_bounded_by_the_hostcall_fuel() {
    // A 4 MiB log message, 100,000 security groups (2 MB in the guest, more
    // as host strings), a 7 MiB subnet id: each within the guest's memory
    // cap, each stopped before the host copies it.
    let engine = engine();
    let log = load(&engine, CHAOS_SG, &chaos("huge-log")).expect("loads");
    let groups = load(&engine, CHAOS_SG, &chaos("huge")).expect("loads");
    let subnet = load(&engine, CHAOS_SUBNET, &chaos("huge")).expect("loads");
    let (request, candidates) = subnet_input();
    for (what, err) in [
        ("log", log.select_security_groups(&sg_request()).err()),
        ("groups", groups.select_security_groups(&sg_request()).err()),
        ("subnet", subnet.select_subnet(&request, &candidates).err()),
    ] {
        let err = err.unwrap_or_else(|| panic!("{what}: stopped"));
        assert_eq!(err.kind, FailureKind::Memory, "{what}: {err}");
        assert!(err.message.contains("host-call fuel"), "{what}: {err}");
    }
}

/// Whether `text` holds a character that could forge a line or drive a
/// terminal.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control())
}

#[test]
fn refusals_and_reasons_are_capped_and_sanitised() {
    let (set, metrics) = set(PoliciesConfig {
        pool_sizing: Some(PolicyConfig {
            settings: serde_json::from_str(&chaos("huge-refusal")).expect("json"),
            ..PolicyConfig::module(CHAOS_POOL)
        }),
        subnet_selection: Some(PolicyConfig {
            settings: serde_json::from_str(&chaos("huge-refusal")).expect("json"),
            ..PolicyConfig::module(CHAOS_SUBNET)
        }),
        security_groups: Some(PolicyConfig {
            settings: serde_json::from_str(&chaos("huge-refusal")).expect("json"),
            ..PolicyConfig::module(CHAOS_SG)
        }),
        ..Default::default()
    });
    let err = set
        .select_security_groups(&sg_request())
        .expect_err("refused");
    assert_eq!(err.kind, FailureKind::Refused);
    let (request, candidates) = subnet_input();
    let subnet::Choice::Refuse(reason) = set.select_subnet(&request, &candidates) else {
        panic!("the subnet policy refuses");
    };
    let pool_reason = set.size_pool(&pool_state()).reason;
    for (what, text) in [
        ("security-group refusal", err.message.as_str()),
        ("subnet refusal", reason.as_str()),
        ("pool reason", pool_reason.as_str()),
    ] {
        assert!(text.len() <= 1024, "{what}: {} bytes", text.len());
        assert!(!has_control(text), "{what}: {text:?}");
        assert!(text.starts_with("\\u{1b}[2J"), "{what}: escaped: {text:?}");
    }
    assert!(!has_control(&err.to_string()));
    assert_eq!(counted(&metrics, "security-groups", "refused"), 1);
}

#[test]
fn a_log_flood_is_sanitised_capped_and_rate_limited_across_decisions() {
    let captured = CapturedLog::default();
    let subscriber = captured.subscriber(tracing::Level::WARN);
    const DECISIONS: usize = 50;
    let started = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        let module = load(&engine(), CHAOS_SG, &chaos("log-flood")).expect("loads");
        for _ in 0..DECISIONS {
            let (answer, _) = module
                .select_security_groups(&sg_request())
                .expect("answers");
            assert!(answer.is_ok());
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let text = captured.text();
    let lines: Vec<&str> = text.lines().collect();
    let forwarded = lines.iter().filter(|l| l.contains("FAKE")).count();
    // 50 decisions of 1,000 messages: the per-decision cap alone lets
    // 50 x 32 = 1600 through; the rate limit across decisions its burst
    // plus its rate over the time the test took.
    let allowed = LOG_BURST + LOG_RATE_PER_SECOND * elapsed;
    assert!(
        forwarded > 0 && forwarded as f64 <= allowed + 1.0,
        "{forwarded} lines forwarded in {elapsed:.2} s"
    );
    assert!(
        lines.iter().all(|l| l.len() <= 1024 + 200),
        "a line longer than the cap"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\0') && !text.contains('\r'));
    assert!(
        !lines.iter().any(|l| l.starts_with("level=ERROR")),
        "a forged line"
    );
    assert!(
        lines.iter().any(|l| l.contains("suppressed")),
        "suppression is reported"
    );
    eprintln!(
        "{DECISIONS} decisions x 1,000 messages in {elapsed:.2} s: {forwarded} forwarded, {} log lines in all",
        lines.len()
    );
}

#[test]
fn other_worlds_are_unaffected_by_a_hostile_one() {
    // A looping security-groups policy must not slow or break the pool
    // decisions that run at the same time.
    let (set, metrics) = set(PoliciesConfig {
        security_groups: Some(PolicyConfig {
            settings: serde_json::from_str(&chaos("loop")).expect("json"),
            deadline_ms: 100,
            ..PolicyConfig::module(CHAOS_SG)
        }),
        pool_sizing: Some(PolicyConfig {
            settings: serde_json::from_str(&chaos("ok")).expect("json"),
            deadline_ms: GENEROUS_DEADLINE_MS,
            ..PolicyConfig::module(CHAOS_POOL)
        }),
        ..Default::default()
    });
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..5 {
                    let err = set.select_security_groups(&sg_request()).expect_err("loop");
                    assert_eq!(err.kind, FailureKind::Deadline);
                }
            });
        }
        for _ in 0..50 {
            assert_eq!(set.size_pool(&pool_state()).reason, "chaos: Ok");
        }
    });
    assert_eq!(counted(&metrics, "pool-sizing", "ok"), 50);
    assert_eq!(counted(&metrics, "security-groups", "deadline"), 20);
}
