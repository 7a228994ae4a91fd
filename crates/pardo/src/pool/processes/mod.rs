//! [`ProcessPool`]: tasks run in worker processes — the current binary, started again — so a
//! crash, a leak or a wild pointer in one task cannot hurt the caller or the other workers.
//!
//! The parent keeps one *manager thread* per worker slot. A manager starts its worker, then
//! loops: take the next job from the shared queue, send it down the worker's stdin, wait for the
//! reply on its stdout (see [`wire`] for the frames), write the record, complete the handle.
//! Because a manager sends one job at a time, a worker that dies takes exactly that one job with
//! it: the job ends as [`TaskError::WorkerDied`], every other job is still in the parent's queue
//! and runs on the replacement worker the manager starts next. Nothing is ever sent twice, except
//! a job whose *sending* failed because the worker had already died idle — it never reached a
//! worker, so it goes to the replacement.
//!
//! Workers are started from their manager thread, and ask the kernel to kill them when that
//! thread goes away (`PR_SET_PDEATHSIG`): a parent that dies — even by `abort` or SIGKILL — takes
//! its workers with it. A parent that merely closes the pool closes the pipes, and the idle
//! workers read end-of-stream and exit; every worker is reaped with `wait4`, so none is left as a
//! zombie.

mod wire;
mod worker;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::executor::{Executor, ShutdownMode};
use crate::handle::{Handle, Promise};
use crate::monitor::WorkerRecorder;
use crate::monitor::{available_cores, Recorder, Report, Retention, RunRecord, TaskRecord};
use crate::pool::map::{Chunk, Map, MapUnordered, SubmitChunk};
use crate::pool::task_fn::{chunk_outcome, RunTask, TaskFn};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::{Outcome, TaskError, TaskId};
use wire::{Hello, ItemResult, Reply, Request};

pub use worker::worker_hook;
#[doc(hidden)]
pub use worker::Registered;

/// How many times an idle manager yields and looks for a job before it sleeps.
const SPIN_ROUNDS: usize = 32;
/// How long a new worker has to say hello before it is killed and the start reported failed.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a closed-down worker's stderr may stay open after it died (a grandchild can hold
/// it); past this, its last words are not waited for.
const STDERR_GRACE: Duration = Duration::from_secs(1);
/// The bytes of a worker's stderr kept to explain its death: enough for the allocator's line
/// followed by a backtrace.
const STDERR_TAIL: usize = 64 << 10;

/// Configures a [`ProcessPool`].
///
/// ```
/// use std::time::Duration;
/// let builder = pardo::ProcessPool::builder()
///     .workers(2)
///     .max_tasks_per_worker(1_000)
///     .memory_limit(512 << 20)
///     .task_timeout(Duration::from_secs(30));
/// # drop(builder);
/// ```
#[derive(Clone, Debug)]
pub struct ProcessPoolBuilder {
    workers: Option<usize>,
    program: Option<PathBuf>,
    args: Vec<OsString>,
    max_tasks_per_worker: Option<u64>,
    memory_limit: Option<u64>,
    task_timeout: Option<Duration>,
    start_timeout: Duration,
    retention: Retention,
}

