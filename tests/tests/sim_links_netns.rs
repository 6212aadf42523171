//! The simulator's attached ENIs materialised as links in a network
//! namespace the test creates (root: network namespaces).

use std::sync::Arc;
use weft_host::cloud::sim::{EniLinks, NetnsEniLinks};
use weft_host::cloud::{AddressRequest, Cloud, CloudError, CreateEni, Eni, SimCloud};
use weft_tests::support::netns::TestNetns;

/// `ip -o link show <link>` inside the namespace, or `None` when the link does not exist.
fn link(netns: &TestNetns, link: &str) -> Option<String> {
    let out = netns.exec("ip", &["-o", "link", "show", link]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A simulated node whose ENIs are links in `netns`.
fn sim_in(netns: &TestNetns) -> SimCloud {
    let links: Arc<dyn EniLinks> = Arc::new(NetnsEniLinks::new(netns.path()));
    SimCloud::builder()
        .subnet("10.0.0.0/24")
        .links(links)
        .build()
        .expect("sim")
}

async fn create(sim: &SimCloud) -> Result<Eni, CloudError> {
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
#[ignore = "needs root: network namespaces"]
async fn attached_enis_appear_as_links_with_their_mac_and_vanish_on_delete() {
    let netns = TestNetns::new("links");
    let sim = sim_in(&netns);
    let first = create(&sim).await.expect("eni 1");
    let second = create(&sim).await.expect("eni 2");
    let eth1 = link(&netns, "eth1").expect("eth1 exists");
    assert!(eth1.contains(&first.mac.to_string()), "{eth1}");
    let eth2 = link(&netns, "eth2").expect("eth2 exists");
    assert!(eth2.contains(&second.mac.to_string()), "{eth2}");

    sim.delete_eni(&first.id).await.expect("delete");
    assert!(link(&netns, "eth1").is_none(), "eth1 removed with its ENI");
    assert!(link(&netns, "eth1-vpc").is_none(), "and its fabric end");
    assert!(link(&netns, "eth2").is_some());
}

/// An agent killed between an attach and its link left an attached ENI
/// without a device (the simulator saves the attach first): its successor
/// waited `eni-ready-timeout` for it. At start the missing links are made,
/// as an attached ENI's device is there on EC2 whatever the agent did.
#[tokio::test]
#[ignore = "needs root: network namespaces"]
async fn attached_enis_whose_links_are_missing_get_them_at_start() {
    let netns = TestNetns::new("relink");
    let sim = sim_in(&netns);
    let eni = create(&sim).await.expect("eni");
    assert!(netns.exec("ip", &["link", "del", "eth1"]).status.success());
    assert!(link(&netns, "eth1").is_none());

    sim.materialise_secondaries().await.expect("materialise");
    let eth1 = link(&netns, "eth1").expect("eth1 made again");
    assert!(eth1.contains(&eni.mac.to_string()), "{eth1}");
    // Made once: a second start leaves it as it is.
    sim.materialise_secondaries().await.expect("idempotent");
    assert_eq!(
        link(&netns, "eth1"),
        Some(eth1.clone()),
        "eth1 left as it was"
    );
    assert!(link(&netns, "eth2").is_none(), "{eth1}");
}
