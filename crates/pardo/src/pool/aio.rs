//! [`AsyncPool`]: futures on a tokio runtime the pool owns, at most `max_in_flight` at a time,
//! each measured like any other task.
//!
//! Every submitted future becomes a tokio task that first takes a permit from a semaphore of
//! `max_in_flight` permits, then a *slot* (a per-slot record writer, so records carry a slot
//! number 1..=max_in_flight as thread-pool records carry a worker number), runs, writes its
//! record, completes its [`Handle`] and gives slot and permit back. Waiting for a permit is
//! queueing: it shows as queue wait in the record.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream;
use tokio::sync::Semaphore;

use crate::clock::thread_cpu_ns;
use crate::executor::{Executor, ShutdownMode};
use crate::handle::{CompletionSet, Handle, Promise};
use crate::monitor::WorkerRecorder;
use crate::monitor::{available_cores, Recorder, Report, Retention, RunRecord, TaskRecord};
use crate::pool::map::{chunk_outcome, run_items};
use crate::pool::map::{Map, MapUnordered, SubmitChunk};
use crate::pool::task_fn::{RunTask, TaskFn};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::{panic_message, Outcome, TaskError, TaskId};
use crate::tune::controller::{ControllerConfig, Mode};
use crate::tune::steer::{Steerable, Steering, DEFAULT_INTERVAL};

/// Tells one pool's threads and tasks from another's (0 is no pool).
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The pool whose runtime this thread belongs to (0: none), set as the thread starts.
    static RUNTIME_OF: Cell<u64> = const { Cell::new(0) };
    /// The pool whose task this thread is polling right now (0: none).
    static POLLING_FOR: Cell<u64> = const { Cell::new(0) };
}

/// The default bound on tasks in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Polls shorter than this count whole as CPU time; see [`AsyncPool`]'s records.
pub const SHORT_POLL: std::time::Duration = std::time::Duration::from_micros(50);

/// A `map`'s default window — tasks submitted and not yet yielded — per task in flight. Larger
/// than one, so that a slow task at the head of an ordered `map` does not hold back the tasks
/// behind it: the others keep starting and finishing while it runs, and wait only to be yielded.
pub const WINDOW_PER_IN_FLIGHT: usize = 4;

/// Configures an [`AsyncPool`].
///
/// ```
/// let pool = pardo::AsyncPool::builder().runtime_threads(2).max_in_flight(64).build().unwrap();
/// assert_eq!(pardo::Executor::workers(&pool), 64);
/// ```
#[derive(Clone, Debug)]
pub struct AsyncPoolBuilder {
    runtime_threads: Option<usize>,
    max_in_flight: usize,
    retention: Retention,
    auto: bool,
}

impl AsyncPoolBuilder {
    /// Threads of the tokio runtime that poll the futures (default: the available
    /// parallelism). Not the pool's concurrency: that is
    /// [`max_in_flight`](AsyncPoolBuilder::max_in_flight).
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().runtime_threads(1).build().unwrap();
    /// assert_eq!(pool.submit(async { 1 + 1 }).wait(), Ok(2));
    /// ```
    pub fn runtime_threads(mut self, n: usize) -> Self {
        self.runtime_threads = Some(n);
        self
    }

    /// The old name of [`runtime_threads`](AsyncPoolBuilder::runtime_threads), which read as
    /// the pool's concurrency ([`Executor::workers`] is the bound on tasks in flight).
    ///
    /// ```
    /// #[allow(deprecated)]
    /// let pool = pardo::AsyncPool::builder().workers(1).build().unwrap();
    /// assert_eq!(pool.submit(async { 1 + 1 }).wait(), Ok(2));
    /// ```
    #[deprecated(since = "0.1.0", note = "renamed to `runtime_threads`")]
    pub fn workers(self, n: usize) -> Self {
        self.runtime_threads(n)
    }

