//! Keeping the simulated VPC across agent restarts.
//!
//! A real node restarts its agent into the same VPC; so does `weftd run` on
//! the simulator when it has a state file: after every changing call the
//! VPC's ENIs are written (atomically) and a new simulator built from the
//! same seed takes them back, with their addresses held in their subnets.

use super::addresses::prefix_addresses;
use super::state::SimState;
use crate::cloud::error::CloudError;
use crate::cloud::types::Eni;
use ipnet::Ipv6Net;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Format version of the state file.
const VERSION: &str = "weft-sim/1";

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct SavedVpc {
    version: String,
    /// Saves so far; new ids after a restore come from a fresh stream.
    generation: u64,
    enis: Vec<Eni>,
    /// IPv6 prefixes by ENI id (absent in files of older builds).
    #[serde(default)]
    ipv6_prefixes: BTreeMap<String, Vec<Ipv6Net>>,
}

fn fatal(detail: String) -> CloudError {
    CloudError::Fatal {
        api: "SimCloud state file".into(),
        detail,
    }
}

/// Writes the VPC's ENIs to `path` (temp file, then rename).
pub(super) fn save(path: &Path, state: &SimState, generation: u64) -> Result<(), CloudError> {
    let saved = SavedVpc {
        version: VERSION.into(),
        generation,
        enis: state.enis.values().cloned().collect(),
        ipv6_prefixes: state.ipv6_prefixes.clone(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| fatal(e.to_string()))?;
    crate::state::write_atomic(path, &bytes)
        .map_err(|e| fatal(format!("writing {}: {e}", path.display())))
}

/// Locks the VPC kept in `path` against the other simulators sharing it
/// (an exclusive `flock` on `<path>.lock`) until the guard drops.
pub(super) fn lock(path: &Path) -> Result<Flock<File>, CloudError> {
    let lock_path = path.with_extension("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| fatal(format!("opening {}: {e}", lock_path.display())))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| fatal(format!("locking {}: {e}", lock_path.display())))
}

fn read(path: &Path) -> Result<Option<SavedVpc>, CloudError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fatal(format!("reading {}: {e}", path.display()))),
    };
    let saved: SavedVpc = serde_json::from_slice(&bytes).map_err(|e| {
        fatal(format!(
            "{} is not a simulator state file: {e}",
            path.display()
        ))
    })?;
    if saved.version != VERSION {
        return Err(fatal(format!(
            "{} has version {:?}, this weftd reads {VERSION:?}; delete it to start a new simulated VPC",
            path.display(),
            saved.version
        )));
    }
    Ok(Some(saved))
}

/// Takes the VPC another simulator sharing `path` saved, when its generation
/// is not `known` (ours): every ENI, and the subnets' free addresses rebuilt
/// from them. Returns the file's generation (`known` without a file).
pub(super) fn reload(path: &Path, state: &mut SimState, known: u64) -> Result<u64, CloudError> {
    let Some(saved) = read(path)? else {
        return Ok(known);
    };
    if saved.generation == known {
        return Ok(known);
    }
    for subnet in &mut state.subnets {
        subnet.pool = super::addresses::AddressPool::new(subnet.pool.net());
    }
    state.enis.clear();
    let generation = saved.generation;
    take(path, state, saved)?;
    Ok(generation)
}

/// Puts the saved ENIs into `state`, their addresses held in their subnets.
fn take(path: &Path, state: &mut SimState, saved: SavedVpc) -> Result<(), CloudError> {
    state.ipv6_prefixes = saved.ipv6_prefixes;
    for eni in saved.enis {
        let subnet = state
            .subnets
            .iter_mut()
            .find(|s| s.id == eni.subnet_id)
            .ok_or_else(|| {
                fatal(format!(
                    "{}: ENI {} is in subnet {}, which this configuration does not have",
                    path.display(),
                    eni.id,
                    eni.subnet_id
                ))
            })?;
        let held = std::iter::once(eni.primary_ip)
            .chain(eni.secondary_ips.iter().copied())
            .chain(eni.prefixes.iter().flat_map(|p| prefix_addresses(*p)));
        for ip in held {
            // The node's own primary address is taken again by the build.
            subnet.pool.take_exact(ip);
        }
        state.enis.insert(eni.id.clone(), eni);
    }
    Ok(())
}

/// Takes back the ENIs saved in `path`, if it exists, into a simulator just
/// built from `seed`; returns the saved generation (0 without a file).
pub(super) fn restore(path: &Path, state: &mut SimState, seed: u64) -> Result<u64, CloudError> {
    let Some(saved) = read(path)? else {
        return Ok(0);
    };
    let generation = saved.generation;
    take(path, state, saved)?;
    // Ids and addresses handed out from now on must not repeat the saved ones.
    state.rng = StdRng::seed_from_u64(seed ^ generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    Ok(generation)
}
