//! [`ProcessPoolBuilder`]: the pool's options, and starting the first workers.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::manager::Shared;
use super::{worker, ProcessPool};
use crate::monitor::{available_cores, Recorder, Retention, RunRecord};
use crate::pool::PoolError;
use crate::tune::controller::ControllerConfig;
use crate::tune::steer::{Steerable, Steering, DEFAULT_INTERVAL};

/// How long a new worker has to say hello before it is killed and the start reported failed.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);

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
    auto: Option<ControllerConfig>,
}

impl ProcessPoolBuilder {
    /// The defaults: one worker per available core, the current executable, no limits.
    pub(super) fn defaults() -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            workers: None,
            program: None,
            args: Vec::new(),
            max_tasks_per_worker: None,
            memory_limit: None,
            task_timeout: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            retention: Retention::All,
            auto: None,
        }
    }

    /// Number of worker processes (default: the available parallelism).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The program to start as a worker (default: the current executable). It must call
    /// [`worker_hook`](crate::worker_hook) first thing in `main` and be built from the same code, so that it knows
    /// the same task functions.
    pub fn worker_program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Arguments for the worker program (default: none). The pool adds one argument of its own
    /// after them, the worker marker (`--pardo-worker=…`) that [`worker_hook`](crate::worker_hook)
    /// looks for; a wrapper program (`taskset`, `nice`, …) must pass its last argument on.
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
    /// worker aborts, and the task ends as [`TaskError::Failed`](crate::TaskError::Failed) saying the memory limit was hit;
    /// a replacement worker takes over. The limit counts *virtual* memory, so leave room above
    /// the resident size the task needs (the binary, its libraries and stacks count too).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Kills a task's worker when the task runs longer than `limit`; the task ends as
    /// [`TaskError::TimedOut`](crate::TaskError::TimedOut) and a replacement worker takes over. Default: no limit (as is a
    /// limit too large to be a point in time, such as `Duration::MAX`).
    pub fn task_timeout(mut self, limit: Duration) -> Self {
        self.task_timeout = Some(limit);
        self
    }

    /// How long a new worker may take to start and answer (default 20 s). A limit too large to
    /// be a point in time, such as `Duration::MAX`, means no limit.
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Keeps only the summary, not every record (see [`Retention`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Lets pardo choose the number of worker processes and steer it while tasks run, up to
    /// `max` (see [`ThreadPoolBuilder::auto`](crate::ThreadPoolBuilder::auto) for what the
    /// controller does). Calling `set_workers` later turns the steering off.
    pub fn auto(mut self, max: usize) -> Self {
        self.auto = Some(ControllerConfig::new(available_cores(), max.max(1)));
        self
    }

    /// Automatic worker count with the controller's settings spelled out.
    pub fn auto_with(mut self, config: ControllerConfig) -> Self {
        self.auto = Some(config);
        self
    }

    /// Starts the workers and waits until each has answered.
    pub fn build(self) -> Result<ProcessPool, PoolError> {
        if worker::started_as_worker() {
            return Err(PoolError::InsideWorker);
        }
        let workers = match &self.auto {
            Some(c) => c.cores.clamp(c.min.max(1), c.max.max(1)),
            None => self.workers.unwrap_or_else(available_cores),
        };
        if workers == 0 {
            return Err(PoolError::ZeroWorkers);
        }
        let program = match self.program {
            Some(p) => p,
            None => std::env::current_exe().map_err(|source| PoolError::Spawn {
                worker: 1,
                error: source,
            })?,
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
        let config = Config {
            program,
            args: self.args,
            max_tasks_per_worker: self.max_tasks_per_worker,
            memory_limit: self.memory_limit,
            task_timeout: self.task_timeout,
            start_timeout: self.start_timeout,
        };
        let shared = Arc::new(Shared::new(recorder, config));
        super::manager::resize(&shared, workers)?;
        let steering = match self.auto {
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
        Ok(ProcessPool {
            shared,
            steering: std::sync::Mutex::new(steering),
        })
    }
}

pub(super) struct Config {
    pub(super) program: PathBuf,
    pub(super) args: Vec<OsString>,
    pub(super) max_tasks_per_worker: Option<u64>,
    pub(super) memory_limit: Option<u64>,
    pub(super) task_timeout: Option<Duration>,
    pub(super) start_timeout: Duration,
}

/// The process pool as the steering loop sees it.
struct Steer(Arc<Shared>);

impl Steerable for Steer {
    fn recorder(&self) -> &Recorder {
        &self.0.recorder
    }

    fn live(&self) -> usize {
        self.0.target.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_target(&self, n: usize) -> Result<(), PoolError> {
        super::manager::resize(&self.0, n)
    }

    fn tasks_left(&self) -> Option<u64> {
        self.0.backlog.tasks_left(&self.0.recorder)
    }
}
