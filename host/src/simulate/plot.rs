//! The comparison plot: one panel per policy, addresses held, free and
//! pods over time, cold starts marked.
//!
//! Hand-written SVG rather than a plotting crate: the figure is three step
//! lines and a row of marks, and the agent's binary should not grow a font
//! and raster stack for it.

use super::report::{Report, Sample};
use std::fmt::Write as _;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 50.0;
const TOP: f64 = 30.0;
const GAP: f64 = 40.0;

/// The SVG of `reports` (same trace, different policies), titled `title`.
pub fn svg(title: &str, reports: &[Report]) -> String {
    let duration = reports
        .iter()
        .flat_map(|r| r.samples.last())
        .map(|s| s.t)
        .fold(1.0, f64::max);
    let top = reports
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.held)
        .max()
        .unwrap_or(1)
        .max(1);
    let plot_w = WIDTH - LEFT - 20.0;
    let height = TOP + reports.len() as f64 * (PANEL + GAP) + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        escape(title)
    );
    for (i, report) in reports.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL + GAP) + 16.0;
        let x = |t: f64| LEFT + t / duration * plot_w;
        let y = |v: u32| y0 + PANEL - f64::from(v) / f64::from(top) * PANEL;
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="12">{} — cold starts {}, idle address-min {:.0}, EC2 mutating calls {}</text>"#,
            y0 - 4.0,
            escape(&report.policy),
            report.cold_starts,
            report.idle_address_minutes,
            report.calls.total()
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>"##
        );
        for (v, label) in [(0, "0".to_owned()), (top, top.to_string())] {
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{label}</text>"#,
                LEFT - 4.0,
                y(v) + 4.0
            );
        }
        for minute in (0..=(duration / 60.0) as u32).step_by(10) {
            let t = f64::from(minute) * 60.0;
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{minute} min</text>"#,
                x(t),
                y0 + PANEL + 14.0
            );
        }
        for (series, colour, name) in [
            (
                &(|s: &Sample| s.held) as &dyn Fn(&Sample) -> u32,
                "#1f77b4",
                "held",
            ),
            (&|s: &Sample| s.free, "#2ca02c", "free"),
            (&|s: &Sample| s.assigned, "#ff7f0e", "pods"),
        ] {
            let mut path = String::new();
            // At most ~600 points per line: a sample every few seconds is
            // finer than the figure.
            let step = report.samples.len().div_ceil(600).max(1);
            for (n, s) in report.samples.iter().step_by(step).enumerate() {
                let _ = write!(
                    path,
                    "{}{:.1},{:.1} ",
                    if n == 0 { 'M' } else { 'L' },
                    x(s.t),
                    y(series(s))
                );
            }
            let _ = writeln!(
                out,
                r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.2"><title>{name}</title></path>"#
            );
        }
        for &t in &report.cold_start_times {
            let _ = writeln!(
                out,
                r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="red" stroke-width="1"/>"#,
                x(t),
                y0 + PANEL - 8.0,
                y0 + PANEL
            );
        }
        let legend_y = y0 + 12.0;
        for (k, (colour, name)) in [
            ("#1f77b4", "held"),
            ("#2ca02c", "free"),
            ("#ff7f0e", "pods"),
            ("red", "cold start"),
        ]
        .iter()
        .enumerate()
        {
            let lx = WIDTH - 300.0 + k as f64 * 70.0;
            let _ = writeln!(
                out,
                r#"<rect x="{lx}" y="{}" width="10" height="3" fill="{colour}"/><text x="{}" y="{}">{name}</text>"#,
                legend_y - 3.0,
                lx + 13.0,
                legend_y + 1.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::ec2::CallCounts;

    #[test]
    fn draws_a_panel_per_policy_with_its_cold_starts() {
        let report = |name: &str, colds: Vec<f64>| Report {
            policy: name.into(),
            adds: 2,
            cold_starts: colds.len() as u32,
            cold_wait_p50_ms: 0,
            cold_wait_p99_ms: 0,
            failed_adds: 0,
            still_waiting: 0,
            idle_address_minutes: 1.0,
            peak_held: 3,
            calls: CallCounts::default(),
            policy_failures: 0,
            samples: vec![
                Sample {
                    t: 0.0,
                    held: 0,
                    free: 0,
                    assigned: 0,
                    enis: 1,
                },
                Sample {
                    t: 60.0,
                    held: 3,
                    free: 1,
                    assigned: 2,
                    enis: 1,
                },
            ],
            cold_start_times: colds,
        };
        let svg = svg(
            "a <trace>",
            &[report("a", vec![1.0, 2.0]), report("b", vec![])],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt;trace&gt;"));
        assert_eq!(svg.matches("stroke=\"red\"").count(), 2);
        assert_eq!(svg.matches("<title>held</title>").count(), 2);
    }
}
