//! [`ProcessPool`]: tasks run in worker processes — the current binary, started again — so a
//! crash, a leak or a wild pointer in one task cannot hurt the caller or the other workers.
//!
//! The parent keeps one *manager thread* per worker slot. A manager starts its worker, then
//! loops: take the next job from the shared queue, send it down the worker's stdin, wait for the
//! reply on its stdout (see [`wire`] for the frames), write the record, complete the handle.
//! Because a manager sends one job at a time, a worker that dies takes exactly that one job with
//! it: the job ends as [`TaskError::WorkerDied`](crate::TaskError::WorkerDied), every other job is still in the parent's queue
//! and runs on the replacement worker the manager starts next. Nothing is ever sent twice, except
//! a job whose *sending* failed because the worker had already died idle — it never reached a
//! worker, so it goes to the replacement.
//!
//! Workers are started from their manager thread, and ask the kernel to kill them when that
//! thread goes away (`PR_SET_PDEATHSIG`): a parent that dies — even by `abort` or SIGKILL — takes
//! its workers with it. A parent that merely closes the pool closes the pipes, and the idle
//! workers read end-of-stream and exit; every worker is reaped with `wait4`, so none is left as a
//! zombie, and no signal is ever sent to a worker after it was reaped (signals go through a
//! pidfd where the kernel has them, and are guarded by the worker's reaped state everywhere).
//!
//! Resizing is all-or-nothing: a grow whose new workers cannot all start returns the error and
//! leaves the pool at its previous size. Should a manager thread ever panic (a bug in pardo),
//! every queued and every later task fails with an error saying so; no handle is left waiting.

//! The code is split by concern:
//!
//! - this file: the public face, [`ProcessPool`] and its methods;
//! - `builder`: [`ProcessPoolBuilder`], its options, and starting a pool;
//! - `manager`: the shared queue, the manager thread's loop, dispatch and resizing;
//! - `lifecycle`: one worker process — spawn, stderr forwarding, reap, kill, retire;
//! - `delivery`: a job's typed end — decoding results, writing records, completing handles;
//! - `wire`: the pipe protocol; `worker`: the worker side, [`worker_hook`].

mod builder;
pub(crate) mod delivery;
mod lifecycle;
mod manager;
pub(crate) mod wire;
pub(crate) mod worker;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::executor::{Executor, ShutdownMode};
use crate::handle::Handle;
use crate::monitor::{Recorder, Report};
use crate::pool::map::{Map, MapUnordered};
use crate::pool::task_fn::{RunTask, TaskFn};
use crate::pool::PoolError;
use crate::sync::lock;
use delivery::Job;
use manager::Shared;

pub use builder::ProcessPoolBuilder;
pub use worker::worker_hook;
#[doc(hidden)]
pub use worker::Registered;

/// A pool of worker processes running registered [`TaskFn`]s, with every task measured.
///
/// - **The same API as [`ThreadPool`](crate::ThreadPool)**: [`submit`](ProcessPool::submit),
///   [`map`](ProcessPool::map), [`map_unordered`](ProcessPool::map_unordered), handles that
///   work with [`as_completed`](crate::as_completed), [`shutdown`](ProcessPool::shutdown), the
///   [`Executor`] trait, the same [`TaskRecord`](crate::monitor::TaskRecord)s — with the task's CPU time as measured in the
///   worker and the worker's peak resident memory (`max_rss_bytes`). Tasks are named functions
///   rather than closures (a closure cannot cross into another process); [`RunTask`] runs them
///   on any pool.
/// - **Workers are this binary, started again**: call [`worker_hook`] on the first line of
///   `main`.
/// - **Crash containment**: a panic is [`TaskError::Panicked`](crate::TaskError::Panicked) and the worker lives on; a worker
///   that aborts, segfaults or is killed (SIGKILL, the OOM killer) fails only the task it was
///   running, with [`TaskError::WorkerDied`](crate::TaskError::WorkerDied) (which says whether a signal killed it or it exited
///   with a code); a replacement starts and the pool goes on. Unlike
///   Python's `ProcessPoolExecutor`, the pool is never "broken".
/// - **Limits**: [`max_tasks_per_worker`](ProcessPoolBuilder::max_tasks_per_worker),
///   [`memory_limit`](ProcessPoolBuilder::memory_limit) (RLIMIT_AS),
///   [`task_timeout`](ProcessPoolBuilder::task_timeout) (the worker is killed and replaced).
/// - **Serialization**: arguments and results travel as postcard; a value that cannot be encoded
///   or decoded ends its task as [`TaskError::Failed`](crate::TaskError::Failed) saying so.
/// - **Shutdown**: as the thread pool's. Dropping the pool is `shutdown(Wait)`, except while the
///   thread is panicking: then queued tasks are cancelled and running workers are killed, so a
///   failing parent never waits on them. No worker outlives the pool, or the parent process.
/// - **`map` isolation**: `map` sends one input per task by default (Python's `chunksize=1`),
///   so a crash fails one item. [`Map::chunk_size`] batches items for throughput; a crash then
///   fails every item of its batch.
///
/// ```
/// pardo::task_fn! {
///     /// Squares a number in a worker process.
///     pub Square(x: u64) -> u64 { x * x }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     pardo::worker_hook(); // workers take over here
///     let pool = pardo::ProcessPool::builder().workers(2).build()?;
///     assert_eq!(pool.submit(Square, 7).wait()?, 49);
///     let squares: Vec<u64> = pool.map(1..=4, Square).collect::<Result<_, _>>()?;
///     assert_eq!(squares, [1, 4, 9, 16]);
///     let report = pool.shutdown(pardo::ShutdownMode::Wait);
///     assert_eq!(report.items, 5);
///     Ok(())
/// }
/// ```
pub struct ProcessPool {
    shared: Arc<Shared>,
    /// The steering loop of an automatic pool; stopped before the pool closes.
    steering: std::sync::Mutex<Option<crate::tune::steer::Steering>>,
}

