//! Misbehaving policies for the host runtime's tests. Never deploy these.
//!
//! One build implements one world, chosen by feature: `pool`, `subnet`,
//! `sg`, `foreign-import` (a pool-sizing component that also imports
//! `evil:net/socket`, an interface outside the contract, so the host can
//! prove it refuses it at load), or `history-world` (a well-behaved
//! component of the older `pool-sizing-history` world, which ignores its
//! settings). The behaviour of the others is chosen at load by the
//! settings `{"mode": "...", "during": "decide" | "configure"}`; see
//! [`Mode`] for the modes. `during` (default `decide`) says whether `loop`,
//! `alloc` and `trap` strike in `configure` or in the decision.

use serde::Deserialize;
use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "sg")]
mod sg;
#[cfg(feature = "subnet")]
mod subnet;

#[cfg(all(target_arch = "wasm32", feature = "foreign-import"))]
#[allow(
    unsafe_code,
    reason = "bindings generated in this crate for a world of its own: their exports are unsafe by construction"
)]
mod foreign;

#[cfg(all(target_arch = "wasm32", feature = "history-world"))]
#[allow(
    unsafe_code,
    reason = "bindings generated in this crate for a world of its own: their exports are unsafe by construction"
)]
mod history_world;

/// What a chaos policy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Behave: a valid, conservative decision.
    Ok,
    /// Spin forever (the host's deadline must stop it).
    Loop,
    /// Allocate until the memory cap stops it.
    Alloc,
    /// Panic, which traps.
    Trap,
    /// `configure` fails with a message naming this mode.
    ConfigureError,
    /// Subnet: choose a subnet that is not among the candidates.
    BadSubnet,
    /// Security groups: return malformed ids.
    BadSg,
    /// Security groups: return more than 5 well-formed ids.
    TooManySgs,
    /// Counts far beyond any limit (pool), or an enormous output.
    Huge,
    /// Pool: change and release an ENI that is not in the state.
    UnknownEni,
    /// Pool: release the primary ENI (device index 0).
    ReleasePrimary,
    /// Sleep 5 s with `std::thread::sleep` (WASI clock + poll in the host).
    Sleep,
    /// Recurse without bound until the stack overflows.
    Recurse,
    /// Log far more and far longer messages than the host forwards, with
    /// control characters (terminal escapes, newlines) in them.
    LogFlood,
    /// Answer with the bytes of `wasi:random/random`, so a test can check
    /// that randomness is deterministic (pool: in the reason; security
    /// groups: in the refusal).
    Random,
    /// Security groups and subnets: refuse with an enormous message full of
    /// control characters (pool: the same as the reason).
    HugeRefusal,
    /// Log one 4 MiB message (more than the host takes in one call).
    HugeLog,
    /// Count calls in a static: `configure` and every decision add one and
    /// `configure` logs `chaos: configured`; the pool decision's reason is
    /// `chaos: calls N`. A decision that starts from the configured state,
    /// and from nothing a previous decision left, always says `calls 2`.
    Count,
    /// Write a line to stderr in `configure` and in every decision: the
    /// guest's libc keeps the stream it opened, a host resource.
    Stderr,
    /// Pool: answer with the churn history it was given, as JSON, in the
    /// reason (what crossed the component boundary).
    EchoHistory,
}

/// When the misbehaviour strikes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum During {
    /// In the decision function.
    #[default]
    Decide,
    /// In `configure`.
    Configure,
}

/// The chaos settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// What to do.
    pub mode: Mode,
    /// When to do it.
    #[serde(default)]
    pub during: During,
}

/// The chaos policy: its settings, applied by each world's implementation.
#[derive(Debug, Clone, Copy)]
pub struct Chaos {
    /// The settings given at load.
    pub settings: Settings,
}

impl Chaos {
    /// Parses the settings and performs the configure-time misbehaviour.
    pub fn configure(settings: &str) -> Result<Self, String> {
        let settings: Settings =
            serde_json::from_str(settings).map_err(|e| format!("invalid chaos settings: {e}"))?;
        if settings.mode == Mode::ConfigureError {
            return Err("chaos: configure-error requested".into());
        }
        if settings.during == During::Configure {
            misbehave(settings.mode);
        }
        match settings.mode {
            Mode::Count => {
                CALLS.fetch_add(1, Ordering::Relaxed);
                log_warn("chaos: configured");
            }
            Mode::Stderr => eprintln!("chaos: configured"),
            _ => {}
        }
        Ok(Chaos { settings })
    }

