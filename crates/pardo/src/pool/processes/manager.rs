//! The parent's side of the pool: the shared job queue, one manager thread per worker slot
//! (its loop, dispatching one job at a time to its worker), and resizing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::builder::Config;
use super::delivery::{finish, Job};
use super::lifecycle::{out_of_memory_line, Exit, Proc, Received};
use super::ProcessPool;
use crate::executor::ShutdownMode;
use crate::monitor::{Recorder, WorkerRecorder};
use crate::pool::PoolError;
use crate::sync::{lock, wait};
use crate::task::TaskError;

/// How many times an idle manager yields and looks for a job before it sleeps.
const SPIN_ROUNDS: usize = 32;

pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    pub(super) more: Condvar,
    /// Workers wanted; managers whose index is at or above it leave.
    pub(super) target: AtomicUsize,
    /// One entry per slot: the manager thread, while it lives.
    pub(super) managers: Mutex<Vec<Option<JoinHandle<()>>>>,
    /// The live worker's pid per slot, for killing on a panicking drop and for tests.
    pub(super) pids: Mutex<Vec<Option<u32>>>,
    pub(super) recorder: Recorder,
    pub(super) config: Config,
    pub(super) stats: Stats,
}

pub(super) struct Queue {
    pub(super) jobs: VecDeque<Job>,
    pub(super) closing: bool,
    /// True while one idle manager polls the queue before sleeping (see `next_job`).
    pub(super) spinner: bool,
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
            }),
            more: Condvar::new(),
            target: AtomicUsize::new(0),
            managers: Mutex::new(Vec::new()),
            pids: Mutex::new(Vec::new()),
            recorder,
            config,
            stats: Stats::default(),
        }
    }

    pub(super) fn push(&self, job: Job) {
        let mut q = lock(&self.queue);
        let spinner_takes_it = q.spinner && q.jobs.is_empty();
        q.jobs.push_back(job);
        drop(q);
        if !spinner_takes_it {
            self.more.notify_one();
        }
    }
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
    /// raised the target again since `next_job` said stop).
    pub(super) fn may_leave(&self, index: usize) -> bool {
        let _managers = lock(&self.managers);
        index >= self.target.load(Ordering::SeqCst) || lock(&self.queue).closing
    }

    pub(super) fn set_pid(&self, index: usize, pid: Option<u32>) {
        if let Some(slot) = lock(&self.pids).get_mut(index) {
            *slot = pid;
        }
    }

    pub(super) fn closing(&self) -> bool {
        lock(&self.queue).closing
    }
}

/// The manager of worker slot `index`: starts the worker, feeds it jobs, replaces it when it
/// dies, is recycled or times out.
pub(super) fn manage(
    shared: Arc<Shared>,
    index: usize,
    started: mpsc::Sender<Result<(), PoolError>>,
) {
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

/// Runs one job on `proc`; returns the worker if it is still fit to serve.
pub(super) fn run_job(
    shared: &Shared,
    w: &WorkerRecorder,
    mut proc: Proc,
    job: Job,
) -> Option<Proc> {
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
pub(super) fn died(
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

impl ProcessPool {
    pub(super) fn resize(&self, n: usize) -> Result<(), PoolError> {
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
