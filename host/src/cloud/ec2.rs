//! `Ec2Cloud`: the [`Cloud`] trait on aws-sdk-ec2.
//!
//! * Credentials come from the standard chain (environment, IRSA web identity, IMDS); the node
//!   identity from IMDS unless [`Ec2Config::identity`] gives it; the endpoint from
//!   [`Ec2Config::endpoint_url`] or `AWS_ENDPOINT_URL_EC2`.
//! * Every call goes through one wrapper: client-side token buckets per API class sized from
//!   AWS's per-account buckets, a per-attempt timeout, retries with exponential backoff and
//!   jitter on throttling, 5xx and timeouts (the SDK's own retries are off), and a
//!   `cloud_calls{api,outcome}` counter.
//! * Calls that must not simply be repeated (create, attach, assign, unassign, detach, delete)
//!   check EC2 after an ambiguous failure before retrying: a created ENI is found again by its
//!   idempotency tag, so a lost answer never leaks an ENI. Create then attach is one operation
//!   for callers: when attaching fails for good, the ENI is deleted again. Creates may run
//!   concurrently: each attaches at a device index no read shows taken and no other create of
//!   this client holds (`device_index`).

mod call;
mod convert;
mod device_index;
mod errors;
mod identity;

use super::action::Ec2Action;
use super::leak;
use super::ratelimit::{RateLimiter, RateLimits, SystemClock};
use super::retry::RetryPolicy;
use super::types::*;
use super::{Cloud, CloudError, CloudFuture, LimitKind};
use crate::metrics::Metrics;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::Region;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::types::{
    Filter, InstanceType, NetworkInterface, NetworkInterfaceAttachmentChanges, ResourceType,
    TagSpecification,
};
use call::Caller;
use device_index::DeviceIndexes;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::OnceCell;

/// Nodes assumed to call EC2 at the same time when sharing the account's
/// request buckets (AWS meters them per account and region, see
/// [`RateLimits::aws`]): every node of a 100-node cluster. All of them can
/// call at the same moment (a Deployment scaled out across the cluster
/// grows every node's pool within the same seconds; a node group scaled up
/// from zero warms every node up at once), and only a 1/100 share keeps
/// such a fleet's sustained rate within the account's refill: with the
/// earlier 1/20, 100 nodes together asked for five times the account's
/// refill and EC2 throttled all of them. A node still gets a burst of
/// [`super::ratelimit::MIN_NODE_BURST`] calls per class, so its start-up
/// reads and a new ENI's calls never wait on the share's refill (0.2
/// `Describe*` and 0.05 of every other class per second). A cluster of
/// another size sets `rate-share-nodes` to its node count (a node alone in
/// its account: 1).
pub(crate) const DEFAULT_RATE_SHARE_NODES: u32 = 100;

/// Configuration of [`Ec2Cloud`].
#[derive(Debug, Clone)]
pub struct Ec2Config {
    /// Cluster name, written to the `weft.io/cluster` tag and used to find leaked ENIs.
    pub cluster_name: String,
    /// AWS region; the standard chain (env, profile, IMDS) when `None`.
    pub region: Option<String>,
    /// EC2 endpoint; `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL` or the regional one when `None`.
    pub endpoint_url: Option<String>,
    /// Node identity; read from IMDS when `None`.
    pub identity: Option<NodeIdentity>,
    /// Timeout of one attempt of one call.
    pub call_timeout: Duration,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// Client-side token buckets: this node's share of the account's.
    pub rate_limits: RateLimits,
    /// Minimum age of a leaked ENI (5 minutes by default).
    pub leaked_eni_min_age: Duration,
}

impl Ec2Config {
    /// Defaults for a cluster: 10 s per attempt, 8 attempts, a 1/100 share of AWS's buckets
    /// ([`DEFAULT_RATE_SHARE_NODES`]), 5 minute leak age.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Ec2Config {
            cluster_name: cluster_name.into(),
            region: None,
            endpoint_url: None,
            identity: None,
            call_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::aws().share(DEFAULT_RATE_SHARE_NODES),
            leaked_eni_min_age: leak::DEFAULT_MIN_AGE,
        }
    }
}