    /// The most tasks running (started and not finished) at once; the rest wait their turn in
    /// submission order (default 256). This is the pool's concurrency, as
    /// reported by [`Executor::workers`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Keeps only the summary, not every record (see [`Retention`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Steers the bound on tasks in flight while the pool runs, between 1 and
    /// [`max_in_flight`](AsyncPoolBuilder::max_in_flight): it starts at the core count and
    /// doubles while latency stays near its no-load value; latency rising above it means the
    /// other side queues, and the bound comes down to what it serves without queueing; errors
    /// cut it by 10 % (the controller's latency mode, [`crate::tune::controller`]). The changes
    /// and their reasons are in the [`Report`]'s `concurrency`. [`Executor::set_workers`]
    /// turns the steering off.
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().auto().max_in_flight(64).build().unwrap();
    /// assert_eq!(pool.submit(async { 2 + 2 }).wait(), Ok(4));
    /// assert!(pardo::Executor::workers(&pool) <= 64);
    /// ```
    pub fn auto(mut self) -> Self {
        self.auto = true;
        self
    }

    /// Starts the runtime. Fails with [`PoolError::ZeroWorkers`] for no runtime threads and
    /// [`PoolError::ZeroInFlight`] for a bound of no tasks in flight.
    ///
    /// ```
    /// let none = pardo::AsyncPool::builder().max_in_flight(0).build();
    /// assert!(matches!(none, Err(pardo::PoolError::ZeroInFlight)));
    /// ```
    pub fn build(self) -> Result<AsyncPool, PoolError> {
        let threads = self.runtime_threads.unwrap_or_else(available_cores);
        if threads == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        if self.max_in_flight == 0 {
            return Err(PoolError::ZeroInFlight);
        }
        let id = NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("pardo-async")
            .on_thread_start(move || RUNTIME_OF.set(id))
            .enable_all()
            .build()
            .map_err(PoolError::Runtime)?;
        let config = self.auto.then(|| {
            let mut c = ControllerConfig::new(available_cores(), self.max_in_flight);
            c.mode = Mode::Latency;
            c
        });
        let n = config
            .as_ref()
            .map_or(self.max_in_flight, |c| c.cores.clamp(1, self.max_in_flight));
        let recorder = Recorder::new(RunRecord::now("async_pool", n), true, self.retention);
        recorder.set_setting("runtime_threads", &threads.to_string());
        let made = u32::try_from(n).unwrap_or(u32::MAX);
        let slots = Slots {
            free: (1..=made).rev().map(|s| recorder.worker(s)).collect(),
            made,
        };
        let shared = Arc::new(Shared {
            id,
            permits: Arc::new(Semaphore::new(n)),
            limit: AtomicUsize::new(n),
            // A steered pool's maps keep room for the most it may grow to.
            window_floor: if self.auto { self.max_in_flight } else { 0 },
            slots: Mutex::new(slots),
            outstanding: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            recorder,
        });
        let handle = runtime.handle().clone();
        let steering = match config {
            Some(c) => {
                shared.recorder.set_setting("max_in_flight", "auto");
                let target = Steer {
                    shared: Arc::clone(&shared),
                    handle: handle.clone(),
                };
                Some(
                    Steering::start(target, c, DEFAULT_INTERVAL)
                        .map_err(|error| PoolError::Spawn { worker: 0, error })?,
                )
            }
            None => None,
        };
        Ok(AsyncPool {
            shared,
            handle,
            runtime: Some(runtime),
            steering: Mutex::new(steering),
        })
    }
}

