//! The real `weft` binary executed as a runtime executes it (environment +
//! stdin), for every kind of bad input: each must give the right CNI error
//! code, a message naming what to fix, and a non-zero exit.

use serde_json::{Value, json};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use weft_cni::spool::WRITERS_LOCK;

struct Outcome {
    success: bool,
    stdout: Value,
}

fn exec(env: &[(&str, &str)], stdin: &[u8]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for weft");
    let text = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    // Nothing (a successful DEL) reads as `null`.
    let stdout = match text.trim() {
        "" => Value::Null,
        _ => serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("stdout {text:?} is not one JSON value: {e}")),
    };
    Outcome {
        success: out.status.success(),
        stdout,
    }
}

/// A socket path where no agent runs.
fn no_agent() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("weftd.sock").display().to_string();
    (dir, socket)
}

fn conf(version: &str, socket: &str) -> Vec<u8> {
    json!({"cniVersion": version, "name": "weft", "type": "weft", "socket": socket})
        .to_string()
        .into_bytes()
}

const POD_ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=u1";

fn add_env(netns: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", "ADD".into()),
        ("CNI_CONTAINERID", "0123abcd".into()),
        ("CNI_NETNS", netns.into()),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_ARGS", POD_ARGS.into()),
        ("CNI_PATH", "/opt/cni/bin".into()),
    ]
}

fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[track_caller]
fn assert_error(out: &Outcome, version: &str, code: u64, msg_contains: &str) {
    assert!(!out.success, "must exit non-zero: {}", out.stdout);
    assert_eq!(out.stdout["cniVersion"], version, "{}", out.stdout);
    assert_eq!(out.stdout["code"], code, "{}", out.stdout);
    let text = format!(
        "{} {}",
        out.stdout["msg"].as_str().unwrap_or_default(),
        out.stdout["details"].as_str().unwrap_or_default()
    );
    assert!(
        text.contains(msg_contains),
        "{text:?} should mention {msg_contains:?}"
    );
    assert!(
        !out.stdout["details"].as_str().unwrap_or("").is_empty(),
        "details say what to do: {}",
        out.stdout
    );
}

/// The current process's namespace: a netns path that exists.
const NETNS: &str = "/proc/self/ns/net";

#[test]
fn missing_command() {
    let (_d, socket) = no_agent();
    let out = exec(&[], &conf("1.0.0", &socket));
    assert_error(&out, "1.0.0", 4, "CNI_COMMAND is not set");
}

#[test]
fn unknown_command() {
    let (_d, socket) = no_agent();
    let out = exec(&[("CNI_COMMAND", "FROB")], &conf("1.0.0", &socket));
    assert_error(&out, "1.0.0", 4, "FROB");
}

#[test]
fn missing_env_for_add() {
    let (_d, socket) = no_agent();
    for name in ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"] {
        let env: Vec<_> = add_env(NETNS)
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect();
        let out = exec(&borrow(&env), &conf("1.0.0", &socket));
        assert_error(&out, "1.0.0", 4, &format!("{name} is not set"));
    }
}

#[test]
fn invalid_env_values() {
    let (_d, socket) = no_agent();
    for (name, value) in [
        ("CNI_IFNAME", "eth0:with-colon"),
        ("CNI_CONTAINERID", "_leading"),
    ] {
        let mut env = add_env(NETNS);
        env.retain(|(k, _)| *k != name);
        env.push((name, value.into()));
        let out = exec(&borrow(&env), &conf("1.0.0", &socket));
        assert_error(&out, "1.0.0", 4, name);
    }
}