    /// Performs the decision-time misbehaviour (`loop`, `alloc`, `trap`),
    /// counts the call (`count`) or writes to stderr (`stderr`).
    pub fn decide(&self) {
        if self.settings.during == During::Decide {
            misbehave(self.settings.mode);
        }
        match self.settings.mode {
            Mode::Count => {
                CALLS.fetch_add(1, Ordering::Relaxed);
            }
            Mode::Stderr => eprintln!("chaos: deciding"),
            _ => {}
        }
    }
}

/// Calls of `configure` and decisions counted by [`Mode::Count`] in this
/// instance.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// What [`Mode::Count`] has counted so far.
pub fn calls() -> u32 {
    CALLS.load(Ordering::Relaxed)
}

/// Loops, allocates or traps for those modes; returns for the others.
fn misbehave(mode: Mode) {
    match mode {
        Mode::Loop => spin(),
        Mode::Alloc => exhaust_memory(),
        Mode::Trap => panic!("chaos: trap requested"),
        Mode::Sleep => std::thread::sleep(std::time::Duration::from_secs(5)),
        Mode::Recurse => {
            std::hint::black_box(recurse(std::hint::black_box(1)));
        }
        Mode::LogFlood => flood_log(),
        Mode::HugeLog => log_warn(&"x".repeat(4 << 20)),
        _ => {}
    }
}

/// Spins forever; `black_box` keeps the loop from being optimised away.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

/// Recurses until the stack overflows; the frame's buffer keeps the
/// recursion from being turned into a loop.
#[allow(unconditional_recursion, reason = "the stack overflow is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1).wrapping_add(frame[(depth % 16) as usize])
}

/// A line no log should print as is: a terminal escape that clears the
/// screen, a forged second log line and a NUL.
pub const HOSTILE_LINE: &str =
    "\u{1b}[2J\u{1b}[31mFAKE\nlevel=ERROR policy=other forged line\r\u{0}";

/// Logs 1,000 messages of 8 KiB each, full of [`HOSTILE_LINE`]s.
fn flood_log() {
    let message = HOSTILE_LINE.repeat((8 << 10) / HOSTILE_LINE.len());
    for _ in 0..1_000 {
        log_warn(&message);
    }
}

/// Logs through the contract's `log` import (in a world build).
fn log_warn(message: &str) {
    #[cfg(any(feature = "pool", feature = "subnet", feature = "sg"))]
    weft_policy_sdk::log::warn(message);
    #[cfg(not(any(feature = "pool", feature = "subnet", feature = "sg")))]
    let _ = message;
}

/// An enormous refusal: 512 KiB of [`HOSTILE_LINE`]s (within what the host
/// takes in one answer, 1 MiB).
pub fn huge_refusal() -> String {
    HOSTILE_LINE.repeat((512 << 10) / HOSTILE_LINE.len())
}

/// 32 bytes from `wasi:random/random.get-random-bytes` (wasi-libc's
/// `getentropy`, which `getrandom` and friends use), hex-encoded.
#[allow(
    unsafe_code,
    reason = "the chaos policy calls a WASI import directly, which only an unsafe extern block can"
)]
pub fn random_hex() -> String {
    #[cfg(target_arch = "wasm32")]
    {
        unsafe extern "C" {
            fn getentropy(buffer: *mut u8, length: usize) -> i32;
        }
        let mut bytes = [0u8; 32];
        // SAFETY: wasi-libc's getentropy writes at most `length` bytes.
        let rc = unsafe { getentropy(bytes.as_mut_ptr(), bytes.len()) };
        assert_eq!(rc, 0, "getentropy failed");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    String::new()
}

/// Allocates and touches 1 MiB blocks until allocation fails (which aborts).
fn exhaust_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let block = vec![0xa5u8; 1 << 20];
        blocks.push(std::hint::black_box(block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        let chaos = Chaos::configure(r#"{"mode": "bad-subnet"}"#).unwrap();
        assert_eq!(chaos.settings.mode, Mode::BadSubnet);
        assert_eq!(chaos.settings.during, During::Decide);
        let err = Chaos::configure(r#"{"mode": "configure-error"}"#).unwrap_err();
        assert!(err.contains("configure-error"), "{err}");
        assert!(Chaos::configure(r#"{"mode": "nope"}"#).is_err());
        assert!(Chaos::configure("{}").is_err());
    }
}
