//! End-to-end test support.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Builds the `weft` CNI plugin binary (a no-op when it is up to date) and
/// returns its path. Cargo runs once per test process.
///
/// Integration tests of this crate cannot use `CARGO_BIN_EXE_weft` (that is
/// only set for `weft-cni`'s own tests), and a binary merely found in the
/// target directory may be stale, so this asks cargo to build it into the
/// same target directory and profile as the running test.
///
/// # Panics
///
/// If cargo fails; the message carries cargo's output.
pub fn weft_plugin_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_weft_plugin).clone()
}

fn build_weft_plugin() -> PathBuf {
    // <target>/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_owned();
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "weft-cni",
            "--bin",
            "weft",
            "--target-dir",
        ])
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cargo.arg("--release");
    }
    let out = cargo.output().expect("run cargo to build the weft plugin");
    assert!(
        out.status.success(),
        "building the weft plugin failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = profile_dir.join("weft");
    assert!(binary.is_file(), "cargo built no {}", binary.display());
    binary
}
