//! A real Kubernetes API server for the tests: kube-apiserver 1.20 and etcd
//! 3.4 from the project's kit (`scripts/k8s`, built by `scripts/setup` into
//! `$KUBE_CACHE`), on free loopback ports, in a directory of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The kit's directory.
fn kit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/k8s")
}

/// A binary the kit built into `$KUBE_CACHE/bin` (`kube-apiserver`,
/// `kubelet`, `cnitool`).
///
/// # Panics
///
/// If it is not there: `scripts/setup` builds them.
pub fn kit_binary(name: &str) -> PathBuf {
    let cache = std::env::var_os("KUBE_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/weft-k8s"), PathBuf::from);
    let path = cache.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: scripts/setup builds it (scripts/k8s)",
        path.display()
    );
    path
}

/// An API server (and optionally a node: containerd + kubelet); stopped
/// and its directory removed on drop.
pub struct TestApiServer {
    dir: tempfile::TempDir,
    running: bool,
    node: bool,
}

impl TestApiServer {
    /// Starts etcd and kube-apiserver (about 5 s once built).
    pub fn start() -> TestApiServer {
        // The kit wants a short path of plain characters.
        let dir = tempfile::Builder::new()
            .prefix("wk8s-")
            .tempdir_in("/tmp")
            .expect("a temp dir");
        let mut server = TestApiServer {
            dir,
            running: false,
            node: false,
        };
        server.restart();
        server
    }

    fn script(&self, verb: &str) -> std::process::Output {
        Command::new(kit().join("apiserver"))
            .arg(verb)
            .arg(self.dir.path())
            .output()
            .expect("run scripts/k8s/apiserver")
    }

    /// Starts it again on the same data (new ports: read the kubeconfig again).
    pub fn restart(&mut self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "scripts/k8s/apiserver start failed (scripts/setup builds the kit):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    /// Starts containerd and a kubelet registered as `name`, calling CNI
    /// plugins from `bin_dir` with the configuration in `conf_dir` (one node
    /// per machine). Returns once the kubelet registered the node.
    pub fn start_node(&mut self, name: &str, bin_dir: &Path, conf_dir: &Path) {
        let out = Command::new(kit().join("node"))
            .arg("start")
            .arg(self.dir.path())
            .arg("--cni-bin-dir")
            .arg(bin_dir)
            .arg("--cni-conf-dir")
            .arg(conf_dir)
            .args(["--node-name", name])
            .output()
            .expect("run scripts/k8s/node");
        assert!(
            out.status.success(),
            "scripts/k8s/node start failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.node = true;
    }

    /// Stops the kubelet (every pod gets its CNI DEL) and containerd.
    pub fn stop_node(&mut self) {
        if std::mem::take(&mut self.node) {
            let out = Command::new(kit().join("node"))
                .arg("stop")
                .arg(self.dir.path())
                .output()
                .expect("run scripts/k8s/node");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Stops etcd and the API server (the data stays).
    pub fn stop(&mut self) {
        self.stop_node();
        if std::mem::take(&mut self.running) {
            let out = self.script("stop");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The kubeconfig (admin token, embedded CA).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kube-rs client for it.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}
