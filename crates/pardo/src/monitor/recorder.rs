//! [`Recorder`]: where every executor writes its [`TaskRecord`]s.
//!
//! Each worker owns a [`WorkerRecorder`]: its records and its running fold over them sit
//! behind a lock that only this worker takes on the hot path, and that a reader takes only when
//! it asks for a report or the records, so the lock is uncontended while tasks run. Live counters
//! are per-worker relaxed atomics padded to a cache line; [`Recorder::counters`] sums them.
//!
//! A record is written *before* the task's handle is completed, so once `wait` returns, the
//! task's record is visible to [`Recorder::records`] and [`Recorder::report`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::clock::{run_queue_wait_ns, ThreadCpu};
use crate::monitor::fold::Accumulator;
use crate::monitor::record::{ConcurrencyChange, RunRecord, Sample, TaskRecord};
use crate::monitor::report::Report;
use crate::sync::lock;
use crate::task::{Outcome, TaskId};

/// Receives every record as it is written: the hook exporters and live views attach to.
/// Called on the worker's thread right after the task ends, so keep it quick.
///
/// A sink that panics is removed from its recorder (it is not called again) and counted in
/// [`Recorder::sink_failures`]; the record it failed on is kept, the task keeps its outcome and
/// the worker lives on.
pub trait RecordSink: Send + Sync {
    /// A task attempt ended.
    fn on_record(&self, record: &TaskRecord) {
        let _ = record;
    }
    /// A sample of the live state was taken (about every 100 ms while the run is sampled).
    fn on_sample(&self, sample: &Sample) {
        let _ = sample;
    }
    /// The concurrency changed, and why.
    fn on_change(&self, change: &ConcurrencyChange) {
        let _ = change;
    }
    /// The executor now runs `workers` workers, from `at_ns` (the steps utilisation is
    /// computed over).
    fn on_capacity(&self, at_ns: u64, workers: usize) {
        let _ = (at_ns, workers);
    }
}

/// How many records a recorder keeps in memory. The summary is exact either way; this bounds
/// only the per-task list behind [`Recorder::records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep every record (the default for library pools).
    All,
    /// Keep none; the summary and sinks still see every one (for runs of millions of tasks).
    SummaryOnly,
}

/// Live counts, summed over workers at the moment of asking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Tasks submitted.
    pub submitted: u64,
    /// Tasks running now.
    pub running: u64,
    /// Tasks that have a record (any outcome).
    pub done: u64,
    /// Records with an outcome other than Ok.
    pub failed: u64,
}

impl Counters {
    /// Submitted and not yet started or dropped.
    pub fn queued(&self) -> u64 {
        self.submitted.saturating_sub(self.done + self.running)
    }
}

/// The shared end of monitoring: cheap to clone, one per run.
///
/// ```
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// pool.map(0..100u64, |x| x + 1).for_each(drop);
/// let rec = pool.recorder();
/// assert_eq!(rec.counters().done, rec.records().len() as u64);
/// ```
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("counters", &self.counters())
            .finish()
    }
}

struct Inner {
    epoch: Instant,
    run: Mutex<RunRecord>,
    enabled: bool,
    retention: Retention,
    next_id: CachePadded<AtomicU64>,
    submitted: CachePadded<AtomicU64>,
    workers: RwLock<Vec<Arc<WorkerLog>>>,
    capacity: Mutex<Vec<(u64, usize)>>,
    samples: Mutex<Vec<Sample>>,
    changes: Mutex<Vec<ConcurrencyChange>>,
    sinks: RwLock<Vec<Arc<dyn RecordSink>>>,
    /// Sinks removed because they panicked.
    sink_failures: AtomicU64,
}

struct WorkerLog {
    running: CachePadded<AtomicU64>,
    done: AtomicU64,
    failed: AtomicU64,
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    records: Vec<TaskRecord>,
    acc: Accumulator,
}

