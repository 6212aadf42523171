//! Start-up: the inventory from the cloud, the journal replayed (finish or
//! undo what a previous run left in flight), the checkpoint laid over it.

use super::clock::PoolClock;
use super::config::PoolConfig;
use super::hooks::EniHooks;
use super::inventory::{TAG_OPERATION, log_corrections, to_ipam};
use super::ownership::{self, UnmanagedEni};
use crate::cloud::{self, Cloud, InstanceLimits, NodeIdentity};
use crate::ipam::{ADDRESSES_PER_PREFIX, Datastore, GivenBack};
use crate::state::{Checkpoint, Intent, Journal, Operation, StateDir};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::SystemTime;

/// What start-up hands the pool.
pub(super) struct Recovered {
    pub node: NodeIdentity,
    pub limits: InstanceLimits,
    pub store: Datastore,
    pub journal: Journal,
    pub enis: HashMap<String, cloud::Eni>,
    pub unmanaged: Vec<UnmanagedEni>,
}

/// Checkpointed addresses on none of `inventory`'s ENIs.
fn unseen(checkpoint: &Checkpoint, inventory: &[cloud::Eni]) -> usize {
    checkpoint
        .allocations
        .iter()
        .filter(|a| {
            !inventory.iter().any(|e| {
                e.secondary_ips.contains(&a.ip) || e.prefixes.iter().any(|p| p.contains(&a.ip))
            })
        })
        .count()
}

/// The node's ENIs, read again (up to the confirmations, spread over the
/// grace period) while a read lacks addresses the checkpoint has pods on:
/// one stale read must not drop a running pod's address at start-up.
async fn confirmed_inventory(
    cloud: &dyn Cloud,
    checkpoint: &Checkpoint,
    mut inventory: Vec<cloud::Eni>,
    config: &PoolConfig,
) -> Result<Vec<cloud::Eni>, cloud::CloudError> {
    let reads = config.stale_read_confirmations.max(1);
    let pause = config.stale_read_grace() / reads;
    for read in 1..reads {
        let missing = unseen(checkpoint, &inventory);
        if missing == 0 {
            break;
        }
        tracing::info!(
            missing,
            read,
            "checkpointed addresses missing from EC2's answer; reading again"
        );
        tokio::time::sleep(pause).await;
        inventory = cloud.list_enis().await?;
    }
    Ok(inventory)
}

/// Whether any pod of the checkpoint holds an address of `eni`.
fn has_pods(eni: &cloud::Eni, checkpoint: &Checkpoint) -> bool {
    checkpoint.allocations.iter().any(|a| {
        eni.secondary_ips.contains(&a.ip) || eni.prefixes.iter().any(|p| p.contains(&a.ip))
    })
}

/// Whether an interrupted release of ENI `eni_id` must keep it: it is the
/// primary or has pods.
fn keeps_eni(
    eni_id: &str,
    node: &NodeIdentity,
    inventory: &[cloud::Eni],
    checkpoint: &Checkpoint,
) -> bool {
    inventory
        .iter()
        .find(|e| e.id == eni_id)
        .is_some_and(|eni| eni.id == node.primary_eni_id || has_pods(eni, checkpoint))
}

/// What an interrupted intent gave back to EC2 (or may have) by `at`, its
/// replay included: a stale read at start-up must not bring it back, as if
/// the checkpoint said so. An unassign counts even when its replay failed
/// (EC2 may have carried out the interrupted call: a stale read then still
/// shows addresses that are gone, and the replay is refused); withheld
/// addresses EC2 still has come back from reads after the grace period. An
/// ENI counts only once its delete succeeded.
fn given_back_by(
    intent: &Intent,
    replayed: bool,
    node: &NodeIdentity,
    inventory: &[cloud::Eni],
    checkpoint: &Checkpoint,
    at: SystemTime,
    out: &mut GivenBack,
) {
    let held = |ip: &Ipv4Addr| checkpoint.allocations.iter().any(|a| a.ip == *ip);
    match &intent.op {
        Operation::UnassignAddresses { ips, prefixes, .. } => {
            let in_prefixes = prefixes.iter().flat_map(|p| {
                let first = u32::from(p.network());
                (first..first + ADDRESSES_PER_PREFIX).map(Ipv4Addr::from)
            });
            let all: Vec<Ipv4Addr> = ips.iter().copied().chain(in_prefixes).collect();
            out.addresses
                .extend(all.into_iter().filter(|ip| !held(ip)).map(|ip| (ip, at)));
        }
        Operation::DetachEni { eni_id, .. } | Operation::DeleteEni { eni_id }
            if replayed && !keeps_eni(eni_id, node, inventory, checkpoint) =>
        {
            out.enis.push((eni_id.clone(), at));
        }
        _ => {}
    }
}

