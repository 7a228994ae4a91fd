//! [`ThreadPool`]: a work-stealing pool of OS threads whose worker count can change while it
//! runs. The scheduling, parking and resizing protocol is described in `README.md` beside this
//! file.

use std::cell::Cell;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::task::Waker;
use std::thread::JoinHandle;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};

use crate::executor::{Executor, ShutdownMode};
use crate::handle::{Handle, Promise};
use crate::monitor::{available_cores, Recorder, Report, Retention, RunRecord, WorkerRecorder};
use crate::pool::map::{chunk_outcome, run_items};
use crate::pool::map::{Backlog, Chunk, Map, MapUnordered, SubmitChunk};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::{panic_message, Outcome, TaskError, TaskId};
use crate::tune::controller::ControllerConfig;
use crate::tune::steer::{Steerable, Steering, DEFAULT_INTERVAL};

/// A job as the pool sees it: run it, or (when `cancel` is true) drop it as cancelled. Either
/// way it completes its handle and writes its record.
type Job = ScopedJobBox<'static>;
/// A job that may borrow data living for `'a` (see [`Scope`]).
type ScopedJobBox<'a> = Box<dyn FnOnce(&WorkerRecorder, bool) + Send + 'a>;

/// The largest chunk `map_slice` gives one task: at least four chunks per worker below that,
/// so uneven items still spread.
const SLICE_CHUNK_MAX: usize = 1 << 16;

/// How many times an idle worker yields and looks again before it parks, in a pool of no
/// more workers than cores (see [`Shared::spin_rounds`]).
/// Long enough (tens of microseconds) that a caller submitting tasks one after another finds
/// the worker still awake, short enough that an idle pool goes quiet at once.
const SPIN_ROUNDS: usize = 64;

thread_local! {
    /// The worker the current thread is, if it is one: set by `worker_main` to a context on
    /// its own stack, cleared before that context goes away. Code running inside a task reads
    /// it to help its pool while it waits (see `help_until`).
    static CURRENT: Cell<*const WorkerCtx> = const { Cell::new(std::ptr::null()) };
}

/// Configures a [`ThreadPool`].
///
/// ```
/// let pool = pardo::ThreadPool::builder().workers(3).thread_name("crunch").build().unwrap();
/// assert_eq!(pardo::Executor::workers(&pool), 3);
/// ```
#[derive(Clone, Debug)]
pub struct ThreadPoolBuilder {
    workers: Option<usize>,
    thread_name: String,
    monitoring: bool,
    retention: Retention,
    auto: Option<AutoSettings>,
}

/// What `auto` asked for: the controller's settings, or its defaults up to a maximum.
#[derive(Clone, Debug)]
enum AutoSettings {
    Max(usize),
    Config(ControllerConfig),
}

/// The most workers an automatic pool grows to unless told otherwise.
pub const DEFAULT_MAX_WORKERS: usize = 256;

impl ThreadPoolBuilder {
    /// Number of worker threads (default: the available parallelism).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// Prefix of worker thread names; workers are named `prefix-1`, `prefix-2`, …
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Turns per-task records off (counters stay). Only for measuring what monitoring costs;
    /// reports of such a pool are empty.
    pub fn monitoring(mut self, on: bool) -> Self {
        self.monitoring = on;
        self
    }

    /// Keeps only the summary, not every record, for pools that run millions of tasks.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Lets pardo choose the worker count and steer it while tasks run: it starts at the core
    /// count, jumps up when tasks mostly wait, climbs while throughput rises and steps back
    /// when it stops rising, when memory runs short or the machine is overloaded (see
    /// [`tune::controller`](crate::tune::controller)). Never more than
    /// [`max_workers`](ThreadPoolBuilder::max_workers) (default 256). Every change and its
    /// reason is kept in the records and shown by the [`Report`]. Calling
    /// [`set_workers`](Executor::set_workers) later turns the steering off.
    ///
    /// ```
    /// let pool = pardo::ThreadPool::builder().auto().max_workers(64).build().unwrap();
    /// let waits: Vec<()> = pool
    ///     .map(0..40, |_| std::thread::sleep(std::time::Duration::from_millis(5)))
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(waits.len(), 40);
    /// println!("{}", pool.report()); // ends with e.g. "concurrency: 2 → 16 (…)"
    /// ```
    pub fn auto(mut self) -> Self {
        if self.auto.is_none() {
            self.auto = Some(AutoSettings::Max(DEFAULT_MAX_WORKERS));
        }
        self
    }

