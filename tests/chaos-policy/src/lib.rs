//! Misbehaving policies for the host runtime's tests. Never deploy these.
//!
//! One build implements one world, chosen by feature: `pool`, `subnet`,
//! `sg`, or `foreign-import` (a pool-sizing component that also imports
//! `evil:net/socket`, an interface outside the contract, so the host can
//! prove it refuses it at load). The behaviour is chosen at load by the
//! settings `{"mode": "...", "during": "decide" | "configure"}`; see
//! [`Mode`] for the modes. `during` (default `decide`) says whether `loop`,
//! `alloc` and `trap` strike in `configure` or in the decision.

use serde::Deserialize;

#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "sg")]
mod sg;
#[cfg(feature = "subnet")]
mod subnet;

#[cfg(all(target_arch = "wasm32", feature = "foreign-import"))]
mod foreign;

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
        Ok(Chaos { settings })
    }

    /// Performs the decision-time misbehaviour (`loop`, `alloc`, `trap`).
    pub fn decide(&self) {
        if self.settings.during == During::Decide {
            misbehave(self.settings.mode);
        }
    }
}

/// Loops, allocates or traps for those modes; returns for the others.
fn misbehave(mode: Mode) {
    match mode {
        Mode::Loop => spin(),
        Mode::Alloc => exhaust_memory(),
        Mode::Trap => panic!("chaos: trap requested"),
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
