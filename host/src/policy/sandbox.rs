//! The per-decision sandbox: store state, memory limiter, log sink and a
//! WASI context that grants nothing.
//!
//! A policy gets no filesystem (no preopens), no network (sockets are not
//! linked, see [`super::wasi`]), no environment, arguments or stdin.
//! Clocks are frozen at zero and every random source is a fixed byte
//! cycle, so a decision depends on its input only. stdout and stderr are
//! captured (up to [`CAPTURE_BYTES`]) and attached, sanitised, to trap
//! messages, where a Rust guest's panic message ends up.

use super::bindings::log;
use super::text::{MAX_POLICY_TEXT_BYTES, sanitize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{Deterministic, WasiCtx, WasiCtxView, WasiView};

/// Bytes of stdout and of stderr kept per decision; writing more traps.
pub(super) const CAPTURE_BYTES: usize = 4096;
/// Log messages forwarded per decision; the rest are counted and dropped.
pub(super) const MAX_LOG_MESSAGES: u32 = 32;
/// Longest log message forwarded, in bytes (after escaping).
pub(super) const MAX_LOG_MESSAGE_BYTES: usize = MAX_POLICY_TEXT_BYTES;
/// Log messages one policy may forward per second across all its decisions
/// (after a burst of [`LOG_BURST`]); the rest are counted and reported
/// at most every [`LOG_REPORT_EVERY`].
pub const LOG_RATE_PER_SECOND: f64 = 20.0;
/// Log messages one policy may forward at once before the rate applies.
pub const LOG_BURST: f64 = 100.0;
/// How often suppressed log messages are reported, per policy.
pub(super) const LOG_REPORT_EVERY: Duration = Duration::from_secs(10);
/// Table elements a policy may grow its tables to.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Host resources (streams, pollables, ...) a decision may hold at once.
const MAX_RESOURCES: usize = 256;
/// Bytes the random sources cycle through.
const RANDOM_CYCLE: [u8; 32] = *b"weft: decisions depend on input.";

/// Limits of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock deadline of the whole decision.
    pub deadline: Duration,
    /// Linear memory cap, in bytes, across the instance's memories.
    pub memory_bytes: usize,
}

/// State of one decision's [`wasmtime::Store`].
pub(crate) struct SandboxState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    log: LogSink,
    stderr: MemoryOutputPipe,
    stdout: MemoryOutputPipe,
}

impl SandboxState {
    /// A fresh sandbox for `policy` capped at `memory_bytes`, logging
    /// within `log_budget` (shared by all the policy's decisions).
    pub(crate) fn new(policy: Arc<str>, memory_bytes: usize, log_budget: Arc<LogBudget>) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(CAPTURE_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(Deterministic::new(RANDOM_CYCLE.to_vec()))
            .insecure_random(Deterministic::new(RANDOM_CYCLE.to_vec()))
            .insecure_random_seed(0)
            .max_random_size(64 * 1024)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        SandboxState {
            wasi,
            table,
            limiter: MemoryLimiter::new(memory_bytes),
            log: LogSink::new(policy, log_budget),
            stderr,
            stdout,
        }
    }

    /// Whether the policy holds no host resource (stream, pollable, ...).
    pub(crate) fn holds_no_resources(&self) -> bool {
        self.table.is_empty()
    }

    /// The resource table (for the host functions of [`super::wasi`]).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// What the policy wrote to stderr and stdout, lossily decoded and
    /// sanitised.
    pub(crate) fn captured_output(&self) -> String {
        let mut out = String::new();
        for (name, pipe) in [("stderr", &self.stderr), ("stdout", &self.stdout)] {
            let bytes = pipe.contents();
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim();
            if !text.is_empty() {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(name);
                out.push_str(": ");
                out.push_str(&sanitize(text, MAX_POLICY_TEXT_BYTES));
            }
        }
        out
    }