    /// The most workers [`auto`](ThreadPoolBuilder::auto) may grow to (implies `auto`).
    pub fn max_workers(mut self, max: usize) -> Self {
        self.auto = Some(match self.auto {
            Some(AutoSettings::Config(mut c)) => {
                c.max = max;
                AutoSettings::Config(c)
            }
            _ => AutoSettings::Max(max),
        });
        self
    }

    /// Automatic worker count with the controller's settings spelled out (implies `auto`).
    pub fn auto_with(mut self, config: ControllerConfig) -> Self {
        self.auto = Some(AutoSettings::Config(config));
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<ThreadPool, PoolError> {
        let config = self.auto.map(|a| match a {
            AutoSettings::Max(max) => ControllerConfig::new(available_cores(), max.max(1)),
            AutoSettings::Config(c) => c,
        });
        let workers = match &config {
            Some(c) => c.cores.clamp(c.min.max(1), c.max.max(1)),
            None => self.workers.unwrap_or_else(available_cores),
        };
        if workers == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let recorder = Recorder::new(
            RunRecord::now("thread_pool", workers),
            self.monitoring,
            self.retention,
        );
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: RwLock::new(Vec::new()),
            target: AtomicUsize::new(0),
            workers: Mutex::new(Workers {
                occupied: Vec::new(),
                threads: Vec::new(),
            }),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(0),
            closer_depth: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            cancel_pending: AtomicBool::new(false),
            recorder,
            backlog: Backlog::default(),
            thread_name: self.thread_name,
            cores: available_cores(),
        });
        shared.resize(workers)?;
        let steering = match config {
            Some(c) => {
                shared.recorder.set_setting("workers", "auto");
                shared.backlog.set_steered();
                let s = Steering::start(Steer(Arc::clone(&shared)), c, DEFAULT_INTERVAL).map_err(
                    |source| PoolError::Spawn {
                        worker: 0,
                        error: source,
                    },
                )?;
                Some(s)
            }
            None => None,
        };
        Ok(ThreadPool {
            shared,
            steering: Mutex::new(steering),
        })
    }
}

/// A pool of worker threads running closures, with every task measured.
///
/// - **Submitting**: [`submit`](ThreadPool::submit) returns a [`Handle`]; [`map`](ThreadPool::map)
///   and [`map_unordered`](ThreadPool::map_unordered) stream over inputs lazily with a bounded
///   number in flight; [`scope`](ThreadPool::scope) runs tasks that borrow local data.
/// - **Ordering**: tasks start roughly in submission order (one shared FIFO queue; idle workers
///   steal batches from it and from each other). `map` yields in input order.
/// - **Panics** are caught at the task boundary: the task's handle yields
///   [`TaskError::Panicked`], the worker lives on.
/// - **Resizing**: [`set_workers`](Executor::set_workers) grows at once; surplus workers leave
///   after their current task.
/// - **Shutdown**: [`shutdown`](ThreadPool::shutdown) with [`ShutdownMode::Wait`] runs what was
///   submitted, [`ShutdownMode::CancelPending`] cancels what has not started. Dropping the pool is
///   `shutdown(Wait)` — the Rust spelling of `with ThreadPoolExecutor() as ex:`.
///
/// **Nesting**: a task may use its own pool — `map_slice`, `scope`, `map`, `submit(..).wait()`
/// from inside a task all work, even when every worker does it at once. A worker that waits
/// runs queued tasks of its pool meanwhile (as rayon's do), so waiting never idles a worker the
/// awaited work needs. The price is rayon's too: the helped task runs on the waiting task's
/// stack, so a task that waits while holding a lock another task takes can deadlock with
/// itself. A pool may even be dropped or shut down by one of its own tasks.
///
/// ```
/// use pardo::ThreadPool;
/// let pool = ThreadPool::builder().workers(2).build().unwrap();
/// let squares: Vec<u64> = pool.map(1..=4u64, |x| x * x).map(Result::unwrap).collect();
/// assert_eq!(squares, vec![1, 4, 9, 16]);
/// let report = pool.report();
/// assert_eq!(report.items, 4);
/// ```
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// The steering loop of an automatic pool; stopped before the pool closes.
    steering: Mutex<Option<Steering>>,
}

/// The thread pool as the steering loop sees it.
struct Steer(Arc<Shared>);

impl Steerable for Steer {
    fn recorder(&self) -> &Recorder {
        &self.0.recorder
    }

    fn live(&self) -> usize {
        self.0.target.load(Ordering::Relaxed)
    }