impl Recorder {
    /// A recorder for a new run. `enabled == false` keeps counters but writes no records (used
    /// to measure what monitoring costs).
    pub fn new(run: RunRecord, enabled: bool, retention: Retention) -> Recorder {
        let workers = run.workers;
        Recorder {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                run: Mutex::new(run),
                enabled,
                retention,
                next_id: CachePadded::new(AtomicU64::new(1)),
                submitted: CachePadded::new(AtomicU64::new(0)),
                workers: RwLock::new(Vec::new()),
                capacity: Mutex::new(vec![(0, workers)]),
                samples: Mutex::new(Vec::new()),
                changes: Mutex::new(Vec::new()),
                sinks: RwLock::new(Vec::new()),
                sink_failures: AtomicU64::new(0),
            }),
        }
    }

    /// Nanoseconds since the run began.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant the run began; all `_ns` times count from here.
    pub fn epoch(&self) -> Instant {
        self.inner.epoch
    }

    /// Takes `n` consecutive task ids and counts them as submitted; returns the first.
    pub(crate) fn submit(&self, n: u64) -> TaskId {
        self.inner.submitted.fetch_add(n, Ordering::Relaxed);
        TaskId(self.inner.next_id.fetch_add(n, Ordering::Relaxed))
    }

    /// The writer for worker slot `worker` (from 1). Executors keep one per worker thread.
    /// Slot 0 is for records of tasks that never reached a worker (cancelled while queued).
    pub(crate) fn worker(&self, worker: u32) -> WorkerRecorder {
        // Open this thread's schedstat descriptor now, not inside the first task's measurement.
        let _ = run_queue_wait_ns();
        let index = worker as usize;
        {
            let logs = self.inner.workers.read().unwrap_or_else(|p| p.into_inner());
            if let Some(log) = logs.get(index) {
                return WorkerRecorder {
                    recorder: self.clone(),
                    log: Arc::clone(log),
                    worker,
                };
            }
        }
        let mut logs = self
            .inner
            .workers
            .write()
            .unwrap_or_else(|p| p.into_inner());
        while logs.len() <= index {
            logs.push(Arc::new(WorkerLog {
                running: CachePadded::new(AtomicU64::new(0)),
                done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                book: Mutex::new(Book::default()),
            }));
        }
        WorkerRecorder {
            recorder: self.clone(),
            log: Arc::clone(&logs[index]),
            worker,
        }
    }

    /// Notes that the executor now runs `workers` workers (for utilisation over time).
    pub(crate) fn set_capacity(&self, workers: usize) {
        let at = self.now_ns();
        lock(&self.inner.capacity).push((at, workers));
        {
            let mut run = lock(&self.inner.run);
            run.workers = run.workers.max(workers);
        }
        self.feed_sinks(|s| s.on_capacity(at, workers));
    }

    /// The worker count over the run so far, as `(at_ns, workers)` steps, oldest first; the
    /// first step is the count the run began with.
    pub fn capacity_steps(&self) -> Vec<(u64, usize)> {
        lock(&self.inner.capacity).clone()
    }

    /// Adds a sink that sees every record from now on.
    pub fn add_sink(&self, sink: Arc<dyn RecordSink>) {
        self.inner
            .sinks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }

    /// How many sinks panicked (and were removed for it) so far. The library prints nothing, so
    /// this is where a failing sink shows.
    pub fn sink_failures(&self) -> u64 {
        self.inner.sink_failures.load(Ordering::Relaxed)
    }

    /// Calls `call` on every sink; removes and counts those that panic, so one faulty
    /// exporter can neither kill the worker thread under it nor fail every later task.
    fn feed_sinks(&self, call: impl Fn(&dyn RecordSink)) {
        let failed: Vec<Arc<dyn RecordSink>> = {
            let sinks = self.inner.sinks.read().unwrap_or_else(|p| p.into_inner());
            if sinks.is_empty() {
                return;
            }
            sinks
                .iter()
                .filter(|s| catch_unwind(AssertUnwindSafe(|| call(s.as_ref()))).is_err())
                .cloned()
                .collect()
        };
        if failed.is_empty() {
            return;
        }
        let mut sinks = self.inner.sinks.write().unwrap_or_else(|p| p.into_inner());
        for bad in &failed {
            // Another worker may have removed the same sink first: count it once.
            if let Some(at) = sinks.iter().position(|s| Arc::ptr_eq(s, bad)) {
                sinks.remove(at);
                self.inner.sink_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Live counts.
    pub fn counters(&self) -> Counters {
        let logs = self.inner.workers.read().unwrap_or_else(|p| p.into_inner());
        let mut c = Counters {
            submitted: self.inner.submitted.load(Ordering::Relaxed),
            ..Counters::default()
        };
        for log in logs.iter() {
            c.running += log.running.load(Ordering::Relaxed);
            c.done += log.done.load(Ordering::Relaxed);
            c.failed += log.failed.load(Ordering::Relaxed);
        }
        c
    }

    /// A [`Sample`] of the live counters now, with the concurrency asked for and in effect;
    /// the caller adds the rest and keeps it with [`Recorder::push_sample`].
    pub(crate) fn sample_counters(&self, target_workers: u64, live_workers: u64) -> Sample {
        let c = self.counters();
        Sample {
            at_ns: self.now_ns(),
            running: c.running,
            queued: c.queued(),
            done: c.done,
            target_workers,
            live_workers,
            ..Sample::default()
        }
    }

    /// Keeps a sample in the run's time series.
    pub(crate) fn push_sample(&self, s: Sample) {
        lock(&self.inner.samples).push(s);
        self.feed_sinks(|sink| sink.on_sample(&s));
    }

    /// Notes a change of concurrency in the run's records.
    pub(crate) fn note_change(&self, from: u64, to: u64, reason: String) {
        let change = ConcurrencyChange {
            at_ns: self.now_ns(),
            from,
            to,
            reason,
        };
        lock(&self.inner.changes).push(change.clone());
        self.feed_sinks(|s| s.on_change(&change));
    }

    /// The concurrency changes made so far, oldest first.
    pub fn changes(&self) -> Vec<ConcurrencyChange> {
        lock(&self.inner.changes).clone()
    }

    /// The samples taken so far, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.inner.samples).clone()
    }

    /// A copy of the run's description.
    pub fn run(&self) -> RunRecord {
        lock(&self.inner.run).clone()
    }

    /// Adds a setting to the run's description (`("chunk", "64")`).
    pub fn set_setting(&self, key: &str, value: &str) {
        lock(&self.inner.run)
            .settings
            .push((key.to_owned(), value.to_owned()));
    }

    /// Every record kept so far, ordered by task id then attempt.
    pub fn records(&self) -> Vec<TaskRecord> {
        let logs = self.inner.workers.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<TaskRecord> = Vec::new();
        for log in logs.iter() {
            all.extend(lock(&log.book).records.iter().cloned());
        }
        all.sort_by_key(|r| (r.id, r.attempt));
        all
    }

    /// The sums a steering loop reads at every sample (busy, CPU and run-queue wait of the
    /// tasks finished so far), without the merge of every worker's histograms that a
    /// [`report`](Self::report) makes: at hundreds of workers and a sample every few
    /// milliseconds, that merge cost more than the tasks.
    pub(crate) fn totals(&self) -> Totals {
        let logs = self.inner.workers.read().unwrap_or_else(|p| p.into_inner());
        let (mut busy, mut cpu, mut wait, mut measured) = (0u128, 0u128, 0u128, false);
        for log in logs.iter() {
            let book = lock(&log.book);
            busy += book.acc.busy_ns;
            cpu += book.acc.cpu_user_ns + book.acc.cpu_sys_ns;
            wait += book.acc.cpu_wait_ns;
            measured |= book.acc.measured_wall_ns > 0;
        }
        let ns = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        Totals {
            busy_ns: ns(busy),
            cpu_ns: ns(cpu),
            cpu_wait_ns: measured.then(|| ns(wait)),
        }
    }

    /// The summary and findings over every record written so far.
    pub fn report(&self) -> Report {
        let mut acc = Accumulator::default();
        {
            let logs = self.inner.workers.read().unwrap_or_else(|p| p.into_inner());
            for log in logs.iter() {
                acc.merge(&lock(&log.book).acc);
            }
        }
        let steps = lock(&self.inner.capacity).clone();
        let mut report = Report::from_accumulator(self.run(), &acc, &steps);
        report.concurrency = self.changes();
        report
    }
}

/// What [`Recorder::totals`] sums, as a [`Report`] has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Wall time of the finished tasks.
    pub busy_ns: u64,
    /// CPU time (user and system) of the finished tasks.
    pub cpu_ns: u64,
    /// Their wait for a core, where measured.
    pub cpu_wait_ns: Option<u64>,
}