impl ProcessPoolBuilder {
    /// Number of worker processes (default: the available parallelism).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The program to start as a worker (default: the current executable). It must call
    /// [`worker_hook`] first thing in `main` and be built from the same code, so that it knows
    /// the same task functions.
    pub fn worker_program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Arguments for the worker program (default: none).
    pub fn worker_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces a worker after it has run `n` tasks (or `map` chunks), to bound what a leaky
    /// task function can accumulate (Python's `max_tasks_per_child`). Default: never.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n.max(1));
        self
    }

    /// Caps each worker's address space at `bytes` with `setrlimit(RLIMIT_AS)` (not a cgroup:
    /// that needs privileges pardo does not assume). An allocation past the limit fails, the
    /// worker aborts, and the task ends as [`TaskError::Failed`] saying the memory limit was hit;
    /// a replacement worker takes over. The limit counts *virtual* memory, so leave room above
    /// the resident size the task needs (the binary, its libraries and stacks count too).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Kills a task's worker when the task runs longer than `limit`; the task ends as
    /// [`TaskError::TimedOut`] and a replacement worker takes over. Default: no limit.
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// How long a new worker may take to start and answer (default 20 s).
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Keeps only the summary, not every record (see [`Retention`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Starts the workers and waits until each has answered.
    pub fn build(self) -> Result<ProcessPool, PoolError> {
        if worker::started_as_worker() {
            return Err(PoolError::InsideWorker);
        }
        let workers = self.workers.unwrap_or_else(available_cores);
        if workers == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let program = match self.program {
            Some(p) => p,
            None => {
                std::env::current_exe().map_err(|source| PoolError::Spawn { worker: 1, source })?
            }
        };
        let recorder = Recorder::new(
            RunRecord::now("process_pool", workers),
            true,
            self.retention,
        );
        if let Some(n) = self.max_tasks_per_worker {
            recorder.set_setting("max_tasks_per_worker", &n.to_string());
        }
        if let Some(b) = self.memory_limit {
            recorder.set_setting("memory_limit_bytes", &b.to_string());
        }
        if let Some(t) = self.task_timeout {
            recorder.set_setting("task_timeout", &format!("{t:?}"));
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closing: false,
                spinner: false,
            }),
            more: Condvar::new(),
            target: AtomicUsize::new(0),
            managers: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
            recorder,
            config: Config {
                program,
                args: self.args,
                max_tasks_per_worker: self.max_tasks_per_worker,
                memory_limit: self.memory_limit,
                task_timeout: self.task_timeout,
                start_timeout: self.start_timeout,
            },
            stats: Stats::default(),
        });
        let pool = ProcessPool { shared };
        pool.resize(workers)?;
        Ok(pool)
    }
}

/// A pool of worker processes running registered [`TaskFn`]s, with every task measured.
///
/// - **The same API as [`ThreadPool`](crate::ThreadPool)**: [`submit`](ProcessPool::submit),
///   [`map`](ProcessPool::map), [`map_unordered`](ProcessPool::map_unordered), handles that
///   work with [`as_completed`](crate::as_completed), [`shutdown`](ProcessPool::shutdown), the
///   [`Executor`] trait, the same [`TaskRecord`]s — with the task's CPU time as measured in the
///   worker and the worker's peak resident memory (`max_rss_bytes`). Tasks are named functions
///   rather than closures (a closure cannot cross into another process); [`RunTask`] runs them
///   on any pool.
/// - **Workers are this binary, started again**: call [`worker_hook`] on the first line of
///   `main`.
/// - **Crash containment**: a panic is [`TaskError::Panicked`] and the worker lives on; a worker
///   that aborts, segfaults or is killed (SIGKILL, the OOM killer) fails only the task it was
///   running, with [`TaskError::WorkerDied`]; a replacement starts and the pool goes on. Unlike
///   Python's `ProcessPoolExecutor`, the pool is never "broken".
/// - **Limits**: [`max_tasks_per_worker`](ProcessPoolBuilder::max_tasks_per_worker),
///   [`memory_limit`](ProcessPoolBuilder::memory_limit) (RLIMIT_AS),
///   [`task_timeout`](ProcessPoolBuilder::task_timeout) (the worker is killed and replaced).
/// - **Serialization**: arguments and results travel as postcard; a value that cannot be encoded
///   or decoded ends its task as [`TaskError::Failed`] saying so.
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
    /// Worker processes started (the first ones and every replacement).
    pub started: u64,
    /// Workers replaced after reaching `max_tasks_per_worker`.
    pub recycled: u64,
    /// Workers that died under a task or while idle (signal, abort, unexpected exit).
    pub died: u64,
    /// Workers killed because their task ran out of time.
    pub timed_out: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    more: Condvar,
    /// Workers wanted; managers whose index is at or above it leave.
    target: AtomicUsize,
    /// One entry per slot: the manager thread, while it lives.
    managers: Mutex<Vec<Option<JoinHandle<()>>>>,
    /// The live worker's pid per slot, for killing on a panicking drop and for tests.
    pids: Mutex<Vec<Option<u32>>>,
    recorder: Recorder,
    config: Config,
    stats: Stats,
}

struct Queue {
    jobs: VecDeque<Job>,
    closing: bool,
    /// True while one idle manager polls the queue before sleeping (see `next_job`).
    spinner: bool,
}