    fn set_target(&self, n: usize) -> Result<(), PoolError> {
        self.0.resize(n)
    }

    fn tasks_left(&self) -> Option<u64> {
        self.0.backlog.tasks_left(&self.0.recorder)
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.shared.target.load(Ordering::Relaxed))
            .field("counters", &self.shared.recorder.counters())
            .finish()
    }
}

struct Shared {
    injector: Injector<Job>,
    /// Indexed by worker slot − 1; `None` for a slot with no live worker.
    stealers: RwLock<Vec<Option<Stealer<Job>>>>,
    /// Workers wanted; workers whose index is at or above it leave.
    target: AtomicUsize,
    workers: Mutex<Workers>,
    sleep: Mutex<()>,
    wake: Condvar,
    sleepers: AtomicUsize,
    /// Jobs submitted and not yet finished (queued plus running).
    outstanding: AtomicUsize,
    /// Jobs a closing caller is itself inside (0 unless the pool is closed by one of its own
    /// tasks). Those cannot end before the close returns, so the close is done once
    /// `outstanding` is down to this.
    closer_depth: AtomicUsize,
    closing: AtomicBool,
    cancel_pending: AtomicBool,
    recorder: Recorder,
    /// Inputs the pool's maps hold, and the window they follow (see `pool/map.rs`).
    backlog: Backlog,
    thread_name: String,
    /// Cores this process may use, for how long an idle worker spins.
    cores: usize,
}

struct Workers {
    occupied: Vec<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A builder with the defaults: one worker per available core, threads named `pardo-N`.
    pub fn builder() -> ThreadPoolBuilder {
        ThreadPoolBuilder {
            workers: None,
            thread_name: "pardo".to_owned(),
            monitoring: true,
            retention: Retention::All,
            auto: None,
        }
    }

    /// A pool with the default settings.
    pub fn new() -> Result<ThreadPool, PoolError> {
        ThreadPool::builder().build()
    }

    /// Runs `f` on a worker and returns a handle to its result.
    ///
    /// ```
    /// let pool = pardo::ThreadPool::builder().workers(1).build().unwrap();
    /// let h = pool.submit(|| "done");
    /// assert_eq!(h.wait(), Ok("done"));
    /// ```
    pub fn submit<F, T>(&self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = one_task(&self.shared.recorder, f);
        self.shared.push(job);
        handle
    }