/// Finishes or undoes one intent a previous run left pending. Returns
/// whether the cloud was changed.
async fn replay(
    cloud: &dyn Cloud,
    node: &NodeIdentity,
    intent: &Intent,
    inventory: &[cloud::Eni],
    checkpoint: &Checkpoint,
) -> Result<bool, cloud::CloudError> {
    let attached = |id: &str| inventory.iter().find(|e| e.id == id);
    match &intent.op {
        Operation::CreateEni { .. } => {
            let mut changed = false;
            for eni in cloud
                .find_enis_by_tag(TAG_OPERATION, intent.id.as_str())
                .await?
            {
                let ours = eni
                    .attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == node.instance_id);
                if ours {
                    tracing::info!(op = %intent.id, eni = %eni.id, "interrupted create: the ENI is attached; keeping it");
                } else {
                    tracing::warn!(op = %intent.id, eni = %eni.id, "interrupted create: the ENI was never attached; deleting it");
                    cloud.delete_eni(&eni.id).await?;
                    changed = true;
                }
            }
            Ok(changed)
        }
        Operation::AssignAddresses { eni_id, .. } | Operation::AttachEni { eni_id, .. } => {
            tracing::info!(op = %intent.id, eni = %eni_id, kind = ?intent.op, "interrupted operation: the cloud's inventory has its result");
            Ok(false)
        }
        Operation::UnassignAddresses {
            eni_id,
            ips,
            prefixes,
        } => {
            let Some(eni) = attached(eni_id) else {
                return Ok(false);
            };
            let held = |ip: &Ipv4Addr| checkpoint.allocations.iter().any(|a| a.ip == *ip);
            let ips: Vec<Ipv4Addr> = ips
                .iter()
                .filter(|ip| eni.secondary_ips.contains(ip) && !held(ip))
                .copied()
                .collect();
            let prefixes: Vec<_> = prefixes
                .iter()
                .filter(|p| {
                    eni.prefixes.contains(p)
                        && !checkpoint.allocations.iter().any(|a| p.contains(&a.ip))
                })
                .copied()
                .collect();
            tracing::info!(op = %intent.id, eni = %eni_id, ?ips, ?prefixes, "interrupted unassign: redoing it");
            if !ips.is_empty() {
                cloud.unassign_ips(eni_id, &ips).await?;
            }
            if !prefixes.is_empty() {
                cloud.unassign_prefixes(eni_id, &prefixes).await?;
            }
            Ok(!ips.is_empty() || !prefixes.is_empty())
        }
        Operation::DetachEni { eni_id, .. } | Operation::DeleteEni { eni_id } => {
            if keeps_eni(eni_id, node, inventory, checkpoint) {
                tracing::error!(op = %intent.id, eni = %eni_id, "interrupted release of an ENI that has pods or is primary; keeping it");
                return Ok(false);
            }
            tracing::info!(op = %intent.id, eni = %eni_id, "interrupted release: deleting the ENI");
            cloud.delete_eni(eni_id).await?;
            Ok(true)
        }
    }
}

/// Rebuilds the pool of this node.
pub(super) async fn recover(
    cloud: &dyn Cloud,
    hooks: &dyn EniHooks,
    state: &StateDir,
    config: &PoolConfig,
    clock: &PoolClock,
) -> crate::Result<Recovered> {
    let (mut journal, pending) = state.open_journal()?;
    let checkpoint = state.load_checkpoint()?;
    // Independent describe calls, sent together.
    let (node, limits, mut inventory) =
        tokio::try_join!(cloud.identity(), cloud.instance_limits(), cloud.list_enis())?;

    let mut changed = false;
    let mut given_back = checkpoint.given_back.clone();
    for intent in &pending {
        let replayed = replay(cloud, &node, intent, &inventory, &checkpoint).await;
        given_back_by(
            intent,
            replayed.is_ok(),
            &node,
            &inventory,
            &checkpoint,
            clock.now().wall,
            &mut given_back,
        );
        match replayed {
            Ok(c) => {
                changed |= c;
                journal.finish(&intent.id)?;
            }
            Err(error) => {
                tracing::warn!(op = %intent.id, %error, "interrupted operation not resolved; retried at the next start");
            }
        }
    }
    if changed {
        inventory = cloud.list_enis().await?;
    }
    let inventory = confirmed_inventory(cloud, &checkpoint, inventory, config).await?;
    let (inventory, unmanaged) = ownership::classify(inventory, &node);
    for eni in &unmanaged {
        tracing::info!(eni = %eni.id, reason = %eni.reason, "ENI not managed by Weft");
    }

    let now = clock.now();
    let ipam_inventory: Vec<_> = inventory
        .iter()
        .map(|e| to_ipam(e, &node.primary_eni_id, now.wall))
        .collect();
    let (store, corrections) = Datastore::rebuild(
        config.ipam(&node.security_groups),
        &ipam_inventory,
        checkpoint.allocations,
        &checkpoint.cooling,
        &given_back,
        now,
    );
    let mut store = store;
    store.set_foreign_enis(ownership::on_default_card(&unmanaged));
    if log_corrections(&corrections, "start-up") {
        state.save_checkpoint(&Checkpoint::of(&store, now))?;
    }
    for eni in inventory.iter().filter(|e| e.id != node.primary_eni_id) {
        if let Err(why) = hooks.on_attached(eni).await {
            tracing::error!(eni = %eni.id, %why, "node set-up of an attached ENI failed at start-up");
        }
    }
    let enis = inventory.into_iter().map(|e| (e.id.clone(), e)).collect();
    Ok(Recovered {
        node,
        limits,
        store,
        journal,
        enis,
        unmanaged,
    })
}