struct Config {
    program: PathBuf,
    args: Vec<OsString>,
    max_tasks_per_worker: Option<u64>,
    memory_limit: Option<u64>,
    task_timeout: Option<Duration>,
    start_timeout: Duration,
}

#[derive(Default)]
struct Stats {
    started: AtomicU64,
    recycled: AtomicU64,
    died: AtomicU64,
    timed_out: AtomicU64,
}

/// One task or one `map` chunk, encoded and waiting for a worker.
struct Job {
    id: TaskId,
    items: u32,
    submitted_ns: u64,
    name: &'static str,
    inputs: Vec<Vec<u8>>,
    deliver: Box<dyn Deliver>,
}

/// The typed end of a job: decodes the worker's answer and completes the caller's handle.
trait Deliver: Send {
    /// Claims the task for running; false when it was cancelled first.
    fn try_start(&self) -> bool;
    /// Decodes `result`, calls `record` with the outcome (the record is written before the
    /// handle completes), then completes the handle.
    fn deliver(
        self: Box<Self>,
        first: TaskId,
        result: Result<Reply, TaskError>,
        record: &mut dyn FnMut(Outcome),
    );
}

/// Decodes one item's result.
fn decode_item<R: DeserializeOwned>(
    id: TaskId,
    name: &str,
    item: ItemResult,
) -> Result<R, TaskError> {
    match item {
        ItemResult::Ok(bytes) => postcard::from_bytes(&bytes).map_err(|e| TaskError::Failed {
            id,
            message: format!("cannot decode the result of {name}: {e}"),
        }),
        ItemResult::Panicked(message) => Err(TaskError::Panicked { id, message }),
        ItemResult::Failed(message) => Err(TaskError::Failed { id, message }),
    }
}

struct OneTask<T> {
    promise: Promise<T>,
    name: &'static str,
}

impl<T: DeserializeOwned + Send> Deliver for OneTask<T> {
    fn try_start(&self) -> bool {
        self.promise.try_start()
    }

    fn deliver(
        self: Box<Self>,
        id: TaskId,
        result: Result<Reply, TaskError>,
        record: &mut dyn FnMut(Outcome),
    ) {
        let result = result.and_then(|reply| match reply.outputs.into_iter().next() {
            Some(item) => decode_item(id, self.name, item),
            None => Err(TaskError::Failed {
                id,
                message: "the worker answered with no result".to_owned(),
            }),
        });
        record(
            result
                .as_ref()
                .map_or_else(TaskError::outcome, |_| Outcome::Ok),
        );
        self.promise.complete(result);
    }
}

struct ChunkTask<T, R> {
    promise: Promise<Chunk<T, R>>,
    name: &'static str,
    values: Vec<R>,
    spare: Vec<T>,
}

impl<T: Send, R: DeserializeOwned + Send> Deliver for ChunkTask<T, R> {
    fn try_start(&self) -> bool {
        self.promise.try_start()
    }

    fn deliver(
        self: Box<Self>,
        first: TaskId,
        result: Result<Reply, TaskError>,
        record: &mut dyn FnMut(Outcome),
    ) {
        let ChunkTask {
            promise,
            name,
            mut values,
            spare,
        } = *self;
        match result {
            Ok(reply) => {
                let mut errors = Vec::new();
                for (pos, item) in reply.outputs.into_iter().enumerate() {
                    let id = TaskId(first.0 + pos as u64);
                    match decode_item(id, name, item) {
                        Ok(v) => values.push(v),
                        Err(e) => errors.push((pos as u32, e)),
                    }
                }
                let chunk = Chunk {
                    values,
                    errors,
                    busy_ns: reply.busy_ns,
                    spare,
                };
                record(chunk_outcome(&chunk));
                promise.complete(Ok(chunk));
            }
            Err(e) => {
                record(e.outcome());
                promise.complete(Err(e));
            }
        }
    }
}