/// A pool for async tasks on a tokio runtime: a bounded number in flight, the same [`Handle`]s,
/// records and [`Report`] as the other pools.
///
/// - [`submit`](AsyncPool::submit) takes any `Future + Send + 'static`; the returned handle is
///   itself a future (`.await` it) or can be waited on from ordinary threads (`wait`).
/// - [`map`](AsyncPool::map) streams over a [`Stream`] of inputs and yields results in input
///   order, with at most `max_in_flight` tasks in flight; [`map_unordered`](AsyncPool::map_unordered)
///   yields them as they finish.
/// - **Records**: wall time per task from its start (permit taken) to its end; its CPU time is
///   the time spent *polling* it, counted as user time. Waiting on I/O costs no CPU, so an
///   I/O-bound task shows a CPU ratio near 0. A poll shorter than [`SHORT_POLL`] counts whole
///   (a thread busy that long could run nothing else); a longer one — a future that blocks, or
///   a sync [`TaskFn`] — is read from the thread CPU clock, so time it spends blocked is not
///   CPU. (The thread CPU clock is a system call, microseconds on a loaded machine; reading it
///   around every short poll cost a loopback HTTP request about a sixth more CPU.)
/// - **Panics** inside a future are caught at each poll: the task ends as
///   [`TaskError::Panicked`], the runtime lives on.
/// - **Blocking**: a future that blocks (a sync [`TaskFn`] run through [`RunTask`], say) occupies
///   one runtime thread while it runs, as in any tokio program.
/// - **Shutdown**: [`shutdown`](AsyncPool::shutdown) with [`ShutdownMode::Wait`] runs everything
///   submitted; [`ShutdownMode::CancelPending`] cancels tasks still waiting for a permit. Once
///   it (or a drop) returns, the runtime's threads have been joined. A task may end its own pool: it
///   waits for the others while its thread keeps running them, and the runtime goes once that
///   task has ended too.
///
/// ```
/// let pool = pardo::AsyncPool::builder().runtime_threads(2).max_in_flight(8).build().unwrap();
/// let h = pool.submit(async { 6 * 7 });
/// assert_eq!(h.wait(), Ok(42));
/// let doubled: Vec<u64> = pool.block_on(async {
///     let mut results = pool.map(pardo::iter_stream(1..=3u64), |x| async move { x * 2 });
///     let mut out = Vec::new();
///     while let Some(r) = results.next().await {
///         out.push(r.unwrap());
///     }
///     out
/// });
/// assert_eq!(doubled, [2, 4, 6]);
/// assert_eq!(pool.shutdown(pardo::ShutdownMode::Wait).items, 4);
/// ```
pub struct AsyncPool {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
    /// The steering loop of an automatic pool; stopped before the pool closes.
    steering: Mutex<Option<Steering>>,
}

impl std::fmt::Debug for AsyncPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncPool")
            .field("max_in_flight", &self.shared.limit.load(Ordering::Relaxed))
            .field("counters", &self.shared.recorder.counters())
            .finish()
    }
}

struct Shared {
    id: u64,
    permits: Arc<Semaphore>,
    limit: AtomicUsize,
    /// The least window a map gets, whatever the bound is now (an automatic pool's maximum).
    window_floor: usize,
    /// Record writers of the free slots. A task holds a permit before it takes a slot, and
    /// there are never fewer slots than permits, so a permit holder always finds one.
    slots: Mutex<Slots>,
    /// Tasks submitted and not yet ended, for shutdown to wait on.
    /// An atomic rather than a count under a lock: every task changes it twice, from the
    /// submitting thread and from a runtime thread, and only shutdown ever waits for it.
    outstanding: AtomicUsize,
    /// Taken by shutdown to wait on `idle`, and by a task's end to notify it.
    idle_lock: Mutex<()>,
    idle: Condvar,
    recorder: Recorder,
}

