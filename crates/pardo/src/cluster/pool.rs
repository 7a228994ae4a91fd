//! [`ClusterPool`]: [`task_fn!`](crate::task_fn) tasks run by serving workers on any number of
//! machines, through one Redis, behind the same [`RunTask`] and [`Executor`] interface as the
//! local pools.
//!
//! Two threads talk to Redis, each over a connection of its own: the *submitter* takes up to
//! [`SUBMIT_BATCH`] queued jobs at a time (while fewer than the in-flight bound are out) and
//! puts them on the run's stream with one `SUBMIT` call; the *reader* takes results from the
//! results stream up to [`READ_BATCH`] at a time, writes each attempt's record and completes
//! the handles. Both give up after the patience when Redis stays away: every task not yet
//! finished then ends with an error saying so, and later submissions fail at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::protocol::{
    self, client, decode, encode, scripts, Entry, Keys, Link, Settings, TaskResult, TASK_RUNS,
};
use super::ClusterError;
use crate::executor::{Executor, ShutdownMode};
use crate::handle::Handle;
use crate::monitor::{Recorder, Report, Retention, RunRecord, TaskRecord, WorkerRecorder};
use crate::pool::map::{Backlog, Map, MapUnordered};
use crate::pool::processes::delivery::{self, fail_unrun, Job, Jobs};
use crate::pool::processes::wire::Request;
use crate::pool::task_fn::{RunTask, TaskFn};
use crate::pool::PoolError;
use crate::sync::{lock, wait, wait_timeout};
use crate::task::{Outcome, TaskError};

/// Jobs put on the stream in one call at most.
pub const SUBMIT_BATCH: usize = 512;
/// Results read in one call at most.
pub const READ_BATCH: usize = 1024;
/// The default bound on jobs on Redis without a result.
pub const DEFAULT_IN_FLIGHT: usize = 1024;

/// How a [`ClusterPool`] is set up; start from [`ClusterPool::builder`].
#[derive(Clone, Debug)]
pub struct ClusterPoolBuilder {
    in_flight: usize,
    lease: Duration,
    lost: u32,
    patience: Duration,
    insecure: bool,
    retention: Retention,
}

impl ClusterPoolBuilder {
    /// Jobs on Redis without a result at most (the pool's [`Executor::workers`]); at least 1,
    /// [`DEFAULT_IN_FLIGHT`] by default. The serving workers decide how many run at once.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }

    /// How long a task's worker may go silent before another worker takes the task (1 s by
    /// default). Workers renew it four times per lease while they hold a task.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// Attempts a task may lose with their workers (killed, cut off) before it goes to the
    /// dead-letter list and ends as [`TaskError::WorkerDied`] (3 by default).
    pub fn lost(mut self, n: u32) -> Self {
        self.lost = n;
        self
    }

    /// How long to keep trying to reach Redis before the pool gives up (60 s by default).
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Use a Redis off this machine without credentials (whoever can write to it chooses
    /// which registered task functions the workers run, with which inputs).
    pub fn insecure(mut self, yes: bool) -> Self {
        self.insecure = yes;
        self
    }

    /// Which records the recorder keeps ([`Retention::All`] by default).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Opens a new run on the Redis at `url` (`redis://[user:password@]host:port/db`) and
    /// starts the pool's two threads.
    pub fn connect(self, url: &str) -> Result<ClusterPool, ClusterError> {
        let client = client(url, self.insecure)?;
        let keys = Keys::new(&protocol::new_run_id());
        let settings = Settings {
            tries: 1,
            lost: self.lost,
            timeout: None,
            grace: Duration::ZERO,
            lease: self.lease,
        };
        let mut link = Link::new(client.clone(), self.patience);
        link.call(|c| {
            redis::cmd("HSET")
                .arg(keys.meta())
                .arg(settings.to_fields())
                .arg("kind")
                .arg("tasks")
                .query::<()>(c)
        })?;
        protocol::announce(&mut link, TASK_RUNS, &keys)?;
        let recorder = Recorder::new(RunRecord::now("cluster_pool", 0), true, self.retention);
        recorder.set_setting("cluster_run", &keys.run);
        recorder.set_setting("in_flight", &self.in_flight.to_string());
        recorder.set_setting("lease", &format!("{:?}", self.lease));
        let base = (recorder.now_ns(), unix_ns());
        let shared = Arc::new(Shared {
            keys,
            client,
            patience: self.patience,
            recorder,
            target: AtomicUsize::new(self.in_flight),
            backlog: Backlog::default(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                out: HashMap::new(),
                closing: false,
                broken: None,
                slots: HashMap::new(),
            }),
            moved: Condvar::new(),
            base,
        });
        let mut threads = Vec::new();
        for (name, body) in [
            ("pardo-cluster-submit", submit_loop as fn(&Shared)),
            ("pardo-cluster-results", read_loop as fn(&Shared)),
        ] {
            let s = Arc::clone(&shared);
            let t = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || body(&s));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.break_down(format!("cannot start a thread: {e}"));
                    crate::pool::join_all_but_current(threads);
                    return Err(e.into());
                }
            }
        }
        Ok(ClusterPool {
            shared,
            threads: Mutex::new(threads),
        })
    }
}