/// One worker's writer. Not shared between threads on the hot path.
#[derive(Clone)]
pub(crate) struct WorkerRecorder {
    recorder: Recorder,
    log: Arc<WorkerLog>,
    worker: u32,
}

impl std::fmt::Debug for WorkerRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRecorder")
            .field("worker", &self.worker)
            .finish()
    }
}

/// What a worker reads when a task starts: the clock and the thread's CPU time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meter {
    started_ns: u64,
    cpu: ThreadCpu,
}

impl WorkerRecorder {
    /// The worker slot, from 1.
    pub(crate) fn worker(&self) -> u32 {
        self.worker
    }

    /// The shared recorder.
    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Marks this worker's slot as running a task (or not) in the live counters, for executors
    /// that measure a task themselves and then [`write`](WorkerRecorder::write) its record.
    pub(crate) fn set_running(&self, on: bool) {
        self.log.running.store(u64::from(on), Ordering::Relaxed);
    }

    /// Marks a task running on this worker and reads its start time and the thread's CPU clock.
    pub(crate) fn begin(&self) -> Meter {
        self.log.running.store(1, Ordering::Relaxed);
        // Wall clock first, CPU clock second (and the reverse in `finish`): the CPU interval
        // then lies inside the wall interval, so a task's CPU time never exceeds its wall time
        // by the cost of the clock reads.
        let started_ns = self.recorder.now_ns();
        let cpu = if self.recorder.inner.enabled {
            ThreadCpu::now()
        } else {
            ThreadCpu::default()
        };
        Meter { started_ns, cpu }
    }

