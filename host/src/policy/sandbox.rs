//! The per-decision sandbox: store state, memory limiter, log sink and a
//! WASI context that grants nothing.
//!
//! A policy gets no filesystem (no preopens), no network (no socket
//! addresses allowed, no name lookup), no environment, arguments or stdin.
//! Clocks are frozen at zero and the insecure random seed is fixed, so a
//! decision depends on its input only. stdout and stderr are captured (up
//! to [`CAPTURE_BYTES`]) and attached to trap messages, where a Rust
//! guest's panic message ends up.

use super::bindings::log;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of stdout and of stderr kept per decision; writing more traps.
pub const CAPTURE_BYTES: usize = 4096;
/// Log messages forwarded per decision; the rest are counted and dropped.
pub const MAX_LOG_MESSAGES: u32 = 32;
/// Longest log message forwarded, in bytes.
pub const MAX_LOG_MESSAGE_BYTES: usize = 4096;
/// Table elements a policy may grow its tables to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

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
    /// A fresh sandbox for `policy` capped at `memory_bytes`.
    pub(crate) fn new(policy: Arc<str>, memory_bytes: usize) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(CAPTURE_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .insecure_random_seed(0)
            .max_random_size(64 * 1024)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        SandboxState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            log: LogSink::new(policy),
            stderr,
            stdout,
        }
    }

    /// What the policy wrote to stderr and stdout, lossily decoded.
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
                out.push_str(text);
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

/// Forwards a policy's log messages to `tracing`, bounded per decision.
struct LogSink {
    policy: Arc<str>,
    forwarded: u32,
    dropped: u32,
}

impl LogSink {
    fn new(policy: Arc<str>) -> Self {
        LogSink {
            policy,
            forwarded: 0,
            dropped: 0,
        }
    }

    fn log(&mut self, level: log::Level, mut message: String) {
        if self.forwarded == MAX_LOG_MESSAGES {
            self.dropped += 1;
            return;
        }
        self.forwarded += 1;
        if message.len() > MAX_LOG_MESSAGE_BYTES {
            let mut end = MAX_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
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
            tracing::warn!(
                policy = &*self.policy,
                dropped = self.dropped,
                "policy logged more than {MAX_LOG_MESSAGES} messages in one decision; the rest were dropped"
            );
        }
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
        let mut sink = LogSink::new("p".into());
        for _ in 0..MAX_LOG_MESSAGES + 5 {
            sink.log(log::Level::Info, "x".repeat(MAX_LOG_MESSAGE_BYTES * 2));
        }
        assert_eq!(sink.forwarded, MAX_LOG_MESSAGES);
        assert_eq!(sink.dropped, 5);
    }
}