/// The EC2 implementation of [`Cloud`].
pub struct Ec2Cloud {
    client: Client,
    caller: Caller,
    config: Ec2Config,
    identity: OnceCell<NodeIdentity>,
    limits: OnceCell<InstanceLimits>,
    /// Device indexes of creates in flight and recent attachments.
    device_indexes: DeviceIndexes,
}

fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn missing(api: Ec2Action, what: &str) -> CloudError {
    CloudError::Fatal {
        api: api.name().to_owned(),
        detail: format!("EC2 answered without {what}"),
    }
}

fn parse_all<T: std::str::FromStr>(api: Ec2Action, values: &[String]) -> Result<Vec<T>, CloudError>
where
    T::Err: std::fmt::Display,
{
    values
        .iter()
        .map(|v| {
            v.parse().map_err(|e| CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("EC2 answered an unusable address {v:?}: {e}"),
            })
        })
        .collect()
}

impl Ec2Cloud {
    /// Loads the standard AWS configuration (credentials, region, endpoint overrides) and builds
    /// the client. Does no EC2 call yet.
    pub(crate) async fn new(config: Ec2Config, metrics: Arc<Metrics>) -> Self {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        Self::with_sdk_config(&sdk, config, metrics)
    }

    /// Builds the client from an already loaded SDK configuration (tests give static
    /// credentials this way). `config` still overrides region and endpoint.
    pub fn with_sdk_config(sdk: &SdkConfig, config: Ec2Config, metrics: Arc<Metrics>) -> Self {
        let mut builder =
            aws_sdk_ec2::config::Builder::from(sdk).retry_config(RetryConfig::disabled());
        if let Some(region) = &config.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        let caller = Caller {
            limiter: RateLimiter::new(&config.rate_limits, Arc::new(SystemClock)),
            retry: config.retry,
            timeout: config.call_timeout,
            metrics,
        };
        Ec2Cloud {
            client: Client::from_conf(builder.build()),
            caller,
            config,
            identity: OnceCell::new(),
            limits: OnceCell::new(),
            device_indexes: DeviceIndexes::default(),
        }
    }

    async fn node(&self) -> Result<&NodeIdentity, CloudError> {
        self.identity
            .get_or_try_init(|| async {
                match &self.config.identity {
                    Some(identity) => Ok(identity.clone()),
                    None => identity::from_imds(&aws_config::imds::Client::builder().build()).await,
                }
            })
            .await
    }

    async fn limits(&self) -> Result<&InstanceLimits, CloudError> {
        self.limits
            .get_or_try_init(|| async {
                let api = Ec2Action::DescribeInstanceTypes;
                let instance_type = self.node().await?.instance_type.clone();
                let request = self
                    .client
                    .describe_instance_types()
                    .instance_types(InstanceType::from(instance_type.as_str()));
                let answer = self.caller.call(api, || request.clone().send()).await?;
                let info = answer
                    .instance_types()
                    .first()
                    .ok_or_else(|| CloudError::Fatal {
                        api: api.name().to_owned(),
                        detail: format!("EC2 does not know instance type {instance_type}"),
                    })?;
                convert::limits(api, info)
            })
            .await
    }

    /// `DescribeNetworkInterfaces` with filters, all pages.
    async fn describe(&self, filters: Vec<Filter>) -> Result<Vec<NetworkInterface>, CloudError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self
                .client
                .describe_network_interfaces()
                .set_filters(Some(filters.clone()))
                .set_next_token(token.clone());
            let page = self
                .caller
                .call(Ec2Action::DescribeNetworkInterfaces, || {
                    request.clone().send()
                })
                .await?;
            all.extend_from_slice(page.network_interfaces());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    async fn describe_enis(&self, filters: Vec<Filter>) -> Result<Vec<Eni>, CloudError> {
        self.describe(filters)
            .await?
            .iter()
            .map(|ni| convert::eni(Ec2Action::DescribeNetworkInterfaces, ni))
            .collect()
    }

