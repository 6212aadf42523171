//! Hostile policies in the running agent (root only): the real `weftd` on
//! the embedded VPC simulator in a node namespace, with misbehaving
//! security-groups and pool-sizing policies (tests/chaos-policy, and a
//! component with a thousand memories), while pods are added and deleted
//! through the real `weft` plugin in real pod namespaces. With
//! `on-failure = "fallback"` pods keep starting; with the security-groups
//! policy failing closed, ADDs fail with a clear error naming the policy;
//! either way the agent's metrics count every failure by kind.

use serde_json::Value;
use std::process::Output;
use weft_test_artifacts::{CHAOS_POOL, CHAOS_SG};
use weft_tests::support::agent::TestAgent;
use weft_tests::support::netns::TestNetns;

/// Pods added, deleted and added again per hostile behaviour.
const PODS: usize = 3;

/// A hostile behaviour: the chaos mode (or a hand-written component) and
/// the failure kind each world's decisions are counted as. `None`: the
/// chaos pool-sizing policy would answer, with an empty decision that
/// leaves no address for a pod, so the built-in sizes the pool.
struct Hostile {
    mode: &'static str,
    sg_outcome: &'static str,
    pool_outcome: Option<&'static str>,
}

const HOSTILE: [Hostile; 10] = [
    Hostile {
        mode: "loop",
        sg_outcome: "deadline",
        pool_outcome: Some("deadline"),
    },
    Hostile {
        mode: "sleep",
        sg_outcome: "deadline",
        pool_outcome: Some("deadline"),
    },
    Hostile {
        mode: "alloc",
        sg_outcome: "memory",
        pool_outcome: Some("memory"),
    },
    Hostile {
        mode: "recurse",
        sg_outcome: "trap",
        pool_outcome: Some("trap"),
    },
    Hostile {
        mode: "trap",
        sg_outcome: "trap",
        pool_outcome: Some("trap"),
    },
    Hostile {
        mode: "huge",
        sg_outcome: "memory",
        pool_outcome: Some("clamped"),
    },
    Hostile {
        mode: "log-flood",
        sg_outcome: "ok",
        pool_outcome: None,
    },
    Hostile {
        mode: "huge-log",
        sg_outcome: "memory",
        pool_outcome: Some("memory"),
    },
    Hostile {
        mode: "bad-sg",
        sg_outcome: "invalid-output",
        pool_outcome: None,
    },
    Hostile {
        mode: "many-memories",
        sg_outcome: "load",
        pool_outcome: Some("load"),
    },
];

/// A component of a thousand core instances with a memory each.
fn many_memories_wat() -> String {
    let mut wat = String::from("(component (core module $m (memory 1))");
    wat.push_str(&" (core instance (instantiate $m))".repeat(1000));
    wat.push(')');
    wat
}

/// The `[policies.*]` tables: the chaos security-groups policy in `mode`,
/// and the pool-sizing one when `with_pool`.
fn policies(
    mode: &str,
    module_dir: &std::path::Path,
    sg_on_failure: &str,
    with_pool: bool,
) -> String {
    let (sg, pool) = if mode == "many-memories" {
        let path = module_dir.join("many-memories.wat");
        std::fs::write(&path, many_memories_wat()).expect("write the component");
        (path.display().to_string(), path.display().to_string())
    } else {
        (CHAOS_SG.to_owned(), CHAOS_POOL.to_owned())
    };
    let mut tables = format!(
        r#"
[policies.security-groups]
name = "hostile-sg-{mode}"
module = "{sg}"
settings = {{ mode = "{mode}" }}
deadline-ms = 1000
memory-mib = 16
on-failure = "{sg_on_failure}"
"#
    );
    if with_pool {
        tables.push_str(&format!(
            r#"
[policies.pool-sizing]
name = "hostile-pool-{mode}"
module = "{pool}"
settings = {{ mode = "{mode}" }}
deadline-ms = 1000
memory-mib = 16
"#
        ));
    }
    tables
}

