//! [`AsyncPool`]: futures on a tokio runtime the pool owns, at most `max_in_flight` at a time,
//! each measured like any other task.
//!
//! Every submitted future becomes a tokio task that first takes a permit from a semaphore of
//! `max_in_flight` permits, then a *slot* (a per-slot record writer, so records carry a slot
//! number 1..=max_in_flight as thread-pool records carry a worker number), runs, writes its
//! record, completes its [`Handle`] and gives slot and permit back. Waiting for a permit is
//! queueing: it shows as queue wait in the record.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::Semaphore;

use crate::clock::thread_cpu_ns;
use crate::executor::{Executor, ShutdownMode};
use crate::handle::{Handle, Promise};
use crate::monitor::WorkerRecorder;
use crate::monitor::{available_cores, Recorder, Report, Retention, RunRecord, TaskRecord};
use crate::pool::map::{Map, MapUnordered, SubmitChunk};
use crate::pool::task_fn::{chunk_outcome, run_items, RunTask, TaskFn};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::{panic_message, Outcome, TaskError, TaskId};

/// The default bound on tasks in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Configures an [`AsyncPool`].
///
/// ```
/// let pool = pardo::AsyncPool::builder().workers(2).max_in_flight(64).build().unwrap();
/// assert_eq!(pardo::Executor::workers(&pool), 64);
/// ```
#[derive(Clone, Debug)]
pub struct AsyncPoolBuilder {
    workers: Option<usize>,
    max_in_flight: usize,
    retention: Retention,
}

impl AsyncPoolBuilder {
    /// Runtime worker threads that poll the futures (default: the available parallelism).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
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

    /// Starts the runtime.
    pub fn build(self) -> Result<AsyncPool, PoolError> {
        let threads = self.workers.unwrap_or_else(available_cores);
        if threads == 0 || self.max_in_flight == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("pardo-async")
            .enable_all()
            .build()
            .map_err(PoolError::Runtime)?;
        let n = self.max_in_flight;
        let recorder = Recorder::new(RunRecord::now("async_pool", n), true, self.retention);
        recorder.set_setting("runtime_threads", &threads.to_string());
        let made = u32::try_from(n).unwrap_or(u32::MAX);
        let slots = Slots {
            free: (1..=made).rev().map(|s| recorder.worker(s)).collect(),
            made,
        };
        Ok(AsyncPool {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(n)),
                limit: AtomicUsize::new(n),
                slots: Mutex::new(slots),
                outstanding: Mutex::new(0),
                idle: Condvar::new(),
                recorder,
            }),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

/// A pool for async tasks on a tokio runtime: a bounded number in flight, the same [`Handle`]s,
/// records and [`Report`] as the other pools.
///
/// - [`submit`](AsyncPool::submit) takes any `Future + Send + 'static`; the returned handle is
///   itself a future (`.await` it) or can be waited on from ordinary threads (`wait`).
/// - [`map`](AsyncPool::map) streams over a [`Stream`] of inputs and yields results in input
///   order, with at most `max_in_flight` tasks in flight.
/// - **Records**: wall time per task from its start (permit taken) to its end; its CPU time is
///   the time spent *polling* it, read from the thread CPU clock around each poll and counted as
///   user time. Waiting on I/O costs no CPU, so an I/O-bound task shows a CPU ratio near 0.
/// - **Panics** inside a future are caught at each poll: the task ends as
///   [`TaskError::Panicked`], the runtime lives on.
/// - **Blocking**: a future that blocks (a sync [`TaskFn`] run through [`RunTask`], say) occupies
///   one runtime thread while it runs, as in any tokio program.
/// - **Shutdown**: [`shutdown`](AsyncPool::shutdown) with [`ShutdownMode::Wait`] runs everything
///   submitted; [`ShutdownMode::CancelPending`] cancels tasks still waiting for a permit. Call it
///   (or drop the pool) from outside the pool's own tasks.
///
/// ```
/// let pool = pardo::AsyncPool::builder().workers(2).max_in_flight(8).build().unwrap();
/// let h = pool.submit(async { 6 * 7 });
/// assert_eq!(h.wait(), Ok(42));
/// let doubled: Vec<u64> = pool.block_on(async {
///     let mut results = pool.map(pardo::pool_stream(1..=3u64), |x| async move { x * 2 });
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
    permits: Arc<Semaphore>,
    limit: AtomicUsize,
    /// Record writers of the free slots. A task holds a permit before it takes a slot, and
    /// there are never fewer slots than permits, so a permit holder always finds one.
    slots: Mutex<Slots>,
    /// Tasks submitted and not yet ended, for shutdown to wait on.
    outstanding: Mutex<usize>,
    idle: Condvar,
    recorder: Recorder,
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
        let mut n = lock(&self.0.outstanding);
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl AsyncPool {
    /// A builder with the defaults: one runtime thread per core, 256 tasks in flight.
    pub fn builder() -> AsyncPoolBuilder {
        AsyncPoolBuilder {
            workers: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            retention: Retention::All,
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
    /// input order. At most `max_in_flight` tasks are ahead of the consumer, so an endless
    /// stream is fine. Use [`pool_stream`] to turn an iterator into a stream.
    pub fn map<'a, S, F, Fut>(&'a self, inputs: S, mut f: F) -> MapStream<'a, Fut::Output>
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
        MapStream {
            pull,
            in_flight: VecDeque::new(),
            window: self.shared.limit.load(Ordering::Relaxed),
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
        if mode == ShutdownMode::CancelPending {
            // Tasks waiting for a permit fail to get one and end as cancelled; running tasks
            // keep theirs.
            self.shared.permits.close();
        }
        {
            let mut n = lock(&self.shared.outstanding);
            while *n > 0 {
                n = wait(&self.shared.idle, n);
            }
        }
        if let Some(rt) = self.runtime.take() {
            // Never blocks, so closing from inside an async context cannot panic.
            rt.shutdown_background();
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
        *lock(&shared.outstanding) += 1;
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
        self.shared.limit.load(Ordering::Relaxed)
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
    fn set_workers(&self, workers: usize) -> Result<(), PoolError> {
        if workers == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let s = &self.shared;
        let old = s.limit.swap(workers, Ordering::SeqCst);
        if workers > old {
            {
                let mut slots = lock(&s.slots);
                let more = u32::try_from(workers - old).unwrap_or(u32::MAX);
                let first = slots.made.saturating_add(1);
                slots.made = slots.made.saturating_add(more);
                let last = slots.made;
                slots
                    .free
                    .extend((first..=last).map(|n| s.recorder.worker(n)));
            }
            s.permits.add_permits(workers - old);
        } else if workers < old {
            let permits = Arc::clone(&s.permits);
            let surplus = u32::try_from(old - workers).unwrap_or(u32::MAX);
            self.handle.spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        s.recorder.set_capacity(workers);
        Ok(())
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

/// Polls a future with its panics caught and its CPU time summed over polls.
struct Metered<F> {
    fut: Pin<Box<F>>,
    cpu_ns: u64,
}

impl<F: Future> Future for Metered<F> {
    type Output = (Result<F::Output, String>, u64);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let t0 = thread_cpu_ns();
        let polled = catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx)));
        this.cpu_ns += thread_cpu_ns().saturating_sub(t0);
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready((Ok(v), this.cpu_ns)),
            Err(payload) => Poll::Ready((Err(panic_message(payload.as_ref())), this.cpu_ns)),
        }
    }
}

/// Submits the next input's task, or says the inputs are done (or not ready).
type Pull<'a, R> = Box<dyn FnMut(&mut Context<'_>) -> Poll<Option<Handle<R>>> + Send + 'a>;

/// The results of [`AsyncPool::map`], in input order: a [`Stream`], with an inherent
/// [`next`](MapStream::next) so no stream extension crate is needed to read it.
pub struct MapStream<'a, R> {
    pull: Pull<'a, R>,
    in_flight: VecDeque<Handle<R>>,
    window: usize,
    exhausted: bool,
}

