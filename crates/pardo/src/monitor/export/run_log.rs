//! [`RunLog`]: everything recorded about one run in one value — the run's description, every
//! task record, the samples, the concurrency changes and capacity steps, and the tails of failed
//! tasks' stderr. The trace and the HTML report are drawn from it, whether it was taken from a
//! live [`Recorder`] or read back from a JSON Lines file.

use serde::{Deserialize, Serialize};

use crate::monitor::fold::Accumulator;
use crate::monitor::{ConcurrencyChange, Recorder, Report, RunRecord, Sample, TaskRecord};
use crate::task::TaskId;

/// How much of a failed task's stderr is kept: its last bytes, enough for the error a program
/// prints before it exits, small enough that many failures do not bloat a report.
pub const STDERR_TAIL_BYTES: usize = 2048;

/// The end of one failed attempt's stderr.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StderrTail {
    /// The task.
    pub id: TaskId,
    /// Which attempt.
    pub attempt: u32,
    /// The last [`STDERR_TAIL_BYTES`] bytes (lossily decoded as UTF-8).
    pub tail: String,
}

impl StderrTail {
    /// The tail of `stderr` for task `id`, attempt `attempt`, cut at a character boundary.
    ///
    /// ```
    /// use pardo::{TaskId, monitor::export::StderrTail};
    /// let t = StderrTail::of(TaskId(3), 1, b"line one\nfatal: no such file\n");
    /// assert!(t.tail.ends_with("no such file\n"));
    /// ```
    pub fn of(id: TaskId, attempt: u32, stderr: &[u8]) -> StderrTail {
        let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
        let text = String::from_utf8_lossy(&stderr[start..]);
        // A cut inside a multi-byte character decodes to U+FFFD at the front: drop it.
        let tail = text.trim_start_matches('\u{FFFD}').to_owned();
        StderrTail { id, attempt, tail }
    }
}

/// One run's records, samples and changes, from a live recorder or a saved JSON Lines file.
///
/// ```
/// use pardo::monitor::export::RunLog;
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// pool.map(0..10u64, |x| x + 1).for_each(drop);
/// let log = RunLog::from_recorder(pool.recorder());
/// // Tiny items may share a record (a batch), so count items, not records.
/// assert_eq!(log.records.iter().map(|r| u64::from(r.items)).sum::<u64>(), 10);
/// assert_eq!(log.report().tasks, pool.report().tasks);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunLog {
    /// The run's description (`None` only for an empty or headless file).
    pub run: Option<RunRecord>,
    /// Every task attempt, in the order written.
    pub records: Vec<TaskRecord>,
    /// The live state over time, oldest first.
    pub samples: Vec<Sample>,
    /// Changes of concurrency, oldest first.
    pub changes: Vec<ConcurrencyChange>,
    /// Worker count steps after the start, `(at_ns, workers)`, oldest first.
    pub capacity: Vec<(u64, usize)>,
    /// Tails of failed attempts' stderr, where the executor captured them.
    pub stderr: Vec<StderrTail>,
    /// The summary written when the run ended; `None` when it did not end cleanly.
    pub summary: Option<Report>,
}

impl RunLog {
    /// Everything `recorder` holds now. Records are there only when it keeps them
    /// ([`Retention::All`](crate::monitor::Retention::All)).
    pub fn from_recorder(recorder: &Recorder) -> RunLog {
        let steps = recorder.capacity_steps();
        RunLog {
            run: Some(recorder.run()),
            records: recorder.records(),
            samples: recorder.samples(),
            changes: recorder.changes(),
            // The first step is the run's starting count, which the run record carries.
            capacity: steps.into_iter().skip(1).collect(),
            stderr: Vec::new(),
            summary: None,
        }
    }

    /// The run's description, or a blank one for a file without a header.
    pub fn run_or_default(&self) -> RunRecord {
        self.run.clone().unwrap_or_else(|| RunRecord {
            executor: String::new(),
            started_unix_ms: 0,
            host: String::new(),
            cores: 1,
            pardo_version: String::new(),
            workers: 1,
            settings: Vec::new(),
        })
    }

    /// The report computed from the records, the same numbers the live recorder gave: the
    /// fold over the same records with the same capacity steps.
    pub fn report(&self) -> Report {
        let mut run = self.run_or_default();
        let mut steps = vec![(0, run.workers)];
        steps.extend(self.capacity.iter().copied());
        run.workers = steps.iter().map(|s| s.1).max().unwrap_or(run.workers);
        let mut acc = Accumulator::default();
        for r in &self.records {
            acc.add(r);
        }
        let mut report = Report::from_accumulator(run, &acc, &steps);
        report.concurrency = self.changes.clone();
        report
    }

    /// The summary if the run wrote one, else the report computed from the records (a run
    /// killed half-way).
    pub fn summary_or_report(&self) -> Report {
        self.summary.clone().unwrap_or_else(|| self.report())
    }
}