#[test]
fn non_utf8_environment() {
    use std::os::unix::ffi::OsStrExt;
    let (_d, socket) = no_agent();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .env_clear()
        .env("CNI_COMMAND", std::ffi::OsStr::from_bytes(b"AD\xffD"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn weft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&conf("1.0.0", &socket))
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for weft");
    let stdout: Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
    assert!(!out.status.success());
    assert_eq!(stdout["code"], 4);
    assert!(stdout["msg"].as_str().unwrap().contains("UTF-8"));
}

#[test]
fn malformed_json() {
    let env = add_env(NETNS);
    for stdin in [&b"{\"cniVersion\": "[..], b"", b"[]"] {
        let out = exec(&borrow(&env), stdin);
        assert_error(&out, "1.1.0", 6, "network configuration");
    }
}

#[test]
fn unsupported_version() {
    let (_d, socket) = no_agent();
    let out = exec(&borrow(&add_env(NETNS)), &conf("0.2.0", &socket));
    assert_error(&out, "1.1.0", 1, "0.2.0");
    assert!(
        out.stdout["details"]
            .as_str()
            .unwrap()
            .contains("0.3.1, 0.4.0, 1.0.0, 1.1.0")
    );
}

#[test]
fn invalid_and_unsupported_netconf_fields() {
    let (_d, socket) = no_agent();
    let env = add_env(NETNS);
    let out = exec(
        &borrow(&env),
        json!({"cniVersion": "0.4.0", "type": "weft"})
            .to_string()
            .as_bytes(),
    );
    assert_error(&out, "0.4.0", 7, "\"name\" is missing");
    let out = exec(
        &borrow(&env),
        json!({"cniVersion": "1.0.0", "name": "weft", "type": "weft", "socket": socket, "mtu": 20000})
            .to_string()
            .as_bytes(),
    );
    assert_error(&out, "1.0.0", 7, "mtu");
    let out = exec(
        &borrow(&env),
        json!({"cniVersion": "1.0.0", "name": "weft", "type": "weft", "sockett": socket})
            .to_string()
            .as_bytes(),
    );
    assert_error(&out, "1.0.0", 2, "sockett");
}

#[test]
fn missing_netns() {
    let (_d, socket) = no_agent();
    let out = exec(
        &borrow(&add_env("/var/run/netns/weft-test-does-not-exist")),
        &conf("1.0.0", &socket),
    );
    assert_error(&out, "1.0.0", 4, "/var/run/netns/weft-test-does-not-exist");
}

#[test]
fn bad_cni_args() {
    let (_d, socket) = no_agent();
    for (args, expect) in [
        ("K8S_POD_NAME", "invalid pair"),
        (
            "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;COLOR=blue",
            "IgnoreUnknown=1",
        ),
        ("IgnoreUnknown=maybe", "IgnoreUnknown"),
        ("K8S_POD_NAME=b", "K8S_POD_NAMESPACE"),
    ] {
        let mut env = add_env(NETNS);
        env.retain(|(k, _)| *k != "CNI_ARGS");
        env.push(("CNI_ARGS", args.into()));
        let out = exec(&borrow(&env), &conf("1.0.0", &socket));
        assert_error(&out, "1.0.0", 4, expect);
    }
}

#[test]
fn agent_down_is_try_again_later_naming_the_socket() {
    let (dir, socket) = no_agent();
    let out = exec(&borrow(&add_env(NETNS)), &conf("0.3.1", &socket));
    assert_error(&out, "0.3.1", 11, &socket);
    assert!(
        out.stdout["details"]
            .as_str()
            .unwrap()
            .contains("curl --unix-socket")
    );
    // DEL tolerates a missing netns, so the only failure is the agent.
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "0123abcd"),
        ("CNI_IFNAME", "eth0"),
    ];
    // The DEL is kept for weftd in the spool beside its socket: success.
    let out = exec(&env, &conf("1.0.0", &socket));
    assert!(out.success, "{}", out.stdout);
    assert_eq!(out.stdout, Value::Null, "a DEL prints nothing");
    let spool = dir.path().join("del-spool");
    let kept = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != WRITERS_LOCK)
        .count();
    assert_eq!(kept, 1, "one DEL kept beside the writers' lock");
    // A spool others can write is not used: weftd's absence is the error.
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = exec(&env, &conf("1.0.0", &socket));
    assert_error(&out, "1.0.0", 11, &socket);
    assert!(
        out.stdout["details"].as_str().unwrap().contains("unsafe"),
        "{}",
        out.stdout
    );
}

#[test]
fn version_output() {
    let out = exec(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.1.0"}"#);
    assert!(out.success);
    assert_eq!(
        out.stdout,
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn gc_and_status_need_1_1_0() {
    let (_d, socket) = no_agent();
    for command in ["GC", "STATUS"] {
        let out = exec(&[("CNI_COMMAND", command)], &conf("1.0.0", &socket));
        assert_error(
            &out,
            "1.0.0",
            1,
            &format!("{command} needs cniVersion 1.1.0"),
        );
    }
    let out = exec(&[("CNI_COMMAND", "CHECK")], &conf("0.3.1", &socket));
    assert_error(&out, "0.3.1", 4, "CNI_CONTAINERID is not set");
    let mut env = add_env(NETNS);
    env[0].1 = "CHECK".into();
    let out = exec(&borrow(&env), &conf("0.3.1", &socket));
    assert_error(&out, "0.3.1", 1, "CHECK needs cniVersion 0.4.0");
}

#[test]
fn status_with_agent_down_is_not_available() {
    let (_d, socket) = no_agent();
    let out = exec(&[("CNI_COMMAND", "STATUS")], &conf("1.1.0", &socket));
    assert_error(&out, "1.1.0", 50, &socket);
}

#[test]
fn gc_without_valid_attachments_is_refused() {
    let (_d, socket) = no_agent();
    let out = exec(&[("CNI_COMMAND", "GC")], &conf("1.1.0", &socket));
    assert_error(&out, "1.1.0", 7, "cni.dev/valid-attachments");
}
