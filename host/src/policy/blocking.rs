//! Running guest code from any thread, async or not.
//!
//! WASI's synchronous host functions (a guest writing to stderr, e.g. a
//! Rust panic message) block on the ambient tokio runtime, which panics on
//! a thread that is driving async tasks. Decisions are short and
//! synchronous, so the reconciler and the API may call them from async
//! code: on a multi-threaded runtime the call runs in
//! [`tokio::task::block_in_place`], on a current-thread runtime on a scoped
//! helper thread, and outside any runtime directly.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f` where blocking on tokio is allowed, and returns its result.
pub(crate) fn run<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    fn blocks_on_tokio() -> u32 {
        let handle = tokio::runtime::Handle::try_current();
        match handle {
            Ok(h) => h.block_on(async { 7 }),
            Err(_) => 7,
        }
    }

    #[test]
    fn works_outside_a_runtime() {
        assert_eq!(run(blocks_on_tokio), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_on_a_multi_thread_worker() {
        assert_eq!(run(blocks_on_tokio), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn works_on_a_current_thread_runtime() {
        assert_eq!(run(blocks_on_tokio), 7);
    }
}
