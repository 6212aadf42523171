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
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format version of the state file.
const VERSION: &str = "weft-sim/1";

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct SavedVpc {
    version: String,
    /// Saves so far; new ids after a restore come from a fresh stream.
    generation: u64,
    enis: Vec<Eni>,
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
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| fatal(e.to_string()))?;
    crate::state::write_atomic(path, &bytes)
        .map_err(|e| fatal(format!("writing {}: {e}", path.display())))
}

/// Takes back the ENIs saved in `path`, if it exists, into a simulator just
/// built from `seed`; returns the saved generation (0 without a file).
pub(super) fn restore(path: &Path, state: &mut SimState, seed: u64) -> Result<u64, CloudError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
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
    // Ids and addresses handed out from now on must not repeat the saved ones.
    state.rng = StdRng::seed_from_u64(seed ^ saved.generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    Ok(saved.generation)
}
