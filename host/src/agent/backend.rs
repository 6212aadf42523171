//! The CNI operations: what `ADD`, `DEL`, `CHECK`, `GC` and `STATUS` do on
//! the node.
//!
//! * `ADD`: the security-groups policy picks the pod's groups; the pool hands
//!   out an address on an ENI of that group (waiting, bounded, for the
//!   reconciler when the group has none free); the plumbing wires the pod.
//!   A failed wiring is undone by the plumbing and the address released.
//! * `DEL`: routes and rules go synchronously (so the address can be reused
//!   safely), the veth is removed in the background, the address cools down.
//!   Unknown attachments succeed. DELs the plugin kept while weftd could
//!   not answer are carried out the same way (`spool`).
//! * `ADD`, `DEL` and `CHECK` of one attachment (container id and interface)
//!   run one at a time; `GC` skips attachments being operated on.

use super::Agent;
use super::result::network_result;
use super::spool::Kept;
use crate::api::{Backend, ErrorView, PodView, PoolView};
use crate::ipam::{Assignment, AssignmentKey, Ipv6Assignment, PodMeta, SgSet};
use crate::kubernetes::{PodLookup, PodMetadata};
use crate::plumbing::{PlumbingError, PodNetwork};
use crate::policy::view::{LiveInputs, PoliciesView};
use crate::reconcile::{PoolError, PoolSnapshot};
use crate::state::CommitError;
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};
use weft_cni::CniError;
use weft_cni::api::{
    AddRequest, AddResponse, ApiError, Attachment, CheckRequest, CheckResponse, DelRequest,
    DelResponse, GcRequest, GcResponse, PodRef, StatusResponse,
};
use weft_cni::boottime::BootInstant;
use weft_policy_sdk::{security, subnet};

impl Agent {
    async fn add(&self, req: AddRequest) -> Result<AddResponse, ApiError> {
        let _attachment = self.attachments.lock(&req.container_id, &req.ifname).await;
        let key = AssignmentKey::new(&req.network, &req.container_id, &req.ifname);
        let placed = self.place(&key, &req.pod).await?;
        let pod = PodNetwork {
            netns: req.netns.clone(),
            ifname: req.ifname.clone(),
            pod_namespace: req.pod.namespace.clone(),
            pod_name: req.pod.name.clone(),
            ip: placed.ip,
            eni_table: placed.eni_table,
            mtu: req.mtu,
            egress_ipv4: placed.egress_ipv4,
        };
        // Only the wiring excludes the leftover sweep: an ADD waiting for an
        // address must not hold up a GC.
        let wired = {
            let _wiring = self.wiring.read().await;
            self.plumbing.setup_pod(&pod).await
        };
        match wired {
            Ok(links) => {
                tracing::info!(
                    pod = %format_args!("{}/{}", req.pod.namespace, req.pod.name),
                    ip = %placed.ip,
                    eni = %placed.eni_id,
                    repeated = !placed.fresh,
                    "pod added"
                );
                if let Some(kubernetes) = self
                    .kubernetes
                    .as_ref()
                    .filter(|_| req.pod.is_kubernetes_pod())
                {
                    kubernetes
                        .annotate_pod_ip(&req.pod.namespace, &req.pod.name, placed.ip)
                        .await;
                }
                Ok(network_result(&pod, &links, &req.netns))
            }
            Err(error) => {
                // The plumbing undid its part; give the address back.
                if let Err(release) = self.release(&key) {
                    tracing::warn!(%key, error = %release, "could not release the address of a failed ADD");
                }
                Err(wiring_error(&req.pod.namespace, &req.pod.name, &error))
            }
        }
    }

    /// What the security-groups policy is asked about `pod`.
    fn sg_request(&self, pod: security::Pod) -> security::Request {
        security::Request {
            pod,
            node_security_groups: self.node.security_groups.clone(),
        }
    }