    /// Applies `f` to every input on the pool and yields the results in input order.
    ///
    /// Lazy and bounded: inputs are pulled only as results are consumed, with a few chunks per
    /// worker in flight, so an input of ten million items is never collected. Tiny items are
    /// batched automatically (see [`Map::chunk_size`] to fix the size); each item's panic is its
    /// own `Err`, the other items are unaffected.
    ///
    /// ```
    /// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
    /// let total: u64 = pool.map(0..1_000u64, |x| x * 2).map(Result::unwrap).sum();
    /// assert_eq!(total, 999_000);
    /// ```
    pub fn map<I, F, R>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        Map::new(inputs.into_iter(), self.window(), self.chunk_submitter(f))
            .follow(&self.shared.target, &self.shared.backlog)
    }

    /// Like [`map`](ThreadPool::map), but yields `(task id, result)` as soon as each chunk
    /// finishes, in completion order. Task ids are the inputs' positions, from 1.
    ///
    /// ```
    /// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
    /// let mut got: Vec<u64> = pool.map_unordered(0..10u64, |x| x).map(|(_, r)| r.unwrap()).collect();
    /// got.sort();
    /// assert_eq!(got, (0..10).collect::<Vec<_>>());
    /// ```
    pub fn map_unordered<I, F, R>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        MapUnordered::new(inputs.into_iter(), self.window(), self.chunk_submitter(f))
            .follow(&self.shared.target, &self.shared.backlog)
    }

    /// Applies `f` to every element of an in-memory slice and returns the results in order —
    /// rayon's `par_iter().map(f).collect()`, with every chunk measured.
    ///
    /// Unlike [`map`](ThreadPool::map), which streams inputs through the calling thread one by
    /// one, this splits the slice by index and lets workers write their results straight into
    /// the output, so the caller touches no item: use it when the inputs are already in memory
    /// and you want all the results. One record is written per chunk. The first item that
    /// panics (in input order of the chunks that failed) is returned as the error.
    ///
    /// ```
    /// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
    /// let words = ["pardo", "runs", "many", "tasks"];
    /// assert_eq!(pool.map_slice(&words, |w| w.len()), Ok(vec![5, 4, 4, 5]));
    /// ```
    pub fn map_slice<T, R, F>(&self, items: &[T], f: F) -> Result<Vec<R>, TaskError>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync,
    {
        let n = items.len();
        let workers = self.shared.target.load(Ordering::Relaxed).max(1);
        // Enough chunks to balance uneven items over the workers, few enough that per-chunk
        // dispatch stays a small share of trivial work.
        let chunk = n.div_ceil(workers * 4).clamp(1, SLICE_CHUNK_MAX);
        let mut out: Vec<R> = Vec::with_capacity(n);
        let f = &f;
        let failures: Vec<TaskError> = self.scope(|s| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .zip(out.spare_capacity_mut().chunks_mut(chunk))
                .map(|(ins, outs)| {
                    let items = u32::try_from(ins.len()).unwrap_or(u32::MAX);
                    s.spawn_items(items, move || {
                        for (x, slot) in ins.iter().zip(outs.iter_mut()) {
                            slot.write(f(x));
                        }
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.wait().err()).collect()
        });
        if let Some(first) = failures.into_iter().min_by_key(TaskError::id) {
            // Written results of the failed run are leaked, never read or dropped twice.
            return Err(first);
        }
        // SAFETY: every chunk's task returned normally, so every one of the `n` slots (the
        // chunks of `spare_capacity_mut` cover exactly `n`) was written exactly once.
        unsafe { out.set_len(n) };
        Ok(out)
    }

    fn window(&self) -> usize {
        4 * self.shared.target.load(Ordering::Relaxed).max(1)
    }

    fn chunk_submitter<'a, T, F, R>(&'a self, f: F) -> SubmitChunk<'a, T, R>
    where
        T: Send + 'static,
        F: Fn(T) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let f = Arc::new(f);
        Box::new(move |items: Vec<T>, out: Vec<R>| {
            let n = items.len();
            let recorder = &self.shared.recorder;
            let first = recorder.submit(n as u64);
            let submitted = recorder.now_ns();
            let (promise, handle) = Promise::new(first);
            let f = Arc::clone(&f);
            self.shared
                .push(Box::new(move |w: &WorkerRecorder, cancel: bool| {
                    run_chunk(w, cancel, first, submitted, promise, items, out, &*f);
                }));
            (first, handle)
        })
    }

    /// Runs `body`, which may spawn tasks borrowing data from the caller's stack; returns once
    /// every spawned task has ended (even if `body` panics, in which case the panic goes on
    /// after the wait).
    ///
    /// ```
    /// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
    /// let words = vec!["a".to_string(), "bb".to_string(), "ccc".to_string()];
    /// let total: usize = pool.scope(|s| {
    ///     let handles: Vec<_> = words.iter().map(|w| s.spawn(move || w.len())).collect();
    ///     handles.into_iter().map(|h| h.wait().unwrap()).sum()
    /// });
    /// assert_eq!(total, 6);
    /// ```
    pub fn scope<'env, F, R>(&self, body: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let scope = Scope {
            pool: self,
            live: Arc::new(ScopeCount {
                n: Mutex::new(0),
                zero: Condvar::new(),
                helper: Mutex::new(None),
            }),
            _scope: PhantomData,
            _env: PhantomData,
        };
        let result = catch_unwind(AssertUnwindSafe(|| body(&scope)));
        scope.live.wait_for_zero();
        match result {
            Ok(r) => r,
            Err(p) => resume_unwind(p),
        }
    }

    /// Stops the pool. With [`ShutdownMode::Wait`] every submitted task runs first; with
    /// [`ShutdownMode::CancelPending`] tasks that have not started end as cancelled. Returns the
    /// final report.
    ///
    /// Called (or the pool dropped) from inside one of the pool's own tasks, it returns once
    /// every other task has ended, that thread helping to run them; the calling task's own
    /// record and the thread it runs on end after it returns.
    ///
    /// ```
    /// use pardo::{ShutdownMode, ThreadPool};
    /// let pool = ThreadPool::builder().workers(1).build().unwrap();
    /// let h = pool.submit(|| 1);
    /// let report = pool.shutdown(ShutdownMode::Wait);
    /// assert_eq!(h.wait(), Ok(1));
    /// assert_eq!(report.tasks, 1);
    /// ```
    pub fn shutdown(self, mode: ShutdownMode) -> Report {
        self.close(mode);
        self.shared.recorder.report()
    }

    fn close(&self, mode: ShutdownMode) {
        // Stop steering first: a resize racing the close would start workers for nothing.
        let steering = lock(&self.steering).take();
        drop(steering);
        let s = &self.shared;
        if mode == ShutdownMode::CancelPending {
            s.cancel_pending.store(true, Ordering::SeqCst);
            // Cancel what is still in the shared queue now, rather than when a worker gets to
            // it, so callers see their handles fail while the running tasks are still going.
            let unassigned = s.recorder.worker(0);
            loop {
                match s.injector.steal() {
                    Steal::Success(job) => {
                        job(&unassigned, true);
                        s.outstanding.fetch_sub(1, Ordering::SeqCst);
                    }
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        let inside = WorkerCtx::current_of(s);
        if let Some(ctx) = inside {
            s.closer_depth.store(ctx.depth.get(), Ordering::SeqCst);
        }
        s.closing.store(true, Ordering::SeqCst);
        s.wake_all();
        if let Some(ctx) = inside {
            // Closed by one of its own tasks: that task is outstanding until we return, so run
            // the rest here too while the other workers do, until only our own jobs remain.
            let depth = ctx.depth.get();
            ctx.help_until(&|| s.outstanding.load(Ordering::SeqCst) <= depth);
        }
        loop {
            let threads = std::mem::take(&mut lock(&s.workers).threads);
            if threads.is_empty() {
                break;
            }
            crate::pool::join_all_but_current(threads);
        }
    }

    /// Worker threads alive now. After shrinking, this falls to the new count as surplus workers
    /// finish their current task and leave.
    pub fn live_workers(&self) -> usize {
        lock(&self.shared.workers)
            .occupied
            .iter()
            .filter(|o| **o)
            .count()
    }

    /// Live counters (submitted, running, done, failed).
    pub fn counters(&self) -> crate::monitor::Counters {
        self.shared.recorder.counters()
    }
}

impl Default for ThreadPool {
    /// A pool with one worker per core. Panics only if the OS refuses to start threads.
    fn default() -> Self {
        ThreadPool::new().expect("the OS refused to start the pool's worker threads")
    }
}

impl Executor for ThreadPool {
    fn kind(&self) -> &'static str {
        "thread_pool"
    }

    fn workers(&self) -> usize {
        self.shared.target.load(Ordering::Relaxed)
    }

    /// On an automatic pool this also turns the steering off: the caller has taken over.
    fn set_workers(&self, workers: usize) -> Result<(), PoolError> {
        let steering = lock(&self.steering).take();
        drop(steering);
        self.shared.resize(workers)
    }

    fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }
}

