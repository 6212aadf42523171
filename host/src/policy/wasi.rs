//! The WASI a policy gets: only what a Rust `wasm32-wasip2` guest needs to
//! start and report, granting nothing.
//!
//! * stdio: stdin empty, stdout and stderr captured in memory; no
//!   environment, arguments or terminal; `exit` traps.
//! * filesystem: the interfaces are linked (std imports them) but nothing is
//!   preopened, so no descriptor can ever be obtained.
//! * clocks: frozen at zero. The monotonic clock is this module's own: a
//!   pollable for a zero duration is ready, any other never is.
//! * poll: this module's own and never blocks. Waiting on a pollable that
//!   is not ready (a `std::thread::sleep`, which time frozen at zero can
//!   never end) stops the decision at once as past its deadline: host code
//!   is where epoch interruption cannot reach, so the host never waits on a
//!   policy's behalf.
//! * random: deterministic (a fixed byte cycle), so a decision depends on
//!   its input only.
//! * sockets: not linked. A component importing anything else is refused at
//!   load by [`is_granted`].

use super::sandbox::SandboxState;
use futures::FutureExt;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::{self, clocks::monotonic_clock, sync::io::poll};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

/// The WASI interfaces (package/interface, any 0.2.x version) linked.
const GRANTED: [&str; 20] = [
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Whether `import` (e.g. `wasi:io/poll@0.2.6`) is a WASI interface this
/// module links.
pub(crate) fn is_granted(import: &str) -> bool {
    import
        .split_once('@')
        .is_some_and(|(name, version)| GRANTED.contains(&name) && version.starts_with("0.2."))
}

/// Links the granted WASI interfaces into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    use bindings::{cli, clocks, filesystem, random, sync};
    type T = SandboxState;
    let l = linker;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    monotonic_clock::add_to_linker::<T, Frozen>(l, |t| Frozen(t.table()))?;
    poll::add_to_linker::<T, NonBlocking>(l, |t| NonBlocking(t.table()))?;
    bindings::io::error::add_to_linker::<T, Table>(l, T::table)?;
    sync::io::streams::add_to_linker::<T, Table>(l, T::table)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    Ok(())
}

/// A policy waited on something that is not ready (a sleep, a timeout):
/// with time frozen it could only end past the deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "waited on a clock or stream that is not ready (e.g. `std::thread::sleep`); a policy's clock is frozen, so the wait could only end past its deadline and was stopped at once"
)]
pub(crate) struct WouldBlock;

/// [`HasData`] for host functions that only need the resource table.
struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// The monotonic clock, frozen at zero.
struct Frozen<'a>(&'a mut ResourceTable);

impl HasData for Frozen<'static> {
    type Data<'a> = Frozen<'a>;
}

impl monotonic_clock::Host for Frozen<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(when == 0)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.timer(duration == 0)
    }
}

impl Frozen<'_> {
    fn timer(&mut self, ready: bool) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.0.push(Timer { ready })?;
        subscribe(self.0, timer)
    }
}

/// A timer on the frozen clock: ready at once, or never.
struct Timer {
    ready: bool,
}

#[async_trait]
impl Pollable for Timer {
    async fn ready(&mut self) {
        if !self.ready {
            std::future::pending::<()>().await;
        }
    }
}

/// `wasi:io/poll` that looks at each pollable once and never waits.
struct NonBlocking<'a>(&'a mut ResourceTable);

impl HasData for NonBlocking<'static> {
    type Data<'a> = NonBlocking<'a>;
}

impl poll::Host for NonBlocking<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        async_poll::Host::poll(self.0, pollables)
            .now_or_never()
            .unwrap_or_else(|| Err(WouldBlock.into()))
    }
}

impl poll::HostPollable for NonBlocking<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        async_poll::HostPollable::ready(self.0, pollable)
            .now_or_never()
            .unwrap_or(Ok(false))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::block(self.0, pollable)
            .now_or_never()
            .unwrap_or_else(|| Err(WouldBlock.into()))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_wasi_interfaces_are_granted() {
        for ok in [
            "wasi:io/poll@0.2.6",
            "wasi:cli/stderr@0.2.0",
            "wasi:random/random@0.2.3",
        ] {
            assert!(is_granted(ok), "{ok}");
        }
        for bad in [
            "wasi:sockets/tcp@0.2.6",
            "wasi:sockets/ip-name-lookup@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:io/poll@0.3.0",
            "wasi:io/poll",
        ] {
            assert!(!is_granted(bad), "{bad}");
        }
    }
}