impl<R> std::fmt::Debug for MapStream<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapStream")
            .field("in_flight", &self.in_flight.len())
            .field("window", &self.window)
            .finish()
    }
}

impl<R> MapStream<'_, R> {
    /// The next result in input order; `None` once every input has been yielded.
    pub async fn next(&mut self) -> Option<Result<R, TaskError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Keeps at most `n` tasks submitted ahead of the consumer (default: `max_in_flight`).
    pub fn in_flight(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }
}

impl<R> Stream for MapStream<'_, R> {
    type Item = Result<R, TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.exhausted && this.in_flight.len() < this.window {
            match (this.pull)(cx) {
                Poll::Ready(Some(h)) => this.in_flight.push_back(h),
                Poll::Ready(None) => this.exhausted = true,
                Poll::Pending => break,
            }
        }
        match this.in_flight.front_mut() {
            Some(h) => match Pin::new(h).poll(cx) {
                Poll::Ready(r) => {
                    this.in_flight.pop_front();
                    Poll::Ready(Some(r))
                }
                Poll::Pending => Poll::Pending,
            },
            None if this.exhausted => Poll::Ready(None),
            // The input stream is pending and has our waker.
            None => Poll::Pending,
        }
    }
}

/// A [`Stream`] over the items of an iterator, always ready: feeds [`AsyncPool::map`] from
/// a range, a `Vec` or any other iterator.
pub fn pool_stream<I: IntoIterator>(items: I) -> IterStream<I::IntoIter> {
    IterStream(items.into_iter())
}

/// The stream returned by [`pool_stream`].
#[derive(Debug)]
pub struct IterStream<I>(I);

impl<I: Iterator + Unpin> Stream for IterStream<I> {
    type Item = I::Item;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.get_mut().0.next())
    }
}