impl ProcessPool {
    /// A builder with the defaults: one worker per available core, the current executable as
    /// the worker program, no limits.
    pub fn builder() -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            workers: None,
            program: None,
            args: Vec::new(),
            max_tasks_per_worker: None,
            memory_limit: None,
            task_timeout: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            retention: Retention::All,
        }
    }

    /// A pool with the default settings.
    pub fn new() -> Result<ProcessPool, PoolError> {
        ProcessPool::builder().build()
    }

    /// Runs `f(input)` in a worker process and returns a handle to its result.
    pub fn submit<F: TaskFn>(&self, f: F, input: F::Input) -> Handle<F::Output> {
        let _ = f;
        let recorder = &self.shared.recorder;
        let id = recorder.submit(1);
        let submitted_ns = recorder.now_ns();
        let (promise, handle) = Promise::new(id);
        match postcard::to_allocvec(&input) {
            Ok(bytes) => self.shared.push(Job {
                id,
                items: 1,
                submitted_ns,
                name: F::NAME,
                inputs: vec![bytes],
                deliver: Box::new(OneTask {
                    promise,
                    name: F::NAME,
                }),
            }),
            Err(e) => {
                let err = encode_error::<F>(id, &e);
                self.shared.refuse(id, submitted_ns, 1, &err);
                promise.complete(Err(err));
            }
        }
        handle
    }

    /// Applies `f` to every input in the workers and yields the results in input order; lazy
    /// and bounded like [`ThreadPool::map`](crate::ThreadPool::map). One input per task unless
    /// [`Map::chunk_size`] says otherwise.
    pub fn map<F, I>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        Map::new(inputs.into_iter(), self.window(), self.chunk_submitter(f)).chunk_size(1)
    }

    /// As [`map`](ProcessPool::map), yielding `(task id, result)` in completion order.
    pub fn map_unordered<F, I>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        MapUnordered::new(inputs.into_iter(), self.window(), self.chunk_submitter(f)).chunk_size(1)
    }

    fn window(&self) -> usize {
        4 * self.shared.target.load(Ordering::Relaxed).max(1)
    }

    fn chunk_submitter<F: TaskFn>(&self, _f: F) -> SubmitChunk<'_, F::Input, F::Output> {
        Box::new(move |mut items: Vec<F::Input>, values: Vec<F::Output>| {
            let n = items.len();
            let recorder = &self.shared.recorder;
            let first = recorder.submit(n as u64);
            let submitted_ns = recorder.now_ns();
            let (promise, handle) = Promise::new(first);
            let encoded: Result<Vec<Vec<u8>>, _> =
                items.iter().map(postcard::to_allocvec).collect();
            items.clear();
            let count = u32::try_from(n).unwrap_or(u32::MAX);
            match encoded {
                Ok(inputs) => self.shared.push(Job {
                    id: first,
                    items: count,
                    submitted_ns,
                    name: F::NAME,
                    inputs,
                    deliver: Box::new(ChunkTask {
                        promise,
                        name: F::NAME,
                        values,
                        spare: items,
                    }),
                }),
                Err(e) => {
                    let err = encode_error::<F>(first, &e);
                    self.shared.refuse(first, submitted_ns, count, &err);
                    promise.complete(Err(err));
                }
            }
            (first, handle)
        })
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

    /// The process ids of the live workers, by slot.
    pub fn worker_pids(&self) -> Vec<u32> {
        lock(&self.shared.pids).iter().flatten().copied().collect()
    }

    fn close(&self, mode: ShutdownMode) {
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
        let managers: Vec<JoinHandle<()>> = lock(&s.managers)
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        crate::pool::join_all_but_current(managers);
    }

    fn resize(&self, n: usize) -> Result<(), PoolError> {
        if n == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let s = &self.shared;
        let mut waiting = Vec::new();
        {
            let mut managers = lock(&s.managers);
            s.target.store(n, Ordering::SeqCst);
            if managers.len() < n {
                managers.resize_with(n, || None);
                lock(&s.pids).resize(n, None);
            }
            for (index, slot) in managers.iter_mut().enumerate().take(n) {
                if slot.as_ref().is_some_and(|m| !m.is_finished()) {
                    continue;
                }
                let (tx, rx) = mpsc::channel();
                let shared = Arc::clone(s);
                let thread = std::thread::Builder::new()
                    .name(format!("pardo-proc-{}", index + 1))
                    .spawn(move || manage(shared, index, tx))
                    .map_err(|source| PoolError::Spawn {
                        worker: index + 1,
                        source,
                    })?;
                *slot = Some(thread);
                waiting.push(rx);
            }
        }
        s.recorder.set_capacity(n);
        // Managers above the new target may be waiting for work; wake them so they leave.
        s.more.notify_all();
        let mut first_error = None;
        for rx in waiting {
            if let Ok(Err(e)) = rx.recv() {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => {
                self.close(ShutdownMode::CancelPending);
                Err(e)
            }
            None => Ok(()),
        }
    }
}