    /// Ends a task begun with [`WorkerRecorder::begin`] on this same thread and writes its record.
    pub(crate) fn finish(
        &self,
        meter: Meter,
        id: TaskId,
        submitted_ns: u64,
        items: u32,
        outcome: Outcome,
    ) {
        self.log.running.store(0, Ordering::Relaxed);
        if !self.recorder.inner.enabled {
            self.count(outcome);
            return;
        }
        let cpu = ThreadCpu::now();
        let finished_ns = self.recorder.now_ns();
        let mut r = TaskRecord::new(id, self.worker, submitted_ns, meter.started_ns, finished_ns);
        r.items = items;
        (r.cpu_user_ns, r.cpu_sys_ns) = cpu.since(&meter.cpu);
        r.cpu_wait_ns = cpu.waited_since(&meter.cpu);
        r.outcome = outcome;
        self.write(r);
    }

    /// Writes a record for a task that never ran (cancelled or dropped while queued).
    pub(crate) fn cancelled(&self, id: TaskId, submitted_ns: u64, items: u32) {
        let now = self.recorder.now_ns();
        let mut r = TaskRecord::new(id, self.worker, submitted_ns, now, now);
        r.items = items;
        r.outcome = Outcome::Cancelled;
        self.write(r);
    }

    /// Writes a record measured elsewhere (a worker process, a command).
    pub(crate) fn write(&self, record: TaskRecord) {
        let outcome = record.outcome;
        if self.recorder.inner.enabled {
            self.recorder.feed_sinks(|s| s.on_record(&record));
            let mut book = lock(&self.log.book);
            book.acc.add(&record);
            if self.recorder.inner.retention == Retention::All {
                book.records.push(record);
            }
        }
        self.count(outcome);
    }

    fn count(&self, outcome: Outcome) {
        if !outcome.is_ok() {
            self.log.failed.fetch_add(1, Ordering::Relaxed);
        }
        // Release pairs with readers that see `done` and then look for the record.
        self.log.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_the_reports_sums_over_every_worker() {
        let rec = Recorder::new(RunRecord::now("test", 2), true, Retention::SummaryOnly);
        let workers = [rec.worker(1), rec.worker(2), rec.worker(3)];
        for i in 0..30u64 {
            let id = rec.submit(1);
            let w = &workers[(i % 3) as usize];
            let mut r = TaskRecord::new(id, w.worker(), i, i + 2, i + 2 + i * 5);
            r.cpu_user_ns = i * 3;
            r.cpu_sys_ns = i;
            r.cpu_wait_ns = (i % 2 == 0).then_some(i * 2);
            w.write(r);
        }
        let report = rec.report();
        let totals = rec.totals();
        assert_eq!(totals.busy_ns, report.busy_ns);
        assert_eq!(totals.cpu_ns, report.cpu_user_ns + report.cpu_sys_ns);
        assert_eq!(totals.cpu_wait_ns, report.cpu_wait_ns);
        assert!(totals.cpu_wait_ns.is_some_and(|w| w > 0));
        assert_eq!(
            Recorder::new(RunRecord::now("test", 2), true, Retention::SummaryOnly).totals(),
            Totals::default()
        );
    }
}
