//! The one wasmtime [`Engine`] of the agent: pooling allocator, epoch
//! interruption driven by a ticker thread, and the [`Linker`] every policy
//! is linked against (the `log` interface and WASI granting nothing).

use super::bindings::pool_sizing::weft::policy::log;
use super::cache::ArtifactCache;
use super::config::MAX_MEMORY_MIB;
use super::sandbox::SandboxState;
use super::wasi;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; deadlines are whole ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Component instances that can run at once (one per concurrent decision:
/// more fail as the policy's failure, and take its fallback).
const MAX_CONCURRENT_INSTANCES: u32 = super::watchdog::MAX_WORKERS as u32;
/// What one policy component may hold, so that every concurrent decision
/// fits in the pool whatever the others are: a component needing more is
/// refused at load, and can never starve another policy's decisions of
/// slots. A Rust wasm32-wasip2 policy has 1 memory, 3 core instances and
/// 2 tables; a componentize-py policy has 38 core instances (libc,
/// libpython and its stub modules) sharing one memory. A core instance
/// slot is a small bookkeeping allocation, so the cap follows Python.
pub(super) const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 48;
/// See [`MAX_CORE_INSTANCES_PER_COMPONENT`].
pub(super) const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// See [`MAX_CORE_INSTANCES_PER_COMPONENT`].
pub(super) const MAX_TABLES_PER_COMPONENT: u32 = 4;
/// Bytes of each linear memory kept resident between the instances using
/// its pool slot: where the kernel can tell which pages an instance dirtied
/// (`PAGEMAP_SCAN`, Linux 6.7+), those are reset to the image's contents in
/// place instead of being dropped and faulted in again by the next decision
/// (a Rust policy touches its 1 MiB stack's top and a little heap). Beyond
/// it, and without the ioctl, memory is reset with `madvise` as before.
const MEMORY_KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// The same for tables.
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// How long taking a policy's image (reading its configured state back and
/// compiling the image, see [`super::image`]) may add to a load before the
/// policy is configured in every decision instead. A 0.2 MB Rust policy
/// takes tens of milliseconds.
pub(super) const IMAGE_CAPTURE_BUDGET: Duration = Duration::from_secs(5);

/// The engine, linker and artifact cache shared by all policies.
pub struct PolicyEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<SandboxState>>,
    pub(crate) cache: Option<ArtifactCache>,
    /// Shared with every policy compiled on this engine, so deadlines keep
    /// firing for as long as any of them lives.
    pub(crate) ticker: Arc<Ticker>,
    /// See [`IMAGE_CAPTURE_BUDGET`].
    pub(crate) image_capture_budget: Duration,
}

impl PolicyEngine {
    /// Creates the engine and starts its epoch ticker. `cache` stores
    /// compiled modules across restarts.
    pub fn new(cache: Option<ArtifactCache>) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config())?;
        let mut linker = Linker::new(&engine);
        log::add_to_linker::<SandboxState, HasSelf<SandboxState>>(&mut linker, |s| s)?;
        wasi::add_to_linker(&mut linker)?;
        let ticker = Arc::new(Ticker::start(&engine)?);
        Ok(PolicyEngine {
            engine,
            linker: Arc::new(linker),
            cache,
            ticker,
            image_capture_budget: IMAGE_CAPTURE_BUDGET,
        })
    }

    /// Sets how long taking a policy's image may add to its load (default
    /// [`IMAGE_CAPTURE_BUDGET`]); past it, the policy is configured in
    /// every decision. Applies to policies compiled afterwards.
    pub fn set_image_capture_budget(&mut self, budget: Duration) {
        self.image_capture_budget = budget;
    }
}

fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(MAX_CONCURRENT_INSTANCES * MAX_MEMORIES_PER_COMPONENT)
        .total_tables(MAX_CONCURRENT_INSTANCES * MAX_TABLES_PER_COMPONENT)
        .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .concurrency_support(false)
        .wasm_component_model(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weft-policy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread sleeps one tick at most before seeing the flag.
            let _ = thread.join();
        }
    }
}
