//! The agent: the pool service, the policies and the plumbing behind the
//! API the `weft` plugin calls.
//!
//! [`Agent::start`] builds everything from an [`AgentConfig`] (cloud, state
//! directory, policies, plumbing, pool) and [`Agent::serve`] answers the API
//! until shutdown. The CNI operations themselves are in `backend`; the
//! node-side set-up of secondary ENIs in `hooks`; the DELs the plugin kept
//! while weftd could not answer in `spool`.

mod backend;
mod egress;
mod hooks;
mod ipv6;
mod keys;
mod result;
mod spool;

use crate::Result;
use crate::api::{
    ApiConfig, ApiServer, MetricsFn, TcpEndpoint, introspection_router, metrics_router,
};
use crate::cloud::sim::NetnsEniLinks;
use crate::cloud::{Cloud, Ec2Cloud, NodeIdentity};
use crate::config::{AgentConfig, CloudConfig};
use crate::kubernetes::Kubernetes;
use crate::metrics::Metrics;
use crate::plumbing::{Plumbing, PlumbingConfig};
use crate::policy::PolicySet;
use crate::reconcile::{IpFamily, Pool, PoolDeps};
use crate::state::StateDir;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::sync::{RwLock, watch};
use tokio::task::JoinSet;
use weft_cni::spool::DelSpool;

pub use egress::EgressRules;
pub(crate) use hooks::PlumbingHooks;

/// A running agent.
pub struct Agent {
    pool: Arc<Pool>,
    /// The pods' IPv6 addresses, in IPv6 mode (the pool then sizes nothing).
    ipv6: Option<ipv6::Ipv6Pods>,
    policies: Arc<PolicySet>,
    cloud: Arc<dyn Cloud>,
    /// Reloads the policy directory on change and SIGHUP.
    policy_watch: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Re-applies the egress rules when the VPC's CIDR blocks change.
    egress_refresh: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    plumbing: Arc<Plumbing>,
    node: NodeIdentity,
    /// Pod and node metadata, when a Kubernetes API is configured.
    kubernetes: Option<Arc<Kubernetes>>,
    /// Set while the Kubernetes API does not answer (reported once).
    api_unavailable: AtomicBool,
    metrics: Arc<Metrics>,
    /// ADDs hold it shared while they wire a pod; the leftover sweep holds
    /// it exclusively, so it never mistakes a veth being set up for a
    /// leftover.
    wiring: RwLock<()>,
    /// The most recent failed requests, for `weftd status`.
    errors: std::sync::Mutex<std::collections::VecDeque<crate::api::ErrorView>>,
    /// ADD, DEL and CHECK of one attachment run one at a time.
    attachments: keys::AttachmentLocks,
}