    /// One ENI, or `None` when it does not exist.
    async fn find(&self, eni_id: &str) -> Result<Option<Eni>, CloudError> {
        Ok(self
            .describe_enis(vec![filter("network-interface-id", eni_id)])
            .await?
            .into_iter()
            .next())
    }

    /// One ENI, which must exist.
    async fn get(&self, api: Ec2Action, eni_id: &str) -> Result<Eni, CloudError> {
        self.find(eni_id)
            .await?
            .ok_or_else(|| CloudError::NotFound {
                api: api.name().to_owned(),
                what: format!("network interface {eni_id}"),
                detail: "not in DescribeNetworkInterfaces".into(),
            })
    }

    fn check_slots(
        &self,
        api: Ec2Action,
        limits: &InstanceLimits,
        used: u32,
        more: u32,
        prefixes: bool,
    ) -> Result<(), CloudError> {
        if prefixes && !limits.prefix_delegation {
            return Err(CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!(
                    "{} is not a Nitro instance type and cannot use /28 prefixes; use secondary IPs",
                    limits.instance_type
                ),
            });
        }
        if used.saturating_add(more) > limits.slots_per_eni() {
            return Err(CloudError::LimitExceeded {
                api: api.name().to_owned(),
                what: LimitKind::IpsPerEni,
                detail: format!(
                    "{} allows {} secondary addresses per ENI; {used} in use, {more} requested",
                    limits.instance_type,
                    limits.slots_per_eni()
                ),
            });
        }
        Ok(())
    }

    async fn create_and_attach(&self, request: &CreateEni) -> Result<Eni, CloudError> {
        let node = self.node().await?.clone();
        let limits = self.limits().await?.clone();
        let prefixes = matches!(request.addresses, AddressRequest::Prefixes(_));
        let create_api = Ec2Action::CreateNetworkInterface;
        self.check_slots(create_api, &limits, 0, request.addresses.slots(), prefixes)?;

        let used: BTreeSet<u32> = self
            .list_node_enis(&node)
            .await?
            .iter()
            // Device indexes are per network card; Weft attaches to card 0.
            .filter(|e| e.network_card() == Some(0))
            .filter_map(Eni::device_index)
            .collect();
        let device_index = self
            .device_indexes
            .take(&used, limits.max_enis, Instant::now())
            .map_err(|occupied| CloudError::LimitExceeded {
                api: Ec2Action::AttachNetworkInterface.name().to_owned(),
                what: LimitKind::Enis,
                detail: format!(
                    "{} allows {} ENIs and {occupied} are attached or being attached",
                    limits.instance_type, limits.max_enis,
                ),
            })?;

        let token = format!("weft-{:032x}", rand::random::<u128>());
        let mut tags = request.tags.clone();
        tags.insert(TAG_CLUSTER.into(), self.config.cluster_name.clone());
        tags.insert(TAG_INSTANCE_ID.into(), node.instance_id.clone());
        tags.insert(
            TAG_CREATED_AT.into(),
            leak::created_at_tag(SystemTime::now()),
        );
        tags.insert(TAG_CREATE_TOKEN.into(), token.clone());
        let mut create = self
            .client
            .create_network_interface()
            .subnet_id(&request.subnet_id)
            .set_groups(Some(request.security_groups.clone()))
            .description(format!("weft-{}", node.instance_id))
            .client_token(&token)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::NetworkInterface)
                    .set_tags(Some(convert::to_tags(&tags)))
                    .build(),
            );
        create = match request.addresses {
            AddressRequest::Ips(0) => create,
            AddressRequest::Ips(n) => create.secondary_private_ip_address_count(n as i32),
            AddressRequest::Prefixes(n) => create.ipv4_prefix_count(n as i32),
        };
        let created = self
            .caller
            .call_recovering(
                create_api,
                || {
                    let create = create.clone();
                    async move { create.send().await.map(|o| o.network_interface().cloned()) }
                },
                || async {
                    let found = self
                        .describe(vec![filter(&format!("tag:{TAG_CREATE_TOKEN}"), &token)])
                        .await?;
                    Ok(found.into_iter().next().map(Some))
                },
            )
            .await?
            .ok_or_else(|| missing(create_api, "the created network interface"))?;
        let mut eni = convert::eni(create_api, &created)?;

        match self.attach(&node, &eni.id, device_index.index()).await {
            Ok(attachment) => {
                device_index.keep(&eni.id, Instant::now());
                eni.attachment = Some(attachment);
                eni.status = EniStatus::InUse;
                Ok(eni)
            }
            Err(error) => {
                if let Err(undo) = self.delete_eni_now(&eni.id).await {
                    tracing::error!(eni = %eni.id, %undo, "could not delete the ENI of a failed create; the leaked-ENI collector will");
                }
                Err(error)
            }
        }
    }

    /// Attaches at `device_index` and sets delete-on-termination.
    async fn attach(
        &self,
        node: &NodeIdentity,
        eni_id: &str,
        device_index: u32,
    ) -> Result<Attachment, CloudError> {
        let api = Ec2Action::AttachNetworkInterface;
        let attach = self
            .client
            .attach_network_interface()
            .network_interface_id(eni_id)
            .instance_id(&node.instance_id)
            .device_index(device_index as i32);
        let attachment_id = self
            .caller
            .call_recovering(
                api,
                || {
                    let attach = attach.clone();
                    async move {
                        attach
                            .send()
                            .await
                            .map(|o| o.attachment_id().map(str::to_owned))
                    }
                },
                || async {
                    let eni = self.get(api, eni_id).await?;
                    Ok(eni
                        .attachment
                        .filter(|a| a.instance_id == node.instance_id)
                        .map(|a| Some(a.id)))
                },
            )
            .await?
            .ok_or_else(|| missing(api, "an attachment id"))?;
        let modify = self
            .client
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .attachment(
                NetworkInterfaceAttachmentChanges::builder()
                    .attachment_id(&attachment_id)
                    .delete_on_termination(true)
                    .build(),
            );
        self.caller
            .call(Ec2Action::ModifyNetworkInterfaceAttribute, || {
                modify.clone().send()
            })
            .await?;
        Ok(Attachment {
            id: attachment_id,
            instance_id: node.instance_id.clone(),
            device_index,
            network_card_index: 0,
            delete_on_termination: true,
        })
    }

    async fn list_node_enis(&self, node: &NodeIdentity) -> Result<Vec<Eni>, CloudError> {
        let mut enis = self
            .describe_enis(vec![filter("attachment.instance-id", &node.instance_id)])
            .await?;
        enis.sort_by_key(Eni::device_index);
        Ok(enis)
    }

    /// Assigns `count` secondary IPs or prefixes; returns what was added. EC2 answers with the
    /// new addresses (an emulator may answer with all of them), so the answer is compared with
    /// the ENI as it was before. After an ambiguous failure the ambiguous error is returned and
    /// the call is never sent again. Nor is a read of the ENI taken as the answer: reads lag
    /// writes and need not even be monotonic, so a read after the call can be older than the
    /// one before it and show as "added" an address Weft just gave back. The caller settles a
    /// lost answer from reads it weighs as possibly stale (see `reconcile::settle`).
    async fn assign(
        &self,
        eni_id: &str,
        request: AddressRequest,
    ) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        let api = Ec2Action::AssignPrivateIpAddresses;
        let limits = self.limits().await?.clone();
        let before = self.get(api, eni_id).await?;
        let prefixes = matches!(request, AddressRequest::Prefixes(_));
        self.check_slots(api, &limits, before.used_slots(), request.slots(), prefixes)?;
        let assign = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(eni_id);
        let assign = match request {
            AddressRequest::Ips(n) => assign.secondary_private_ip_address_count(n as i32),
            AddressRequest::Prefixes(n) => assign.ipv4_prefix_count(n as i32),
        };
        let (ips, nets) = self
            .caller
            .call_unrepeated(
                api,
                || {
                    let assign = assign.clone();
                    async move {
                        assign.send().await.map(|o| {
                            let ips = o
                                .assigned_private_ip_addresses()
                                .iter()
                                .filter_map(|a| a.private_ip_address().map(str::to_owned))
                                .collect::<Vec<_>>();
                            let nets = o
                                .assigned_ipv4_prefixes()
                                .iter()
                                .filter_map(|p| p.ipv4_prefix().map(str::to_owned))
                                .collect::<Vec<_>>();
                            (ips, nets)
                        })
                    }
                },
                || async { Ok(None) },
            )
            .await?;
        let ips: Vec<Ipv4Addr> = parse_all(api, &ips)?;
        let nets: Vec<Ipv4Net> = parse_all(api, &nets)?;
        Ok((
            ips.into_iter()
                .filter(|ip| *ip != before.primary_ip && !before.secondary_ips.contains(ip))
                .collect(),
            nets.into_iter()
                .filter(|p| !before.prefixes.contains(p))
                .collect(),
        ))
    }

    /// The IPv6 prefixes of `eni_id` as `DescribeNetworkInterfaces` reports them.
    async fn ipv6_prefixes_of(&self, eni_id: &str) -> Result<Vec<Ipv6Net>, CloudError> {
        let api = Ec2Action::DescribeNetworkInterfaces;
        let found = self
            .describe(vec![filter("network-interface-id", eni_id)])
            .await?;
        let eni = found.first().ok_or_else(|| CloudError::NotFound {
            api: api.name().to_owned(),
            what: format!("network interface {eni_id}"),
            detail: "not in DescribeNetworkInterfaces".into(),
        })?;
        let texts: Vec<String> = eni
            .ipv6_prefixes()
            .iter()
            .filter_map(|p| p.ipv6_prefix().map(str::to_owned))
            .collect();
        parse_all(api, &texts)
    }

    /// `AssignIpv6Addresses` with `Ipv6PrefixCount = 1`; a lost answer is
    /// settled by reading the ENI's prefixes once, never by sending again.
    async fn assign_one_ipv6_prefix(&self, eni_id: &str) -> Result<Ipv6Net, CloudError> {
        let api = Ec2Action::AssignIpv6Addresses;
        let before = self.ipv6_prefixes_of(eni_id).await?;
        let assign = self
            .client
            .assign_ipv6_addresses()
            .network_interface_id(eni_id)
            .ipv6_prefix_count(1);
        let answered: Vec<String> = self
            .caller
            .call_unrepeated(
                api,
                || {
                    let assign = assign.clone();
                    async move {
                        assign
                            .send()
                            .await
                            .map(|o| o.assigned_ipv6_prefixes().to_vec())
                    }
                },
                || async {
                    let after = self.ipv6_prefixes_of(eni_id).await?;
                    Ok((after.len() > before.len())
                        .then(|| after.iter().map(ToString::to_string).collect()))
                },
            )
            .await?;
        let prefixes: Vec<Ipv6Net> = parse_all(api, &answered)?;
        prefixes
            .into_iter()
            .find(|p| !before.contains(p))
            .ok_or_else(|| CloudError::Fatal {
                api: api.name().to_owned(),
                detail: format!("EC2 answered without a new IPv6 prefix for {eni_id}"),
            })
    }

    async fn unassign(
        &self,
        eni_id: &str,
        ips: &[Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> Result<(), CloudError> {
        if ips.is_empty() && prefixes.is_empty() {
            return Ok(());
        }
        let api = Ec2Action::UnassignPrivateIpAddresses;
        let mut unassign = self
            .client
            .unassign_private_ip_addresses()
            .network_interface_id(eni_id);
        if !ips.is_empty() {
            unassign = unassign
                .set_private_ip_addresses(Some(ips.iter().map(ToString::to_string).collect()));
        }
        if !prefixes.is_empty() {
            unassign = unassign
                .set_ipv4_prefixes(Some(prefixes.iter().map(ToString::to_string).collect()));
        }
        self.caller
            .call_unrepeated(
                api,
                || {
                    let request = unassign.clone();
                    async move { request.send().await.map(drop) }
                },
                || async {
                    let eni = self.get(api, eni_id).await?;
                    let gone = !eni.secondary_ips.iter().any(|ip| ips.contains(ip))
                        && !eni.prefixes.iter().any(|p| prefixes.contains(p));
                    Ok(gone.then_some(()))
                },
            )
            .await
    }

    /// Detaches (when attached), waits until detached, deletes; a missing ENI is fine.
    async fn delete_eni_now(&self, eni_id: &str) -> Result<(), CloudError> {
        let Some(eni) = self.find(eni_id).await? else {
            return Ok(());
        };
        if let Some(attachment) = &eni.attachment {
            let api = Ec2Action::DetachNetworkInterface;
            let detach = self
                .client
                .detach_network_interface()
                .attachment_id(&attachment.id);
            let detached = self
                .caller
                .call_recovering(
                    api,
                    || {
                        let request = detach.clone();
                        async move { request.send().await.map(drop) }
                    },
                    || async {
                        let now = self.find(eni_id).await?;
                        Ok(now.is_none_or(|e| e.attachment.is_none()).then_some(()))
                    },
                )
                .await;
            match detached {
                Ok(_) | Err(CloudError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
            self.wait_detached(eni_id).await?;
        }
        let api = Ec2Action::DeleteNetworkInterface;
        let delete = self
            .client
            .delete_network_interface()
            .network_interface_id(eni_id);
        let deleted = self
            .caller
            .call_recovering(
                api,
                || {
                    let request = delete.clone();
                    async move { request.send().await.map(drop) }
                },
                || async { Ok(self.find(eni_id).await?.is_none().then_some(())) },
            )
            .await;
        match deleted {
            Ok(_) | Err(CloudError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// EC2 detaches asynchronously: polls (with the retry backoff) until the ENI is available.
    async fn wait_detached(&self, eni_id: &str) -> Result<(), CloudError> {
        let mut attempt = 0;
        loop {
            match self.find(eni_id).await? {
                None => return Ok(()),
                Some(eni) if eni.attachment.is_none() && eni.status == EniStatus::Available => {
                    return Ok(());
                }
                Some(eni) if !self.config.retry.may_retry(attempt) => {
                    return Err(CloudError::Transient {
                        api: Ec2Action::DetachNetworkInterface.name().to_owned(),
                        detail: format!("{eni_id} is still {:?} after detaching", eni.status),
                    });
                }
                Some(_) => {}
            }
            tokio::time::sleep(self.config.retry.random_backoff(attempt)).await;
            attempt += 1;
        }
    }
}

impl Cloud for Ec2Cloud {
    fn identity(&self) -> CloudFuture<'_, NodeIdentity> {
        Box::pin(async move { self.node().await.cloned() })
    }

    fn instance_limits(&self) -> CloudFuture<'_, InstanceLimits> {
        Box::pin(async move { self.limits().await.cloned() })
    }

    fn list_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        Box::pin(async move {
            let node = self.node().await?;
            self.list_node_enis(node).await
        })
    }

    fn list_subnets(&self) -> CloudFuture<'_, Vec<Subnet>> {
        Box::pin(async move {
            let api = Ec2Action::DescribeSubnets;
            let vpc = self.node().await?.vpc_id.clone();
            let request = self
                .client
                .describe_subnets()
                .filters(filter("vpc-id", vpc));
            let mut subnets = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .caller
                    .call(api, || request.clone().set_next_token(token.clone()).send())
                    .await?;
                for subnet in page.subnets() {
                    subnets.push(convert::subnet(api, subnet)?);
                }
                match page.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                    _ => return Ok(subnets),
                }
            }
        })
    }

    fn vpc_cidrs(&self) -> CloudFuture<'_, Vec<Ipv4Net>> {
        Box::pin(async move {
            let api = Ec2Action::DescribeVpcs;
            let vpc = self.node().await?.vpc_id.clone();
            let answer = self
                .caller
                .call(api, || self.client.describe_vpcs().vpc_ids(&vpc).send())
                .await?;
            let vpc = answer
                .vpcs()
                .iter()
                .find(|v| v.vpc_id() == Some(vpc.as_str()))
                .ok_or_else(|| CloudError::NotFound {
                    api: api.name().into(),
                    what: format!("VPC {vpc}"),
                    detail: format!("DescribeVpcs does not list this node's VPC {vpc}"),
                })?;
            convert::vpc_cidrs(api, vpc)
        })
    }

    fn create_eni<'a>(&'a self, request: &'a CreateEni) -> CloudFuture<'a, Eni> {
        Box::pin(self.create_and_attach(request))
    }

    fn assign_ips<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Addr>> {
        Box::pin(async move { Ok(self.assign(eni_id, AddressRequest::Ips(count)).await?.0) })
    }

    fn assign_prefixes<'a>(&'a self, eni_id: &'a str, count: u32) -> CloudFuture<'a, Vec<Ipv4Net>> {
        Box::pin(async move {
            Ok(self
                .assign(eni_id, AddressRequest::Prefixes(count))
                .await?
                .1)
        })
    }

    fn ipv6_prefixes<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, Vec<Ipv6Net>> {
        Box::pin(self.ipv6_prefixes_of(eni_id))
    }

    fn assign_ipv6_prefix<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, Ipv6Net> {
        Box::pin(self.assign_one_ipv6_prefix(eni_id))
    }

    fn unassign_ips<'a>(&'a self, eni_id: &'a str, ips: &'a [Ipv4Addr]) -> CloudFuture<'a, ()> {
        Box::pin(self.unassign(eni_id, ips, &[]))
    }

    fn unassign_prefixes<'a>(
        &'a self,
        eni_id: &'a str,
        prefixes: &'a [Ipv4Net],
    ) -> CloudFuture<'a, ()> {
        Box::pin(self.unassign(eni_id, &[], prefixes))
    }

    fn delete_eni<'a>(&'a self, eni_id: &'a str) -> CloudFuture<'a, ()> {
        Box::pin(async move {
            self.delete_eni_now(eni_id).await?;
            self.device_indexes.deleted(eni_id);
            Ok(())
        })
    }

    fn find_enis_by_tag<'a>(&'a self, key: &'a str, value: &'a str) -> CloudFuture<'a, Vec<Eni>> {
        Box::pin(self.describe_enis(vec![filter(&format!("tag:{key}"), value)]))
    }

    fn eni_ready<'a>(&'a self, eni: &'a Eni) -> CloudFuture<'a, bool> {
        Box::pin(async move {
            // A configured identity means a machine without IMDS.
            if self.config.identity.is_some() {
                return Ok(true);
            }
            let client = aws_config::imds::Client::builder().build();
            Ok(identity::eni_listed(&client, eni.mac, eni.primary_ip).await)
        })
    }

    fn list_leaked_enis(&self) -> CloudFuture<'_, Vec<Eni>> {
        Box::pin(async move {
            let cluster = &self.config.cluster_name;
            let vpc = self.node().await?.vpc_id.clone();
            let enis = self
                .describe_enis(vec![
                    filter("vpc-id", vpc),
                    filter("status", "available"),
                    filter(&format!("tag:{TAG_CLUSTER}"), cluster),
                ])
                .await?;
            let now = SystemTime::now();
            Ok(enis
                .into_iter()
                .filter(|e| leak::is_leaked(e, cluster, now, self.config.leaked_eni_min_age))
                .collect())
        })
    }
}
