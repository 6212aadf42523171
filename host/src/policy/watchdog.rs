//! Running decisions on the policy worker threads, under a watchdog.
//!
//! Epoch interruption stops a policy only while guest code runs; a host
//! function that blocks (a WASI wait, a bug in a host function) would hold
//! the caller past any deadline. So every decision runs on a worker thread
//! and the caller waits at most its limit: past it, the caller gets `None`
//! and goes on, and the worker is abandoned until its call returns (the
//! epoch deadline then stops the guest at once). A stuck worker is
//! replaced, up to [`MAX_WORKERS`] workers in all.
//!
//! Workers are plain threads, outside any tokio runtime, so WASI's
//! synchronous host functions (which block on tokio internally) are safe
//! whichever thread asks; the caller's `tracing` dispatcher and span are
//! carried over, so a policy's logs land where the caller's would.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, RuntimeFlavor};

/// How long past its deadline a decision may take before the watchdog gives
/// up on it.
pub(super) const GRACE: Duration = Duration::from_millis(50);
/// Most worker threads (running or stuck) at once; one per decision that
/// can run concurrently.
pub(super) const MAX_WORKERS: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

static POOL: LazyLock<Pool> = LazyLock::new(Pool::default);

/// Runs `job` on a worker and waits at most `limit` for it. `None`: the
/// watchdog gave up (the job may still be running, or never start). A
/// panic in `job` is resumed on the caller.
pub(crate) fn run<R: Send + 'static>(
    limit: Duration,
    job: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (tx, rx) = sync_channel(1);
    let give_up = Instant::now() + limit;
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let span = tracing::Span::current();
    let job: Job = Box::new(move || {
        // A job that waited past its limit for a worker is not started.
        if Instant::now() >= give_up {
            return;
        }
        let result = tracing::dispatcher::with_default(&dispatch, || {
            let _entered = span.enter();
            catch_unwind(AssertUnwindSafe(job))
        });
        let _ = tx.send(result);
    });
    if !POOL.submit(job) {
        return None;
    }
    let wait = || rx.recv_timeout(limit);
    let received = match Handle::try_current().map(|h| h.runtime_flavor()) {
        // Let the runtime move this worker's other tasks elsewhere.
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    };
    match received {
        Ok(Ok(result)) => Some(result),
        Ok(Err(panic)) => resume_unwind(panic),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
    }
}

/// Worker threads and their queue.
#[derive(Default)]
struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    idle: usize,
    workers: usize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` and wakes or starts a worker for it; `false` when no
    /// worker exists and none can be started.
    fn submit(&'static self, job: Job) -> bool {
        let mut state = self.lock();
        state.queue.push_back(job);
        if state.idle >= state.queue.len() {
            self.work.notify_one();
            return true;
        }
        if state.workers < MAX_WORKERS {
            let spawned = std::thread::Builder::new()
                .name("weft-policy".into())
                .spawn(move || self.work_loop());
            match spawned {
                Ok(_) => state.workers += 1,
                Err(e) => tracing::error!("cannot start a policy worker thread: {e}"),
            }
        }
        // Otherwise the job waits for a worker; its caller's limit bounds it.
        state.workers > 0
    }

    fn work_loop(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_stuck_in_host_code_is_abandoned_at_its_limit() {
        // A host call that never returns in time, as `wasi:io/poll.block`
        // on a real clock would be.
        let answer = run(Duration::from_millis(10), || {
            std::thread::sleep(Duration::from_secs(60));
            1
        });
        assert_eq!(answer, None);
        // Other jobs still run: the stuck worker was replaced.
        assert_eq!(run(Duration::from_secs(60), || 2), Some(2));
    }

    #[test]
    fn panics_reach_the_caller() {
        let caught = catch_unwind(|| run(Duration::from_secs(60), || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(run(Duration::from_secs(60), || 3), Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_on_a_multi_thread_runtime_worker() {
        // WASI's host functions block on tokio; on a worker of ours that is
        // allowed even when the caller is a runtime thread.
        let answer = run(Duration::from_secs(60), || {
            wasmtime_wasi::runtime::in_tokio(async { 7 })
        });
        assert_eq!(answer, Some(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn works_on_a_current_thread_runtime() {
        let answer = run(Duration::from_secs(60), || {
            wasmtime_wasi::runtime::in_tokio(async { 7 })
        });
        assert_eq!(answer, Some(7));
    }
}