impl Shared {
    /// Sets the bound on tasks in flight (`set_workers`, and the steering loop).
    fn set_bound(&self, handle: &tokio::runtime::Handle, workers: usize) -> Result<(), PoolError> {
        if workers == 0 {
            return Err(PoolError::ZeroInFlight);
        }
        let old = self.limit.swap(workers, Ordering::SeqCst);
        if workers > old {
            {
                let mut slots = lock(&self.slots);
                let more = u32::try_from(workers - old).unwrap_or(u32::MAX);
                let first = slots.made.saturating_add(1);
                slots.made = slots.made.saturating_add(more);
                let last = slots.made;
                slots
                    .free
                    .extend((first..=last).map(|n| self.recorder.worker(n)));
            }
            self.permits.add_permits(workers - old);
        } else if workers < old {
            let permits = Arc::clone(&self.permits);
            let surplus = u32::try_from(old - workers).unwrap_or(u32::MAX);
            handle.spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        self.recorder.set_capacity(workers);
        Ok(())
    }

    /// Blocks until at most `n` tasks are outstanding.
    fn wait_outstanding(&self, n: usize) {
        let mut guard = lock(&self.idle_lock);
        while self.outstanding.load(Ordering::SeqCst) > n {
            guard = wait(&self.idle, guard);
        }
    }
}

/// Drops `runtime` on a thread of its own once `first` returns; waits for that thread when
/// `join`. If no thread can be started, the runtime is only told to stop (its threads end a
/// moment later), which never panics, wherever it is called.
fn drop_elsewhere(
    runtime: tokio::runtime::Runtime,
    join: bool,
    first: impl FnOnce() + Send + 'static,
) {
    // Shared so that a failed spawn, which drops its closure here, does not drop the runtime.
    let cell = Arc::new(Mutex::new(Some(runtime)));
    let theirs = Arc::clone(&cell);
    let spawned = std::thread::Builder::new()
        .name("pardo-async-close".into())
        .spawn(move || {
            first();
            let runtime = lock(&theirs).take();
            drop(runtime);
        });
    match spawned {
        Ok(helper) if join => {
            let _ = helper.join();
        }
        Ok(_) => {}
        Err(_) => {
            if let Some(runtime) = lock(&cell).take() {
                runtime.shutdown_background();
            }
        }
    }
}

struct Slots {
    free: Vec<WorkerRecorder>,
    /// Slots made so far. New slots are numbered after it, so a number is never given twice,
    /// whatever shrinking and growing happened in between (a shrink keeps its slots).
    made: u32,
}

/// Counts one task as outstanding until dropped — even if the runtime drops the task unrun.
struct Outstanding(Arc<Shared>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        let left = self.0.outstanding.fetch_sub(1, Ordering::SeqCst) - 1;
        // A pool closed by one of its own tasks waits for all but that one. The lock orders
        // this notice after a waiter's look at the count: it is waiting, or it sees the count.
        if left <= 1 {
            drop(lock(&self.0.idle_lock));
            self.0.idle.notify_all();
        }
    }
}

impl AsyncPool {
    /// A builder with the defaults: one runtime thread per core, 256 tasks in flight.
    pub fn builder() -> AsyncPoolBuilder {
        AsyncPoolBuilder {
            runtime_threads: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retention: Retention::All,
            auto: false,
        }
    }

    /// A pool with the default settings.
    pub fn new() -> Result<AsyncPool, PoolError> {
        AsyncPool::builder().build()
    }

