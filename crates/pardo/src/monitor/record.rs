//! The data model: one [`TaskRecord`] per attempt of a task, one [`RunRecord`] per run, and a
//! time series of [`Sample`]s. Every executor fills these the same way; every report, export and
//! finding is computed from them and from nothing else.
//!
//! Times are nanoseconds since the run started, on the monotonic clock, so records from threads,
//! worker processes and commands line up on one axis. CPU times are nanoseconds of CPU.

use serde::{Deserialize, Serialize};

use crate::task::{Outcome, TaskId};

/// One attempt of one task, as measured.
///
/// For `map` over tiny items the thread pool runs several consecutive items as one batch and
/// writes one record for the batch: `id` is the first item's sequence number and `items` says how
/// many there were. Items measured at 10 µs or more are never batched, so they always have a
/// record of their own. Every other record has `items == 1`.
///
/// Field by field (also the JSON and CSV column names):
/// - `id`: sequence number in the run, from 1 (GNU parallel's `{#}`);
/// - `attempt`: 1 for the first try, 2 for the first retry, …;
/// - `items`: how many inputs this record covers (see above);
/// - `input`: a short display form of the input, empty when the executor has none;
/// - `worker`: the slot that ran it, from 1 (GNU parallel's `{%}`);
/// - `submitted_ns`, `started_ns`, `finished_ns`: since the run began; a cancelled task has
///   `started_ns == finished_ns`, the moment it was dropped;
/// - `cpu_user_ns`, `cpu_sys_ns`: CPU used (thread CPU clock for in-process tasks, `wait4`
///   rusage of the process and its children for processes). The sum is exact; for in-process
///   tasks the split is the system share the kernel accounted to the worker thread over about
///   its last millisecond of CPU (the kernel samples it per tick, so a shorter task has no split
///   of its own);
/// - `cpu_wait_ns`: time the task was ready to run but waited for a core (the scheduler's
///   run-queue delay, from `/proc/thread-self/schedstat`), where measured — it tells a CPU-bound
///   task on a crowded machine from one that waits on I/O;
/// - `max_rss_bytes`: peak resident memory, for processes only;
/// - `exit_code`, `signal`: how a process ended, for processes only;
/// - `output_bytes`: bytes the task wrote to stdout and stderr, for commands only;
/// - `outcome`: see [`Outcome`];
/// - `host`: the machine that ran it, for runs spread over several (`--cluster`); `None`
///   (JSON `null`, an empty CSV cell) when the run stayed on this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskRecord {
    /// Sequence number in the run, from 1.
    pub id: TaskId,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub attempt: u32,
    /// How many inputs this record covers; 1 except for batched `map` items.
    pub items: u32,
    /// A short display form of the input; empty when the executor has none.
    pub input: String,
    /// The worker slot that ran it, from 1.
    pub worker: u32,
    /// When the task was submitted, in ns since the run began.
    pub submitted_ns: u64,
    /// When it started running.
    pub started_ns: u64,
    /// When it finished.
    pub finished_ns: u64,
    /// User CPU time it used.
    pub cpu_user_ns: u64,
    /// System CPU time it used.
    pub cpu_sys_ns: u64,
    /// Time spent ready to run but waiting for a core, where measured.
    pub cpu_wait_ns: Option<u64>,
    /// Peak resident memory in bytes (processes only).
    pub max_rss_bytes: Option<u64>,
    /// Exit code (processes only).
    pub exit_code: Option<i32>,
    /// Terminating signal (processes only).
    pub signal: Option<i32>,
    /// Bytes written to stdout and stderr (commands only).
    pub output_bytes: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The host that ran it, when the run spread over several machines.
    #[serde(default)]
    pub host: Option<String>,
}

impl TaskRecord {
    /// A record with the given id and timing and every other field empty; executors fill in the
    /// rest. Handy for tests that feed synthetic records to a summary.
    ///
    /// ```
    /// use pardo::{TaskId, monitor::TaskRecord};
    /// let r = TaskRecord::new(TaskId(1), 1, 0, 10, 30);
    /// assert_eq!(r.wall_ns(), 20);
    /// assert_eq!(r.queue_wait_ns(), 10);
    /// ```
    pub fn new(
        id: TaskId,
        worker: u32,
        submitted_ns: u64,
        started_ns: u64,
        finished_ns: u64,
    ) -> Self {
        TaskRecord {
            id,
            attempt: 1,
            items: 1,
            input: String::new(),
            worker,
            submitted_ns,
            started_ns,
            finished_ns,
            cpu_user_ns: 0,
            cpu_sys_ns: 0,
            cpu_wait_ns: None,
            max_rss_bytes: None,
            exit_code: None,
            signal: None,
            output_bytes: None,
            outcome: Outcome::Ok,
            host: None,
        }
    }