impl ThreadPool {
    /// The run's recorder (also through [`Executor::recorder`]).
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    /// The summary and findings so far (also through [`Executor::report`]).
    pub fn report(&self) -> Report {
        self.shared.recorder.report()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.close(ShutdownMode::Wait);
    }
}

impl Shared {
    fn resize(self: &Arc<Self>, n: usize) -> Result<(), PoolError> {
        if n == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let s = self;
        {
            let mut w = lock(&s.workers);
            s.target.store(n, Ordering::SeqCst);
            w.threads.retain(|t| !t.is_finished());
            if w.occupied.len() < n {
                w.occupied.resize(n, false);
            }
            for index in 0..n {
                if w.occupied[index] {
                    continue;
                }
                let local = Worker::new_fifo();
                {
                    let mut stealers = s.stealers.write().unwrap_or_else(|p| p.into_inner());
                    if stealers.len() <= index {
                        stealers.resize_with(index + 1, || None);
                    }
                    stealers[index] = Some(local.stealer());
                }
                let shared = Arc::clone(s);
                let thread = std::thread::Builder::new()
                    .name(format!("{}-{}", s.thread_name, index + 1))
                    .spawn(move || worker_main(shared, index, local))
                    .map_err(|source| PoolError::Spawn {
                        worker: index + 1,
                        error: source,
                    })?;
                w.occupied[index] = true;
                w.threads.push(thread);
            }
        }
        s.recorder.set_capacity(n);
        // Surplus workers may be parked; wake them so they notice and leave.
        s.wake_all();
        Ok(())
    }

    fn push(&self, job: Job) {
        self.outstanding.fetch_add(1, Ordering::SeqCst);
        self.injector.push(job);
        self.wake_one();
    }

    /// Rounds an idle worker spins before it parks: [`SPIN_ROUNDS`] shared out over the
    /// workers beyond the cores. A spinning worker only helps while a core is free for it;
    /// past the cores it takes the CPU from those with work, and each round looks at every
    /// worker's queue, so 200 workers of waiting tasks on 2 cores spent more CPU looking for
    /// work than the tasks took.
    fn spin_rounds(&self) -> usize {
        let workers = self.target.load(Ordering::Relaxed).max(self.cores).max(1);
        (SPIN_ROUNDS * self.cores / workers).max(1)
    }