impl std::fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.shared.target.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a process pool's workers went through, counted since the pool was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Worker processes started (the first ones and every replacement), counted from the moment
    /// the process exists: a replacement is counted by the time the failure of the task that
    /// lost its worker is delivered.
    pub started: u64,
    /// Workers replaced after reaching `max_tasks_per_worker`.
    pub recycled: u64,
    /// Workers that died under a task or while idle (signal, abort, unexpected exit).
    pub died: u64,
    /// Workers killed because their task ran out of time.
    pub timed_out: u64,
}

impl ProcessPool {
    /// A builder with the defaults: one worker per available core, the current executable as
    /// the worker program, no limits.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder::defaults()
    }

    /// A pool with the default settings.
    pub fn new() -> Result<ProcessPool, PoolError> {
        ProcessPool::builder().build()
    }

    /// Runs `f(input)` in a worker process and returns a handle to its result.
    pub fn submit<F: TaskFn>(&self, f: F, input: F::Input) -> Handle<F::Output> {
        let _ = f;
        delivery::submit_one::<F>(&*self.shared, input)
    }

    /// Applies `f` to every input in the workers and yields the results in input order; lazy
    /// and bounded like [`ThreadPool::map`](crate::ThreadPool::map). One input per task unless
    /// [`Map::chunk_size`] says otherwise.
    pub fn map<F, I>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        let _ = f;
        delivery::map::<F, _>(&*self.shared, inputs.into_iter())
    }

    /// As [`map`](ProcessPool::map), yielding `(task id, result)` in completion order.
    pub fn map_unordered<F, I>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        let _ = f;
        delivery::map_unordered::<F, _>(&*self.shared, inputs.into_iter())
    }

    /// Stops the pool and returns the final report. [`ShutdownMode::Wait`] runs every submitted
    /// task first; [`ShutdownMode::CancelPending`] cancels the queued ones and lets running ones
    /// finish. Either way every worker has exited and been reaped when this returns.
    pub fn shutdown(self, mode: ShutdownMode) -> Report {
        self.close(mode);
        self.shared.recorder.report()
    }

    /// Live counters (submitted, running, done, failed).
    pub fn counters(&self) -> crate::monitor::Counters {
        self.shared.recorder.counters()
    }

    /// Workers started, recycled, died and timed out so far.
    pub fn stats(&self) -> ProcessStats {
        let s = &self.shared.stats;
        ProcessStats {
            started: s.started.load(Ordering::Relaxed),
            recycled: s.recycled.load(Ordering::Relaxed),
            died: s.died.load(Ordering::Relaxed),
            timed_out: s.timed_out.load(Ordering::Relaxed),
        }
    }

    /// The process ids of the live workers, by slot. Just after a shrink this can still list
    /// a worker that is being retired.
    pub fn worker_pids(&self) -> Vec<u32> {
        let mut workers: Vec<(usize, u32)> = lock(&self.shared.workers)
            .iter()
            .filter(|w| !w.is_reaped())
            .map(|w| (w.index, w.pid))
            .collect();
        workers.sort_unstable();
        workers.into_iter().map(|(_, pid)| pid).collect()
    }

    fn close(&self, mode: ShutdownMode) {
        // Stop steering first: a resize racing the close would start workers for nothing.
        let steering = lock(&self.steering).take();
        drop(steering);
        let s = &self.shared;
        let dropped: Vec<Job> = {
            let mut q = lock(&s.queue);
            q.closing = true;
            match mode {
                ShutdownMode::Wait => Vec::new(),
                ShutdownMode::CancelPending => q.jobs.drain(..).collect(),
            }
        };
        s.more.notify_all();
        let w = s.recorder.worker(1);
        for job in dropped {
            w.cancelled(job.id, job.submitted_ns, job.items);
            // Dropping the job drops its promise, which completes the handle as cancelled.
        }
        let managers: Vec<JoinHandle<()>> = {
            let mut m = lock(&s.managers);
            let leaving = std::mem::take(&mut m.leaving);
            m.active
                .iter_mut()
                .filter_map(Option::take)
                .chain(leaving)
                .collect()
        };
        crate::pool::join_all_but_current(managers);
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The caller is failing: do not make it wait on tasks it can no longer use.
            // Each kill is guarded against the worker having been reaped (see `Tracked`).
            for worker in lock(&self.shared.workers).iter() {
                worker.kill();
            }
            self.close(ShutdownMode::CancelPending);
        } else {
            self.close(ShutdownMode::Wait);
        }
    }
}

impl Executor for ProcessPool {
    fn kind(&self) -> &'static str {
        "process_pool"
    }

    fn workers(&self) -> usize {
        self.shared.target.load(Ordering::Relaxed)
    }

    /// On an automatic pool this also turns the steering off: the caller has taken over.
    fn set_workers(&self, workers: usize) -> Result<(), PoolError> {
        let steering = lock(&self.steering).take();
        drop(steering);
        self.resize(workers)
    }

    fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }
}

impl RunTask for ProcessPool {
    fn submit_task<F: TaskFn>(&self, f: F, input: F::Input) -> Handle<F::Output> {
        self.submit(f, input)
    }

    fn map_task<F, I>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map(inputs, f)
    }

    fn map_unordered_task<F, I>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        self.map_unordered(inputs, f)
    }
}