impl Agent {
    /// Builds the agent: connects to the cloud, loads the policies, opens
    /// the node's netlink connection and the state directory, and recovers
    /// the pool (inventory from the cloud, journal, checkpoint).
    pub async fn start(config: &AgentConfig) -> Result<Arc<Agent>> {
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new());
        let ipv6_mode = config.pool.ip_family == IpFamily::Ipv6;
        let plumbing_config = PlumbingConfig {
            enable_ipv6_forward: ipv6_mode && config.plumbing.enable_ip_forward,
            ..config.plumbing.clone()
        };
        let plumbing = Arc::new(Plumbing::new(plumbing_config).await?);
        // Opened (and locked) first: the simulator keeps its VPC in it.
        let state = StateDir::open(&config.agent.state_dir)?;
        let ipv6_checkpoint = state.ipv6_checkpoint_path();
        let cloud: Arc<dyn Cloud> = match &config.cloud {
            CloudConfig::Sim(sim) => {
                // Attached ENIs become links with the ENI's MAC in the node
                // namespace, so their host set-up runs for real.
                let node_netns = config
                    .plumbing
                    .node_netns
                    .clone()
                    .unwrap_or_else(|| "/proc/self/ns/net".into());
                let links = sim.materialise_enis.then(|| {
                    let links = NetnsEniLinks::new(node_netns)
                        .with_delay(Duration::from_millis(sim.link_delay_ms));
                    Arc::new(match &sim.vpc_netns {
                        Some(router) => links.with_fabric(router, sim.subnet_nets()),
                        None => links,
                    }) as Arc<dyn crate::cloud::sim::EniLinks>
                });
                let sim_cloud = sim.build(links, &config.agent.state_dir)?;
                if sim.materialise_enis && sim.vpc_netns.is_some() {
                    sim_cloud.materialise_primary().await?;
                }
                sim_cloud.materialise_secondaries().await?;
                Arc::new(sim_cloud)
            }
            CloudConfig::Ec2(ec2) => {
                Arc::new(Ec2Cloud::new(ec2.ec2_config(), metrics.clone()).await)
            }
        };
        let node = cloud.identity().await?;
        let ipv6 = match ipv6_mode {
            true => Some(
                ipv6::Ipv6Pods::start(
                    cloud.as_ref(),
                    &node,
                    ipv6_checkpoint,
                    config.egress.ipv4_egress_range(),
                )
                .await?,
            ),
            false => None,
        };
        let egress = egress::EgressRules::start(
            plumbing.clone(),
            cloud.clone(),
            &config.egress,
            &node,
            ipv6_mode,
        )
        .await?;
        let kubernetes = Kubernetes::connect(&config.kubernetes).await?;
        let policies = Arc::new(PolicySet::from_config(&config.policies, metrics.clone())?);
        // Before the first pool decision: the directory overrides the
        // configuration. Refused files are logged and shown in the status.
        policies.apply_directory();
        let policy_watch = Some(crate::policy::watch(policies.clone()));
        let hooks = Arc::new(PlumbingHooks::new(
            plumbing.clone(),
            cloud.clone(),
            config.plumbing.mtu,
            config.pool.eni_ready_timeout(),
            kubernetes.clone(),
        ));
        let pool = Pool::start(PoolDeps {
            cloud: cloud.clone(),
            policies: policies.clone(),
            state,
            metrics: metrics.clone(),
            hooks,
            config: config.pool.clone(),
        })
        .await?;
        let agent = Arc::new(Agent {
            pool,
            ipv6,
            policies,
            cloud,
            policy_watch: std::sync::Mutex::new(policy_watch),
            egress_refresh: std::sync::Mutex::new(Some(egress.spawn_refresh())),
            plumbing,
            node,
            kubernetes,
            api_unavailable: AtomicBool::new(false),
            metrics,
            wiring: RwLock::new(()),
            errors: Default::default(),
            attachments: keys::AttachmentLocks::default(),
        });
        // Veths, routes and rules of pods that went away while the agent was
        // down (the runtime's DEL found no agent) go now.
        if let Err(error) = agent.remove_leftovers().await {
            tracing::warn!(%error, "start-up GC of node leftovers failed; the next CNI GC retries");
        }
        tracing::info!(
            instance = %agent.node.instance_id,
            instance_type = %agent.node.instance_type,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "agent ready"
        );
        Ok(agent)
    }

    /// Compares the node's netlink state with the pool: removes host veths,
    /// routes and rules that belong to no attachment the pool holds, and
    /// reports attachments whose host veth is gone. Everything is logged.
    async fn remove_leftovers(&self) -> Result<()> {
        let _no_adds = self.wiring.write().await;
        let live: HashSet<String> = self
            .all_held()
            .iter()
            .map(|a| {
                self.plumbing
                    .host_veth_name(&a.pod.namespace, &a.pod.name, &a.key.ifname)
            })
            .collect();
        let leftovers = self.plumbing.gc(&live).await?;
        if !leftovers.is_empty() {
            tracing::info!(
                ?leftovers,
                "removed node leftovers of pods that no longer exist"
            );
        }
        for veth in self.plumbing.missing_veths(&live).await? {
            // Kept: the pod may still exist; its DEL, a CHECK or the next CNI
            // GC settles it, and releasing an address still routed is unsafe.
            tracing::warn!(
                %veth,
                "a pod holding an address has no host veth on the node; its address stays until its DEL or GC"
            );
        }
        Ok(())
    }

    /// The metrics text, with the pool gauges read now.
    fn render_metrics(&self) -> String {
        self.metrics.observe_pool(&self.pool.pool_states());
        self.metrics.encode()
    }

    /// Serves the API on `config.agent.socket` (and the TCP endpoints of
    /// `[agent]`) until `shutdown` completes, then stops the pool service.
    /// The conflist is written once the pool can answer ADDs.
    pub async fn serve(
        self: Arc<Self>,
        config: &AgentConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        // Before the first ADD: DELs the plugin kept while weftd was down
        // free their addresses first.
        let spool = DelSpool::beside(&config.agent.socket);
        let drained = self.drain_del_spool(&spool).await;
        if drained > 0 {
            tracing::info!(drained, "carried out the DELs kept while weftd was down");
        }
        let agent = self.clone();
        let metrics: MetricsFn = Arc::new(move || agent.render_metrics());
        let server = ApiServer::bind(
            ApiConfig {
                socket: config.agent.socket.clone(),
                ..ApiConfig::default()
            },
            self.clone(),
            metrics.clone(),
        )?;
        tracing::info!(socket = %config.agent.socket.display(), "serving the CNI API");
        let (stop_tx, stop_rx) = watch::channel(());
        let stopped = move || {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.changed().await;
            }
        };
        let mut tasks = JoinSet::new();
        let endpoints = [
            (
                "metrics",
                config.agent.metrics_address,
                metrics_router(self.clone(), metrics.clone()),
            ),
            (
                "introspection",
                config.agent.introspection_address,
                introspection_router(self.clone(), metrics),
            ),
        ];
        for (what, endpoint, router) in endpoints {
            let Some(address) = endpoint.0 else { continue };
            let endpoint = TcpEndpoint::bind(address, router).await?;
            tracing::info!(address = ?endpoint.local_addr(), "serving {what} over TCP");
            tasks.spawn(endpoint.serve(stopped()));
        }
        {
            let (agent, stop) = (self.clone(), stopped());
            tasks.spawn(async move {
                tokio::select! {
                    () = agent.keep_draining_del_spool(spool) => {}
                    () = stop => {}
                }
            });
        }
        if config.cni.write_conflist {
            let agent = self.clone();
            let (cni, socket) = (config.cni.clone(), config.agent.socket.clone());
            let stop = stopped();
            tasks.spawn(async move {
                tokio::select! {
                    () = agent.write_conflist_when_ready(&cni, &socket) => {}
                    () = stop => {}
                }
            });
        }
        server.serve(shutdown).await;
        drop(stop_tx);
        while tasks.join_next().await.is_some() {}
        for task in [&self.policy_watch, &self.egress_refresh] {
            let task = task
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(task) = task {
                task.abort();
            }
        }
        self.pool.shutdown().await;
        Ok(())
    }

    /// Waits until the pool can answer ADDs, then writes the conflist, so the
    /// runtime (and the kubelet's node readiness) sees the network only then.
    /// A failed write is retried every 5 s.
    async fn write_conflist_when_ready(
        &self,
        cni: &crate::config::CniSection,
        socket: &std::path::Path,
    ) {
        let mut reported = None;
        loop {
            match self.pool.not_ready_reason() {
                None => match crate::install::write_conflist(cni, socket) {
                    Ok(path) => {
                        tracing::info!(path = %path.display(), "ready: wrote the CNI network configuration");
                        return;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot write the CNI network configuration; the node stays NotReady; retrying in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                },
                Some(reason) => {
                    if reported.as_ref() != Some(&reason) {
                        tracing::info!(%reason, "not ready yet: the CNI network configuration waits");
                        reported = Some(reason);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