    fn wake_one(&self) {
        // Pairs with the sleeper's increment-then-recheck: either it sees the new job, or we
        // see it counted and notify while it waits (it holds `sleep` until it waits).
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.sleep);
            self.wake.notify_one();
        }
    }

    fn wake_all(&self) {
        let _g = lock(&self.sleep);
        self.wake.notify_all();
    }

    fn find_job(&self, index: usize, local: &Worker<Job>) -> Option<Job> {
        if let Some(job) = local.pop() {
            return Some(job);
        }
        loop {
            match self.injector.steal_batch_and_pop(local) {
                Steal::Success(job) => {
                    if !local.is_empty() {
                        // Others may be asleep while this worker holds a batch they could steal.
                        self.wake_one();
                    }
                    return Some(job);
                }
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        let stealers = self.stealers.read().unwrap_or_else(|p| p.into_inner());
        let n = stealers.len();
        for k in 1..n {
            if let Some(st) = &stealers[(index + k) % n] {
                loop {
                    match st.steal() {
                        Steal::Success(job) => return Some(job),
                        Steal::Retry => continue,
                        Steal::Empty => break,
                    }
                }
            }
        }
        None
    }

    fn has_visible_work(&self) -> bool {
        if !self.injector.is_empty() {
            return true;
        }
        let stealers = self.stealers.read().unwrap_or_else(|p| p.into_inner());
        stealers.iter().flatten().any(|s| !s.is_empty())
    }

    fn done_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
            && self.outstanding.load(Ordering::SeqCst) <= self.closer_depth.load(Ordering::SeqCst)
    }

    /// Leaves if this worker's slot is no longer wanted. Hands any local jobs back first.
    fn try_retire(&self, index: usize, local: &Worker<Job>) -> bool {
        let mut w = lock(&self.workers);
        if index < self.target.load(Ordering::SeqCst) && !self.done_closing() {
            return false;
        }
        if let Some(o) = w.occupied.get_mut(index) {
            *o = false;
        }
        {
            let mut stealers = self.stealers.write().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = stealers.get_mut(index) {
                *s = None;
            }
        }
        let mut handed_back = false;
        while let Some(job) = local.pop() {
            self.injector.push(job);
            handed_back = true;
        }
        drop(w);
        if handed_back {
            self.wake_all();
        }
        true
    }

    /// Parks a worker that waits inside a task until there is work to help with or `done()`
    /// holds. Whatever makes `done()` true must then call `wake_all` (see `PoolWaker`); the
    /// check under `sleep` closes the gap as in `park`.
    fn park_helper(&self, done: &dyn Fn() -> bool) {
        let g = lock(&self.sleep);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let wake_now = done() || self.has_visible_work();
        let g = if wake_now { g } else { wait(&self.wake, g) };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(g);
    }

    fn park(&self, index: usize) {
        let g = lock(&self.sleep);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let wake_now = self.has_visible_work()
            || self.done_closing()
            || index >= self.target.load(Ordering::SeqCst);
        let g = if wake_now { g } else { wait(&self.wake, g) };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(g);
    }
}

/// A worker thread's own state, on its stack, reachable from the tasks it runs through
/// [`CURRENT`].
struct WorkerCtx {
    shared: Arc<Shared>,
    index: usize,
    local: Worker<Job>,
    rec: WorkerRecorder,
    /// Jobs running on this thread now: 1 inside a task, more while a waiting task helps.
    depth: Cell<usize>,
}

/// Clears [`CURRENT`] when the worker's loop ends, by return or unwind.
struct ClearCurrent;

impl Drop for ClearCurrent {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
        crate::handle::set_helper(None);
    }
}

impl WorkerCtx {
    /// The calling thread's worker context, if it is a worker of any thread pool.
    fn current<'a>() -> Option<&'a WorkerCtx> {
        let p = CURRENT.with(Cell::get);
        // SAFETY: a non-null pointer was set by `worker_main` on this very thread to a context
        // on its stack, and is cleared (by `ClearCurrent`) before that context is dropped; any
        // caller here runs inside a job that `worker_main` called, so the context outlives it.
        unsafe { p.as_ref() }
    }

    /// The calling thread's worker context if it works for the pool behind `shared`.
    fn current_of<'a>(shared: &Shared) -> Option<&'a WorkerCtx> {
        WorkerCtx::current().filter(|c| std::ptr::eq(Arc::as_ptr(&c.shared), shared))
    }