    /// Runs `fut` on the pool when a slot is free and returns a handle to its output.
    pub fn submit<Fut>(&self, fut: Fut) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let id = self.shared.recorder.submit(1);
        let (promise, handle) = Promise::new(id);
        self.launch(id, 1, promise, fut, |_| Outcome::Ok);
        handle
    }

    /// Applies `f` to every item of `inputs` as a task of its own and yields the results in
    /// input order.
    ///
    /// At most `max_in_flight` tasks run at once, and at most a window of
    /// [`WINDOW_PER_IN_FLIGHT`] × `max_in_flight` tasks are submitted and not yet yielded
    /// (see [`MapStream::window`]), so an endless stream is fine. A slow task holds back only
    /// its own result: the tasks behind it run and finish meanwhile, and the pipeline stalls
    /// only once the whole window waits behind it. Use [`iter_stream`] to turn an iterator
    /// into a stream.
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().runtime_threads(2).max_in_flight(4).build().unwrap();
    /// let lengths: Vec<usize> = pool.block_on(async {
    ///     let mut results = pool.map(pardo::iter_stream(["a", "bb", "ccc"]), |s| async move { s.len() });
    ///     let mut out = Vec::new();
    ///     while let Some(r) = results.next().await {
    ///         out.push(r.unwrap());
    ///     }
    ///     out
    /// });
    /// assert_eq!(lengths, [1, 2, 3]);
    /// ```
    pub fn map<'a, S, F, Fut>(&'a self, inputs: S, f: F) -> MapStream<'a, Fut::Output>
    where
        S: Stream + Send + 'a,
        F: FnMut(S::Item) -> Fut + Send + 'a,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        MapStream {
            feed: self.feed(inputs, f),
            in_flight: VecDeque::new(),
        }
    }

    /// Like [`map`](AsyncPool::map), but yields each result as soon as its task finishes, in
    /// completion order, paired with the task's id ([`Handle::id`]; ids count up in input
    /// order). The same bound on tasks in flight and the same window apply.
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().runtime_threads(2).max_in_flight(4).build().unwrap();
    /// let mut squares: Vec<u64> = pool.block_on(async {
    ///     let mut results = pool.map_unordered(pardo::iter_stream(0..5u64), |x| async move { x * x });
    ///     let mut out = Vec::new();
    ///     while let Some((_id, r)) = results.next().await {
    ///         out.push(r.unwrap());
    ///     }
    ///     out
    /// });
    /// squares.sort();
    /// assert_eq!(squares, [0, 1, 4, 9, 16]);
    /// ```
    pub fn map_unordered<'a, S, F, Fut>(
        &'a self,
        inputs: S,
        f: F,
    ) -> MapUnorderedStream<'a, Fut::Output>
    where
        S: Stream + Send + 'a,
        F: FnMut(S::Item) -> Fut + Send + 'a,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        MapUnorderedStream {
            feed: self.feed(inputs, f),
            running: CompletionSet::new(),
        }
    }

    /// What both maps pull from: one task submitted per input, the default window.
    fn feed<'a, S, F, Fut>(&'a self, inputs: S, mut f: F) -> Feed<'a, Fut::Output>
    where
        S: Stream + Send + 'a,
        F: FnMut(S::Item) -> Fut + Send + 'a,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let mut inputs = Box::pin(inputs);
        let pull = Box::new(
            move |cx: &mut Context<'_>| match inputs.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => Poll::Ready(Some(self.submit(f(item)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        );
        Feed {
            pull,
            window: self.window().saturating_mul(WINDOW_PER_IN_FLIGHT),
            exhausted: false,
        }
    }

    /// Runs `fut` to completion on the pool's runtime, blocking the calling thread (which must
    /// not be one of the runtime's own).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.handle.block_on(fut)
    }

    /// The runtime's handle, to spawn helpers (a server, a timer) beside the pool's tasks.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Live counters (submitted, running, done, failed); `running` counts tasks holding a slot.
    pub fn counters(&self) -> crate::monitor::Counters {
        self.shared.recorder.counters()
    }

    /// Stops the pool and returns the final report; see [`ShutdownMode`].
    pub fn shutdown(mut self, mode: ShutdownMode) -> Report {
        self.close(mode);
        self.shared.recorder.report()
    }

    fn close(&mut self, mode: ShutdownMode) {
        let steering = lock(&self.steering).take();
        drop(steering);
        if mode == ShutdownMode::CancelPending {
            // Tasks waiting for a permit fail to get one and end as cancelled; running tasks
            // keep theirs.
            self.shared.permits.close();
        }
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        if RUNTIME_OF.get() == shared.id {
            // Closed from one of the pool's own threads. The task doing it stays outstanding
            // until after we return; the others may need this very thread (there may be only
            // one), so it hands its share of the runtime to another while it waits.
            let own = usize::from(POLLING_FOR.get() == shared.id);
            tokio::task::block_in_place(|| shared.wait_outstanding(own));
            // Dropping a runtime joins its threads, this one among them: a helper does it
            // once the closing task has ended too.
            drop_elsewhere(runtime, false, move || shared.wait_outstanding(0));
        } else {
            shared.wait_outstanding(0);
            if tokio::runtime::Handle::try_current().is_ok() {
                // In another runtime's async context, where tokio refuses to drop a runtime
                // (it blocks): a helper drops it, and this thread waits for the helper.
                drop_elsewhere(runtime, true, || ());
            } else {
                // Joins the runtime's threads: none is left once the pool says it is done.
                drop(runtime);
            }
        }
    }

    /// Spawns the tokio task that runs `fut` under a permit, measures it, writes its record
    /// and completes `promise`.
    fn launch<Fut>(
        &self,
        id: TaskId,
        items: u32,
        promise: Promise<Fut::Output>,
        fut: Fut,
        outcome_of: fn(&Fut::Output) -> Outcome,
    ) where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let submitted_ns = shared.recorder.now_ns();
        shared.outstanding.fetch_add(1, Ordering::SeqCst);
        let guard = Outstanding(Arc::clone(&shared));
        self.handle.spawn(async move {
            let _guard = guard;
            let permit = Arc::clone(&shared.permits).acquire_owned().await;
            let slot = lock(&shared.slots).free.pop();
            // Unreachable while there are never fewer slots than permits; slot 0 (as for tasks
            // that never ran) keeps the numbers of live slots unique even so.
            let w = slot.unwrap_or_else(|| shared.recorder.worker(0));
            if permit.is_err() || !promise.try_start() {
                w.cancelled(id, submitted_ns, items);
                lock(&shared.slots).free.push(w);
                return;
            }
            w.set_running(true);
            let started_ns = shared.recorder.now_ns();
            let metered = Metered {
                fut: Box::pin(fut),
                cpu_ns: 0,
                pool: shared.id,
                exact: true,
            };
            let (result, cpu_ns) = metered.await;
            let finished_ns = shared.recorder.now_ns();
            let (result, outcome) = match result {
                Ok(v) => {
                    let o = outcome_of(&v);
                    (Ok(v), o)
                }
                Err(message) => (Err(TaskError::Panicked { id, message }), Outcome::Panicked),
            };
            let mut r = TaskRecord::new(id, w.worker(), submitted_ns, started_ns, finished_ns);
            r.items = items;
            r.cpu_user_ns = cpu_ns;
            r.outcome = outcome;
            w.set_running(false);
            w.write(r);
            promise.complete(result);
            // Slot back before permit back: whoever gets the permit next must find a slot.
            lock(&shared.slots).free.push(w);
            drop(permit);
        });
    }

    fn chunk_submitter<T, R>(&self, f: fn(T) -> R) -> SubmitChunk<'_, T, R>
    where
        T: Send + 'static,
        R: Send + 'static,
    {
        Box::new(move |items: Vec<T>, values: Vec<R>| {
            let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
            let first = self.shared.recorder.submit(u64::from(n));
            let (promise, handle) = Promise::new(first);
            let fut = async move { run_items(first, items, values, &f) };
            self.launch(first, n, promise, fut, chunk_outcome);
            (first, handle)
        })
    }

    fn window(&self) -> usize {
        self.shared
            .limit
            .load(Ordering::Relaxed)
            .max(self.shared.window_floor)
    }
}

