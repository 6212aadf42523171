//! The workspace's binaries, built for the running test.
//!
//! Integration tests of this crate cannot use `CARGO_BIN_EXE_*` (cargo sets
//! those only for a package's own binaries), and a binary merely found in the
//! target directory may be stale, so these ask cargo to build it into the same
//! target directory and profile as the running test. Cargo runs once per
//! binary per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `weft` CNI plugin.
///
/// # Panics
///
/// If cargo fails; the message carries cargo's output.
pub fn weft_plugin_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("weft-cni", "weft")).clone()
}

/// The `weftd` node agent.
///
/// # Panics
///
/// If cargo fails; the message carries cargo's output.
pub fn weftd_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build("weft-host", "weftd")).clone()
}

/// `weftd install`, as the DaemonSet's init container runs it: puts the
/// `weft` plugin into the CNI bin dir `bin_dir`; it must succeed.
pub fn install_plugin(bin_dir: &Path) {
    let out = Command::new(weftd_binary())
        .args(["install", "--source"])
        .arg(
            weft_plugin_binary()
                .parent()
                .expect("the plugin's directory"),
        )
        .arg("--bin-dir")
        .arg(bin_dir)
        .output()
        .expect("run weftd install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn build(package: &str, bin: &str) -> PathBuf {
    // <target>/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("<target>/<profile>");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace root");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--target-dir",
        ])
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cargo.arg("--release");
    }
    let out = cargo
        .output()
        .unwrap_or_else(|e| panic!("run cargo to build {bin}: {e}"));
    assert!(
        out.status.success(),
        "building {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = profile_dir.join(bin);
    assert!(binary.is_file(), "cargo built no {}", binary.display());
    binary
}
