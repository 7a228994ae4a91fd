//! The parent's side of the pool: the shared job queue, one manager thread per worker slot
//! (its loop, dispatching one job at a time to its worker), and resizing.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::builder::Config;
use super::delivery::{fail_unrun, finish, Job, Jobs};
use super::lifecycle::{out_of_memory_line, Exit, Proc, Received, Tracked};
use super::ProcessPool;
use crate::monitor::{Recorder, WorkerRecorder};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::{panic_message, TaskError};

/// How many times an idle manager yields and looks for a job before it sleeps.
const SPIN_ROUNDS: usize = 32;

pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    pub(super) more: Condvar,
    /// Workers wanted; managers whose index is at or above it leave.
    pub(super) target: AtomicUsize,
    pub(super) managers: Mutex<Managers>,
    /// Held for the whole of a resize, so two resizes never interleave their rollbacks.
    resizing: Mutex<()>,
    /// Every worker process started and not yet reaped, for killing on a panicking drop and
    /// for [`ProcessPool::worker_pids`].
    pub(super) workers: Mutex<Vec<Arc<Tracked>>>,
    pub(super) recorder: Recorder,
    pub(super) config: Config,
    pub(super) stats: Stats,
    /// Inputs the pool's maps hold, and the window they follow (see `pool/map.rs`).
    pub(super) backlog: crate::pool::map::Backlog,
}

/// The manager threads. A manager that decides to leave moves its handle from `active` to
/// `leaving` in the same critical section, so a resize never mistakes a manager on its way out
/// for one that still serves its slot.
#[derive(Default)]
pub(super) struct Managers {
    /// One entry per slot: the manager serving it, if any.
    pub(super) active: Vec<Option<JoinHandle<()>>>,
    /// Managers that left their slot and may still be retiring their worker.
    pub(super) leaving: Vec<JoinHandle<()>>,
}

pub(super) struct Queue {
    pub(super) jobs: VecDeque<Job>,
    pub(super) closing: bool,
    /// True while one idle manager polls the queue before sleeping (see `next_job`).
    pub(super) spinner: bool,
    /// Set when a manager thread died of a panic: why. The pool then fails every job instead
    /// of queueing it for managers that may no longer exist.
    pub(super) broken: Option<String>,
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) started: AtomicU64,
    pub(super) recycled: AtomicU64,
    pub(super) died: AtomicU64,
    pub(super) timed_out: AtomicU64,
}

impl Shared {
    pub(super) fn new(recorder: Recorder, config: Config) -> Shared {
        Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closing: false,
                spinner: false,
                broken: None,
            }),
            more: Condvar::new(),
            target: AtomicUsize::new(0),
            managers: Mutex::new(Managers::default()),
            resizing: Mutex::new(()),
            workers: Mutex::new(Vec::new()),
            recorder,
            config,
            stats: Stats::default(),
            backlog: Default::default(),
        }
    }
}

impl Jobs for Shared {
    fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    fn target(&self) -> &AtomicUsize {
        &self.target
    }

    fn backlog(&self) -> &crate::pool::map::Backlog {
        &self.backlog
    }

    fn push(&self, job: Job) {
        let mut q = lock(&self.queue);
        if let Some(why) = &q.broken {
            let message = broken_message(why);
            drop(q);
            fail_unrun(&self.recorder, job, message);
            return;
        }
        let spinner_takes_it = q.spinner && q.jobs.is_empty();
        q.jobs.push_back(job);
        drop(q);
        if !spinner_takes_it {
            self.more.notify_one();
        }
    }
}

impl Shared {
    /// The next job for the manager of slot `index`; `None` when it should stop.
    pub(super) fn next_job(&self, index: usize) -> Option<Job> {
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
    /// raised the target again since `next_job` said stop); a manager that leaves gives up
    /// its slot in the same critical section.
    fn may_leave(&self, index: usize) -> bool {
        let mut managers = lock(&self.managers);
        let leave = index >= self.target.load(Ordering::SeqCst) || lock(&self.queue).closing;
        if leave {
            vacate(&mut managers, index);
        }
        leave
    }

    pub(super) fn register(&self, worker: &Arc<Tracked>) {
        let mut workers = lock(&self.workers);
        // Workers reaped on an unwinding path could not deregister: forget them here.
        workers.retain(|w| !w.is_reaped());
        workers.push(Arc::clone(worker));
    }

    pub(super) fn deregister(&self, worker: &Arc<Tracked>) {
        lock(&self.workers).retain(|w| !Arc::ptr_eq(w, worker));
    }

    fn closing(&self) -> bool {
        lock(&self.queue).closing
    }

    /// A manager died of a panic (a bug in pardo, or in a record sink): fail every queued job
    /// and every later one, so no handle waits for a manager that is gone.
    fn break_down(&self, why: String) {
        let jobs: Vec<Job> = {
            let mut q = lock(&self.queue);
            q.broken.get_or_insert(why.clone());
            q.jobs.drain(..).collect()
        };
        self.more.notify_all();
        for job in jobs {
            fail_unrun(&self.recorder, job, broken_message(&why));
        }
    }
}

/// The calling manager gives up slot `index`, so that a resize from now on starts a new one.
fn vacate(managers: &mut Managers, index: usize) {
    let me = std::thread::current().id();
    if let Some(slot) = managers.active.get_mut(index) {
        if slot.as_ref().is_some_and(|t| t.thread().id() == me) {
            if let Some(t) = slot.take() {
                managers.leaving.push(t);
            }
        }
    }
}

fn broken_message(why: &str) -> String {
    format!("the process pool stopped after one of its manager threads panicked: {why}")
}

/// The manager of worker slot `index`: serves it, and if it ever panics, makes sure no handle
/// is left waiting on it.
pub(super) fn manage(
    shared: Arc<Shared>,
    index: usize,
    started: mpsc::Sender<Result<(), PoolError>>,
) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| serve(&shared, index, started))) {
        shared.break_down(panic_message(payload.as_ref()));
    }
}

