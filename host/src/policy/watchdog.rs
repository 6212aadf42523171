//! Running decisions under a watchdog.
//!
//! Epoch interruption stops a policy only while guest code runs; a host
//! function that blocked (a WASI wait before `super::wasi` stubbed them, a
//! bug in a host function) would hold its thread past any deadline. The
//! watchdog bounds what that costs, two ways:
//!
//! * On a plain thread or a multi-thread tokio runtime (the agent, the
//!   bench, `weftd policy`), the decision runs on the calling thread, in
//!   `block_in_place` on a runtime worker. A watcher thread looks at every
//!   such call's due time each [`WATCH_PERIOD`]; a call past it is marked
//!   overdue and logged while it is stuck, and its answer is discarded when
//!   it returns (the caller gets `None`, as at a deadline): the guest gets
//!   no further, since its epoch deadline has passed too. No thread
//!   hand-over per decision, which was about half of its cost.
//! * On a current-thread runtime (`weftd simulate`), where WASI's blocking
//!   host functions cannot run (they `block_on` the caller's runtime), the
//!   decision runs on a policy worker thread and the caller waits at most
//!   its limit: past it, the caller gets `None` and goes on, and the worker
//!   is abandoned until its call returns. A stuck worker is replaced, up to
//!   [`MAX_WORKERS`] workers in all. Workers are plain threads, outside any
//!   runtime; the caller's `tracing` dispatcher and span are carried over.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, RuntimeFlavor};

/// How long past its deadline a decision may take before the watchdog gives
/// up on it.
pub(super) const GRACE: Duration = Duration::from_millis(50);
/// Most worker threads (running or stuck) at once; one per decision that
/// can run concurrently.
pub(super) const MAX_WORKERS: usize = 64;
/// How often the watcher looks at the calls running on their callers'
/// threads.
const WATCH_PERIOD: Duration = Duration::from_millis(5);

type Job = Box<dyn FnOnce() + Send>;

static POOL: LazyLock<Pool> = LazyLock::new(Pool::default);
static WATCHER: LazyLock<Watcher> = LazyLock::new(Watcher::start);

thread_local! {
    /// This thread's call as the watcher sees it, registered at its first.
    static CALL: Arc<Watched> = WATCHER.register();
}

/// Runs `job` under the watchdog with at most `limit` for it (see the
/// module's doc for where). `None`: the watchdog gave up (the job overran
/// its limit and its answer was discarded, or on a worker it may still be
/// running, or never start). A panic in `job` reaches the caller.
pub(crate) fn run<R: Send + 'static>(
    limit: Duration,
    job: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => watched(limit, job),
        // Let the runtime move this worker's other tasks elsewhere.
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| watched(limit, job)),
        Ok(_) => run_on_worker(limit, job),
    }
}

/// Runs `job` on this thread, watched: `None` when the watcher found it
/// past `limit`.
fn watched<R>(limit: Duration, job: impl FnOnce() -> R) -> Option<R> {
    let answer = CALL.with(|call| {
        let _watching = call.start(&WATCHER, limit);
        job()
    });
    (!CALL.with(|call| call.overdue.swap(false, Ordering::AcqRel))).then_some(answer)
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

/// The calls running on their callers' threads, and the thread that
/// watches them.
struct Watcher {
    /// When the watcher started: due times are nanoseconds since.
    origin: Instant,
    calls: Mutex<Vec<Weak<Watched>>>,
}

/// One thread's call in progress.
struct Watched {
    thread: ThreadId,
    /// When the call must be over, in nanoseconds since the watcher's
    /// origin; 0 when the thread runs none.
    due: AtomicU64,
    /// Set by the watcher when the call ran past its due time.
    overdue: AtomicBool,
}

impl Watcher {
    fn start() -> Self {
        let spawned = std::thread::Builder::new()
            .name("weft-policy-watchdog".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(WATCH_PERIOD);
                    WATCHER.look();
                }
            });
        if let Err(e) = spawned {
            // Calls still end at their epoch deadline while in guest code.
            tracing::error!("cannot start the policy watchdog thread: {e}");
        }
        Watcher {
            origin: Instant::now(),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn register(&self) -> Arc<Watched> {
        let call = Arc::new(Watched {
            thread: std::thread::current().id(),
            due: AtomicU64::new(0),
            overdue: AtomicBool::new(false),
        });
        self.lock().push(Arc::downgrade(&call));
        call
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Weak<Watched>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the calls past their due time overdue; forgets the threads
    /// that ended.
    fn look(&self) {
        let now = self.now();
        self.lock().retain(|call| {
            let Some(call) = call.upgrade() else {
                return false;
            };
            let due = call.due.load(Ordering::Acquire);
            if due != 0 && now > due && !call.overdue.swap(true, Ordering::AcqRel) {
                tracing::error!(
                    thread = ?call.thread,
                    "a policy call is stuck in host code past its limit; its answer will be discarded"
                );
            }
            true
        });
    }
}

impl Watched {
    /// Watches this call until the guard is dropped.
    fn start<'a>(&'a self, watcher: &Watcher, limit: Duration) -> Unwatch<'a> {
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        self.overdue.store(false, Ordering::Release);
        self.due.store(
            watcher.now().saturating_add(limit).max(1),
            Ordering::Release,
        );
        Unwatch(self)
    }
}

/// Ends the watch of a call, also when it panics.
struct Unwatch<'a>(&'a Watched);

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.0.due.store(0, Ordering::Release);
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

    #[test]
    fn a_call_stuck_in_host_code_past_its_limit_is_discarded() {
        // On this thread: the watcher marks it overdue while it is stuck.
        let answer = run(Duration::from_millis(10), || {
            stuck(Duration::from_millis(500))
        });
        assert_eq!(answer, None);
        // The thread's next call is watched afresh.
        assert_eq!(run(Duration::from_secs(60), || 2), Some(2));
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