    /// The pod's security groups from the security-groups policy, which sees
    /// the pod's labels, annotations and service account when the
    /// Kubernetes API gives them.
    async fn security_groups(&self, pod: &PodRef) -> Result<SgSet, ApiError> {
        let request = self.sg_request(self.pod_for_policy(pod).await);
        self.policies
            .select_security_groups(&request)
            .map(SgSet::new)
            .map_err(|e| {
                CniError::no_address(
                    format!(
                        "no security groups for pod {}/{}: {e}",
                        pod.namespace, pod.name
                    ),
                    "fix or replace the security-groups policy (weftd's log names it), or set its on-failure = \"fallback\"",
                )
            })
    }

    /// The pod as the security-groups policy sees it. A container that is not
    /// a Kubernetes pod keeps its empty namespace (the documented marker);
    /// a pod whose metadata the API cannot give is decided on `CNI_ARGS`
    /// alone, and the log says so.
    async fn pod_for_policy(&self, pod: &PodRef) -> security::Pod {
        let from_args = policy_pod(&pod_meta(pod));
        let Some(kubernetes) = self.kubernetes.as_ref().filter(|_| pod.is_kubernetes_pod()) else {
            return from_args;
        };
        let who = format!("{}/{}", pod.namespace, pod.name);
        match kubernetes
            .pod(&pod.namespace, &pod.name, pod.uid.as_deref())
            .await
        {
            PodLookup::Found(meta) => {
                if self.api_unavailable.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "the Kubernetes API answers again: pods are decided on their metadata"
                    );
                }
                with_metadata(from_args, meta)
            }
            PodLookup::Missing => {
                tracing::warn!(pod = %who, "the Kubernetes API has no such pod: deciding its security groups on CNI_ARGS alone");
                from_args
            }
            PodLookup::Unavailable(reason) => {
                if !self.api_unavailable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%reason, "the Kubernetes API does not answer: pods it has not shown yet are decided on CNI_ARGS alone (no labels, annotations or service account) until it answers again");
                }
                tracing::debug!(pod = %who, %reason, "pod decided on CNI_ARGS alone");
                from_args
            }
        }
    }

    /// A pod the node holds, as the security-groups policy sees it, with the
    /// metadata the watch has delivered (no API call: for previews).
    fn held_pod_for_policy(&self, pod: &PodMeta) -> security::Pod {
        let from_args = policy_pod(pod);
        let uid = Some(pod.uid.as_str()).filter(|u| !u.is_empty());
        match self
            .kubernetes
            .as_ref()
            .filter(|_| !pod.namespace.is_empty())
            .and_then(|k| k.watched_pod(&pod.namespace, &pod.name, uid))
        {
            Some(meta) => with_metadata(from_args, meta),
            None => from_args,
        }
    }

    async fn del(&self, req: DelRequest) -> Result<DelResponse, ApiError> {
        // Waits for an ADD of the same attachment still in progress.
        let _attachment = self.attachments.lock(&req.container_id, &req.ifname).await;
        self.del_locked(req, None).await
    }

    /// DEL of an attachment the caller holds the lock of. A DEL the plugin
    /// kept leaves an assignment made after it alone: that one belongs to
    /// a later ADD of the same attachment.
    pub(super) async fn del_locked(
        &self,
        req: DelRequest,
        kept: Option<&Kept>,
    ) -> Result<DelResponse, ApiError> {
        let key = AssignmentKey::new(&req.network, &req.container_id, &req.ifname);
        let Some(held) = self.held(&key) else {
            return Ok(DelResponse { released: None });
        };
        if kept.is_some_and(|kept| kept.predates(&held)) {
            tracing::info!(%key, ip = %held.ip, "a DEL kept while weftd could not answer predates the attachment's current address: left alone");
            return Ok(DelResponse { released: None });
        }
        let pod = self.pod_network(&held, &req.ifname, req.netns.clone());
        match self.plumbing.teardown_pod(&pod).await {
            // The veth goes away in the background (or with the namespace).
            Ok(removal) => drop(removal),
            Err(error) => {
                return Err(CniError::plumbing(
                    format!("unwiring pod {} failed: {error}", held.pod),
                    "the address stays assigned so it is not reused while routed; the runtime retries the DEL",
                ));
            }
        }
        Ok(DelResponse {
            released: self.release(&key)?,
        })
    }

    async fn check(&self, req: CheckRequest) -> Result<CheckResponse, ApiError> {
        let _attachment = self.attachments.lock(&req.container_id, &req.ifname).await;
        let key = AssignmentKey::new(&req.network, &req.container_id, &req.ifname);
        let Some(held) = self.held(&key) else {
            return Err(CniError::unknown_container(
                format!("weftd holds no address for {key}"),
                "the pod was never added on this node, or its address was garbage-collected; recreate the pod",
            ));
        };
        let pod = self.pod_network(&held, &req.ifname, Some(req.netns.clone()));
        let mut differences = self.plumbing.check_pod(&pod).await.map_err(|e| {
            CniError::plumbing(format!("checking pod {} failed: {e}", held.pod), "")
        })?;
        for ip in pod.addresses().filter(|ip| !expected_ip_matches(&req, *ip)) {
            differences.push(format!(
                "the runtime's result does not carry the pod's address {ip}"
            ));
        }
        Ok(CheckResponse { differences })
    }

    async fn gc(&self, req: GcRequest) -> Result<GcResponse, ApiError> {
        let valid: HashSet<(&str, &str)> = req
            .valid_attachments
            .iter()
            .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
            .collect();
        let mut released = Vec::new();
        for held in self.all_held() {
            let key = &held.key;
            if key.network != req.network
                || valid.contains(&(key.container_id.as_str(), key.ifname.as_str()))
            {
                continue;
            }
            // An attachment being added or deleted right now is not stale.
            let Some(_attachment) = self.attachments.try_lock(&key.container_id, &key.ifname)
            else {
                continue;
            };
            // It may have been deleted while we looked.
            if self.held(key).is_none() {
                continue;
            }
            let pod = self.pod_network(&held, &key.ifname, None);
            if let Err(error) = self.plumbing.teardown_pod(&pod).await.map(drop) {
                tracing::warn!(%key, %error, "GC could not unwire a stale attachment; keeping its address");
                continue;
            }
            self.release(key)?;
            tracing::info!(%key, ip = %held.ip, pod = %held.pod, "GC released a stale attachment");
            released.push(Attachment {
                container_id: key.container_id.clone(),
                ifname: key.ifname.clone(),
            });
        }
        self.remove_leftovers()
            .await
            .map_err(|e| CniError::plumbing(format!("GC of node leftovers failed: {e}"), ""))?;
        Ok(GcResponse { released })
    }

    /// What the plumbing needs to find (or remove) a held attachment.
    fn pod_network(&self, held: &Held, ifname: &str, netns: Option<PathBuf>) -> PodNetwork {
        let eni_table = match held.ip {
            IpAddr::V4(ip) => self.pool.placement(ip).as_ref().and_then(eni_table),
            IpAddr::V6(_) => None,
        };
        PodNetwork {
            netns: netns.unwrap_or_default(),
            ifname: ifname.to_owned(),
            pod_namespace: held.pod.namespace.clone(),
            pod_name: held.pod.name.clone(),
            ip: held.ip,
            eni_table,
            mtu: None,
            egress_ipv4: held.egress_ipv4,
        }
    }

    /// An address for `key`: in IPv6 mode from the primary ENI's prefix
    /// (the security-groups policy is not asked: IPv6 pods live on the
    /// primary ENI with its groups), otherwise from the pool of the group
    /// the security-groups policy picks.
    async fn place(&self, key: &AssignmentKey, pod: &PodRef) -> Result<Placed, ApiError> {
        if let Some(ipv6) = &self.ipv6 {
            let (held, fresh) = ipv6
                .assign(key.clone(), pod_meta(pod))
                .map_err(|e| match e {
                    CommitError::NotSaved(e) => state_error(key, &e),
                    CommitError::Refused(e) => CniError::no_address(
                        format!("{key}: {e}"),
                        "pods of this node hold every address; delete pods or widen the range",
                    ),
                })?;
            return Ok(Placed {
                ip: IpAddr::V6(held.ip),
                eni_table: None,
                eni_id: self.node.primary_eni_id.clone(),
                fresh,
                egress_ipv4: held.ipv4,
            });
        }
        let groups = self.security_groups(pod).await?;
        let placement = self
            .pool
            .assign(key.clone(), &groups, pod_meta(pod))
            .await
            .map_err(|e| pool_error(key, e))?;
        Ok(Placed {
            ip: IpAddr::V4(placement.ip),
            eni_table: eni_table(&placement),
            eni_id: placement.eni_id,
            fresh: placement.fresh,
            egress_ipv4: None,
        })
    }

    /// What `key` holds. In IPv6 mode an IPv4 address checkpointed before
    /// the switch is still found, so its pod stays wired until its DEL.
    fn held(&self, key: &AssignmentKey) -> Option<Held> {
        self.ipv6
            .as_ref()
            .and_then(|ipv6| ipv6.assignment(key))
            .map(Held::from)
            .or_else(|| self.pool.assignment(key).map(Held::from))
    }

    /// Every attachment holding an address, of either family.
    pub(super) fn all_held(&self) -> Vec<Held> {
        let ipv6 = self.ipv6.iter().flat_map(|ipv6| ipv6.assignments());
        let ipv4 = self.pool.assignments().into_iter();
        ipv4.map(Held::from).chain(ipv6.map(Held::from)).collect()
    }

    /// Releases what `key` holds (an IPv4 address cools down first).
    fn release(&self, key: &AssignmentKey) -> Result<Option<IpAddr>, ApiError> {
        if let Some(ipv6) = self.ipv6.as_ref().filter(|v6| v6.assignment(key).is_some()) {
            return ipv6
                .release(key)
                .map(|a| a.map(|a| IpAddr::V6(a.ip)))
                .map_err(|e| state_error(key, &e));
        }
        self.pool
            .release(key)
            .map(|a| a.map(|a| IpAddr::V4(a.ip)))
            .map_err(|e| pool_error(key, e))
    }

    /// The ENI carrying a held address.
    fn eni_of(&self, held: &Held) -> String {
        match held.ip {
            IpAddr::V4(ip) => self
                .pool
                .placement(ip)
                .map(|p| p.eni_id)
                .unwrap_or_default(),
            IpAddr::V6(_) => self.node.primary_eni_id.clone(),
        }
    }
}

