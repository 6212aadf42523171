//! `weftd policy eval --live`: the node's current inputs from the running
//! agent, the candidate policy's decision for each (run here, under the
//! real sandbox), next to the active policy's.

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use weft_cni::client::Client;
use weft_host::api::PATH_POLICY_INPUTS;
use weft_host::policy::view::{LiveInputs, same_answer};
use weft_host::policy::{Decision, PolicyModule, validate};

/// How long the agent may take to gather the inputs.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Prints `module`'s decision for every current input of its world next to
/// the active policy's, and how many differ.
pub(super) fn eval(module: &PolicyModule, socket: &Path) -> anyhow::Result<()> {
    let inputs: LiveInputs = Client::new(socket, TIMEOUT)
        .call::<(), _>("GET", PATH_POLICY_INPUTS, None)
        .with_context(|| format!("asking weftd at {} for its inputs", socket.display()))?;
    let world = module.report().decision;
    println!(
        "candidate `{}` ({world}, sha256 {}) against the active policy of weftd at {}",
        module.name(),
        module.report().sha256,
        socket.display()
    );
    let rows: Vec<(String, Value, Value)> = match world {
        Decision::PoolSizing => inputs
            .pool_sizing
            .iter()
            .map(|live| {
                let candidate = match module.size_pool(&live.input) {
                    Ok((d, _)) => to_json(&validate::pool_decision(d, &live.input).decision),
                    Err(e) => json!({ "failed": e.to_string() }),
                };
                let what = format!(
                    "group {} ({} ENIs, {} assigned)",
                    live.input.group.join(","),
                    live.input.enis.len(),
                    live.input.node_assigned
                );
                (what, to_json(&live.active), candidate)
            })
            .collect(),
        Decision::SubnetSelection => inputs
            .subnet_selection
            .iter()
            .map(|live| {
                let candidate = match module.select_subnet(&live.request, &live.candidates) {
                    Ok((c, _)) => match validate::subnet_choice(c, &live.candidates) {
                        Ok(c) => to_json(&c),
                        Err(m) => json!({ "failed": m }),
                    },
                    Err(e) => json!({ "failed": e.to_string() }),
                };
                let what = format!(
                    "new ENI for {} ({} candidate subnets)",
                    live.request.security_groups.join(","),
                    live.candidates.len()
                );
                (what, to_json(&live.active), candidate)
            })
            .collect(),
        Decision::SecurityGroups => inputs
            .security_groups
            .iter()
            .map(|live| {
                let candidate = match module.select_security_groups(&live.input) {
                    Ok((Ok(groups), _)) => match validate::security_groups(groups, None) {
                        Ok(groups) => json!({ "ok": groups }),
                        Err(m) => json!({ "failed": m }),
                    },
                    Ok((Err(refusal), _)) => json!({ "err": refusal }),
                    Err(e) => json!({ "failed": e.to_string() }),
                };
                let what = format!("pod {}/{}", live.input.pod.namespace, live.input.pod.name);
                (what, live.active.clone(), candidate)
            })
            .collect(),
    };
    let mut differ = 0;
    for (what, active, candidate) in &rows {
        let same = same_answer(active, candidate);
        differ += usize::from(!same);
        println!("{world}: {what}{}", if same { "" } else { "  [differs]" });
        println!("  active:    {active}");
        println!("  candidate: {candidate}");
    }
    println!(
        "{} {world} input(s), {differ} decided differently",
        rows.len()
    );
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({ "failed": e.to_string() }))
}