impl Drop for AsyncPool {
    fn drop(&mut self) {
        self.close(ShutdownMode::Wait);
    }
}

impl Executor for AsyncPool {
    fn kind(&self) -> &'static str {
        "async_pool"
    }

    /// The bound on tasks in flight.
    fn workers(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// Changes the bound on tasks in flight. Lowering it takes effect as running tasks end.
    /// On an automatic pool this also turns the steering off: the caller has taken over.
    fn set_workers(&self, workers: usize) -> Result<(), PoolError> {
        let steering = lock(&self.steering).take();
        drop(steering);
        self.shared.set_bound(&self.handle, workers)
    }

    fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }
}

impl RunTask for AsyncPool {
    fn submit_task<F: TaskFn>(&self, _f: F, input: F::Input) -> Handle<F::Output> {
        self.submit(async move { F::call(input) })
    }

    fn map_task<F, I>(&self, inputs: I, _f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        Map::new(
            inputs.into_iter(),
            self.window(),
            self.chunk_submitter(F::call),
        )
    }

    fn map_unordered_task<F, I>(&self, inputs: I, _f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        MapUnordered::new(
            inputs.into_iter(),
            self.window(),
            self.chunk_submitter(F::call),
        )
    }
}

/// The async pool as the steering loop sees it: the bound on tasks in flight is its
/// concurrency.
struct Steer {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
}