/// A pool whose workers are other processes, on this machine or others: registered
/// [`TaskFn`]s run by programs serving the same registry ([`serve`](super::serve)), through a
/// Redis. Moving a [`ProcessPool`](crate::ProcessPool) workload onto many machines is the one
/// line that builds the pool:
///
/// ```no_run
/// use pardo::RunTask;
///
/// pardo::task_fn! {
///     /// x².
///     pub Square(x: u64) -> u64 { x * x }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // was: let pool = pardo::ProcessPool::builder().workers(4).build()?;
///     let pool = pardo::cluster::ClusterPool::connect("redis://127.0.0.1:6379/0")?;
///     let out: Vec<u64> = pool.map_task(1..=1000u64, Square).collect::<Result<_, _>>()?;
///     assert_eq!(out[9], 100);
///     let report = pool.shutdown(pardo::ShutdownMode::Wait);
///     assert_eq!(report.items, 1000);
///     Ok(())
/// }
/// ```
/// and on each machine the same program, started as a worker (see [`serve`](super::serve)).
///
/// - **The same API** as the process pool: [`submit`](ClusterPool::submit),
///   [`map`](ClusterPool::map), [`map_unordered`](ClusterPool::map_unordered) (one input per
///   task unless [`Map::chunk_size`] says otherwise), [`RunTask`], [`Executor`], handles,
///   [`shutdown`](ClusterPool::shutdown), the same [`Report`].
/// - **Records**: one [`TaskRecord`] per attempt, timed and measured by the worker that ran it
///   (CPU time, run-queue wait, the worker's peak memory); `worker` numbers each serving slot
///   seen (see [`ClusterPool::worker_names`]). An attempt lost with its worker is recorded as
///   [`Outcome::Killed`], with no length, at the moment the next attempt found it lost. The
///   report's worker count is the serving slots seen so far.
/// - **Guarantees** (see the [module docs](super)): a task whose worker is killed or cut off
///   runs elsewhere once its lease runs out; exactly one result per task is accepted; a task
///   that loses `lost` workers goes to the dead-letter list and fails with
///   [`TaskError::WorkerDied`]; a panic is [`TaskError::Panicked`] for that task only; a name
///   the worker does not have registered is [`TaskError::Failed`] saying so.
/// - **Redis away**: the pool reconnects for as long as its patience; past it, every task not
///   finished ends with [`TaskError::Failed`] naming the error, and so does every later one.
/// - **Workers**: [`Executor::workers`] is the bound on jobs on Redis without a result
///   ([`ClusterPoolBuilder::in_flight`]); [`Executor::set_workers`] moves that bound. How
///   many run at once is up to the serving workers' slots.
/// - **Shutdown**: [`ShutdownMode::Wait`] waits for every task, however long the workers take
///   to appear; [`ShutdownMode::CancelPending`] cancels the tasks not yet on Redis. Either way
///   the run's keys are deleted when it returns. Dropping the pool is `shutdown(Wait)`, except
///   while the thread is panicking: then no task is waited for.
pub struct ClusterPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPool")
            .field("run", &self.shared.keys.run)
            .field("in_flight", &self.shared.target.load(Ordering::Relaxed))
            .finish()
    }
}

struct Shared {
    keys: Keys,
    client: redis::Client,
    patience: Duration,
    recorder: Recorder,
    /// Jobs on Redis without a result at most.
    target: AtomicUsize,
    backlog: Backlog,
    state: Mutex<State>,
    /// Signalled when a job is queued, a result makes room, and when the pool closes or breaks.
    moved: Condvar,
    /// The recorder's clock and the Unix clock, read at the same moment.
    base: (u64, u64),
}

