//! Synthetic churn traces of the shapes operators meet, deterministic under
//! a seed (`weftd simulate --generate SHAPE --seed N`).

use super::error::SimulateError;
use super::trace::{Event, Op, Trace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A trace shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// ~20 pods with exponential lifetimes (mean 10 min), replaced as they go.
    Steady,
    /// Demand follows a compressed day: 4 pods at night, ~40 at the peak.
    Diurnal,
    /// A 24-replica deployment rolled out every 12 minutes with a surge of
    /// `surge` pods at a time (each new pod ready after ~15 s, then one old
    /// pod goes).
    Rollout {
        /// Extra pods during the rollout (maxSurge).
        surge: u32,
    },
    /// A CronJob starting 12 pods on every minute, each living 15-40 s, over
    /// 6 long-lived pods.
    Cronjob,
    /// 30 pods; every 15 minutes the node is drained (pods go within 30 s),
    /// stays empty 3 minutes and is refilled within a minute.
    DrainRefill,
    /// A fresh node: 40 pods arrive in the first 2 minutes, then steady churn.
    StartFromZero,
    /// A batch job fans out 40 pods at once every 15 minutes; each runs 2-5
    /// minutes.
    Batch,
}

impl Shape {
    /// Every shape (rollout with a surge of 4).
    #[cfg(test)]
    pub(crate) const ALL: [Shape; 7] = [
        Shape::Steady,
        Shape::Diurnal,
        Shape::Rollout { surge: 4 },
        Shape::Cronjob,
        Shape::DrainRefill,
        Shape::StartFromZero,
        Shape::Batch,
    ];
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Steady => f.write_str("steady"),
            Shape::Diurnal => f.write_str("diurnal"),
            Shape::Rollout { surge } => write!(f, "rollout:{surge}"),
            Shape::Cronjob => f.write_str("cronjob"),
            Shape::DrainRefill => f.write_str("drain-refill"),
            Shape::StartFromZero => f.write_str("start-from-zero"),
            Shape::Batch => f.write_str("batch"),
        }
    }
}

impl FromStr for Shape {
    type Err = SimulateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || {
            SimulateError::Usage(format!(
                "unknown trace shape {s:?}; use one of steady, diurnal, rollout[:SURGE], cronjob, \
             drain-refill, start-from-zero, batch"
            ))
        };
        Ok(match s {
            "steady" => Shape::Steady,
            "diurnal" => Shape::Diurnal,
            "rollout" => Shape::Rollout { surge: 4 },
            "cronjob" => Shape::Cronjob,
            "drain-refill" => Shape::DrainRefill,
            "start-from-zero" => Shape::StartFromZero,
            "batch" => Shape::Batch,
            other => match other.strip_prefix("rollout:").map(str::parse::<u32>) {
                Some(Ok(surge)) if (1..=24).contains(&surge) => Shape::Rollout { surge },
                _ => return Err(unknown()),
            },
        })
    }
}

/// One pod of a generated trace.
struct Pod {
    app: &'static str,
    start: f64,
    stop: f64,
}

/// Builds a trace: pods with a start and a stop, turned into events.
struct Builder {
    rng: StdRng,
    namespace: String,
    end: f64,
    pods: Vec<Pod>,
}

impl Builder {
    fn new(shape: Shape, seed: u64, end: f64) -> Self {
        Builder {
            rng: StdRng::seed_from_u64(seed),
            namespace: shape.to_string().replace(':', "-"),
            end,
            pods: Vec::new(),
        }
    }

    /// A pod from `start` to `stop` (still running at the end of the trace
    /// when `stop` is beyond it); returns its index.
    fn pod(&mut self, app: &'static str, start: f64, stop: f64) -> usize {
        self.pods.push(Pod { app, start, stop });
        self.pods.len() - 1
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.rng.random::<f64>()).ln()
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        self.rng.random_range(low..high)
    }

    /// Pods kept at `target(t)` (looked at every 10 s from `from`), each
    /// living an exponential time of mean `life` s and replaced when it
    /// goes; when the target drops, the youngest extra pods go.
    fn population(&mut self, app: &'static str, from: f64, life: f64, target: impl Fn(f64) -> f64) {
        let mut live: Vec<usize> = Vec::new();
        let mut t = from;
        while t < self.end {
            live.retain(|&i| self.pods[i].stop > t);
            let want = target(t).round().max(0.0) as usize;
            while live.len() < want {
                let start = t + self.uniform(0.0, 10.0);
                let stop = start + self.exp(life).max(5.0);
                live.push(self.pod(app, start, stop));
            }
            while live.len() > want {
                if let Some(i) = live.pop() {
                    let stop = t + self.uniform(0.0, 10.0);
                    self.pods[i].stop = self.pods[i].stop.min(stop.max(self.pods[i].start + 1.0));
                }
            }
            t += 10.0;
        }
    }

    fn finish(self) -> Trace {
        let mut events = Vec::new();
        for (n, pod) in self.pods.iter().enumerate() {
            if pod.start >= self.end {
                continue;
            }
            let name = format!("{}-{n}", pod.app);
            let event = |t: f64, op| Event {
                t: (t * 1000.0).round() / 1000.0,
                op,
                pod: name.clone(),
                namespace: self.namespace.clone(),
                labels: BTreeMap::from([("app".to_owned(), pod.app.to_owned())]),
                service_account: Some(pod.app.to_owned()),
            };
            events.push(event(pod.start, Op::Add));
            if pod.stop < self.end {
                events.push(event(pod.stop, Op::Remove));
            }
        }
        // Stable: an ADD and the DEL of the same pod keep their order.
        events.sort_by(|a, b| a.t.total_cmp(&b.t));
        Trace { events }
    }
}

