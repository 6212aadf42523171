//! Building policies the way an author outside this repository does: from
//! the packaged SDK (`cargo package`, extracted like a registry download),
//! in a crate of their own, for `wasm32-wasip2`.
//!
//! Everything is written under `<target>/policy-authoring/`, so repeated runs
//! reuse the Wasm builds of the SDK's dependencies: one target directory is
//! shared by every out-of-tree Rust policy a test process builds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Wasm target policies are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The workspace root.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
}

/// `<target>/policy-authoring`, created on first use.
pub fn authoring_dir() -> PathBuf {
    // <target>/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps");
    let dir = target.join("policy-authoring");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// The SDK as `cargo package -p weft-policy-sdk` makes it, extracted into
/// its own directory: what a policy author gets from the registry. Built
/// once per test process.
///
/// # Panics
///
/// If packaging or extracting fails; the message carries the tool's output.
pub fn packaged_sdk() -> PathBuf {
    static SDK: OnceLock<PathBuf> = OnceLock::new();
    SDK.get_or_init(package_sdk).clone()
}

fn package_sdk() -> PathBuf {
    let dir = authoring_dir().join("sdk-package");
    let mut cargo = cargo();
    cargo
        .current_dir(workspace_root())
        // --no-verify: the verification build is native; the real check is
        // the Wasm build of a policy against the extracted package.
        // --allow-dirty: a developer runs this with uncommitted changes.
        .args([
            "package",
            "--quiet",
            "--locked",
            "--no-verify",
            "--allow-dirty",
        ])
        .args(["-p", "weft-policy-sdk", "--target-dir"])
        .arg(&dir);
    run(&mut cargo, "cargo package -p weft-policy-sdk");
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("weft-policy-sdk-{version}");
    let crate_file = dir.join("package").join(format!("{name}.crate"));
    let extracted = dir.join("extracted");
    if extracted.exists() {
        std::fs::remove_dir_all(&extracted)
            .unwrap_or_else(|e| panic!("{}: {e}", extracted.display()));
    }
    std::fs::create_dir_all(&extracted).unwrap_or_else(|e| panic!("{}: {e}", extracted.display()));
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&crate_file).arg("-C").arg(&extracted);
    run(&mut tar, "extracting the packaged SDK");
    extracted.join(name)
}

/// Builds the policy crate `name` in `project` for [`WASM_TARGET`]
/// (release, as the generated READMEs say) with a target directory shared
/// by all such builds, and returns the component's path. The project's dependencies
/// are resolved at the versions of the workspace's `Cargo.lock`, offline
/// (the workspace build has downloaded them).
///
/// # Panics
///
/// If cargo fails; the message carries its output.
pub fn build_rust_policy(project: &Path, name: &str) -> PathBuf {
    let lock = project.join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(workspace_root().join("Cargo.lock"), &lock)
            .unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
    }
    let target_dir = authoring_dir().join("wasm-target");
    let mut cargo = cargo();
    cargo
        .current_dir(project)
        .args([
            "build",
            "--quiet",
            "--offline",
            "--release",
            "--target",
            WASM_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    run(&mut cargo, &format!("building {}", project.display()));
    target_dir
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// A cargo command without the outer build's flags (they are for the
/// host, not for Wasm, and would force rebuilds).
pub fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "CARGO_ENCODED_RUSTFLAGS"
            || key == "RUSTFLAGS"
            || key == "CARGO_TARGET_DIR"
            || key.starts_with("CARGO_BUILD_")
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd
}

/// Runs `cmd`; panics with its output when it fails.
pub fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tool `scripts/setup` installs under `tools/policy-languages/`.
fn language_tool(relative: &str) -> PathBuf {
    let path = workspace_root()
        .join("tools/policy-languages")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup",
        path.display()
    );
    path
}

/// componentize-py's command line for a policy module `app` in `project`.
pub fn componentize_py(project: &Path, wit: &Path, world: &str, out: &Path) -> Command {
    let mut cmd = Command::new(language_tool(".venv/bin/componentize-py"));
    // -s (--stub-wasi): the component imports no WASI at all; Python's own
    // use of it (stdio, clocks, random seed) becomes traps or build-time
    // constants.
    cmd.current_dir(project)
        .arg("-d")
        .arg(wit)
        .args(["-w", world, "componentize", "-s", "app", "-o"])
        .arg(out);
    cmd
}

