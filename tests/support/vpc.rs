//! A VPC with one node in moto, built through the SDK the way an operator's tooling would.

use super::moto::MotoSession;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::types::{
    Filter, InstanceType, NetworkInterface, ResourceType, Tag, TagSpecification,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use weft_host::cloud::{Ec2Cloud, Ec2Config, Eni, NodeIdentity, RetryPolicy};
use weft_host::metrics::Metrics;

/// The region the tests use.
pub const REGION: &str = "us-east-1";
/// The node's availability zone.
pub const ZONE: &str = "us-east-1a";

/// SDK configuration for `endpoint` with static test credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "weft-tests",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A plain SDK client, for setup and for checking EC2 state independently of Weft.
pub async fn client(endpoint: &str) -> Client {
    Client::new(&sdk_config(endpoint).await)
}

/// What the setup created.
pub struct TestVpc {
    /// The node as Weft sees it.
    pub node: NodeIdentity,
    /// A second subnet in another zone.
    pub other_subnet: String,
}

/// Creates a VPC (10.0.0.0/16), the node's subnet 10.0.128.0/17, a second subnet, a security
/// group and one running instance of `instance_type`.
///
/// The node's subnet is large because moto draws each secondary address at random in the subnet
/// without checking whether another ENI holds it (EC2 never hands out an address twice): in a /24
/// a test with three ENIs met a duplicate in most runs, in a /17 about one run in a hundred.
pub async fn create(client: &Client, instance_type: &str) -> TestVpc {
    let vpc = client
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_owned();
    let subnet = |cidr: &'static str, zone: &'static str| {
        let client = client.clone();
        let vpc_id = vpc_id.clone();
        async move {
            client
                .create_subnet()
                .vpc_id(vpc_id)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send()
                .await
                .expect("CreateSubnet")
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_owned()
        }
    };
    let subnet_id = subnet("10.0.128.0/17", ZONE).await;
    let other_subnet = subnet("10.0.2.0/24", "us-east-1b").await;
    let sg = client
        .create_security_group()
        .group_name("weft-node")
        .description("weft test node")
        .vpc_id(&vpc_id)
        .send()
        .await
        .expect("CreateSecurityGroup")
        .group_id()
        .expect("group id")
        .to_owned();
    let image = client
        .describe_images()
        .send()
        .await
        .expect("DescribeImages")
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_owned))
        .expect("moto ships AMIs");
    let run = client
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        .subnet_id(&subnet_id)
        .security_group_ids(&sg)
        .send()
        .await
        .expect("RunInstances");
    let instance = run.instances().first().expect("one instance");
    let instance_id = instance.instance_id().expect("instance id").to_owned();
    let primary = instance
        .network_interfaces()
        .iter()
        .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
        .expect("primary ENI");
    let node = NodeIdentity {
        instance_id,
        instance_type: instance_type.to_owned(),
        availability_zone: ZONE.to_owned(),
        vpc_id,
        primary_eni_id: primary.network_interface_id().expect("eni id").to_owned(),
        subnet_id,
        security_groups: vec![sg],
        mac: primary
            .mac_address()
            .expect("mac")
            .parse()
            .expect("valid MAC"),
    };
    TestVpc { node, other_subnet }
}

/// Every ENI of the VPC, as EC2 reports it (independent of Weft's own listing).
pub async fn all_enis(client: &Client, vpc_id: &str) -> Vec<aws_sdk_ec2::types::NetworkInterface> {
    client
        .describe_network_interfaces()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .expect("DescribeNetworkInterfaces")
        .network_interfaces()
        .to_vec()
}

/// Every ENI of the VPC with its secondary addresses, as EC2 reports it;
/// panics on an ENI not attached to `node` (a stray one).
pub async fn node_addresses(
    client: &Client,
    node: &NodeIdentity,
) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    all_enis(client, &node.vpc_id)
        .await
        .iter()
        .map(|eni| {
            let id = eni.network_interface_id().unwrap_or_default().to_owned();
            assert_eq!(
                eni.attachment().and_then(|a| a.instance_id()),
                Some(node.instance_id.as_str()),
                "stray ENI {id}"
            );
            let secondary = eni
                .private_ip_addresses()
                .iter()
                .filter(|a| a.primary() != Some(true))
                .filter_map(|a| a.private_ip_address()?.parse().ok())
                .collect();
            (id, secondary)
        })
        .collect()
}

/// The ids of a list of ENIs.
pub fn ids(enis: &[Eni]) -> Vec<String> {
    enis.iter().map(|e| e.id.clone()).collect()
}

/// An [`Ec2Cloud`](weft_host::cloud::Ec2Cloud) for `node` talking to `endpoint`, with the given
/// configuration tweaks applied to the defaults (identity given, cluster `test-cluster`).
pub async fn ec2_cloud(
    endpoint: &str,
    node: &NodeIdentity,
    metrics: Arc<Metrics>,
    tweak: impl FnOnce(&mut Ec2Config),
) -> Ec2Cloud {
    let mut config = Ec2Config::new(CLUSTER);
    config.identity = Some(node.clone());
    config.endpoint_url = Some(endpoint.to_owned());
    // One node alone in its account: the whole account's buckets.
    config.rate_limits = weft_host::cloud::RateLimits::aws();
    tweak(&mut config);
    Ec2Cloud::with_sdk_config(&sdk_config(endpoint).await, config, metrics)
}

/// The cluster name the tests use.
pub const CLUSTER: &str = "test-cluster";

/// The test's session of the shared moto server, a plain client on it, and a fresh VPC whose
/// node is an `instance_type` (see [`create`]).
pub async fn in_moto(instance_type: &str) -> (MotoSession, Client, TestVpc) {
    let moto = super::moto::session();
    let client = client(&moto.url()).await;
    let test = create(&client, instance_type).await;
    (moto, client, test)
}

/// [`ec2_cloud`] with the default configuration and metrics of its own.
pub async fn default_cloud(endpoint: &str, node: &NodeIdentity) -> Ec2Cloud {
    ec2_cloud(endpoint, node, Arc::new(Metrics::new()), |_| {}).await
}

/// The [`ec2_cloud`] tweak for a wire that loses and delays calls: calls time out after 750 ms
/// and are retried up to `max_attempts` times with short backoffs.
pub fn quick_retries(max_attempts: u32) -> impl FnOnce(&mut Ec2Config) {
    move |c| {
        c.call_timeout = Duration::from_millis(750);
        c.retry = RetryPolicy {
            max_attempts,
            base: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        };
    }
}

/// Tags for a network interface created through the SDK.
pub fn eni_tags<K: Into<String>, V: Into<String>>(
    tags: impl IntoIterator<Item = (K, V)>,
) -> TagSpecification {
    tags.into_iter()
        .fold(
            TagSpecification::builder().resource_type(ResourceType::NetworkInterface),
            |spec, (k, v)| spec.tags(Tag::builder().key(k).value(v).build()),
        )
        .build()
}

/// The secondary addresses of an ENI, as EC2 reports them.
pub fn secondary_ips(eni: &NetworkInterface) -> BTreeSet<Ipv4Addr> {
    eni.private_ip_addresses()
        .iter()
        .filter(|a| a.primary() == Some(false))
        .filter_map(|a| a.private_ip_address()?.parse().ok())
        .collect()
}
