//! The image every decision starts from. A policy is loaded as a copy that
//! wasmtime-wizer instrumented with an accessor for each memory and global
//! of its core instances; once per load it is instantiated and configured,
//! its state read back through the accessors and written into a copy of
//! the component as its initial state (cached beside the compiled modules,
//! in `images/`). A decision instantiates that copy, whose memory the
//! pooling allocator maps copy-on-write from the compiled image, and calls
//! the decision function at once: it sees the configured state and nothing
//! an earlier decision did, and pays neither `configure` nor its
//! allocations.
//!
//! The image runs under every limit the original would: the same engine
//! (epoch deadline, pooling limits), linker (WASI granting nothing),
//! watchdog, host-call fuel and memory cap, against which its initial
//! memory counts when it is instantiated.
//!
//! A policy that cannot be captured is configured in every decision, as
//! without an image, and says why in a log line and in `/v1/policies`:
//! a component larger than [`MAX_IMAGE_SOURCE_BYTES`] (an interpreter),
//! a shape wizer does not take (a nested component, a module instantiated
//! twice, ...), a policy that still holds a host resource after
//! `configure` (a WASI stream it wrote to), whose handle a fresh instance
//! would not have, a capture that fails or panics, or one that takes longer
//! than the engine's image capture budget
//! ([`super::engine::IMAGE_CAPTURE_BUDGET`]). Only `configure`'s own
//! failures fail the load.

use super::cache::ArtifactCache;
use super::error::PolicyError;
use super::module::{self, CompiledPolicy, Instance, Watch, WorldPre};
use super::sandbox::{CallLimits, SandboxState};
use sha2::{Digest, Sha256};
use std::future::{Future, ready};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::{Lift, TypedFunc, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// The interface of wizer's accessors in an instrumented component.
pub(super) const ACCESSORS: &str = "wasmtime:wizer/access";
/// Largest component given an image. Its image is a second component as
/// large, compiled at every load with new settings (about a second per MB
/// here: a componentize-py policy is ~40 MB and takes ~20 s and ~400 MB
/// to compile), so an interpreter configures in every decision instead.
pub(super) const MAX_IMAGE_SOURCE_BYTES: usize = 4 << 20;

/// What [`capture`] made of a policy.
pub(super) enum Captured {
    /// The configured image, pre-instantiated.
    Image(WorldPre),
    /// Why the policy has no image.
    Unsupported(String),
}

/// `wasm` instrumented for [`capture`], or why it cannot be.
pub(super) fn instrument(wasm: &[u8]) -> Result<Vec<u8>, String> {
    if wasm.len() > MAX_IMAGE_SOURCE_BYTES {
        return Err(format!(
            "it is larger than {} MiB, so its image would cost a second compile of it at every load",
            MAX_IMAGE_SOURCE_BYTES >> 20
        ));
    }
    Wizer::new()
        .instrument_component(wasm)
        .map(|(_, instrumented)| instrumented)
        .map_err(|e| format!("wizer cannot instrument it: {e:#}"))
}

/// Configures a fresh instance of `compiled` with `settings` under `limits`
/// and captures its state within the engine's capture budget. `Err`:
/// `configure` failed (or the policy misbehaved in it), classified as in a
/// decision; whatever goes wrong after it is [`Captured::Unsupported`].
pub(super) fn capture(
    compiled: &CompiledPolicy,
    settings: &Arc<str>,
    limits: CallLimits,
) -> Result<Captured, PolicyError> {
    if let Some(why) = &compiled.uninstrumented {
        return Ok(Captured::Unsupported(why.to_string()));
    }
    let budget = compiled.image_capture_budget;
    // Set once `configure` has returned: a failure after it is the
    // capture's, not the policy's.
    let configured = Arc::new(AtomicBool::new(false));
    let this = compiled.clone();
    let flag = configured.clone();
    let captured = compiled.call(
        compiled.pre.clone(),
        Some(settings.clone()),
        limits,
        Watch::Capture(budget),
        move |store, instance| {
            flag.store(true, Ordering::Release);
            let started = Instant::now();
            // Reading the state back calls the accessors, guest code under
            // the epoch deadline: they get a deadline of their own, not what
            // `configure` left of the policy's (the budget bounds the whole).
            store.set_epoch_deadline(module::deadline_ticks(limits.deadline));
            let image = snapshot(store, instance, &this.bytes).and_then(|image| {
                link(&this, &image)
                    .map_err(|e| format!("its configured image does not load: {e:#}"))
            });
            let took = started.elapsed();
            Ok(match image {
                Ok(_) if took > budget => Captured::Unsupported(format!(
                    "taking its image took {} ms, over the {} ms budget",
                    took.as_millis(),
                    budget.as_millis()
                )),
                Ok(pre) => Captured::Image(pre),
                Err(why) => Captured::Unsupported(why),
            })
        },
    );
    match captured {
        Ok((captured, _)) => Ok(captured),
        Err(e) if configured.load(Ordering::Acquire) => Ok(Captured::Unsupported(format!(
            "taking its image failed: {}",
            e.message
        ))),
        Err(e) => Err(e),
    }
}

/// Compiles (or fetches from the image cache) `image` and links it as the
/// world of `compiled`.
fn link(compiled: &CompiledPolicy, image: &[u8]) -> wasmtime::Result<WorldPre> {
    let digest = hex::encode(Sha256::digest(image));
    let cache = compiled.cache.as_ref().map(ArtifactCache::images);
    let (component, _) = module::compile(
        &compiled.engine,
        cache.as_ref(),
        &compiled.name,
        image,
        &digest,
    )?;
    compiled
        .pre
        .same_world(compiled.linker.instantiate_pre(&component)?)
}

/// The component `original` with the state of `instance` (an instance of
/// its instrumented copy, just configured) as its initial state.
fn snapshot(
    store: &mut Store<SandboxState>,
    instance: &Instance,
    original: &[u8],
) -> Result<Vec<u8>, String> {
    if !store.data().holds_no_resources() {
        return Err("it holds host resources after `configure` (a WASI stream it wrote to, say), which a fresh instance would not have".into());
    }
    // Reading the state back is the host's doing, not the policy's: a
    // memory larger than the policy may pass in one call is read whole.
    store.set_hostcall_fuel(usize::MAX);
    let wizer = Wizer::new();
    let (context, _) = wizer
        .instrument_component(original)
        .map_err(|e| format!("wizer cannot instrument it: {e:#}"))?;
    let mut access = Access {
        store,
        instance: instance.raw,
        failed: None,
    };
    // wizer asserts it was given every memory: an accessor that failed
    // makes it panic.
    let image = catch_unwind(AssertUnwindSafe(|| {
        now(wizer.snapshot_component(&context, &mut access))
    }));
    if let Some(why) = access.failed {
        return Err(why);
    }
    image
        .map_err(|_| "wizer panicked taking its snapshot".to_owned())?
        .ok_or("its snapshot did not complete at once")?
        .map_err(|e| format!("its snapshot failed: {e:#}"))
}

/// The output of `future` when it is ready at its first poll: every call of
/// [`Access`] is synchronous.
fn now<T>(future: impl Future<Output = T>) -> Option<T> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// The accessors wizer added to the instrumented copy, called
/// synchronously. wizer's interface cannot fail, so the first failure is
/// kept in `failed` (and a default returned) for [`snapshot`] to report.
struct Access<'a> {
    store: &'a mut Store<SandboxState>,
    instance: wasmtime::component::Instance,
    failed: Option<String>,
}

