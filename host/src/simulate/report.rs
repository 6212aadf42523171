//! What a simulation measured, and the side-by-side table.

use super::ec2::CallCounts;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the start of the trace.
    pub t: f64,
    /// Pod addresses the node holds.
    pub held: u32,
    /// Of those, free to hand out now (neither assigned nor cooling).
    pub free: u32,
    /// Of those, assigned to pods.
    pub assigned: u32,
    /// ENIs attached, the primary included.
    pub enis: u32,
}

/// What one policy did with one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The policy's name.
    pub policy: String,
    /// ADDs that got an address.
    pub adds: u32,
    /// ADDs that found no free address and waited for EC2.
    pub cold_starts: u32,
    /// Median wait of the cold starts (from the pod's ADD to its address,
    /// retries included), in ms.
    pub cold_wait_p50_ms: u64,
    /// 99th percentile of that wait, in ms.
    pub cold_wait_p99_ms: u64,
    /// ADDs answered "try again later" (each retry that failed counts: one
    /// per `add-wait` + `retry-after` a pod waited).
    pub failed_adds: u32,
    /// Pods still without an address when the run ended.
    pub still_waiting: u32,
    /// Addresses held but not assigned to a pod (free or cooling), summed
    /// over time.
    pub idle_address_minutes: f64,
    /// Most pod addresses held at once.
    pub peak_held: u32,
    /// EC2 calls.
    pub calls: CallCounts,
    /// Decisions the built-in default made because the policy failed.
    pub policy_failures: u64,
    /// The pool over time.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// When each cold start's pod was added (s since the start).
    pub cold_start_times: Vec<f64>,
}

/// The reports side by side as a Markdown table, one column per policy.
pub fn table(reports: &[Report]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "ADDs".into(),
            reports.iter().map(|r| r.adds.to_string()).collect(),
        ),
        (
            "cold starts (ADD waited for EC2)".into(),
            reports.iter().map(|r| r.cold_starts.to_string()).collect(),
        ),
        (
            "cold-start wait p50 / p99 (ms)".into(),
            reports
                .iter()
                .map(|r| format!("{} / {}", r.cold_wait_p50_ms, r.cold_wait_p99_ms))
                .collect(),
        ),
        (
            "failed ADDs (try again)".into(),
            reports.iter().map(|r| r.failed_adds.to_string()).collect(),
        ),
        (
            "idle address-minutes".into(),
            reports
                .iter()
                .map(|r| format!("{:.0}", r.idle_address_minutes))
                .collect(),
        ),
        (
            "peak addresses held".into(),
            reports.iter().map(|r| r.peak_held.to_string()).collect(),
        ),
        (
            "EC2 mutating calls".into(),
            reports
                .iter()
                .map(|r| r.calls.total().to_string())
                .collect(),
        ),
    ];
    let apis: BTreeSet<&String> = reports
        .iter()
        .flat_map(|r| r.calls.mutating.keys())
        .collect();
    for api in apis {
        rows.push((
            format!("  {api}"),
            reports
                .iter()
                .map(|r| r.calls.mutating.get(api).copied().unwrap_or(0).to_string())
                .collect(),
        ));
    }
    rows.push((
        "pods still waiting at the end".into(),
        reports
            .iter()
            .map(|r| r.still_waiting.to_string())
            .collect(),
    ));
    rows.push((
        "throttled calls".into(),
        reports
            .iter()
            .map(|r| r.calls.throttled.to_string())
            .collect(),
    ));
    rows.push((
        "policy failures (fell back)".into(),
        reports
            .iter()
            .map(|r| r.policy_failures.to_string())
            .collect(),
    ));
    let mut out = String::from("| |");
    for r in reports {
        let _ = write!(out, " {} |", r.policy);
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(reports.len()));
    out.push('\n');
    for (name, values) in rows {
        let _ = write!(out, "| {name} |");
        for v in values {
            let _ = write!(out, " {v} |");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_column_per_policy_and_a_row_per_api() {
        let report = |name: &str, api: &str| Report {
            policy: name.into(),
            adds: 10,
            cold_starts: 2,
            cold_wait_p50_ms: 700,
            cold_wait_p99_ms: 2500,
            failed_adds: 0,
            still_waiting: 0,
            idle_address_minutes: 12.4,
            peak_held: 14,
            calls: CallCounts {
                mutating: [(api.to_owned(), 3)].into(),
                throttled: 1,
            },
            policy_failures: 0,
            samples: Vec::new(),
            cold_start_times: Vec::new(),
        };
        let table = table(&[
            report("a", "AssignPrivateIpAddresses"),
            report("b", "CreateNetworkInterface"),
        ]);
        assert!(
            table.starts_with("| | a | b |\n| --- | ---: | ---: |\n"),
            "{table}"
        );
        assert!(
            table.contains("| cold-start wait p50 / p99 (ms) | 700 / 2500 | 700 / 2500 |"),
            "{table}"
        );
        assert!(
            table.contains("|   AssignPrivateIpAddresses | 3 | 0 |"),
            "{table}"
        );
        assert!(
            table.contains("|   CreateNetworkInterface | 0 | 3 |"),
            "{table}"
        );
        assert!(
            table.contains("| idle address-minutes | 12 | 12 |"),
            "{table}"
        );
    }
}