/// A trace of `shape`, `minutes` long, from `seed`.
pub fn generate(shape: Shape, seed: u64, minutes: u32) -> Trace {
    let end = f64::from(minutes) * 60.0;
    let mut b = Builder::new(shape, seed, end);
    match shape {
        Shape::Steady => b.population("web", 0.0, 600.0, |_| 20.0),
        Shape::Diurnal => {
            // One "day" per hour of trace.
            b.population("web", 0.0, 300.0, |t| {
                let day = (t / 3600.0) * std::f64::consts::TAU;
                22.0 - 18.0 * day.cos()
            });
        }
        Shape::Rollout { surge } => {
            let replicas = 24usize;
            let mut current: Vec<usize> =
                (0..replicas).map(|_| b.pod("api", 0.0, f64::MAX)).collect();
            let mut t = 720.0;
            while t < end {
                // Replace the deployment's pods `surge` at a time.
                let mut next = Vec::with_capacity(replicas);
                let mut old = std::mem::take(&mut current);
                while !old.is_empty() {
                    let batch = old.len().min(surge as usize);
                    for old_pod in old.drain(..batch) {
                        let start = t + b.uniform(0.0, 2.0);
                        next.push(b.pod("api", start, f64::MAX));
                        let ready = 15.0 + b.uniform(0.0, 5.0);
                        b.pods[old_pod].stop = start + ready;
                    }
                    t += 20.0;
                }
                current = next;
                t += 720.0;
            }
        }
        Shape::Cronjob => {
            for _ in 0..6 {
                let start = b.uniform(0.0, 5.0);
                b.pod("daemon", start, f64::MAX);
            }
            let mut minute = 60.0;
            while minute < end {
                for _ in 0..12 {
                    let start = minute + b.uniform(0.0, 3.0);
                    let stop = start + b.uniform(15.0, 40.0);
                    b.pod("cron", start, stop);
                }
                minute += 60.0;
            }
        }
        Shape::DrainRefill => {
            let mut t = 0.0;
            while t < end {
                for _ in 0..30 {
                    let start = t + b.uniform(0.0, 60.0);
                    let stop = t + 900.0 + b.uniform(0.0, 30.0);
                    b.pod("app", start, stop);
                }
                t += 900.0 + 180.0;
            }
        }
        Shape::StartFromZero => {
            for _ in 0..40 {
                let start = b.uniform(0.0, 120.0);
                let stop = start + 120.0 + b.exp(900.0);
                b.pod("app", start, stop);
            }
            b.population("web", 300.0, 600.0, |_| 10.0);
        }
        Shape::Batch => {
            b.population("web", 0.0, 600.0, |_| 8.0);
            let mut t = 120.0;
            while t < end {
                for _ in 0..40 {
                    let start = t + b.uniform(0.0, 5.0);
                    let stop = start + b.uniform(120.0, 300.0);
                    b.pod("batch", start, stop);
                }
                t += 900.0;
            }
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn shapes_parse_and_print_back() {
        for shape in Shape::ALL {
            assert_eq!(shape.to_string().parse::<Shape>().unwrap(), shape);
        }
        assert_eq!(
            "rollout".parse::<Shape>().unwrap(),
            Shape::Rollout { surge: 4 }
        );
        let error = "tidal".parse::<Shape>().unwrap_err().to_string();
        assert!(error.contains("drain-refill"), "{error}");
        assert!("rollout:0".parse::<Shape>().is_err());
    }

    #[test]
    fn traces_are_deterministic_well_formed_and_seed_dependent() {
        for shape in Shape::ALL {
            let trace = generate(shape, 7, 60);
            assert_eq!(trace, generate(shape, 7, 60), "{shape}");
            assert_ne!(trace, generate(shape, 8, 60), "{shape}");
            assert_eq!(Trace::parse(&trace.to_jsonl()).unwrap(), trace, "{shape}");
            // Every pod is added once, removed at most once and only after
            // its ADD, and the node never holds more than 58 pods (m5.2xlarge).
            let mut live = BTreeSet::new();
            let mut seen = BTreeSet::new();
            let mut peak = 0;
            for e in &trace.events {
                match e.op {
                    Op::Add => {
                        assert!(seen.insert(e.pod.clone()), "{shape}: {} added twice", e.pod);
                        live.insert(e.pod.clone());
                    }
                    Op::Remove => {
                        assert!(live.remove(&e.pod), "{shape}: {} removed before ADD", e.pod)
                    }
                }
                peak = peak.max(live.len());
            }
            assert!(peak > 0 && peak <= 58, "{shape}: peak {peak}");
            assert!(trace.duration() <= 3600.0, "{shape}");
        }
    }
}
