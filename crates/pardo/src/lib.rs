//! # pardo
//!
//! Run many units of work at once and *see* how that went.
//!
//! pardo's executors run closures (a [`ThreadPool`]) and measure every task: queue wait, wall
//! time, CPU time, which worker ran it and how it ended. From those records a [`Report`] says
//! what happened — throughput, utilisation, speedup, CPU-bound or I/O-bound, stragglers — in
//! numbers and in plain sentences ([`monitor::Finding`]).
//!
//! ```
//! use pardo::{ThreadPool, ShutdownMode};
//!
//! let pool = ThreadPool::builder().workers(2).build()?;
//! let handle = pool.submit(|| (1..=10u64).product::<u64>());
//! assert_eq!(handle.wait()?, 3_628_800);
//!
//! let lengths: Vec<usize> = pool.map(["a", "bb", "ccc"], |s| s.len()).collect::<Result<_, _>>()?;
//! assert_eq!(lengths, [1, 2, 3]);
//!
//! let report = pool.shutdown(ShutdownMode::Wait);
//! assert_eq!(report.items, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What is promised
//!
//! - Every submitted task ends exactly once — with a value, an error, a caught panic or a
//!   cancellation — and leaves exactly one record per attempt (a batch of tiny `map` items leaves
//!   one record for the batch; see [`monitor::TaskRecord`]).
//! - A task's record is written before its handle completes.
//! - `map` yields in input order and holds a bounded number of inputs at a time.
//! - A panicking task never takes a worker or the pool down.

#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod clock;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod command;
mod executor;
mod handle;
pub mod monitor;
mod pool;
mod sync;
mod task;
pub mod tune;

/// Items the [`task_fn!`] macro expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::pool::processes::Registered;
    pub use inventory;
}

pub use executor::{Executor, ShutdownMode};
pub use handle::{as_completed, AsCompleted, Handle};
pub use monitor::{Finding, Report};
#[cfg(feature = "async")]
#[allow(deprecated)]
pub use pool::aio::pool_stream;
#[cfg(feature = "async")]
pub use pool::aio::{
    iter_stream, AsyncPool, AsyncPoolBuilder, IterStream, MapStream, MapUnorderedStream,
    SHORT_POLL, WINDOW_PER_IN_FLIGHT,
};
pub use pool::map::{Map, MapUnordered};
pub use pool::processes::{worker_hook, ProcessPool, ProcessPoolBuilder, ProcessStats};
pub use pool::task_fn::{RunTask, TaskFn};
pub use pool::threads::{Scope, ThreadPool, ThreadPoolBuilder};
pub use pool::PoolError;
pub use task::{Outcome, TaskError, TaskId};

#[cfg(test)]
mod tests {
    /// The demo's task functions live in `pardo-demo`: a program that links only the library
    /// must not carry them in its registry (they used to show up in users' compile errors).
    #[test]
    fn the_library_registers_no_demo_task_functions() {
        let demo: Vec<String> = inventory::iter::<crate::pool::processes::Registered>
            .into_iter()
            .map(|r| format!("{r:?}"))
            .filter(|r| r.contains("HashBlock") || r.contains("Fetch"))
            .collect();
        assert!(demo.is_empty(), "registered by the library: {demo:?}");
    }
}
