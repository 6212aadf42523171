//! Where a decision runs: on its caller's thread, or on a worker thread
//! where the caller cannot wait for it.
//!
//! Epoch interruption stops a policy only while guest code runs; a host
//! function that blocked (a WASI wait before `super::wasi` stubbed them, a
//! bug in a host function) would hold its thread past any deadline.
//!
//! * On a plain thread or a multi-thread tokio runtime (the agent, the
//!   bench, `weftd policy`), the decision runs on the calling thread, in
//!   `block_in_place` on a runtime worker: no thread hand-over per
//!   decision, which was about half of its cost. The engine's timer
//!   ([`super::timer`]) marks a call past its limit overdue and logs it
//!   while it is stuck; its answer is discarded when it returns.
//! * On a current-thread runtime (`weftd simulate`), where WASI's blocking
//!   host functions cannot run (they `block_on` the caller's runtime), the
//!   decision runs on a policy worker thread and the caller waits at most
//!   its limit: past it, the caller gets `None` and goes on, and the worker
//!   is abandoned until its call returns. A stuck worker is replaced, up to
//!   [`MAX_WORKERS`] workers in all. Workers are plain threads, outside any
//!   runtime; the caller's `tracing` dispatcher and span are carried over.

use super::timer::SANDBOXES;
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
pub(super) const MAX_WORKERS: usize = SANDBOXES;

type Job = Box<dyn FnOnce() + Send>;

static POOL: LazyLock<Pool> = LazyLock::new(Pool::default);

/// Runs `job` where the module's doc says, with at most `limit` for it on a
/// worker. `None`: the caller gave up on a worker's job (it may still be
/// running, or never start). A panic in `job` reaches the caller.
pub(crate) fn run<R: Send + 'static>(
    limit: Duration,
    job: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => Some(job()),
        // Let the runtime move this worker's other tasks elsewhere.
        Ok(RuntimeFlavor::MultiThread) => Some(tokio::task::block_in_place(job)),
        Ok(_) => run_on_worker(limit, job),
    }
}

/// Runs `job` on a policy worker thread and waits at most `limit` for it:
/// `None` when it did not end by then (it may still be running, or never
/// start). A panic in `job` reaches the caller.
pub(crate) fn run_on_worker<R: Send + 'static>(
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

    /// A host call that does not return in time, as `wasi:io/poll.block`
    /// on a real clock would not.
    fn stuck(for_: Duration) -> u32 {
        std::thread::sleep(for_);
        1
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_stuck_on_a_worker_is_abandoned_at_its_limit() {
        let answer = run(Duration::from_millis(10), || stuck(Duration::from_secs(60)));
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

    #[tokio::test(flavor = "current_thread")]
    async fn panics_on_a_worker_reach_the_caller() {
        let caught = catch_unwind(|| run(Duration::from_secs(60), || panic!("boom")));
        assert!(caught.is_err());
        assert_eq!(run(Duration::from_secs(60), || 3), Some(3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_on_a_multi_thread_runtime_worker() {
        // WASI's host functions block on tokio: allowed in `block_in_place`.
        let answer = run(Duration::from_secs(60), || {
            wasmtime_wasi::runtime::in_tokio(async { 7 })
        });
        assert_eq!(answer, Some(7));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn works_on_a_current_thread_runtime() {
        // There they would panic on the caller's thread: a worker runs them.
        let answer = run(Duration::from_secs(60), || {
            wasmtime_wasi::runtime::in_tokio(async { 7 })
        });
        assert_eq!(answer, Some(7));
    }
}
