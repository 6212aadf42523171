//! Builds every policy component the host's tests load, for `wasm32-wasip2`,
//! and writes their absolute paths to `$OUT_DIR/artifacts.rs`.
//!
//! Each component is built by its own `cargo rustc -p ...` so that only its
//! world's SDK feature is enabled (features unify within one invocation, and
//! a component must embed exactly one world). The builds use their own
//! target directory under `OUT_DIR`: sharing the outer build's directory
//! would wait forever on the lock the outer cargo holds.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// One component to build.
struct Component {
    /// Name of the constant holding its path.
    constant: &'static str,
    /// What it is, for the constant's doc comment.
    doc: &'static str,
    /// The package to build.
    package: &'static str,
    /// Features to enable on it.
    features: &'static str,
    /// Fixture directory (relative to the workspace root) to export as
    /// `<constant>_FIXTURES`, if any.
    fixtures: Option<&'static str>,
}

const COMPONENTS: &[Component] = &[
    Component {
        constant: "WARM_POOL",
        doc: "The default pool-sizing policy (`policies/warm-pool`).",
        package: "warm-pool",
        features: "",
        fixtures: Some("policies/warm-pool/fixtures"),
    },
    Component {
        constant: "SUBNET_MOST_FREE",
        doc: "The default subnet-selection policy (`policies/subnet-most-free`).",
        package: "subnet-most-free",
        features: "",
        fixtures: Some("policies/subnet-most-free/fixtures"),
    },
    Component {
        constant: "SG_SELECTOR",
        doc: "The default security-groups policy (`policies/sg-selector`).",
        package: "sg-selector",
        features: "",
        fixtures: Some("policies/sg-selector/fixtures"),
    },
    Component {
        constant: "VPC_CNI_COMPAT",
        doc: "The VPC CNI's pool algorithm (`policies/vpc-cni-compat`), the simulator's anchor.",
        package: "vpc-cni-compat",
        features: "",
        fixtures: None,
    },
    Component {
        constant: "PREDICTIVE_POOL",
        doc: "Demand-driven pool sizing (`policies/predictive-pool`).",
        package: "predictive-pool",
        features: "",
        fixtures: None,
    },
    Component {
        constant: "CHAOS_POOL",
        doc: "Misbehaving pool-sizing policy; behaviour chosen by settings `{\"mode\": ...}`.",
        package: "weft-chaos-policy",
        features: "pool",
        fixtures: None,
    },
    Component {
        constant: "CHAOS_SUBNET",
        doc: "Misbehaving subnet-selection policy; behaviour chosen by settings `{\"mode\": ...}`.",
        package: "weft-chaos-policy",
        features: "subnet",
        fixtures: None,
    },
    Component {
        constant: "CHAOS_SG",
        doc: "Misbehaving security-groups policy; behaviour chosen by settings `{\"mode\": ...}`.",
        package: "weft-chaos-policy",
        features: "sg",
        fixtures: None,
    },
    Component {
        constant: "CHAOS_FOREIGN_IMPORT",
        doc: "A pool-sizing component that also imports `evil:net/socket`, outside the contract.",
        package: "weft-chaos-policy",
        features: "foreign-import",
        fixtures: None,
    },
    Component {
        constant: "CHAOS_HISTORY_WORLD",
        doc: "A pool-sizing component of the older `pool-sizing-history` world; its reason tells what history it got.",
        package: "weft-chaos-policy",
        features: "history-world",
        fixtures: None,
    },
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("tests/artifacts lives two levels below the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    for watched in [
        "wit",
        "policies",
        "tests/chaos-policy",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    check_target_installed();

    let target_dir = out_dir.join("wasm-target");
    let mut consts = String::new();
    for component in COMPONENTS {
        let built = build(&root, &target_dir, component);
        // Chaos builds share one output file name: copy each away before the
        // next build overwrites it.
        let dest = out_dir.join(format!("{}.wasm", component.constant.to_lowercase()));
        // A new file, never the old one rewritten in place: a target
        // directory seeded with hard links would share it with others.
        let _ = std::fs::remove_file(&dest);
        std::fs::copy(&built, &dest)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
        consts.push_str(&constant(component.constant, component.doc, &dest));
        if let Some(fixtures) = component.fixtures {
            let doc = format!("Fixture directory of `{}`.", component.package);
            let name = format!("{}_FIXTURES", component.constant);
            consts.push_str(&constant(&name, &doc, &root.join(fixtures)));
        }
    }
    let dest = out_dir.join("artifacts.rs");
    let _ = std::fs::remove_file(&dest);
    std::fs::write(&dest, consts).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

/// Fails the build with instructions when the Wasm target's standard
/// library is missing (rustup does not install it on these machines unless
/// asked).
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| panic!("running {} --print sysroot: {e}", rustc.to_string_lossy()));
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let libdir = Path::new(&sysroot).join("lib/rustlib").join(TARGET);
    if !libdir.is_dir() {
        panic!(
            "the Rust target `{TARGET}` is not installed (no {}); \
             run `rustup target add {TARGET}` and build again",
            libdir.display()
        );
    }
}

/// Runs cargo for one component and returns the path of its `.wasm`.
fn build(root: &Path, target_dir: &Path, component: &Component) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The policy crates are plain rlibs: native builds (the host links
    // them) then neither link an unused shared library nor lose the rlib's
    // hashed file name, which a `cdylib` crate type drops. The component is
    // the same library linked as a cdylib.
    cmd.current_dir(root)
        .args(["rustc", "--locked", "--release", "--target", TARGET])
        .args(["-p", component.package, "--lib", "--crate-type", "cdylib"])
        .arg("--target-dir")
        .arg(target_dir);
    if !component.features.is_empty() {
        cmd.args(["--features", component.features]);
    }
    // The outer build's flags and settings are for the host, not for Wasm.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key == "CARGO_ENCODED_RUSTFLAGS"
            || key == "RUSTFLAGS"
            || key == "CARGO_TARGET_DIR"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "RUSTC_WRAPPER"
            || key.starts_with("CARGO_BUILD_")
        {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running cargo for {}: {e}", component.package));
    if !status.success() {
        panic!(
            "building {} (features: {:?}) for {TARGET} failed ({status}); see the output above",
            component.package, component.features
        );
    }
    let file = format!("{}.wasm", component.package.replace('-', "_"));
    target_dir.join(TARGET).join("release").join(file)
}

/// A documented `pub const NAME: &str = "path";` item.
fn constant(name: &str, doc: &str, path: &Path) -> String {
    format!(
        "/// {doc}\npub const {name}: &str = {:?};\n",
        path.display().to_string()
    )
}