    /// Time spent running.
    pub fn wall_ns(&self) -> u64 {
        self.finished_ns.saturating_sub(self.started_ns)
    }

    /// Time spent queued before a worker took it.
    pub fn queue_wait_ns(&self) -> u64 {
        self.started_ns.saturating_sub(self.submitted_ns)
    }

    /// User plus system CPU time.
    pub fn cpu_ns(&self) -> u64 {
        self.cpu_user_ns + self.cpu_sys_ns
    }

    /// True when the task actually ran (it was not cancelled while queued).
    pub fn ran(&self) -> bool {
        self.outcome != Outcome::Cancelled
    }
}

/// What a run was: when and where it ran and with which settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// What ran it: `thread_pool`, `process_pool`, `async_pool`, `command`.
    pub executor: String,
    /// Wall-clock start of the run, in ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The host name.
    pub host: String,
    /// Cores available to this process when the run began.
    pub cores: usize,
    /// The pardo version that measured it.
    pub pardo_version: String,
    /// Workers (concurrency) when the run began.
    pub workers: usize,
    /// Free-form settings worth keeping beside the numbers (`-j`, chunk size, …).
    pub settings: Vec<(String, String)>,
}

impl RunRecord {
    /// A run record for `executor` with `workers`, stamped now with this host and machine.
    ///
    /// ```
    /// let run = pardo::monitor::RunRecord::now("thread_pool", 4);
    /// assert!(run.cores >= 1);
    /// assert_eq!(run.workers, 4);
    /// ```
    pub fn now(executor: &str, workers: usize) -> Self {
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        RunRecord {
            executor: executor.to_owned(),
            started_unix_ms,
            host: host_name(),
            cores: available_cores(),
            pardo_version: env!("CARGO_PKG_VERSION").to_owned(),
            workers,
            settings: Vec::new(),
        }
    }
}

/// The live state of a run at one moment, taken about every 100 ms while something samples it
/// (the concurrency controller does; see [`tune::steer`](crate::tune::steer)).
///
/// Field by field (also the JSON names): `at_ns` since the run began; `running`, `queued`,
/// `done` (tasks with a record, any outcome) from the live counters; `target_workers` (the
/// concurrency asked for) and `live_workers` (the concurrency in effect); `task_cpu_ns`, CPU
/// used by finished tasks so far; `machine_busy` (0–1, the whole machine's CPU since the
/// previous sample, from `/proc/stat`), `mem_available_bytes` (`/proc/meminfo`) and `load_avg`
/// (one minute, `/proc/loadavg`), each `None` where it could not be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sample {
    /// When, in ns since the run began.
    pub at_ns: u64,
    /// Tasks running.
    pub running: u64,
    /// Tasks queued and not started.
    pub queued: u64,
    /// Tasks finished (any outcome).
    pub done: u64,
    /// The concurrency the executor was asked to run at.
    pub target_workers: u64,
    /// The concurrency in effect (workers alive, or slots open).
    #[serde(default)]
    pub live_workers: u64,
    /// CPU used by finished tasks so far.
    #[serde(default)]
    pub task_cpu_ns: u64,
    /// The machine's CPU busy fraction since the previous sample.
    #[serde(default)]
    pub machine_busy: Option<f64>,
    /// Memory available on the machine.
    #[serde(default)]
    pub mem_available_bytes: Option<u64>,
    /// One-minute load average.
    #[serde(default)]
    pub load_avg: Option<f64>,
}

/// A change of concurrency made while the run went on: by the controller, or by a caller of
/// `set_workers`. Part of the run's records, so reports can say what was chosen and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConcurrencyChange {
    /// When, in ns since the run began.
    pub at_ns: u64,
    /// Concurrency before.
    pub from: u64,
    /// Concurrency after.
    pub to: u64,
    /// Why, in a few words ("throughput still rising").
    pub reason: String,
}

/// Cores this process may use (the affinity mask and cgroup quota included), at least 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// This machine's host name (`gethostname`), or `unknown`.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::from("unknown");
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
