//! Pod churn traces: what `weftd simulate` replays.
//!
//! A trace is JSON Lines, one event per line, in time order:
//!
//! ```text
//! {"t": 0.0,  "op": "add",    "pod": "web-0", "namespace": "shop", "labels": {"app": "web"}, "service-account": "web"}
//! {"t": 42.5, "op": "remove", "pod": "web-0", "namespace": "shop"}
//! ```
//!
//! * `t`: seconds since the start of the trace (a finite number >= 0, never
//!   smaller than the line before).
//! * `op`: `add` (the runtime's CNI ADD for the pod) or `remove` (its DEL).
//! * `pod`, `namespace`: the pod; `namespace` defaults to `default`.
//! * `labels`, `service-account`: optional pod metadata, as Kubernetes has it.
//!
//! Blank lines and lines starting with `#` are skipped.

use super::error::SimulateError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Whether an event adds or removes a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// CNI ADD.
    Add,
    /// CNI DEL.
    Remove,
}

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Event {
    /// Seconds since the start of the trace.
    pub t: f64,
    /// Add or remove.
    pub op: Op,
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Pod labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Pod service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

fn default_namespace() -> String {
    "default".into()
}

/// A parsed, validated trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The events, in time order.
    pub events: Vec<Event>,
}

impl Trace {
    /// Parses JSON Lines; the error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<Trace, SimulateError> {
        let mut events: Vec<Event> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |detail: String| SimulateError::Trace {
                line: line_no,
                detail,
            };
            let event: Event = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            if !event.t.is_finite() || event.t < 0.0 {
                return Err(bad(format!(
                    "time {} is not a number of seconds >= 0",
                    event.t
                )));
            }
            if let Some(last) = events.last()
                && event.t < last.t
            {
                return Err(bad(format!(
                    "time {} comes before the previous line's {}: sort the trace by time",
                    event.t, last.t
                )));
            }
            if event.pod.is_empty() || event.namespace.is_empty() {
                return Err(bad("pod and namespace must not be empty".into()));
            }
            events.push(event);
        }
        Ok(Trace { events })
    }

    /// The trace as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for event in &self.events {
            let line = serde_json::to_string(event).unwrap_or_default();
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Seconds from the start to the last event.
    pub fn duration(&self) -> f64 {
        self.events.last().map_or(0.0, |e| e.t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format_and_round_trips() {
        let text = r#"
# a comment
{"t": 0.0, "op": "add", "pod": "web-0", "namespace": "shop", "labels": {"app": "web"}, "service-account": "web"}
{"t": 42.5, "op": "remove", "pod": "web-0", "namespace": "shop"}
"#;
        let trace = Trace::parse(text).unwrap();
        assert_eq!(trace.events.len(), 2);
        assert_eq!(trace.events[0].labels["app"], "web");
        assert_eq!(trace.events[0].service_account.as_deref(), Some("web"));
        assert_eq!(trace.events[1].op, Op::Remove);
        assert_eq!(Trace::parse(&trace.to_jsonl()).unwrap(), trace);
        assert_eq!(trace.duration(), 42.5);
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            (
                r#"{"t": 1, "op": "add", "pod": "a"}"#.to_owned()
                    + "\n"
                    + r#"{"t": 0.5, "op": "add", "pod": "b"}"#,
                2,
                "sort the trace",
            ),
            (
                r#"{"t": -1, "op": "add", "pod": "a"}"#.to_owned(),
                1,
                ">= 0",
            ),
            (
                r#"{"t": 1, "op": "boot", "pod": "a"}"#.to_owned(),
                1,
                "unknown variant",
            ),
            (
                r#"{"t": 1, "op": "add", "pod": ""}"#.to_owned(),
                1,
                "must not be empty",
            ),
        ];
        for (text, line, detail) in cases {
            let error = Trace::parse(&text).unwrap_err().to_string();
            assert!(error.contains(&format!("line {line}")), "{error}");
            assert!(error.contains(detail), "{error}");
        }
    }
}