/// Where an ADD's address comes from.
struct Placed {
    ip: IpAddr,
    eni_table: Option<u32>,
    eni_id: String,
    /// `false` for a repeated ADD.
    fresh: bool,
    /// An IPv6 pod's IPv4 egress address.
    egress_ipv4: Option<Ipv4Addr>,
}

/// An attachment's address, of either family.
pub(super) struct Held {
    pub(super) key: AssignmentKey,
    pub(super) ip: IpAddr,
    /// An IPv6 pod's IPv4 egress address.
    pub(super) egress_ipv4: Option<Ipv4Addr>,
    pub(super) pod: PodMeta,
    pub(super) assigned_at: SystemTime,
    pub(super) assigned_boot: Option<BootInstant>,
}

impl From<Assignment> for Held {
    fn from(a: Assignment) -> Self {
        Held {
            key: a.key,
            ip: IpAddr::V4(a.ip),
            egress_ipv4: None,
            pod: a.pod,
            assigned_at: a.assigned_at,
            assigned_boot: a.assigned_boot,
        }
    }
}

impl From<Ipv6Assignment> for Held {
    fn from(a: Ipv6Assignment) -> Self {
        Held {
            key: a.key,
            ip: IpAddr::V6(a.ip),
            egress_ipv4: a.ipv4,
            pod: a.pod,
            assigned_at: a.assigned_at,
            assigned_boot: a.assigned_boot,
        }
    }
}

