//! The sandbox contains misbehaving components (tests/chaos-policy): each
//! failure is reported with its kind and the next decision works.

use crate::support::policy as common;

use common::*;
use std::time::Duration;
use weft_host::policy::{
    CallStats, CompiledPolicy, Decision, FailureKind, PolicyEngine, PolicyError, PolicyModule,
};
use weft_policy_sdk::pool::PoolDecision;
use weft_test_artifacts::{CHAOS_FOREIGN_IMPORT, CHAOS_POOL, CHAOS_SG, CHAOS_SUBNET};

/// The chaos pool policy in its endless-loop mode, under the short deadline.
fn looping_pool(engine: &PolicyEngine) -> PolicyModule {
    load_with(
        engine,
        CHAOS_POOL,
        &chaos("loop"),
        limits(SHORT_DEADLINE_MS, 32),
    )
    .expect("loads: the loop is in the decision")
}

/// A healthy pool decision by a fresh chaos pool policy on `engine`, right
/// after `misbehaviour` on the same engine.
fn healthy_pool_decision_after(
    engine: &PolicyEngine,
    misbehaviour: &str,
) -> (PoolDecision, CallStats) {
    load(engine, CHAOS_POOL, &chaos("ok"))
        .expect("loads")
        .size_pool(&pool_state())
        .unwrap_or_else(|e| panic!("healthy after {misbehaviour}: {e}"))
}

/// What the chaos security-group policy in its trap mode fails with.
fn sg_trap() -> PolicyError {
    load(&engine(), CHAOS_SG, &chaos("trap"))
        .expect("loads")
        .select_security_groups(&sg_request())
        .expect_err("trap")
}