    fn run(&self, job: Job) {
        let s = &*self.shared;
        let cancel = s.cancel_pending.load(Ordering::SeqCst);
        self.depth.set(self.depth.get() + 1);
        // A job catches its task's panics itself; one escaping would be a fault in the pool's
        // own bookkeeping, and must not take the worker (and every later handle) with it. The
        // job's promise is dropped on the way out, so its handle still completes.
        let _ = catch_unwind(AssertUnwindSafe(|| job(&self.rec, cancel)));
        self.depth.set(self.depth.get() - 1);
        let left = s.outstanding.fetch_sub(1, Ordering::SeqCst) - 1;
        if s.closing.load(Ordering::SeqCst) && left <= s.closer_depth.load(Ordering::SeqCst) {
            s.wake_all();
        }
    }

    /// Runs this pool's queued jobs on the calling thread until `done()`, parking when there
    /// is none. Whatever makes `done()` true must wake the pool's sleepers (`PoolWaker`).
    fn help_until(&self, done: &dyn Fn() -> bool) {
        let s = &*self.shared;
        let mut spins = 0;
        while !done() {
            if let Some(job) = s.find_job(self.index, &self.local) {
                self.run(job);
                spins = 0;
            } else if spins < s.spin_rounds() {
                std::thread::yield_now();
                spins += 1;
            } else {
                s.park_helper(done);
                spins = 0;
            }
        }
    }
}

/// Wakes a pool's parked workers, so one that helps while it waits re-checks what it waits on.
struct PoolWaker(Arc<Shared>);

impl std::task::Wake for PoolWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake_all();
    }
}

/// Waits, the way a worker should, for `done()`: if the calling thread is a worker of a thread
/// pool, it runs that pool's queued jobs meanwhile, so a task waiting on work of its own pool
/// never holds up the worker that work needs. `arm` is called once, first, with a waker that
/// whatever makes `done()` true must wake. Returns false at once (calling neither) when the
/// calling thread is no pool worker; the caller then blocks as usual. Every worker thread
/// installs it as its [`Helper`](crate::handle::Helper), so handles reach it without knowing
/// the pool.
fn help_until(done: &dyn Fn() -> bool, arm: &dyn Fn(Waker)) -> bool {
    let Some(ctx) = WorkerCtx::current() else {
        return false;
    };
    arm(Waker::from(Arc::new(PoolWaker(Arc::clone(&ctx.shared)))));
    ctx.help_until(done);
    true
}

fn worker_main(shared: Arc<Shared>, index: usize, local: Worker<Job>) {
    let rec = shared.recorder.worker(index as u32 + 1);
    let ctx = WorkerCtx {
        shared,
        index,
        local,
        rec,
        depth: Cell::new(0),
    };
    CURRENT.with(|c| c.set(&ctx));
    crate::handle::set_helper(Some(help_until));
    let _clear = ClearCurrent;
    let shared = &*ctx.shared;
    loop {
        if (index >= shared.target.load(Ordering::SeqCst) || shared.done_closing())
            && shared.try_retire(index, &ctx.local)
        {
            return;
        }
        let mut job = shared.find_job(index, &ctx.local);
        let mut spins = 0;
        let rounds = shared.spin_rounds();
        while job.is_none() && spins < rounds && !shared.closing.load(Ordering::Relaxed) {
            std::thread::yield_now();
            job = shared.find_job(index, &ctx.local);
            spins += 1;
        }
        match job {
            Some(job) => ctx.run(job),
            None => shared.park(index),
        }
    }
}

/// Builds the job and handle for one closure.
fn one_task<F, T>(recorder: &Recorder, f: F) -> (Job, Handle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let id = recorder.submit(1);
    let submitted = recorder.now_ns();
    let (promise, handle) = Promise::new(id);
    let job: Job = Box::new(move |w: &WorkerRecorder, cancel: bool| {
        run_one(w, cancel, (id, submitted, 1), promise, f)
    });
    (job, handle)
}