struct State {
    /// Jobs not on Redis yet.
    queue: VecDeque<Job>,
    /// Jobs on Redis, by their first task id (the entry's `seq`).
    out: HashMap<u64, Job>,
    closing: bool,
    /// Why the pool gave up, once it has.
    broken: Option<String>,
    /// Worker number of each serving slot seen: (consumer, slot) → number from 1.
    slots: HashMap<(String, u32), u32>,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Jobs for Shared {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn target(&self) -> &AtomicUsize {
        &self.target
    }

    fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    fn push(&self, job: Job) {
        let mut st = lock(&self.state);
        if let Some(why) = &st.broken {
            let message = why.clone();
            drop(st);
            fail_unrun(&self.recorder, job, message);
            return;
        }
        st.queue.push_back(job);
        drop(st);
        self.moved.notify_all();
    }
}

impl Shared {
    fn link(&self) -> Link {
        Link::new(self.client.clone(), self.patience)
    }

    /// A Unix time in ns on the recorder's clock (never before the recorder started).
    fn clock(&self, unix: u64) -> u64 {
        (self.base.0 + unix).saturating_sub(self.base.1)
    }

    /// Gives up: every job queued or out fails with `why`, and so will every later one.
    fn break_down(&self, why: String) {
        let jobs: Vec<Job> = {
            let mut st = lock(&self.state);
            st.broken.get_or_insert(why.clone());
            let out: Vec<Job> = st.out.drain().map(|(_, j)| j).collect();
            st.queue.drain(..).chain(out).collect()
        };
        self.moved.notify_all();
        for job in jobs {
            fail_unrun(&self.recorder, job, why.clone());
        }
    }

    fn lost_redis(&self, e: &ClusterError) -> String {
        format!(
            "the cluster pool gave up on Redis after {:?}: {e}",
            self.patience
        )
    }
}

/// Puts queued jobs on the stream, a batch per call, while the in-flight bound allows.
fn submit_loop(s: &Shared) {
    let mut link = s.link();
    let w0 = s.recorder.worker(0);
    loop {
        let mut cancelled = Vec::new();
        let mut refused = Vec::new();
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
        {
            let mut st = lock(&s.state);
            let room = loop {
                if st.broken.is_some() || (st.closing && st.queue.is_empty()) {
                    return;
                }
                let room = s
                    .target
                    .load(Ordering::Relaxed)
                    .saturating_sub(st.out.len());
                if room > 0 && !st.queue.is_empty() {
                    break room;
                }
                st = wait(&s.moved, st);
            };
            let n = room.min(SUBMIT_BATCH).min(st.queue.len());
            let jobs: Vec<Job> = st.queue.drain(..n).collect();
            for job in jobs {
                if !job.deliver.try_start() {
                    cancelled.push(job);
                    continue;
                }
                let req = Request {
                    name: job.name,
                    inputs: job.inputs.iter().map(Vec::as_slice).collect(),
                };
                match encode(&req) {
                    Ok(payload) => {
                        batch.push((job.id.0, payload));
                        // Known as out before it is: the reader may see its result first.
                        st.out.insert(job.id.0, job);
                    }
                    Err(e) => refused.push((job, e)),
                }
            }
        }
        for job in cancelled {
            w0.cancelled(job.id, job.submitted_ns, job.items);
        }
        for (job, e) in refused {
            fail_unrun(
                &s.recorder,
                job,
                format!("cannot encode the task for Redis: {e}"),
            );
        }
        if batch.is_empty() {
            continue;
        }
        s.moved.notify_all();
        let keys = &s.keys;
        let sent: Result<Vec<i64>, _> = link.call(|c| {
            let mut inv = scripts().submit.prepare_invoke();
            inv.key(keys.submitted())
                .key(keys.jobs())
                .key(keys.handled());
            for (seq, p) in &batch {
                inv.arg(*seq).arg(p.as_slice());
            }
            inv.invoke(c)
        });
        if let Err(e) = sent {
            s.break_down(s.lost_redis(&e));
            return;
        }
    }
}

/// Reads results, a batch per call; writes the records and completes the handles.
fn read_loop(s: &Shared) {
    let mut link = s.link();
    let keys = &s.keys;
    let mut cursor = String::from("0-0");
    let mut trimmed = Instant::now();
    let mut writers: HashMap<u32, WorkerRecorder> = HashMap::new();
    let w0 = s.recorder.worker(0);
    loop {
        {
            let mut st = lock(&s.state);
            loop {
                if st.broken.is_some() {
                    return;
                }
                if !st.out.is_empty() {
                    break;
                }
                if st.closing && st.queue.is_empty() {
                    return;
                }
                // Nothing out: nothing to read until the submitter puts something out.
                st = wait_timeout(&s.moved, st, Duration::from_millis(250));
            }
        }
        let got: Result<redis::Value, _> = link.call(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_BATCH)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(keys.results())
                .arg(&cursor)
                .query(c)
        });
        let entries: Vec<Entry> = match got {
            Ok(v) => protocol::streams(&v)
                .into_iter()
                .flat_map(|(_, e)| e)
                .collect(),
            Err(e) => {
                s.break_down(s.lost_redis(&e));
                return;
            }
        };
        if let Some(last) = entries.last() {
            cursor = last.id.clone();
        }
        let mut done = Vec::with_capacity(entries.len());
        {
            let mut st = lock(&s.state);
            for e in &entries {
                let (Some(seq), Some(res)) = (e.seq(), e.get("res")) else {
                    continue;
                };
                let Ok(r) = decode::<TaskResult>(res) else {
                    continue;
                };
                // A result for a job no longer out was handed on already.
                let Some(job) = st.out.remove(&seq) else {
                    continue;
                };
                let worker = if r.reply.is_some() {
                    let next = st.slots.len() as u32 + 1;
                    let key = (r.worker.clone(), r.slot);
                    let n = *st.slots.entry(key).or_insert(next);
                    if n == next {
                        s.recorder.set_capacity(st.slots.len());
                    }
                    n
                } else {
                    0
                };
                done.push((job, r, worker));
            }
        }
        if !done.is_empty() {
            s.moved.notify_all();
        }
        for (job, r, worker) in done {
            let w = writers
                .entry(worker)
                .or_insert_with(|| s.recorder.worker(worker));
            deliver(s, &w0, w, job, r);
        }
        if trimmed.elapsed() > Duration::from_secs(1) {
            trimmed = Instant::now();
            if let Err(e) = super::submit::trim(&mut link, keys, &cursor) {
                s.break_down(s.lost_redis(&e));
                return;
            }
        }
    }
}