/// A checkpoint that could not be written, as the CNI error the runtime
/// retries on.
fn state_error(key: &AssignmentKey, error: &crate::state::StateError) -> CniError {
    CniError::internal(
        format!("{key}: the address could not be recorded: {error}"),
        "check the state directory (disk full? read-only?); the runtime retries",
    )
}

/// The route table of the ENI holding an address; `None` for the primary
/// ENI, whose addresses follow the main table.
fn eni_table(placement: &crate::ipam::Placement) -> Option<u32> {
    (!placement.primary_eni).then(|| crate::plumbing::eni_route_table(placement.device_index))
}

fn pod_meta(pod: &PodRef) -> PodMeta {
    PodMeta {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone().unwrap_or_default(),
    }
}

/// A pod as `CNI_ARGS` names it, before any Kubernetes metadata.
fn policy_pod(pod: &PodMeta) -> security::Pod {
    security::Pod {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: pod.uid.clone(),
        ..Default::default()
    }
}

/// `pod` with the labels, annotations and service account the API gives.
fn with_metadata(pod: security::Pod, meta: PodMetadata) -> security::Pod {
    security::Pod {
        uid: if meta.uid.is_empty() {
            pod.uid
        } else {
            meta.uid
        },
        labels: meta.labels,
        annotations: meta.annotations,
        service_account: meta.service_account,
        ..pod
    }
}