    /// Ends the decision: reports dropped log messages.
    pub(crate) fn finish(&self) {
        self.log.finish();
    }
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for SandboxState {
    fn log(&mut self, level: log::Level, message: String) {
        self.log.log(level, message);
    }
}

/// Clocks frozen at zero: a policy cannot observe time.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// Caps linear memory and tables; remembers whether the cap was hit (to
/// report a trap after a refused growth as a memory failure) and the peak.
pub(crate) struct MemoryLimiter {
    cap: usize,
    total: usize,
    /// Highest total linear memory seen, in bytes.
    pub(crate) peak: usize,
    /// Whether a growth past the cap was refused.
    pub(crate) refused: bool,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        MemoryLimiter {
            cap,
            total: 0,
            peak: 0,
            refused: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.total.saturating_add(growth);
        if total > self.cap || maximum.is_some_and(|max| desired > max) {
            self.refused = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// Forwards a policy's log messages to `tracing`: sanitised, at most
/// [`MAX_LOG_MESSAGES`] per decision and within the policy's [`LogBudget`].
struct LogSink {
    policy: Arc<str>,
    budget: Arc<LogBudget>,
    forwarded: u32,
    dropped: u32,
}

impl LogSink {
    fn new(policy: Arc<str>, budget: Arc<LogBudget>) -> Self {
        LogSink {
            policy,
            budget,
            forwarded: 0,
            dropped: 0,
        }
    }

    fn log(&mut self, level: log::Level, message: String) {
        if self.forwarded == MAX_LOG_MESSAGES {
            self.dropped += 1;
            return;
        }
        if !self.budget.take(Instant::now()) {
            return;
        }
        self.forwarded += 1;
        let message = sanitize(&message, MAX_LOG_MESSAGE_BYTES);
        let policy = &*self.policy;
        match level {
            log::Level::Trace => tracing::trace!(policy, "{message}"),
            log::Level::Debug => tracing::debug!(policy, "{message}"),
            log::Level::Info => tracing::info!(policy, "{message}"),
            log::Level::Warn => tracing::warn!(policy, "{message}"),
            log::Level::Error => tracing::error!(policy, "{message}"),
        }
    }

    fn finish(&self) {
        if self.dropped > 0 {
            self.budget.suppress(u64::from(self.dropped));
        }
        if let Some(suppressed) = self.budget.report(Instant::now()) {
            tracing::warn!(
                policy = &*self.policy,
                suppressed,
                "policy log messages suppressed (over {MAX_LOG_MESSAGES} in one decision or {LOG_RATE_PER_SECOND} per second)"
            );
        }
    }
}

/// One policy's log rate across its decisions: a token bucket, and the
/// count of messages suppressed since the last report.
#[derive(Debug)]
pub(crate) struct LogBudget {
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
    reported: Option<Instant>,
}

impl LogBudget {
    pub(crate) fn new() -> Self {
        LogBudget {
            state: Mutex::new(BudgetState {
                tokens: LOG_BURST,
                refilled: Instant::now(),
                suppressed: 0,
                reported: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one message's token at `now`; counts the message as suppressed
    /// when there is none.
    fn take(&self, now: Instant) -> bool {
        let mut state = self.lock();
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * LOG_RATE_PER_SECOND).min(LOG_BURST);
        state.refilled = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            true
        } else {
            state.suppressed += 1;
            false
        }
    }

    fn suppress(&self, count: u64) {
        self.lock().suppressed += count;
    }

    /// The messages suppressed since the last report, when there are some
    /// and the last report is at least [`LOG_REPORT_EVERY`] old.
    fn report(&self, now: Instant) -> Option<u64> {
        let mut state = self.lock();
        let due = state
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_REPORT_EVERY);
        if state.suppressed == 0 || !due {
            return None;
        }
        state.reported = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limiter_refuses_growth_past_the_cap_and_tracks_the_peak() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 19, None).expect("ok"));
        assert!(limiter.memory_growing(1 << 19, 1 << 20, None).expect("ok"));
        assert!(!limiter.refused);
        assert!(
            !limiter
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .expect("ok")
        );
        assert!(limiter.refused);
        assert_eq!(limiter.peak, 1 << 20);
    }

    #[test]
    fn log_sink_bounds_messages() {
        let mut sink = LogSink::new("p".into(), Arc::new(LogBudget::new()));
        for _ in 0..MAX_LOG_MESSAGES + 5 {
            sink.log(log::Level::Info, "x".repeat(MAX_LOG_MESSAGE_BYTES * 2));
        }
        assert_eq!(sink.forwarded, MAX_LOG_MESSAGES);
        assert_eq!(sink.dropped, 5);
    }

    #[test]
    fn the_log_budget_limits_the_rate_across_decisions_and_reports_sparingly() {
        let budget = LogBudget::new();
        let start = Instant::now();
        let burst = (0..1000).filter(|_| budget.take(start)).count();
        assert_eq!(burst, LOG_BURST as usize);
        assert_eq!(budget.report(start), Some(1000 - LOG_BURST as u64));
        // One second later: the rate's worth of messages, no second report
        // before the interval.
        let later = start + Duration::from_secs(1);
        let refilled = (0..1000).filter(|_| budget.take(later)).count();
        assert_eq!(refilled, LOG_RATE_PER_SECOND as usize);
        assert_eq!(budget.report(later), None);
        assert_eq!(
            budget.report(start + LOG_REPORT_EVERY),
            Some(1000 - LOG_RATE_PER_SECOND as u64)
        );
        assert_eq!(budget.report(start + LOG_REPORT_EVERY * 3), None);
    }
}