/// `decisions` pool decisions by `module`, each giving `reason`.
fn assert_every_decision_says(module: &PolicyModule, decisions: usize, reason: &str) {
    for _ in 0..decisions {
        let (decision, _) = module.size_pool(&pool_state()).expect("decides");
        assert_eq!(decision.reason, reason);
    }
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline_and_the_next_decision_works() {
    let engine = engine();
    let looping = looping_pool(&engine);
    let err = looping.size_pool(&pool_state()).expect_err("deadline");
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
    assert!(err.to_string().contains("exceeded its deadline"), "{err}");

    let (decision, _) = healthy_pool_decision_after(&engine, "a deadline");
    assert_eq!(decision.reason, "chaos: Ok");
    // The looping module itself is reusable: each decision has a fresh store.
    assert_eq!(
        looping.size_pool(&pool_state()).expect_err("again").kind,
        FailureKind::Deadline
    );
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_cap() {
    let engine = engine();
    let module = load_with(
        &engine,
        CHAOS_POOL,
        &chaos("alloc"),
        limits(GENEROUS_DEADLINE_MS, 8),
    )
    .expect("loads");
    let err = module.size_pool(&pool_state()).expect_err("memory");
    assert_eq!(err.kind, FailureKind::Memory, "{err}");
    let (_, stats) = healthy_pool_decision_after(&engine, "a memory bomb");
    assert!(
        stats.peak_memory > 0 && stats.peak_memory <= 32 << 20,
        "{stats:?}"
    );
}

#[test]
fn a_trap_is_reported_with_the_panic_message() {
    let err = sg_trap();
    assert_eq!(err.kind, FailureKind::Trap, "{err}");
    assert!(err.message.contains("chaos: trap requested"), "{err}");
    assert_eq!(err.decision, Some(Decision::SecurityGroups));
}

#[test]
fn a_configure_error_fails_the_load_with_the_policys_message() {
    let err = load(&engine(), CHAOS_SUBNET, &chaos("configure-error"))
        .err()
        .expect("load fails");
    assert_eq!(err.kind, FailureKind::Load, "{err}");
    assert!(err.message.contains("configure-error requested"), "{err}");
}

#[test]
fn misbehaving_configure_is_contained_at_load() {
    let engine = engine();
    for (mode, deadline_ms, expected) in [
        ("loop", SHORT_DEADLINE_MS, "deadline"),
        ("trap", GENEROUS_DEADLINE_MS, "trap requested"),
    ] {
        let settings = format!(r#"{{"mode": "{mode}", "during": "configure"}}"#);
        let err = load_with(&engine, CHAOS_POOL, &settings, limits(deadline_ms, 32))
            .err()
            .expect("load fails");
        assert_eq!(err.kind, FailureKind::Load, "{err}");
        assert!(err.message.contains(expected), "{mode}: {err}");
    }
}

#[test]
fn raw_outputs_reach_the_host_for_validation() {
    let engine = engine();
    let (request, candidates) = subnet_input();
    let module = load(&engine, CHAOS_SUBNET, &chaos("bad-subnet")).expect("loads");
    let (choice, _) = module
        .select_subnet(&request, &candidates)
        .expect("answers");
    assert!(weft_host::policy::validate::subnet_choice(choice, &candidates).is_err());

    let module = load(&engine, CHAOS_SG, &chaos("too-many-sgs")).expect("loads");
    let (answer, _) = module
        .select_security_groups(&sg_request())
        .expect("answers");
    let groups = answer.expect("a list");
    assert_eq!(groups.len(), 6);
    assert!(weft_host::policy::validate::security_groups(groups, None).is_err());
}

#[test]
fn a_foreign_import_is_refused_naming_it() {
    let err =
        CompiledPolicy::from_file(&engine(), CHAOS_FOREIGN_IMPORT.as_ref(), "evil", None, None)
            .err()
            .expect("refused");
    assert_eq!(err.kind, FailureKind::Load);
    assert!(err.message.contains("evil:net/socket"), "{err}");
}

#[test]
fn core_modules_random_bytes_and_wrong_worlds_are_refused() {
    let engine = engine();
    let refuse = |bytes: &[u8], expected: Option<Decision>| {
        CompiledPolicy::from_bytes(&engine, bytes, "p", expected, None)
            .err()
            .expect("refused")
            .to_string()
    };
    let core = refuse(b"\0asm\x01\0\0\0", None);
    assert!(core.contains("core WebAssembly module"), "{core}");
    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let random = refuse(&random, None);
    assert!(random.contains("not a WebAssembly component"), "{random}");
    let empty_component = refuse(b"(component)", None);
    assert!(
        empty_component.contains("implements none of the weft:policy@0.1.0 worlds"),
        "{empty_component}"
    );

    let sg = std::fs::read(CHAOS_SG).expect("chaos sg");
    let wrong = refuse(&sg, Some(Decision::PoolSizing));
    assert!(
        wrong
            .contains("implements the `security-groups` world but is configured for `pool-sizing`"),
        "{wrong}"
    );
}

#[test]
fn a_sha256_pin_refuses_other_modules() {
    let engine = engine();
    let bytes = std::fs::read(CHAOS_POOL).expect("chaos pool");
    let ok = CompiledPolicy::from_bytes(&engine, &bytes, "p", None, None).expect("loads");
    let pin = ok.report().sha256.clone();
    CompiledPolicy::from_bytes(&engine, &bytes, "p", None, Some(&pin.to_uppercase()))
        .expect("pin matches");
    let other = "0".repeat(64);
    let err = CompiledPolicy::from_bytes(&engine, &bytes, "p", None, Some(&other))
        .err()
        .expect("mismatch");
    assert!(
        err.message.contains("sha256 mismatch") && err.message.contains(&pin),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_writing_to_stderr_is_safe_to_call_from_async_code() {
    // The panic message goes through WASI stderr, whose host side blocks on
    // tokio: this must not panic on a runtime worker thread.
    let err = sg_trap();
    assert!(err.message.contains("chaos: trap requested"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_policy_writing_to_stderr_is_safe_on_a_current_thread_runtime() {
    let err = sg_trap();
    assert_eq!(err.kind, FailureKind::Trap, "{err}");
}

#[test]
fn deadlines_fire_for_modules_that_outlive_their_engine_handle() {
    let looping = {
        let engine = engine();
        looping_pool(&engine)
    };
    let err = looping.size_pool(&pool_state()).expect_err("deadline");
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
}

#[test]
fn decisions_start_from_the_configured_state_and_keep_nothing() {
    // The chaos `count` mode adds one to a static in `configure` and in
    // every decision, and logs once in `configure`.
    let captured = CapturedLog::default();
    tracing::subscriber::with_default(captured.subscriber(tracing::Level::WARN), || {
        let module = load(&engine(), CHAOS_POOL, &chaos("count")).expect("loads");
        assert!(module.starts_from_image());
        // configure's one, then the decision's own: nothing of the
        // decisions before is left.
        assert_every_decision_says(&module, 5, "chaos: calls 2");
    });
    let configured = captured.text().matches("chaos: configured").count();
    assert_eq!(configured, 1, "configure runs at load only");
}

#[test]
fn a_slow_capture_leaves_the_policy_configured_in_every_decision() {
    // A zero budget makes every capture too slow: the load still succeeds,
    // says why in a log line and in the module, and decisions configure
    // their own instance (configure's count, then the decision's).
    let mut engine = engine();
    engine.set_image_capture_budget(std::time::Duration::ZERO);
    let captured = CapturedLog::default();
    let module =
        tracing::subscriber::with_default(captured.subscriber(tracing::Level::INFO), || {
            load(&engine, CHAOS_POOL, &chaos("count")).expect("loads")
        });
    assert!(!module.starts_from_image());
    let why = module.no_image_reason().expect("a reason");
    assert!(why.contains("over the 0 ms budget"), "{why}");
    assert!(
        captured
            .text()
            .contains("every decision configures its own instance"),
        "{}",
        captured.text()
    );
    assert_every_decision_says(&module, 3, "chaos: calls 2");
}

#[test]
fn a_policy_holding_a_host_resource_after_configure_is_configured_in_every_decision() {
    // The `stderr` mode writes to stderr in configure and in each decision:
    // the guest's libc keeps the stream's handle, which an image would hold
    // but a fresh instance of it would not have ("unknown handle index").
    let module = load(&engine(), CHAOS_POOL, &chaos("stderr")).expect("loads");
    assert!(!module.starts_from_image());
    let why = module.no_image_reason().expect("a reason");
    assert!(why.contains("host resources"), "{why}");
    assert_every_decision_says(&module, 3, "chaos: Stderr");
}

#[test]
fn the_timer_sleeps_while_no_decision_runs_and_ticks_while_one_does() {
    let engine = engine();
    let module = load(&engine, CHAOS_POOL, &chaos("ok")).expect("loads");
    module.size_pool(&pool_state()).expect("decides");
    // The tick in progress when the decision returned may still end; then
    // nothing runs, and the timer must not wake.
    let idle = engine.timer_wakeups();
    std::thread::sleep(Duration::from_millis(200));
    let woke = engine.timer_wakeups() - idle;
    assert!(woke <= 1, "the idle timer woke {woke} times in 200 ms");

    // A loop ends only at the timer's epoch ticks.
    let looping = load_with(
        &engine,
        CHAOS_POOL,
        &chaos("loop"),
        limits(SHORT_DEADLINE_MS, 32),
    )
    .expect("loads");
    let before = engine.timer_wakeups();
    let err = looping.size_pool(&pool_state()).expect_err("deadline");
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
    assert!(engine.timer_wakeups() > before);
}

/// Component instances an engine runs at once.
const SANDBOXES: u64 = 64;

#[test]
fn a_decision_waits_for_a_sandbox_while_all_are_busy() {
    let engine = engine();
    let looping = load_with(&engine, CHAOS_SG, &chaos("loop"), limits(2_000, 32)).expect("loads");
    let impatient = load_with(
        &engine,
        CHAOS_SG,
        &chaos("ok"),
        limits(SHORT_DEADLINE_MS, 32),
    )
    .expect("loads");
    let patient = load_with(&engine, CHAOS_SG, &chaos("ok"), limits(10_000, 32)).expect("loads");
    std::thread::scope(|scope| {
        let busy: Vec<_> = (0..SANDBOXES)
            .map(|_| scope.spawn(|| looping.select_security_groups(&sg_request())))
            .collect();
        while engine.instances_in_use() < SANDBOXES {
            assert!(
                !busy.iter().any(|b| b.is_finished()),
                "a looping decision ended before all {SANDBOXES} sandboxes were busy"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // All sandboxes run loops: a decision waits for one within its
        // deadline, and says why it failed when none comes free in time.
        let err = impatient
            .select_security_groups(&sg_request())
            .expect_err("no sandbox within 100 ms");
        assert_eq!(err.kind, FailureKind::Deadline, "{err}");
        assert!(err.message.contains("sandboxes"), "{err}");
        // One with time to wait gets the first sandbox that comes free.
        let (answer, _) = patient
            .select_security_groups(&sg_request())
            .expect("a sandbox came free within its deadline");
        assert!(answer.is_ok(), "{answer:?}");
        for decision in busy {
            let err = decision.join().expect("joins").expect_err("loops");
            assert_eq!(err.kind, FailureKind::Deadline, "{err}");
        }
    });
}