/// ComponentizeJS's command line for `policy.js` in `project`, with every
/// WASI feature disabled (the component then imports no WASI at all).
pub fn componentize_js(project: &Path, wit: &Path, world: &str, out: &Path) -> Command {
    let mut cmd = Command::new(language_tool("node_modules/.bin/componentize-js"));
    cmd.current_dir(project)
        .args(["policy.js", "--wit"])
        .arg(wit)
        .args(["--world-name", world, "--disable"])
        .args(["stdio", "random", "clocks", "http", "fetch-event"])
        .arg("--out")
        .arg(out);
    cmd
}

/// The ComponentizeJS installation, to link as a generated JavaScript
/// project's `node_modules` (its `npm run build` then runs offline).
pub fn js_node_modules() -> PathBuf {
    language_tool("node_modules")
}

/// Runs `weftd policy eval` on `fixture` (its settings and input) and checks
/// the decision against the fixture's `expected` as the SDK's harness does:
/// texts meant for people (`reason`, `refuse`, `err`) must contain the
/// expected text, everything else must be equal.
///
/// # Panics
///
/// If `weftd` fails or the decision differs.
pub fn eval_matches_fixture(weftd: &Path, component: &Path, fixture: &Path) {
    let text =
        std::fs::read_to_string(fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let expected: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let out = run(
        Command::new(weftd)
            // Generous: wall-clock time on a busy machine, not a speed check.
            .args([
                "policy",
                "eval",
                "--deadline-ms",
                "5000",
                "--memory-mib",
                "64",
            ])
            .arg("--policy")
            .arg(component)
            .arg("--input")
            .arg(fixture)
            .env("RUST_LOG", "warn"),
        &format!("weftd policy eval {}", fixture.display()),
    );
    let out: serde_json::Value = serde_json::from_str(&out).expect("eval prints JSON");
    if let Err(e) = matches_expected(&expected["expected"], &out["decision"]) {
        panic!(
            "{} on {}: {e}\n  expected {}\n  decided  {}",
            component.display(),
            fixture.display(),
            expected["expected"],
            out["decision"]
        );
    }
}

fn matches_expected(
    expected: &serde_json::Value,
    actual: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            if let Some(extra) = a.keys().find(|k| !e.contains_key(*k)) {
                return Err(format!("unexpected `{extra}`"));
            }
            for (key, want) in e {
                let got = a.get(key).ok_or_else(|| format!("no `{key}`"))?;
                match (key.as_str(), want, got) {
                    ("reason" | "refuse" | "err", Value::String(w), Value::String(g)) => {
                        if !g.contains(w.as_str()) {
                            return Err(format!("`{key}` {g:?} does not contain {w:?}"));
                        }
                    }
                    _ => matches_expected(want, got).map_err(|e| format!("{key}: {e}"))?,
                }
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{expected} != {actual}")),
    }
}

/// [`componentize_py`] or [`componentize_js`]: (project, WIT, world, output).
pub type Componentize = fn(&Path, &Path, &str, &Path) -> Command;

/// Builds the example `policies/<dir>` (a security-groups policy) with
/// `componentize`, in a copy under [`authoring_dir`] (componentize-py writes
/// `__pycache__` beside the sources), and returns the component.
///
/// # Panics
///
/// If the build fails; the message carries the tool's output.
pub fn build_example(dir: &str, componentize: Componentize) -> PathBuf {
    let root = workspace_root();
    let copy = authoring_dir().join(dir);
    if copy.exists() {
        std::fs::remove_dir_all(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
    }
    std::fs::create_dir_all(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
    let sources = root.join("policies").join(dir);
    for entry in std::fs::read_dir(&sources).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("dir entry").path();
        let dest = copy.join(path.file_name().expect("file name"));
        std::fs::copy(&path, &dest).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    let out = copy.join(format!("{dir}.wasm"));
    run(
        &mut componentize(&copy, &root.join("wit"), "security-groups", &out),
        &format!("building policies/{dir}"),
    );
    out
}