impl Access<'_> {
    /// The accessor `func` of the exported instance `interface`.
    fn accessor<R: Lift + 'static>(
        &mut self,
        interface: &str,
        func: &str,
    ) -> wasmtime::Result<TypedFunc<(), (R,)>> {
        let missing = || wasmtime::format_err!("no export `{func}` in `{interface}`");
        let (_, parent) = self
            .instance
            .get_export(&mut *self.store, None, interface)
            .ok_or_else(missing)?;
        let (_, index) = self
            .instance
            .get_export(&mut *self.store, Some(&parent), func)
            .ok_or_else(missing)?;
        self.instance.get_typed_func(&mut *self.store, index)
    }

    fn fail(&mut self, e: &wasmtime::Error) {
        self.failed
            .get_or_insert_with(|| format!("reading its state back failed: {e:#}"));
    }

    fn call<R: Lift + Default + 'static>(&mut self, interface: &str, func: &str) -> R {
        let result = self
            .accessor::<R>(interface, func)
            .and_then(|f| Ok(f.call(&mut *self.store, ())?.0));
        result.unwrap_or_else(|e| {
            self.fail(&e);
            R::default()
        })
    }
}

impl ComponentInstanceState for Access<'_> {
    fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        let list = self
            .accessor::<WasmList<u8>>(instance, func)
            .and_then(|f| Ok(f.call(&mut *self.store, ())?.0));
        match list {
            Ok(list) => contents(list.as_le_slice(&*self.store)),
            Err(e) => self.fail(&e),
        }
        ready(())
    }

    fn call_func_ret_s32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = i32> + Send {
        ready(self.call(instance, func))
    }

    fn call_func_ret_s64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = i64> + Send {
        ready(self.call(instance, func))
    }

    fn call_func_ret_f32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = u32> + Send {
        ready(self.call::<f32>(instance, func).to_bits())
    }

    fn call_func_ret_f64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = u64> + Send {
        ready(self.call::<f64>(instance, func).to_bits())
    }
}