/// Writes the records of a job's attempts (lost ones first) and completes its handle.
fn deliver(s: &Shared, w0: &WorkerRecorder, w: &WorkerRecorder, job: Job, r: TaskResult) {
    let Job {
        id,
        items,
        submitted_ns,
        deliver,
        ..
    } = job;
    let started_ns = s.clock(r.start_unix_ns).max(submitted_ns);
    let lost_record = |attempt: u32| {
        let mut rec = TaskRecord::new(id, 0, submitted_ns, started_ns, started_ns);
        rec.attempt = attempt;
        rec.items = items;
        rec.outcome = Outcome::Killed;
        rec
    };
    let write = |w: &WorkerRecorder, rec: TaskRecord| {
        // A panicking record sink must not take the reader down: the handle still completes.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.write(rec)));
    };
    match r.reply {
        Some(reply) => {
            for a in 1..r.attempt {
                write(w0, lost_record(a));
            }
            let mut rec = TaskRecord::new(
                id,
                w.worker(),
                submitted_ns,
                started_ns,
                started_ns.saturating_add(reply.busy_ns),
            );
            rec.attempt = r.attempt;
            rec.items = items;
            rec.cpu_user_ns = reply.cpu_user_ns;
            rec.cpu_sys_ns = reply.cpu_sys_ns;
            rec.cpu_wait_ns = reply.cpu_wait_ns;
            rec.max_rss_bytes = Some(reply.max_rss_bytes);
            rec.host = Some(r.host.clone());
            deliver.deliver(id, Ok(reply), &mut |outcome| {
                let mut rec = rec.clone();
                rec.outcome = outcome;
                write(w, rec);
            });
        }
        None => {
            // Dead: the attempt that found it so did not run; the one before it was the last
            // lost, and its record goes with the error.
            let last_lost = r.attempt.saturating_sub(1).max(1);
            for a in 1..last_lost {
                write(w0, lost_record(a));
            }
            let err = TaskError::WorkerDied {
                id,
                signal: None,
                exit_code: None,
            };
            deliver.deliver(id, Err(err), &mut |_| write(w0, lost_record(last_lost)));
        }
    }
}

impl ClusterPool {
    /// A pool on the Redis at `url` with the default settings.
    pub fn connect(url: &str) -> Result<ClusterPool, ClusterError> {
        ClusterPool::builder().connect(url)
    }