impl Steerable for Steer {
    fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    fn live(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    fn set_target(&self, n: usize) -> Result<(), PoolError> {
        self.shared.set_bound(&self.handle, n)
    }
}

/// Polls a future with its panics caught and its CPU time summed over polls.
struct Metered<F> {
    fut: Pin<Box<F>>,
    cpu_ns: u64,
    /// The pool's id, so that a task closing its own pool is recognised as such.
    pool: u64,
    /// Read the thread CPU clock before the next poll: for the first poll (a sync task is one
    /// long poll) and after a long one. A long poll without that reading counts whole.
    exact: bool,
}

impl<F: Future> Future for Metered<F> {
    type Output = (Result<F::Output, String>, u64);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let cpu0 = this.exact.then(thread_cpu_ns);
        let t0 = Instant::now();
        let outer = POLLING_FOR.replace(this.pool);
        let polled = catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx)));
        POLLING_FOR.set(outer);
        let took = t0.elapsed();
        let took_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        this.exact = took >= SHORT_POLL;
        this.cpu_ns += match cpu0 {
            Some(c0) if this.exact => thread_cpu_ns().saturating_sub(c0),
            _ => took_ns,
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready((Ok(v), this.cpu_ns)),
            Err(payload) => Poll::Ready((Err(panic_message(payload.as_ref())), this.cpu_ns)),
        }
    }
}

/// Submits the next input's task, or says the inputs are done (or not ready).
type Pull<'a, R> = Box<dyn FnMut(&mut Context<'_>) -> Poll<Option<Handle<R>>> + Send + 'a>;

/// The input side of a map: submits tasks while fewer than `window` are held.
struct Feed<'a, R> {
    pull: Pull<'a, R>,
    window: usize,
    exhausted: bool,
}

impl<R> Feed<'_, R> {
    /// The next input's task if fewer than `window` are `held` and an input is ready; when
    /// none is ready, the input stream has `cx`'s waker.
    fn more(&mut self, cx: &mut Context<'_>, held: usize) -> Option<Handle<R>> {
        if self.exhausted || held >= self.window {
            return None;
        }
        match (self.pull)(cx) {
            Poll::Ready(Some(h)) => Some(h),
            Poll::Ready(None) => {
                self.exhausted = true;
                None
            }
            Poll::Pending => None,
        }
    }
}

/// The results of [`AsyncPool::map`], in input order: a [`Stream`], with an inherent
/// [`next`](MapStream::next) so no stream extension crate is needed to read it.
///
/// Nothing is submitted until it is first polled, so a map that is never read runs nothing,
/// and the compiler says so:
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let pool = pardo::AsyncPool::builder().runtime_threads(1).build().unwrap();
/// pool.map(pardo::iter_stream(0..3u32), |x| async move { x + 1 });
/// ```
#[must_use = "a MapStream does nothing until it is polled"]
pub struct MapStream<'a, R> {
    feed: Feed<'a, R>,
    in_flight: VecDeque<Handle<R>>,
}

impl<R> std::fmt::Debug for MapStream<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapStream")
            .field("in_flight", &self.in_flight.len())
            .field("window", &self.feed.window)
            .finish()
    }
}

impl<R> MapStream<'_, R> {
    /// The next result in input order; `None` once every input has been yielded.
    pub async fn next(&mut self) -> Option<Result<R, TaskError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Keeps at most `n` tasks submitted and not yet yielded (default:
    /// [`WINDOW_PER_IN_FLIGHT`] × `max_in_flight`). This bounds the results held back behind
    /// a slow task, and so memory; the bound on tasks *running* stays the pool's
    /// `max_in_flight`. A window of `max_in_flight` or less lets one slow task stall the
    /// pipeline.
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().runtime_threads(1).max_in_flight(2).build().unwrap();
    /// let sum: u32 = pool.block_on(async {
    ///     let mut results = pool.map(pardo::iter_stream(1..=4u32), |x| async move { x }).window(16);
    ///     let mut sum = 0;
    ///     while let Some(r) = results.next().await {
    ///         sum += r.unwrap();
    ///     }
    ///     sum
    /// });
    /// assert_eq!(sum, 10);
    /// ```
    pub fn window(mut self, n: usize) -> Self {
        self.feed.window = n.max(1);
        self
    }

    /// The old name of [`window`](MapStream::window): it never bounded the tasks in flight.
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().runtime_threads(1).build().unwrap();
    /// # #[allow(deprecated)]
    /// let results = pool.map(pardo::iter_stream(0..1u8), |x| async move { x }).in_flight(8);
    /// # drop(results);
    /// ```
    #[deprecated(since = "0.1.0", note = "renamed to `window`")]
    pub fn in_flight(self, n: usize) -> Self {
        self.window(n)
    }
}