/// Runs one task (standing for `items` inputs in its record) and completes its promise.
fn run_one<F, T>(
    w: &WorkerRecorder,
    cancel: bool,
    (id, submitted, items): (TaskId, u64, u32),
    promise: Promise<T>,
    f: F,
) where
    F: FnOnce() -> T,
{
    if cancel || !promise.try_start() {
        w.cancelled(id, submitted, items);
        drop(promise);
        return;
    }
    let meter = w.begin();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => {
            w.finish(meter, id, submitted, items, Outcome::Ok);
            promise.complete(Ok(v));
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            w.finish(meter, id, submitted, items, Outcome::Panicked);
            promise.complete(Err(TaskError::Panicked { id, message }));
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one job's whole context, passed once"
)]
fn run_chunk<T, R>(
    w: &WorkerRecorder,
    cancel: bool,
    first: TaskId,
    submitted: u64,
    promise: Promise<Chunk<T, R>>,
    items: Vec<T>,
    values: Vec<R>,
    f: &(dyn Fn(T) -> R + Send + Sync),
) {
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
    if cancel || !promise.try_start() {
        w.cancelled(first, submitted, n);
        drop(promise);
        return;
    }
    let meter = w.begin();
    let chunk = run_items(first, items, values, f);
    w.finish(meter, first, submitted, n, chunk_outcome(&chunk));
    promise.complete(Ok(chunk));
}

/// Spawns tasks that may borrow from the stack of [`ThreadPool::scope`]'s caller.
pub struct Scope<'scope, 'env: 'scope> {
    pool: &'scope ThreadPool,
    live: Arc<ScopeCount>,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("live", &*lock(&self.live.n))
            .finish()
    }
}

struct ScopeCount {
    n: Mutex<usize>,
    zero: Condvar,
    /// Set while a worker waits for zero helping its pool; woken when the count reaches zero.
    helper: Mutex<Option<Waker>>,
}

impl ScopeCount {
    fn wait_for_zero(&self) {
        if *lock(&self.n) > 0 {
            help_until(&|| *lock(&self.n) == 0, &|w| *lock(&self.helper) = Some(w));
        }
        let mut n = lock(&self.n);
        while *n > 0 {
            n = wait(&self.zero, n);
        }
    }
}

/// Counts one scoped task; dropped last, after the task's closure and captures are gone.
struct ScopeTicket(Arc<ScopeCount>);

impl Drop for ScopeTicket {
    fn drop(&mut self) {
        let zero = {
            let mut n = lock(&self.0.n);
            *n -= 1;
            *n == 0
        };
        if zero {
            self.0.zero.notify_all();
            // Outside the count's lock: a helper checks the count while holding its pool's
            // sleep lock, and the waker takes that lock.
            let helper = lock(&self.0.helper).take();
            if let Some(w) = helper {
                w.wake();
            }
        }
    }
}

/// A scoped job. Fields drop in declaration order, so the closure (and whatever it borrows) is
/// gone before the ticket lets the scope end.
struct ScopedJob<F, T> {
    f: Option<F>,
    promise: Option<Promise<T>>,
    id: TaskId,
    submitted: u64,
    items: u32,
    _ticket: ScopeTicket,
}

impl<'scope> Scope<'scope, '_> {
    /// Runs `f` on the pool; it may borrow anything that outlives the scope.
    pub fn spawn<F, T>(&'scope self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        self.spawn_items(1, f)
    }

    /// [`spawn`](Scope::spawn) for a task that does the work of `items` inputs (a chunk of
    /// `map_slice`): it takes that many task ids and its record counts them.
    pub(crate) fn spawn_items<F, T>(&'scope self, items: u32, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + 'scope,
    {
        *lock(&self.live.n) += 1;
        let recorder = &self.pool.shared.recorder;
        let id = recorder.submit(u64::from(items.max(1)));
        let submitted = recorder.now_ns();
        let (promise, handle) = Promise::new(id);
        let mut job = ScopedJob {
            f: Some(f),
            promise: Some(promise),
            id,
            submitted,
            items: items.max(1),
            _ticket: ScopeTicket(Arc::clone(&self.live)),
        };
        let boxed: ScopedJobBox<'scope> = Box::new(move |w: &WorkerRecorder, cancel: bool| {
            if let (Some(f), Some(promise)) = (job.f.take(), job.promise.take()) {
                run_one(w, cancel, (job.id, job.submitted, job.items), promise, f);
            }
            drop(job);
        });
        // SAFETY: `scope` does not return until every ticket is dropped, and a ticket is dropped
        // only after its job's closure and captures (see `ScopedJob`), so nothing borrowed for
        // 'scope is used after 'scope ends. The pool always runs or cancels a job it was given,
        // and a job dropped unrun drops its ticket last too.
        let job: Job = unsafe {
            std::mem::transmute::<Box<dyn FnOnce(&WorkerRecorder, bool) + Send + 'scope>, Job>(
                boxed,
            )
        };
        self.pool.shared.push(job);
        handle
    }
}