    /// A builder with the defaults: [`DEFAULT_IN_FLIGHT`] jobs out, a 1 s lease, 3 lost
    /// attempts per task, 60 s of patience with Redis.
    pub fn builder() -> ClusterPoolBuilder {
        ClusterPoolBuilder {
            in_flight: DEFAULT_IN_FLIGHT,
            lease: Duration::from_secs(1),
            lost: 3,
            patience: Duration::from_secs(60),
            insecure: false,
            retention: Retention::All,
        }
    }

    /// The run's id: its keys on Redis are `pardo:{ID}:…`.
    pub fn run_id(&self) -> &str {
        &self.shared.keys.run
    }

    /// Runs `f(input)` on a serving worker and returns a handle to its result.
    pub fn submit<F: TaskFn>(&self, f: F, input: F::Input) -> Handle<F::Output> {
        let _ = f;
        delivery::submit_one::<F>(&*self.shared, input)
    }

    /// Applies `f` to every input on the serving workers and yields the results in input
    /// order; lazy and bounded like [`ThreadPool::map`](crate::ThreadPool::map). One input
    /// per task unless [`Map::chunk_size`] says otherwise.
    pub fn map<F, I>(&self, inputs: I, f: F) -> Map<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        let _ = f;
        delivery::map::<F, _>(&*self.shared, inputs.into_iter())
    }

    /// As [`map`](ClusterPool::map), yielding `(task id, result)` in completion order.
    pub fn map_unordered<F, I>(&self, inputs: I, f: F) -> MapUnordered<'_, I::IntoIter, F::Output>
    where
        F: TaskFn,
        I: IntoIterator<Item = F::Input>,
    {
        let _ = f;
        delivery::map_unordered::<F, _>(&*self.shared, inputs.into_iter())
    }

    /// Live counters (submitted, running, done, failed).
    pub fn counters(&self) -> crate::monitor::Counters {
        self.shared.recorder.counters()
    }

    /// The serving slots seen so far: the `worker` number records carry, and
    /// `consumer/slot` (the consumer name is `host-pid-random` unless the worker chose one).
    pub fn worker_names(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = lock(&self.shared.state)
            .slots
            .iter()
            .map(|((name, slot), n)| (*n, format!("{name}/{slot}")))
            .collect();
        v.sort();
        v
    }

    /// Stops the pool and returns the final report; see the type's docs for the two modes.
    pub fn shutdown(self, mode: ShutdownMode) -> Report {
        self.close(mode);
        self.shared.recorder.report()
    }

    fn close(&self, mode: ShutdownMode) {
        let dropped: Vec<Job> = {
            let mut st = lock(&self.shared.state);
            st.closing = true;
            match mode {
                ShutdownMode::Wait => Vec::new(),
                ShutdownMode::CancelPending => st.queue.drain(..).collect(),
            }
        };
        self.shared.moved.notify_all();
        let w0 = self.shared.recorder.worker(0);
        for job in dropped {
            w0.cancelled(job.id, job.submitted_ns, job.items);
            // Dropping the job drops its promise, which completes the handle as cancelled.
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        if threads.is_empty() {
            return;
        }
        crate::pool::join_all_but_current(threads);
        // The run is over: its keys go (a worker still holding one of its entries finds the
        // run gone and drops it). Redis away: the keys stay, nothing waits for them.
        let mut link = Link::new(self.shared.client.clone(), Duration::from_secs(2));
        let _ = protocol::end_run(&mut link, TASK_RUNS, &self.shared.keys);
    }
}

impl Drop for ClusterPool {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The caller is failing: do not make it wait on tasks it can no longer use.
            self.shared
                .break_down("the cluster pool was dropped while its thread panicked".into());
            self.close(ShutdownMode::CancelPending);
        } else {
            self.close(ShutdownMode::Wait);
        }
    }
}

impl Executor for ClusterPool {
    fn kind(&self) -> &'static str {
        "cluster_pool"
    }

    /// The bound on jobs on Redis without a result.
    fn workers(&self) -> usize {
        self.shared.target.load(Ordering::Relaxed)
    }

    /// Moves the bound on jobs on Redis without a result (the serving workers' slots decide
    /// how many run at once).
    fn set_workers(&self, workers: usize) -> Result<(), PoolError> {
        if workers == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        self.shared.target.store(workers, Ordering::Relaxed);
        self.shared.moved.notify_all();
        Ok(())
    }

    fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }
}

impl RunTask for ClusterPool {
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
