//! `weftd simulate`: replays a pod churn trace through pool-sizing policies
//! in virtual time and compares them.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use weft_host::cloud::{ActionClass, BucketSpec, RateLimits};
use weft_host::policy::PolicyConfig;
use weft_host::simulate::{self, PolicySpec, Report, Shape, SimConfig, Trace};

/// Arguments of `weftd simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The trace to replay (JSON Lines; see the README's "Simulating pool
    /// policies").
    #[arg(long, conflicts_with = "generate")]
    trace: Option<PathBuf>,
    /// Generate a trace instead: steady, diurnal, rollout[:SURGE], cronjob,
    /// drain-refill, start-from-zero, batch.
    #[arg(long, value_name = "SHAPE")]
    generate: Option<Shape>,
    /// Seed of the generated trace and of the simulated EC2.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of the generated trace in minutes.
    #[arg(long, default_value_t = 60)]
    minutes: u32,
    /// Writes the (generated) trace to this file.
    #[arg(long, value_name = "FILE")]
    write_trace: Option<PathBuf>,
    /// Policies to compare: `warm-pool` (built in) or a component's path,
    /// each optionally followed by `@` and its settings as JSON, e.g.
    /// `vpc_cni_compat.wasm@{"warm-ip-target":5}`. Without any, a generated
    /// trace is printed.
    #[arg(long, alias = "policy", num_args = 1.., value_name = "POLICY")]
    compare: Vec<String>,
    /// Seconds the agent runs before the trace's first event (kubelet
    /// schedules pods only on a Ready node; the pool's first rounds run
    /// meanwhile). 0 replays pods arriving as the agent starts.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    warm_up: u64,
    /// The simulated node's instance type.
    #[arg(long, default_value = "m5.2xlarge")]
    instance_type: String,
    /// An EC2 latency, `API=MS` (repeatable), e.g. `AttachNetworkInterface=3000`.
    #[arg(long, value_name = "API=MS")]
    latency: Vec<String>,
    /// Share of the account's EC2 request buckets this node gets (1 = the
    /// whole account's buckets; other nodes use the rest).
    #[arg(long, default_value_t = 1.0)]
    bucket_share: f64,
    /// Writes the comparison plot (SVG) here.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Writes the reports as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs `weftd simulate`.
pub(crate) fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let (trace, title) = match (&args.trace, args.generate) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the trace {}", path.display()))?;
            let trace = Trace::parse(&text).with_context(|| format!("{}", path.display()))?;
            (trace, path.display().to_string())
        }
        (None, Some(shape)) => (
            simulate::generate(shape, args.seed, args.minutes),
            format!("{shape} (seed {}, {} min)", args.seed, args.minutes),
        ),
        (None, None) => {
            anyhow::bail!("give a trace (--trace FILE) or a shape (--generate SHAPE)");
        }
    };
    if let Some(path) = &args.write_trace {
        write(path, &trace.to_jsonl())?;
    }
    if args.compare.is_empty() {
        if args.write_trace.is_none() {
            print!("{}", trace.to_jsonl());
        }
        return Ok(());
    }
    let config = sim_config(&args)?;
    let policies = args
        .compare
        .iter()
        .map(|spec| policy_spec(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut reports: Vec<Report> = Vec::new();
    for policy in &policies {
        let bar = ProgressBar::new(trace.duration() as u64 + config.tail.as_secs());
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} s virtual")?
                .progress_chars("=> "),
        );
        bar.set_message(policy.name.clone());
        let report = simulate::run(&trace, policy, &config, &|done| bar.set_position(done))?;
        bar.finish_and_clear();
        reports.push(report);
    }
    println!(
        "trace: {title}; {} events; instance {}; seed {}\n",
        trace.events.len(),
        config.instance_type,
        config.seed
    );
    print!("{}", simulate::table(&reports));
    if let Some(path) = &args.plot {
        write(path, &simulate::svg(&title, &reports))?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&reports)?;
        write(path, &json)?;
    }
    Ok(())
}

fn write(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn sim_config(args: &SimulateArgs) -> anyhow::Result<SimConfig> {
    let mut config = SimConfig {
        instance_type: args.instance_type.clone(),
        seed: args.seed,
        warm_up: std::time::Duration::from_secs(args.warm_up),
        ..SimConfig::default()
    };
    for spec in &args.latency {
        config.latencies.set(spec).map_err(anyhow::Error::msg)?;
    }
    if !(args.bucket_share > 0.0 && args.bucket_share <= 1.0) {
        return Err(anyhow::anyhow!(
            "--bucket-share {} must be in (0, 1]",
            args.bucket_share
        ));
    }
    let aws = RateLimits::aws();
    config.throttle = ActionClass::ALL.iter().fold(aws, |limits, &class| {
        let spec = aws.spec(class);
        limits.with(
            class,
            BucketSpec {
                capacity: ((f64::from(spec.capacity) * args.bucket_share).ceil() as u32).max(1),
                refill_per_sec: spec.refill_per_sec * args.bucket_share,
            },
        )
    });
    Ok(config)
}

/// `warm-pool`, or `PATH`, each with an optional `@SETTINGS`.
fn policy_spec(spec: &str) -> anyhow::Result<PolicySpec> {
    let (what, settings) = match spec.split_once('@') {
        Some((what, json)) => {
            let settings: serde_json::Value = serde_json::from_str(json)
                .with_context(|| format!("policy {spec:?}: settings after @ are not JSON"))?;
            (what, Some(settings))
        }
        None => (spec, None),
    };
    let name = match &settings {
        Some(settings) => format!("{} {settings}", stem(what)),
        None => stem(what),
    };
    if what == "warm-pool" {
        let config = settings.map(|settings| PolicyConfig {
            settings,
            ..PolicyConfig::default()
        });
        return Ok(PolicySpec { name, config });
    }
    let path = PathBuf::from(what);
    if !path.is_file() {
        return Err(anyhow::anyhow!(
            "policy {what:?}: no such component file (give `warm-pool` or a .wasm path)"
        ));
    }
    let mut config = PolicyConfig::module(path);
    if let Some(settings) = settings {
        config.settings = settings;
    }
    // A simulated decision may be slow on a loaded machine; the sandbox's
    // limits still apply, only the deadline is relaxed.
    config.deadline_ms = 1000;
    Ok(PolicySpec {
        name,
        config: Some(config),
    })
}

fn stem(what: &str) -> String {
    std::path::Path::new(what)
        .file_stem()
        .map_or_else(|| what.to_owned(), |s| s.to_string_lossy().into_owned())
}