impl<R> Stream for MapStream<'_, R> {
    type Item = Result<R, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while let Some(h) = this.feed.more(cx, this.in_flight.len()) {
            this.in_flight.push_back(h);
        }
        match this.in_flight.front_mut() {
            Some(h) => match Pin::new(h).poll(cx) {
                Poll::Ready(r) => {
                    this.in_flight.pop_front();
                    Poll::Ready(Some(r))
                }
                Poll::Pending => Poll::Pending,
            },
            None if this.feed.exhausted => Poll::Ready(None),
            // The input stream is pending and has our waker.
            None => Poll::Pending,
        }
    }
}

/// The results of [`AsyncPool::map_unordered`], in completion order, each with its task's id:
/// a [`Stream`], with an inherent [`next`](MapUnorderedStream::next).
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// let pool = pardo::AsyncPool::builder().runtime_threads(1).build().unwrap();
/// pool.map_unordered(pardo::iter_stream(0..3u32), |x| async move { x + 1 });
/// ```
#[must_use = "a MapUnorderedStream does nothing until it is polled"]
pub struct MapUnorderedStream<'a, R> {
    feed: Feed<'a, R>,
    running: CompletionSet<R>,
}

impl<R> std::fmt::Debug for MapUnorderedStream<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapUnorderedStream")
            .field("in_flight", &self.running.len())
            .field("window", &self.feed.window)
            .finish()
    }
}

impl<R> MapUnorderedStream<'_, R> {
    /// The next result to finish, with its task's id; `None` once every input has been
    /// yielded.
    pub async fn next(&mut self) -> Option<(TaskId, Result<R, TaskError>)> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// As [`MapStream::window`]: at most `n` tasks submitted and not yet yielded.
    ///
    /// ```
    /// let pool = pardo::AsyncPool::builder().runtime_threads(1).max_in_flight(2).build().unwrap();
    /// let n = pool.block_on(async {
    ///     let mut results = pool.map_unordered(pardo::iter_stream(0..5u8), |x| async move { x }).window(2);
    ///     let mut n = 0;
    ///     while results.next().await.is_some() {
    ///         n += 1;
    ///     }
    ///     n
    /// });
    /// assert_eq!(n, 5);
    /// ```
    pub fn window(mut self, n: usize) -> Self {
        self.feed.window = n.max(1);
        self
    }
}

impl<R> Stream for MapUnorderedStream<'_, R> {
    type Item = (TaskId, Result<R, TaskError>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while let Some(h) = this.feed.more(cx, this.running.len()) {
            this.running.push(h);
        }
        match this.running.poll_next_ready(cx) {
            Poll::Ready(Some(done)) => Poll::Ready(Some(done)),
            Poll::Ready(None) if this.feed.exhausted => Poll::Ready(None),
            // Nothing running and the input stream is pending: it has our waker.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

/// A [`Stream`] over the items of an iterator, always ready: feeds [`AsyncPool::map`] from
/// a range, a `Vec` or any other iterator.
///
/// ```
/// let pool = pardo::AsyncPool::builder().runtime_threads(1).build().unwrap();
/// let first = pool.block_on(async {
///     pool.map(pardo::iter_stream(vec!["x", "y"]), |s| async move { s }).next().await
/// });
/// assert_eq!(first, Some(Ok("x")));
/// ```
pub fn iter_stream<I: IntoIterator>(items: I) -> IterStream<I::IntoIter> {
    IterStream(items.into_iter())
}

/// The old name of [`iter_stream`], which said where it is used rather than what it makes.
///
/// ```
/// # #[allow(deprecated)]
/// let items = pardo::pool_stream(1..=2u8);
/// # drop(items);
/// ```
#[deprecated(since = "0.1.0", note = "renamed to `iter_stream`")]
pub fn pool_stream<I: IntoIterator>(items: I) -> IterStream<I::IntoIter> {
    iter_stream(items)
}

/// The stream returned by [`iter_stream`].
#[derive(Debug)]
pub struct IterStream<I>(I);

impl<I: Iterator + Unpin> Stream for IterStream<I> {
    type Item = I::Item;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.get_mut().0.next())
    }
}
