//! What every executor offers, whatever runs the tasks: a worker count that can change at run
//! time, a recorder, a report, and the two ways to shut down.

use crate::monitor::{Recorder, Report};

/// How a shutdown treats tasks that have not started yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Run everything already submitted, then stop (Python's `shutdown(wait=True)`).
    Wait,
    /// Let running tasks finish; queued tasks end as [`TaskError::Cancelled`](crate::TaskError)
    /// and get a `Cancelled` record (Python's `shutdown(cancel_futures=True)`).
    CancelPending,
}

/// The part of an executor that monitoring, reports and the concurrency tuner need. Each pool
/// implements it; the tuner steers any of them through `set_workers` and reads `recorder`.
///
/// ```
/// use pardo::{Executor, ThreadPool};
/// fn double_workers(ex: &impl Executor) {
///     ex.set_workers(ex.workers() * 2).unwrap();
/// }
/// let pool = ThreadPool::builder().workers(1).build().unwrap();
/// double_workers(&pool);
/// assert_eq!(pool.workers(), 2);
/// ```
pub trait Executor {
    /// The executor's kind as recorded in [`RunRecord::executor`](crate::monitor::RunRecord).
    fn kind(&self) -> &'static str;

    /// The worker count the executor is running at (or moving to).
    fn workers(&self) -> usize;

    /// Changes the worker count while tasks run. Growing starts workers at once; shrinking lets
    /// surplus workers finish their current task and leave.
    fn set_workers(&self, workers: usize) -> Result<(), crate::PoolError>;

    /// The run's recorder: live counters, records, samples.
    fn recorder(&self) -> &Recorder;

    /// The summary and findings over everything recorded so far.
    fn report(&self) -> Report {
        self.recorder().report()
    }
}
