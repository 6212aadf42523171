//! `weftd policy check` and `weftd policy eval`, run as the built binary.

use std::process::{Command, Output};
use weft_test_artifacts::{CHAOS_FOREIGN_IMPORT, CHAOS_POOL, CHAOS_SG, WARM_POOL};
use weft_tests::weftd_binary;

/// Runs `weftd`. `eval` gets a generous deadline unless the test sets one:
/// the deadline is wall-clock time and CI machines are busy.
fn weftd(args: &[&str]) -> Output {
    let mut args = args.to_vec();
    if args.get(1) == Some(&"eval") && !args.contains(&"--deadline-ms") {
        args.extend(["--deadline-ms", "2000"]);
    }
    Command::new(weftd_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run weftd")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_reports_world_imports_size_and_compile_time() {
    let out = weftd(&["policy", "check", WARM_POOL]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("world:        pool-sizing-timed (pool-sizing decision"),
        "{text}"
    );
    assert!(text.contains("weft:policy/log@0.1.0"), "{text}");
    assert!(text.contains("compile time:"), "{text}");
    let size = std::fs::metadata(WARM_POOL).expect("artifact").len();
    assert!(
        text.contains(&format!("size:         {size} bytes")),
        "{text}"
    );
}

#[test]
fn check_refuses_bad_files_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let random = dir.path().join("random.wasm");
    std::fs::write(&random, [0x7fu8, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00]).expect("write");
    let no_world = dir.path().join("empty.wat");
    std::fs::write(&no_world, "(component)").expect("write");
    for (file, expected) in [
        (
            no_world.to_str().expect("utf-8"),
            "implements none of the weft:policy@0.1.0 worlds",
        ),
        (core.to_str().expect("utf-8"), "core WebAssembly module"),
        (
            random.to_str().expect("utf-8"),
            "not a WebAssembly component",
        ),
        (CHAOS_FOREIGN_IMPORT, "evil:net/socket"),
        ("/nonexistent.wasm", "cannot read /nonexistent.wasm"),
    ] {
        let out = weftd(&["policy", "check", file]);
        assert!(!out.status.success(), "{file}");
        assert!(stderr(&out).contains(expected), "{file}: {}", stderr(&out));
    }
}

fn case(dir: &std::path::Path, name: &str, json: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json).expect("write case");
    path.to_str().expect("utf-8").to_owned()
}

const POOL_CASE: &str = r#"{"settings": {"mode": "ok"}, "input": {
    "group": ["sg-0123abcd"], "default-group": true,
    "enis": [{"id": "eni-primary", "device-index": 0, "subnet-id": "subnet-1", "ips": 9,
              "prefixes": 0, "assigned": 4, "cooling": 0, "age-seconds": 600}],
    "node-enis": 1, "node-addresses": 9, "node-assigned": 4,
    "limits": {"max-enis": 3, "ipv4-per-eni": 10, "prefix-delegation": false, "max-pods": 29},
    "pending-adds": 0}}"#;

#[test]
fn eval_prints_the_decision_with_time_and_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = case(dir.path(), "pool.json", POOL_CASE);
    let out = weftd(&["policy", "eval", "--policy", CHAOS_POOL, "--input", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(json["world"], "pool-sizing");
    assert_eq!(json["decision"]["reason"], "chaos: Ok");
    assert!(json["elapsed-us"].as_u64().is_some(), "{json}");
    assert!(
        json["peak-memory-bytes"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );

    // --settings overrides the case's settings: the clamping is reported.
    let out = weftd(&[
        "policy",
        "eval",
        "--policy",
        CHAOS_POOL,
        "--input",
        &input,
        "--settings",
        r#"{"mode": "release-primary"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert!(
        json["adjustments"][0]
            .as_str()
            .unwrap_or("")
            .contains("primary"),
        "{json}"
    );
}

#[test]
fn eval_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = case(dir.path(), "pool.json", POOL_CASE);
    let sg_case = case(
        dir.path(),
        "sg.json",
        r#"{"input": {"pod": {"namespace": "a", "name": "b"}, "node-security-groups": ["sg-0123abcd"]}}"#,
    );
    for (args, expected) in [
        (
            vec![
                "--policy",
                CHAOS_POOL,
                "--input",
                &input,
                "--settings",
                r#"{"mode": "loop"}"#,
                "--deadline-ms",
                "100",
            ],
            "exceeded its deadline",
        ),
        (
            vec![
                "--policy",
                CHAOS_POOL,
                "--input",
                &input,
                "--settings",
                r#"{"mode": "configure-error"}"#,
            ],
            "configure-error requested",
        ),
        (
            vec![
                "--policy",
                CHAOS_SG,
                "--input",
                &sg_case,
                "--settings",
                r#"{"mode": "bad-sg"}"#,
            ],
            "not a security group id",
        ),
        (
            vec![
                "--policy",
                CHAOS_SG,
                "--input",
                &input,
                "--settings",
                r#"{"mode": "ok"}"#,
            ],
            "is not a security-groups input",
        ),
    ] {
        let mut all = vec!["policy", "eval"];
        all.extend(args);
        let out = weftd(&all);
        assert!(!out.status.success(), "{all:?}");
        assert!(stderr(&out).contains(expected), "{all:?}: {}", stderr(&out));
    }
}