fn expected_ip_matches(req: &CheckRequest, ip: IpAddr) -> bool {
    req.expected.ips.is_empty() || req.expected.ips.iter().any(|c| c.address.addr == ip)
}

/// A pool failure as the CNI error the runtime acts on.
fn pool_error(key: &AssignmentKey, error: PoolError) -> CniError {
    if error.is_try_again() {
        CniError::try_again_later(
            error.to_string(),
            "the runtime retries; `curl --unix-socket <socket> http://weft/v1/pool` shows the pool",
        )
    } else {
        CniError::internal(format!("{key}: {error}"), "see weftd's log")
    }
}

impl Agent {
    /// Runs one CNI request and records its outcome and duration.
    async fn observed<T>(
        &self,
        command: &str,
        request: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let result = request.await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) => {
                self.remember_error(command, error);
                error.code.0.to_string()
            }
        };
        self.metrics.cni(command, &outcome, started.elapsed());
        result
    }
}

/// Failed requests kept for `weftd status`.
const RECENT_ERRORS: usize = 16;

impl Agent {
    fn remember_error(&self, command: &str, error: &ApiError) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() == RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(ErrorView {
            at,
            command: command.to_owned(),
            code: error.code.0,
            message: error.msg.clone(),
        });
    }
}

impl Backend for Agent {
    fn errors(&self) -> Vec<ErrorView> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.iter().cloned().collect()
    }

    fn add(&self, req: AddRequest) -> BoxFuture<'_, Result<AddResponse, ApiError>> {
        Box::pin(self.observed("ADD", Agent::add(self, req)))
    }

    fn del(&self, req: DelRequest) -> BoxFuture<'_, Result<DelResponse, ApiError>> {
        Box::pin(self.observed("DEL", Agent::del(self, req)))
    }

    fn check(&self, req: CheckRequest) -> BoxFuture<'_, Result<CheckResponse, ApiError>> {
        Box::pin(self.observed("CHECK", Agent::check(self, req)))
    }

    fn gc(&self, req: GcRequest) -> BoxFuture<'_, Result<GcResponse, ApiError>> {
        Box::pin(self.observed("GC", Agent::gc(self, req)))
    }

    fn status(&self) -> BoxFuture<'_, StatusResponse> {
        Box::pin(async move {
            let reason = self.pool.not_ready_reason();
            StatusResponse {
                ready: reason.is_none(),
                reason,
                warnings: self
                    .policies
                    .refused_files()
                    .into_iter()
                    .map(|r| r.message)
                    .collect(),
            }
        })
    }

    fn pods(&self) -> BoxFuture<'_, Result<Vec<PodView>, ApiError>> {
        Box::pin(async move {
            Ok(self
                .all_held()
                .into_iter()
                .map(|held| PodView {
                    network: held.key.network.clone(),
                    container_id: held.key.container_id.clone(),
                    ifname: held.key.ifname.clone(),
                    host_veth: self.plumbing.host_veth_name(
                        &held.pod.namespace,
                        &held.pod.name,
                        &held.key.ifname,
                    ),
                    eni_id: self.eni_of(&held),
                    ip: held.ip,
                    pod: Some(PodRef {
                        namespace: held.pod.namespace,
                        name: held.pod.name,
                        uid: Some(held.pod.uid).filter(|u| !u.is_empty()),
                        infra_container_id: None,
                    }),
                })
                .collect())
        })
    }

    fn pool(&self) -> BoxFuture<'_, Result<PoolView, ApiError>> {
        Box::pin(async move {
            Ok(PoolView {
                groups: self.pool.pool_states(),
            })
        })
    }

    fn enis(&self) -> BoxFuture<'_, Result<PoolSnapshot, ApiError>> {
        Box::pin(async move { Ok(self.pool.snapshot()) })
    }

    fn policies(&self) -> BoxFuture<'_, Result<PoliciesView, ApiError>> {
        Box::pin(async move { Ok(self.policies.view()) })
    }

    fn policy_inputs(&self) -> BoxFuture<'_, Result<LiveInputs, ApiError>> {
        Box::pin(async move {
            let subnets = self.cloud.list_subnets().await.map_err(|e| {
                CniError::internal(
                    format!("cannot list the VPC's subnets for the subnet-selection inputs: {e}"),
                    "see weftd's log",
                )
            })?;
            let candidates: Vec<subnet::Candidate> = subnets
                .iter()
                .map(crate::cloud::Subnet::as_candidate)
                .collect();
            let pools = self.pool.pool_states();
            let node = self
                .kubernetes
                .as_ref()
                .and_then(|k| k.node())
                .unwrap_or_default();
            // A new ENI for each group, as full as the instance allows.
            let new_enis = pools
                .iter()
                .map(|state| {
                    let request = subnet::EniRequest {
                        security_groups: state.group.clone(),
                        purpose: subnet::Purpose::PodAddresses,
                        ips: state.limits.ipv4_per_eni.saturating_sub(1),
                        prefixes: 0,
                        availability_zone: self.node.availability_zone.clone(),
                        node_subnet_id: self.node.subnet_id.clone(),
                        node: node.clone(),
                    };
                    (request, candidates.clone())
                })
                .collect();
            let pods = self
                .pool
                .assignments()
                .iter()
                .map(|held| self.sg_request(self.held_pod_for_policy(&held.pod)))
                .collect();
            let policies = self.policies.clone();
            tokio::task::spawn_blocking(move || policies.preview(pools, new_enis, pods))
                .await
                .map_err(|e| CniError::internal(format!("previewing the policies failed: {e}"), ""))
        })
    }
}