/// Starts the worker, feeds it jobs, replaces it when it dies, is recycled or times out.
fn serve(shared: &Shared, index: usize, started: mpsc::Sender<Result<(), PoolError>>) {
    let slot = index as u32 + 1;
    let w = shared.recorder.worker(slot);
    let mut live = match Proc::start(shared, index) {
        Ok(p) => {
            let _ = started.send(Ok(()));
            Some(p)
        }
        Err(e) => {
            // Give up the slot before saying so: a resize that follows must not take this
            // ending thread for the slot's manager.
            vacate(&mut lock(&shared.managers), index);
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
        w.set_running(true);
        let proc = match live.take() {
            Some(p) => p,
            None => match Proc::start(shared, index) {
                Ok(p) => p,
                Err(e) => {
                    let started_ns = shared.recorder.now_ns();
                    let err = TaskError::Failed {
                        id: job.id,
                        message: e.to_string(),
                    };
                    w.set_running(false);
                    finish(&w, job, started_ns, Err(err), Exit::default());
                    continue;
                }
            },
        };
        live = run_job(shared, &w, proc, job);
    }
    if let Some(p) = live {
        p.retire(shared);
    }
}

/// What became of a worker after a job.
enum After {
    /// It serves on.
    Serves(Proc),
    /// It is gone; its replacement was spawned already (so it is counted by the time the
    /// job's result is seen) and still has to say hello.
    Replaced(Option<super::lifecycle::Starting>),
}

/// Runs one job on `proc`; returns the worker fit to serve the next one, if any.
fn run_job(shared: &Shared, w: &WorkerRecorder, proc: Proc, job: Job) -> Option<Proc> {
    match attempt(shared, w, proc, job) {
        After::Serves(p) => Some(p),
        After::Replaced(Some(starting)) => starting.ready(shared).ok(),
        After::Replaced(None) => None,
    }
}

/// Spawns the replacement for a worker that is gone, unless the pool is closing.
fn replacement(shared: &Shared, index: usize) -> Option<super::lifecycle::Starting> {
    if shared.closing() {
        return None;
    }
    Proc::spawn(shared, index).ok()
}

fn attempt(shared: &Shared, w: &WorkerRecorder, mut proc: Proc, job: Job) -> After {
    let started_ns = shared.recorder.now_ns();
    let index = proc.index();
    if proc.send(&job).is_err() {
        // The worker died while idle (killed from outside): the job never reached it, so it
        // goes to a fresh worker — the one case where a job is sent twice, and it ran zero times.
        let _ = proc.reap(shared);
        shared.stats.died.fetch_add(1, Ordering::Relaxed);
        proc = match Proc::start(shared, index) {
            Ok(p) => p,
            Err(e) => {
                let err = TaskError::Failed {
                    id: job.id,
                    message: e.to_string(),
                };
                w.set_running(false);
                finish(w, job, started_ns, Err(err), Exit::default());
                return After::Replaced(None);
            }
        };
        if proc.send(&job).is_err() {
            return died(shared, w, proc, job, started_ns);
        }
    }
    match proc.receive(shared.config.task_timeout) {
        Received::Reply(reply) => {
            proc.tasks += 1;
            w.set_running(false);
            finish(w, job, started_ns, Ok(reply), Exit::default());
            if shared
                .config
                .max_tasks_per_worker
                .is_some_and(|max| proc.tasks >= max)
            {
                proc.retire(shared);
                shared.stats.recycled.fetch_add(1, Ordering::Relaxed);
                return After::Replaced(None);
            }
            After::Serves(proc)
        }
        Received::Ended => died(shared, w, proc, job, started_ns),
        Received::TimedOut(after) => {
            proc.kill();
            let exit = proc.reap(shared);
            shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
            let next = replacement(shared, index);
            let err = TaskError::TimedOut { id: job.id, after };
            w.set_running(false);
            finish(w, job, started_ns, Err(err), exit);
            After::Replaced(next)
        }
    }
}

/// The worker ended under `job`: reap it, explain why, fail the job alone.
fn died(shared: &Shared, w: &WorkerRecorder, mut proc: Proc, job: Job, started_ns: u64) -> After {
    let exit = proc.reap(shared);
    shared.stats.died.fetch_add(1, Ordering::Relaxed);
    let next = replacement(shared, proc.index());
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
    w.set_running(false);
    finish(w, job, started_ns, Err(err), exit);
    After::Replaced(next)
}

impl ProcessPool {
    /// Sets the number of workers; see [`resize`].
    pub(super) fn resize(&self, n: usize) -> Result<(), PoolError> {
        resize(&self.shared, n)
    }
}

/// Sets the number of workers. Growing waits until every new worker has said hello; if one
/// cannot start, the pool goes back to its previous size and the error is returned.
/// Shrinking returns at once: the managers above the new size leave after their current job
/// and retire their workers.
pub(super) fn resize(s: &Arc<Shared>, n: usize) -> Result<(), PoolError> {
    if n == 0 {
        return Err(PoolError::ZeroWorkers);
    }
    let _one_at_a_time = lock(&s.resizing);
    if let Some(why) = &lock(&s.queue).broken {
        return Err(PoolError::WorkerStart {
            worker: 1,
            reason: broken_message(why),
        });
    }
    let mut waiting = Vec::new();
    let mut spawn_error = None;
    let previous = {
        let mut managers = lock(&s.managers);
        let previous = s.target.swap(n, Ordering::SeqCst);
        managers.leaving.retain(|t| !t.is_finished());
        if managers.active.len() < n {
            managers.active.resize_with(n, || None);
        }
        for (index, slot) in managers.active.iter_mut().enumerate().take(n) {
            if slot.as_ref().is_some_and(|m| !m.is_finished()) {
                continue;
            }
            let (tx, rx) = mpsc::channel();
            let shared = Arc::clone(s);
            match std::thread::Builder::new()
                .name(format!("pardo-proc-{}", index + 1))
                .spawn(move || manage(shared, index, tx))
            {
                Ok(thread) => {
                    *slot = Some(thread);
                    waiting.push((index, rx));
                }
                Err(source) => {
                    spawn_error = Some(PoolError::Spawn {
                        worker: index + 1,
                        error: source,
                    });
                    break;
                }
            }
        }
        previous
    };
    // Managers above the new target may be waiting for work; wake them so they leave.
    s.more.notify_all();
    let mut first_error = spawn_error;
    for (index, rx) in waiting {
        let reply = rx.recv().unwrap_or_else(|_| {
            Err(PoolError::WorkerStart {
                worker: index + 1,
                reason: "its manager thread stopped before the worker started".to_owned(),
            })
        });
        if let Err(e) = reply {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => {
            // Back to the previous size: the new managers that did start leave again.
            {
                let _managers = lock(&s.managers);
                s.target.store(previous, Ordering::SeqCst);
            }
            s.more.notify_all();
            Err(e)
        }
        None => {
            s.recorder.set_capacity(n);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::delivery::OneTask;
    use super::super::lifecycle::tests::shared_for;
    use super::*;
    use crate::handle::{Handle, Promise};

    fn job(shared: &Shared) -> (Job, Handle<u64>) {
        let id = shared.recorder.submit(1);
        let (promise, handle) = Promise::new(id);
        let job = Job {
            id,
            items: 1,
            submitted_ns: 0,
            name: "t::Square",
            inputs: vec![vec![3]],
            deliver: Box::new(OneTask {
                promise,
                name: "t::Square",
            }),
        };
        (job, handle)
    }

    #[test]
    fn a_dead_manager_fails_every_pending_and_later_job() {
        let shared = shared_for("/bin/true", &[]);
        let queued: Vec<Handle<u64>> = (0..3)
            .map(|_| {
                let (j, h) = job(&shared);
                shared.push(j);
                h
            })
            .collect();
        shared.break_down("boom".to_owned());
        let (later, late) = job(&shared);
        shared.push(later);
        for h in queued.into_iter().chain([late]) {
            let err = h.wait().unwrap_err();
            assert!(matches!(err, TaskError::Failed { .. }), "{err}");
            assert!(err.to_string().contains("boom"), "{err}");
        }
        let records = shared.recorder.records();
        assert_eq!(records.len(), 4, "one record per job");
    }
}