/// The agent's `weft_policy_decisions_total` for one policy and outcome.
fn decisions(agent: &TestAgent, policy: &str, outcome: &str) -> u64 {
    agent
        .get("/metrics")
        .lines()
        .filter(|l| l.starts_with("weft_policy_decisions_total{"))
        .filter(|l| {
            l.contains(&format!("policy=\"{policy}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn describe(out: &Output) -> String {
    format!(
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// ADDs `PODS` pods, deletes them, adds them again and deletes them: every
/// call must succeed.
fn churn(agent: &TestAgent, pods: &[TestNetns]) {
    let netconf = agent.netconf("1.0.0");
    for round in 0..2 {
        for (i, pod) in pods.iter().enumerate() {
            let id = format!("ctr-{round}-{i}");
            let out = agent.cni("ADD", &id, &pod.path(), &format!("p{i}"), &netconf);
            assert!(out.status.success(), "ADD {id}: {}", describe(&out));
            let result: Value = serde_json::from_slice(&out.stdout).expect("a JSON result");
            assert!(result["ips"][0]["address"].is_string(), "{result}");
        }
        for (i, pod) in pods.iter().enumerate() {
            let id = format!("ctr-{round}-{i}");
            let out = agent.cni("DEL", &id, &pod.path(), &format!("p{i}"), &netconf);
            assert!(out.status.success(), "DEL {id}: {}", describe(&out));
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn pods_keep_starting_beside_hostile_policies_and_failures_are_counted() {
    let modules = tempfile::tempdir().expect("tempdir");
    let pods: Vec<TestNetns> = (0..PODS)
        .map(|i| TestNetns::new(&format!("hp{i}")))
        .collect();
    for hostile in &HOSTILE {
        let mode = hostile.mode;
        let agent = TestAgent::start(
            "m5.large",
            &policies(
                mode,
                modules.path(),
                "fallback",
                hostile.pool_outcome.is_some(),
            ),
        );
        churn(&agent, &pods);
        let sg = format!("hostile-sg-{mode}");
        let counted = decisions(&agent, &sg, hostile.sg_outcome);
        // A module that never loaded is counted at load and at every
        // decision it could not make.
        let loads = u64::from(hostile.sg_outcome == "load");
        let expected = loads + 2 * PODS as u64;
        assert_eq!(
            counted,
            expected,
            "{mode}: security-groups decisions counted as {}:\n{}",
            hostile.sg_outcome,
            agent.get("/metrics")
        );
        if let Some(outcome) = hostile.pool_outcome {
            let pool = format!("hostile-pool-{mode}");
            assert!(
                decisions(&agent, &pool, outcome) >= 1,
                "{mode}: pool-sizing decisions counted as {outcome}:\n{}",
                agent.get("/metrics")
            );
        }
        eprintln!(
            "{mode}: {} ADD + {} DEL succeeded; {counted} security-groups decisions counted as {}",
            2 * PODS,
            2 * PODS,
            hostile.sg_outcome
        );
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_failing_security_groups_policy_fails_closed_naming_itself() {
    let modules = tempfile::tempdir().expect("tempdir");
    let pod = TestNetns::new("hp-closed");
    for (mode, says) in [
        ("sleep", "exceeded its deadline"),
        ("trap", "trapped"),
        ("bad-sg", "returned an invalid decision"),
    ] {
        let agent = TestAgent::start(
            "m5.large",
            &policies(mode, modules.path(), "fail-closed", false),
        );
        let netconf = agent.netconf("1.0.0");
        let out = agent.cni("ADD", "ctr-closed", &pod.path(), "closed", &netconf);
        assert!(!out.status.success(), "{mode}: the ADD fails closed");
        let error: Value = serde_json::from_slice(&out.stdout).expect("a CNI error");
        let text = format!("{} {}", error["msg"], error["details"]);
        assert!(
            text.contains(&format!(
                "security-groups policy `hostile-sg-{mode}` {says}"
            )),
            "{mode}: {error}"
        );
        let outcome = match mode {
            "sleep" => "deadline",
            "trap" => "trap",
            _ => "invalid-output",
        };
        assert_eq!(
            decisions(&agent, &format!("hostile-sg-{mode}"), outcome),
            1,
            "{mode}"
        );
    }
}

#[test]
#[ignore = "needs root: network namespaces"]
fn a_huge_refusal_reaches_the_runtime_capped_and_sanitised() {
    let modules = tempfile::tempdir().expect("tempdir");
    let pod = TestNetns::new("hp-refused");
    let agent = TestAgent::start(
        "m5.large",
        &policies("huge-refusal", modules.path(), "fallback", false),
    );
    let out = agent.cni("ADD", "ctr-r", &pod.path(), "r", &agent.netconf("1.0.0"));
    assert!(!out.status.success(), "a refusal fails the ADD");
    assert!(
        out.stdout.len() < 4096,
        "{} bytes of CNI error",
        out.stdout.len()
    );
    let error: Value = serde_json::from_slice(&out.stdout).expect("a CNI error");
    let text = format!(
        "{}{}",
        error["msg"].as_str().unwrap_or(""),
        error["details"].as_str().unwrap_or("")
    );
    assert!(text.contains("refused the request"), "{error}");
    assert!(!text.chars().any(char::is_control), "{text:?}");
    let log = agent.log();
    assert!(
        !log.contains('\u{1b}'),
        "no terminal escape reaches the log"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("forged line") && !l.contains("\\n")),
        "no forged log line"
    );
}