/// The CNI error of an ADD whose wiring failed: "try again later" (11) when
/// the pod's namespace was not even tried because earlier opens hang, the
/// plumbing code otherwise.
fn wiring_error(namespace: &str, name: &str, error: &PlumbingError) -> CniError {
    let msg = format!("wiring pod {namespace}/{name} failed: {error}");
    match error {
        PlumbingError::NetnsOpenersBusy { .. } => CniError::try_again_later(
            msg,
            "the address was released; weftd opens no more network namespaces while this many \
             opens hang",
        ),
        _ => CniError::plumbing(
            msg,
            "the address was released; the runtime retries the ADD. weftd's log has the netlink error",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_cni::ErrorCode;

    #[test]
    fn an_add_refused_for_hanging_namespace_opens_is_to_be_tried_again() {
        let busy = PlumbingError::NetnsOpenersBusy {
            path: PathBuf::from("/var/run/netns/x"),
            stuck: 16,
        };
        let error = wiring_error("default", "web-0", &busy);
        assert_eq!(error.code, ErrorCode::TRY_AGAIN_LATER);
        assert!(error.msg.contains("default/web-0") && error.msg.contains("16"));
        let other = PlumbingError::InvalidInput("x".into());
        assert_eq!(
            wiring_error("default", "web-0", &other).code,
            ErrorCode::PLUMBING
        );
    }
}
