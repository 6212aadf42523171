//! `weftd simulate`: pod churn traces replayed through the agent's real pool
//! service and pool-sizing policies on the embedded EC2 simulator, in
//! virtual time, to compare policies before deploying them.
//!
//! * `trace`: the trace format (JSON Lines) and its parser.
//! * `generate`: synthetic traces of common shapes, seeded.
//! * `ec2`: the simulated EC2 (latencies and their sources, token buckets)
//!   and the call counter.
//! * `run`: one trace through one policy; `timers`: sleeps in virtual time.
//! * `report`: what a run measured; the side-by-side table.
//! * `plot`: the comparison figure (SVG).

pub(crate) mod ec2;
mod error;
mod generate;
mod plot;
mod report;
mod run;
pub(crate) mod timers;
mod trace;

pub use ec2::{CallCounts, Latencies};
pub use error::SimulateError;
pub use generate::{Shape, generate};
pub use plot::svg;
pub use report::{Report, Sample, table};
pub use run::{PolicySpec, SimConfig, run};
pub use trace::{Event, Op, Trace};