fn encode_error<F: TaskFn>(id: TaskId, e: &postcard::Error) -> TaskError {
    TaskError::Failed {
        id,
        message: format!("cannot encode the input of {} for a worker: {e}", F::NAME),
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The caller is failing: do not make it wait on tasks it can no longer use.
            let pids = lock(&self.shared.pids);
            for pid in pids.iter().flatten() {
                // SAFETY: plain kill(2). A pid leaves this list before its worker is reaped,
                // so it still names our child (at worst a zombie) and cannot have been reused.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            drop(pids);
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

    fn set_workers(&self, workers: usize) -> Result<(), PoolError> {
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

impl Shared {
    fn push(&self, job: Job) {
        let mut q = lock(&self.queue);
        let spinner_takes_it = q.spinner && q.jobs.is_empty();
        q.jobs.push_back(job);
        drop(q);
        if !spinner_takes_it {
            self.more.notify_one();
        }
    }

    /// Records a task that never reached a worker (its input could not be encoded).
    fn refuse(&self, id: TaskId, submitted_ns: u64, items: u32, err: &TaskError) {
        let now = self.recorder.now_ns();
        let mut r = TaskRecord::new(id, 1, submitted_ns, now, now);
        r.items = items;
        r.outcome = err.outcome();
        self.recorder.worker(1).write(r);
    }

    /// The next job for the manager of slot `index`; `None` when it should stop.
    fn next_job(&self, index: usize) -> Option<Job> {
        // A caller that waits on each result submits its next task right after waking: look
        // again a few times, yielding the core, before sleeping on the condvar (a futex wake
        // costs more than the whole pipe round trip).
        // Only one manager spins (on 2 cores a second spinner steals the worker's core), and
        // a push that the spinner will pick up skips the condvar, so no sleeping manager is
        // woken for nothing. The flag lives under the queue lock: a job pushed onto an empty
        // queue while `spinner` is set is taken by the spinner, which clears the flag in the
        // same critical section, so any later push wakes a sleeper.
        let spin = {
            let mut q = lock(&self.queue);
            !std::mem::replace(&mut q.spinner, true)
        };
        if spin {
            for round in 0..=SPIN_ROUNDS {
                let mut q = lock(&self.queue);
                let job = q.jobs.pop_front();
                if job.is_some() || round == SPIN_ROUNDS {
                    q.spinner = false;
                    if !q.jobs.is_empty() {
                        self.more.notify_one();
                    }
                    drop(q);
                    match job {
                        Some(job) if index < self.target.load(Ordering::SeqCst) => {
                            return Some(job)
                        }
                        Some(job) => {
                            lock(&self.queue).jobs.push_front(job);
                            self.more.notify_one();
                        }
                        None => {}
                    }
                    break;
                }
                drop(q);
                std::thread::yield_now();
            }
        }
        let mut q = lock(&self.queue);
        loop {
            if index >= self.target.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closing {
                return None;
            }
            q = wait(&self.more, q);
        }
    }

    /// Decides under the managers lock whether slot `index` really leaves (a resize may have
    /// raised the target again since `next_job` said stop).
    fn may_leave(&self, index: usize) -> bool {
        let _managers = lock(&self.managers);
        index >= self.target.load(Ordering::SeqCst) || lock(&self.queue).closing
    }

    fn set_pid(&self, index: usize, pid: Option<u32>) {
        if let Some(slot) = lock(&self.pids).get_mut(index) {
            *slot = pid;
        }
    }

    fn closing(&self) -> bool {
        lock(&self.queue).closing
    }
}

/// The manager of worker slot `index`: starts the worker, feeds it jobs, replaces it when it
/// dies, is recycled or times out.
fn manage(shared: Arc<Shared>, index: usize, started: mpsc::Sender<Result<(), PoolError>>) {
    let slot = index as u32 + 1;
    let w = shared.recorder.worker(slot);
    let mut live = match Proc::start(&shared, index) {
        Ok(p) => {
            let _ = started.send(Ok(()));
            Some(p)
        }
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    drop(started);
    loop {
        let Some(job) = shared.next_job(index) else {
            if shared.may_leave(index) {
                break;
            }
            continue;
        };
        if !job.deliver.try_start() {
            w.cancelled(job.id, job.submitted_ns, job.items);
            continue;
        }
        let proc = match live.take() {
            Some(p) => p,
            None => match Proc::start(&shared, index) {
                Ok(p) => p,
                Err(e) => {
                    let started_ns = shared.recorder.now_ns();
                    let err = TaskError::Failed {
                        id: job.id,
                        message: e.to_string(),
                    };
                    finish(&w, job, started_ns, Err(err), Exit::default());
                    continue;
                }
            },
        };
        live = run_job(&shared, &w, proc, job);
        if live.is_none() && !shared.closing() {
            // Start the replacement now, so the next task finds a warm worker.
            live = Proc::start(&shared, index).ok();
        }
    }
    if let Some(p) = live {
        p.retire(&shared);
    }
}

/// How a task's worker ended, for the record.
#[derive(Clone, Copy, Debug, Default)]
struct Exit {
    signal: Option<i32>,
    exit_code: Option<i32>,
    max_rss_bytes: Option<u64>,
    cpu_user_ns: u64,
    cpu_sys_ns: u64,
}

/// Writes the job's record and completes its handle.
fn finish(
    w: &WorkerRecorder,
    job: Job,
    started_ns: u64,
    result: Result<Reply, TaskError>,
    exit: Exit,
) {
    let finished_ns = w.recorder().now_ns();
    let (cpu_user_ns, cpu_sys_ns, max_rss_bytes) = match &result {
        Ok(reply) => (
            reply.cpu_user_ns,
            reply.cpu_sys_ns,
            Some(reply.max_rss_bytes),
        ),
        Err(_) => (exit.cpu_user_ns, exit.cpu_sys_ns, exit.max_rss_bytes),
    };
    let Job {
        id,
        items,
        submitted_ns,
        deliver,
        ..
    } = job;
    let mut record = |outcome: Outcome| {
        let mut r = TaskRecord::new(id, w.worker(), submitted_ns, started_ns, finished_ns);
        r.items = items;
        r.cpu_user_ns = cpu_user_ns;
        r.cpu_sys_ns = cpu_sys_ns;
        r.max_rss_bytes = max_rss_bytes;
        r.signal = exit.signal;
        r.exit_code = exit.exit_code;
        r.outcome = outcome;
        w.write(r);
    };
    deliver.deliver(id, result, &mut record);
}

/// Runs one job on `proc`; returns the worker if it is still fit to serve.
fn run_job(shared: &Shared, w: &WorkerRecorder, mut proc: Proc, job: Job) -> Option<Proc> {
    let started_ns = shared.recorder.now_ns();
    if proc.send(&job).is_err() {
        // The worker died while idle (killed from outside): the job never reached it, so it
        // goes to a fresh worker — the one case where a job is sent twice, and it ran zero times.
        let _ = proc.reap(shared);
        shared.stats.died.fetch_add(1, Ordering::Relaxed);
        proc = match Proc::start(shared, proc.index) {
            Ok(p) => p,
            Err(e) => {
                let err = TaskError::Failed {
                    id: job.id,
                    message: e.to_string(),
                };
                finish(w, job, started_ns, Err(err), Exit::default());
                return None;
            }
        };
        if proc.send(&job).is_err() {
            return died(shared, w, proc, job, started_ns);
        }
    }
    match proc.receive(shared.config.task_timeout) {
        Received::Reply(reply) => {
            proc.tasks += 1;
            finish(w, job, started_ns, Ok(reply), Exit::default());
            if shared
                .config
                .max_tasks_per_worker
                .is_some_and(|max| proc.tasks >= max)
            {
                proc.retire(shared);
                shared.stats.recycled.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Some(proc)
        }
        Received::Ended => died(shared, w, proc, job, started_ns),
        Received::TimedOut(after) => {
            proc.kill();
            let exit = proc.reap(shared);
            shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            let err = TaskError::TimedOut { id: job.id, after };
            finish(w, job, started_ns, Err(err), exit);
            None
        }
    }
}

/// The worker ended under `job`: reap it, explain why, fail the job alone.
fn died(
    shared: &Shared,
    w: &WorkerRecorder,
    mut proc: Proc,
    job: Job,
    started_ns: u64,
) -> Option<Proc> {
    let exit = proc.reap(shared);
    shared.stats.died.fetch_add(1, Ordering::Relaxed);
    let tail = proc.stderr_tail();
    let id = job.id;
    let err = match (shared.config.memory_limit, out_of_memory_line(&tail)) {
        (Some(limit), Some(line)) => TaskError::Failed {
            id,
            message: format!(
                "the worker hit its memory limit of {} MiB (RLIMIT_AS) and was replaced: {line}",
                limit >> 20
            ),
        },
        _ => TaskError::WorkerDied {
            id,
            signal: exit.signal,
            exit_code: exit.exit_code,
        },
    };
    finish(w, job, started_ns, Err(err), exit);
    None
}

/// The line Rust's allocator prints before aborting on a failed allocation, if `stderr` has it.
fn out_of_memory_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("memory allocation of"))
}

enum Received {
    Reply(Reply),
    Ended,
    TimedOut(Duration),
}

/// One live worker process and its pipes.
struct Proc {
    index: usize,
    pid: u32,
    /// Kept only so the handles below stay valid; never waited on (`wait4` reaps instead).
    _child: Child,
    to: Option<ChildStdin>,
    from: ChildStdout,
    buf: Vec<u8>,
    frame: Vec<u8>,
    tasks: u64,
    reaped: bool,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_done: mpsc::Receiver<()>,
}

impl Proc {
    /// Starts a worker for slot `index` and waits for its hello.
    fn start(shared: &Shared, index: usize) -> Result<Proc, PoolError> {
        let cfg = &shared.config;
        let worker = index + 1;
        let mut cmd = Command::new(&cfg.program);
        cmd.args(&cfg.args)
            .env(worker::ENV_WORKER, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(limit) = cfg.memory_limit {
            cmd.env(worker::ENV_MEMORY, limit.to_string());
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| PoolError::Spawn { worker, source })?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(to), Some(from), Some(err)) = pipes else {
            let source = std::io::Error::other("the worker's pipes were not created");
            return Err(PoolError::Spawn { worker, source });
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let tail = Arc::clone(&stderr_tail);
        std::thread::Builder::new()
            .name(format!("pardo-proc-{worker}-stderr"))
            .spawn(move || forward_stderr(err, &tail, done_tx))
            .map_err(|source| PoolError::Spawn { worker, source })?;
        let mut proc = Proc {
            index,
            pid: child.id(),
            _child: child,
            to: Some(to),
            from,
            buf: Vec::new(),
            frame: Vec::new(),
            tasks: 0,
            reaped: false,
            stderr_tail,
            stderr_done,
        };
        shared.set_pid(index, Some(proc.pid));
        let hint = "does the worker program call pardo::worker_hook() first thing in main?";
        let refuse = |proc: &mut Proc, reason: String| {
            proc.kill();
            let _ = proc.reap(shared);
            PoolError::WorkerStart { worker, reason }
        };
        match wire::readable_within(&proc.from, cfg.start_timeout) {
            Ok(true) => {}
            Ok(false) => {
                let why = format!("no answer within {:?}; {hint}", cfg.start_timeout);
                return Err(refuse(&mut proc, why));
            }
            Err(e) => return Err(refuse(&mut proc, e.to_string())),
        }
        let hello = match wire::read_frame(&mut proc.from, &mut proc.frame) {
            Ok(true) => wire::decode::<Hello>(&proc.frame),
            Ok(false) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(e),
        };
        match hello {
            Ok(h) if h.protocol == wire::PROTOCOL => {}
            Ok(h) => {
                let why = format!(
                    "it speaks protocol {}, this pool {}",
                    h.protocol,
                    wire::PROTOCOL
                );
                return Err(refuse(&mut proc, why));
            }
            Err(e) => {
                let why = format!("it did not answer as a pardo worker ({e}); {hint}");
                return Err(refuse(&mut proc, why));
            }
        }
        shared.stats.started.fetch_add(1, Ordering::Relaxed);
        Ok(proc)
    }

    fn send(&mut self, job: &Job) -> std::io::Result<()> {
        let req = Request {
            name: job.name,
            inputs: job.inputs.iter().map(Vec::as_slice).collect(),
        };
        match self.to.as_mut() {
            Some(to) => wire::write_frame(to, &req, &mut self.buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn receive(&mut self, timeout: Option<Duration>) -> Received {
        if let Some(limit) = timeout {
            match wire::readable_within(&self.from, limit) {
                Ok(true) => {}
                Ok(false) => return Received::TimedOut(limit),
                Err(_) => return Received::Ended,
            }
        }
        match wire::read_frame(&mut self.from, &mut self.frame) {
            Ok(true) => match wire::decode::<Reply>(&self.frame) {
                Ok(reply) => Received::Reply(reply),
                // A garbled reply means the worker can no longer be trusted: treat it as dead.
                Err(_) => {
                    self.kill();
                    Received::Ended
                }
            },
            Ok(false) | Err(_) => Received::Ended,
        }
    }

    fn kill(&self) {
        if !self.reaped {
            // SAFETY: plain kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// Waits for the worker to end and says how it ended.
    fn reap(&mut self, shared: &Shared) -> Exit {
        if self.reaped {
            return Exit::default();
        }
        // Forget the pid before reaping it, so a concurrent kill can never hit a reused pid.
        shared.set_pid(self.index, None);
        let mut status = 0;
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        let rc = loop {
            // SAFETY: valid out-pointers; the pid is our child, not yet reaped.
            let rc =
                unsafe { libc::wait4(self.pid as libc::pid_t, &mut status, 0, ru.as_mut_ptr()) };
            if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break rc;
            }
        };
        self.reaped = true;
        if rc < 0 {
            return Exit::default();
        }
        // SAFETY: wait4 succeeded and filled the rusage.
        let ru = unsafe { ru.assume_init() };
        let signaled = libc::WIFSIGNALED(status);
        Exit {
            signal: signaled.then(|| libc::WTERMSIG(status)),
            exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            max_rss_bytes: Some(ru.ru_maxrss as u64 * 1024),
            cpu_user_ns: worker::timeval_ns(&ru.ru_utime),
            cpu_sys_ns: worker::timeval_ns(&ru.ru_stime),
        }
    }

    /// Closes the worker's input so it exits, and reaps it; kills it if it lingers.
    fn retire(mut self, shared: &Shared) {
        self.to = None;
        if !matches!(
            wire::readable_within(&self.from, shared.config.start_timeout),
            Ok(true)
        ) {
            self.kill();
        }
        let _ = self.reap(shared);
    }

    /// The last bytes the (dead) worker wrote to stderr.
    fn stderr_tail(&self) -> String {
        let _ = self.stderr_done.recv_timeout(STDERR_GRACE);
        String::from_utf8_lossy(&lock(&self.stderr_tail)).into_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let mut status = 0;
            // SAFETY: reaping our own child so it does not stay a zombie.
            unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, 0) };
        }
    }
}

/// Copies a worker's stderr to ours, keeping the tail to explain a death.
fn forward_stderr(mut from: impl Read, tail: &Mutex<Vec<u8>>, done: mpsc::Sender<()>) {
    let mut chunk = [0u8; 4096];
    loop {
        match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let _ = std::io::stderr().write_all(&chunk[..n]);
                let mut t = lock(tail);
                t.extend_from_slice(&chunk[..n]);
                if t.len() > STDERR_TAIL {
                    let cut = t.len() - STDERR_TAIL;
                    t.drain(..cut);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_line_is_found_in_a_stderr_tail() {
        let tail = "noise\nmemory allocation of 1073741824 bytes failed\n";
        assert_eq!(
            out_of_memory_line(tail),
            Some("memory allocation of 1073741824 bytes failed")
        );
        assert_eq!(out_of_memory_line("thread 'main' panicked"), None);
    }
}
