//! Simulator-backed: attached ENIs materialised as links in a network namespace the test
//! creates (root only; skipped with a message otherwise), and the undo of a create whose link
//! cannot be made.

use std::process::Command;
use std::sync::Arc;
use weft_host::cloud::sim::{EniLinks, NetnsEniLinks};
use weft_host::cloud::{AddressRequest, Cloud, CreateEni, SimCloud};

/// A network namespace that is deleted when dropped, even if the test fails.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("weft-{tag}-{}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run `ip` (iproute2)");
        assert!(status.success(), "ip netns add {name} failed");
        Netns { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -o link show <link>` inside the namespace, or `None` when the link does not exist.
    fn link(&self, link: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", link])
            .output()
            .expect("run `ip`");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

async fn create(sim: &SimCloud) -> Result<weft_host::cloud::Eni, weft_host::cloud::CloudError> {
    let node = sim.identity().await?;
    sim.create_eni(&CreateEni {
        subnet_id: node.subnet_id,
        security_groups: node.security_groups,
        addresses: AddressRequest::Ips(2),
        tags: Default::default(),
    })
    .await
}

#[tokio::test]
async fn attached_enis_appear_as_links_with_their_mac_and_vanish_on_delete() {
    if !is_root() {
        eprintln!("skipped: creating network namespaces needs root");
        return;
    }
    let netns = Netns::create("links");
    let links: Arc<dyn EniLinks> = Arc::new(NetnsEniLinks::new(netns.path()));
    let sim = SimCloud::builder()
        .subnet("10.0.0.0/24")
        .links(links)
        .build()
        .expect("sim");
    let first = create(&sim).await.expect("eni 1");
    let second = create(&sim).await.expect("eni 2");
    let eth1 = netns.link("eth1").expect("eth1 exists");
    assert!(eth1.contains(&first.mac.to_string()), "{eth1}");
    let eth2 = netns.link("eth2").expect("eth2 exists");
    assert!(eth2.contains(&second.mac.to_string()), "{eth2}");

    sim.delete_eni(&first.id).await.expect("delete");
    assert!(netns.link("eth1").is_none(), "eth1 removed with its ENI");
    assert!(netns.link("eth1-vpc").is_none(), "and its fabric end");
    assert!(netns.link("eth2").is_some());
}

#[tokio::test]
async fn a_create_whose_link_cannot_be_made_is_undone() {
    let links: Arc<dyn EniLinks> = Arc::new(NetnsEniLinks::new("/nonexistent/netns"));
    let sim = SimCloud::builder()
        .subnet("10.0.0.0/24")
        .links(links)
        .build()
        .expect("sim");
    let free = sim.list_subnets().await.expect("subnets")[0].free_ips;
    let error = create(&sim).await.expect_err("no such namespace");
    assert!(error.to_string().contains("/nonexistent/netns"), "{error}");
    assert_eq!(sim.all_enis().len(), 1, "only the primary ENI is left");
    assert_eq!(sim.list_subnets().await.expect("subnets")[0].free_ips, free);
}
