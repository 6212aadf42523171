//! `weftd policy check` and `weftd policy eval` (`--live`: see `live`;
//! `weftd policy new` is in `policy_new.rs`).

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use weft_host::policy::{
    CallLimits, CallStats, CompiledPolicy, Decision, PolicyEngine, PolicyModule, validate,
};
use weft_host::policy::{DEFAULT_DEADLINE_MS, DEFAULT_MEMORY_MIB};
use weft_policy_sdk::{pool, security};

/// `weftd policy ...`
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Load a policy component and print its world, imports, size and
    /// compile time.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Run one decision under the real sandbox and print the decision with
    /// the time and memory it used.
    Eval(EvalArgs),
    /// Write a new policy project (Rust, Python or JavaScript) that builds,
    /// with a fixture, a test and a README.
    New(super::policy_new::NewArgs),
}

/// Arguments of `weftd policy eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// The component (`.wasm`).
    #[arg(long)]
    policy: PathBuf,
    /// A fixture file: `{"settings": {...}, "input": {...}, ...}`.
    #[arg(long, required_unless_present = "live", conflicts_with = "live")]
    input: Option<PathBuf>,
    /// Ask the running agent for the node's current inputs and print the
    /// policy's decision for each next to the active policy's. No side
    /// effect: the policy runs here, not in the agent.
    #[arg(long)]
    live: bool,
    /// The agent's API socket (with `--live`).
    #[arg(long, default_value = weft_cni::netconf::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Settings JSON, overriding the fixture's `settings`.
    #[arg(long)]
    settings: Option<String>,
    /// Deadline in milliseconds.
    #[arg(long, default_value_t = DEFAULT_DEADLINE_MS)]
    deadline_ms: u64,
    /// Memory cap in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MIB)]
    memory_mib: u32,
}

/// Runs a policy subcommand.
pub(crate) fn run(command: PolicyCommand) -> anyhow::Result<()> {
    let engine = || {
        PolicyEngine::new(None)
            .map_err(|e| anyhow::anyhow!("cannot create the policy engine: {e:#}"))
    };
    match command {
        PolicyCommand::Check { file } => check(&engine()?, &file),
        PolicyCommand::Eval(args) => eval(&engine()?, &args),
        PolicyCommand::New(args) => super::policy_new::run(&args),
    }
}

fn load(engine: &PolicyEngine, file: &Path) -> anyhow::Result<CompiledPolicy> {
    CompiledPolicy::from_file(engine, file, &policy_name(file), None, None)
        .map_err(anyhow::Error::from)
}

fn policy_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string())
}

fn check(engine: &PolicyEngine, file: &Path) -> anyhow::Result<()> {
    let compiled = load(engine, file)?;
    let r = compiled.report();
    println!("file:         {}", file.display());
    println!(
        "world:        {} ({} decision, weft:policy@0.1.0)",
        r.world, r.decision
    );
    println!("size:         {} bytes", r.size);
    println!("sha256:       {}", r.sha256);
    println!("compile time: {:.1} ms", r.compile_time.as_secs_f64() * 1e3);
    println!("imports:      {}", r.imports.len());
    for import in &r.imports {
        println!("  {import}");
    }
    Ok(())
}

fn eval(engine: &PolicyEngine, args: &EvalArgs) -> anyhow::Result<()> {
    let settings = match &args.settings {
        Some(s) => Some(
            serde_json::from_str::<Value>(s)
                .context("--settings is not JSON")?
                .to_string(),
        ),
        None => None,
    };
    let limits = CallLimits {
        deadline: std::time::Duration::from_millis(args.deadline_ms),
        memory_bytes: args.memory_mib as usize * 1024 * 1024,
    };
    let Some(input_file) = &args.input else {
        let module =
            load(engine, &args.policy)?.configure(settings.as_deref().unwrap_or("{}"), limits)?;
        return super::live::eval(&module, &args.socket);
    };
    let text = std::fs::read_to_string(input_file)
        .with_context(|| format!("cannot read {}", input_file.display()))?;
    let case: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", input_file.display()))?;
    let input = case
        .get("input")
        .with_context(|| format!("{} has no \"input\"", input_file.display()))?;
    let settings = settings.unwrap_or_else(|| {
        case.get("settings")
            .map_or_else(|| "{}".to_owned(), Value::to_string)
    });
    let module = load(engine, &args.policy)?.configure(&settings, limits)?;
    let (decision, notes, stats) = decide(&module, input)?;
    let out = json!({
        "policy": module.name(),
        "world": module.report().decision.as_str(),
        "decision": decision,
        "adjustments": notes,
        "elapsed-us": stats.elapsed.as_micros() as u64,
        "peak-memory-bytes": stats.peak_memory,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Runs the decision of the module's world on `input`; returns the raw
/// decision as JSON and the host's clamping notes. An output the host
/// would reject is an error.
fn decide(module: &PolicyModule, input: &Value) -> anyhow::Result<(Value, Vec<String>, CallStats)> {
    let world = module.report().decision;
    let bad_input = |e: serde_json::Error| anyhow::anyhow!("\"input\" is not a {world} input: {e}");
    let to_json = |v: serde_json::Result<Value>| v.context("cannot render the decision");
    match world {
        Decision::PoolSizing => {
            let state: pool::PoolState =
                serde_json::from_value(input.clone()).map_err(bad_input)?;
            let (decision, stats) = module.size_pool(&state)?;
            let notes = validate::pool_decision(decision.clone(), &state).adjustments;
            Ok((to_json(serde_json::to_value(&decision))?, notes, stats))
        }
        Decision::SubnetSelection => {
            let input: weft_policy_sdk::testing::SubnetInput =
                serde_json::from_value(input.clone()).map_err(bad_input)?;
            let (choice, stats) = module.select_subnet(&input.request, &input.candidates)?;
            validate::subnet_choice(choice.clone(), &input.candidates).map_err(|m| {
                anyhow::anyhow!(
                    "{world} policy `{}` returned an invalid decision: {m}",
                    module.name()
                )
            })?;
            Ok((to_json(serde_json::to_value(&choice))?, Vec::new(), stats))
        }
        Decision::SecurityGroups => {
            let request: security::Request =
                serde_json::from_value(input.clone()).map_err(bad_input)?;
            let (answer, stats) = module.select_security_groups(&request)?;
            let outcome = match answer {
                Ok(groups) => {
                    let groups = validate::security_groups(groups, None).map_err(|m| {
                        anyhow::anyhow!(
                            "{world} policy `{}` returned an invalid decision: {m}",
                            module.name()
                        )
                    })?;
                    json!({ "ok": groups })
                }
                Err(refusal) => json!({ "err": refusal }),
            };
            Ok((outcome, Vec::new(), stats))
        }
    }
}
