//! Executors, one file per kind. See `README.md` in this folder for the thread pool's protocol.

#[cfg(feature = "async")]
pub mod aio;
pub mod map;
pub mod processes;
pub mod task_fn;
pub mod threads;

/// Why a pool could not be built or resized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool needs at least one worker.
    #[error("a pool needs at least one worker (asked for 0)")]
    ZeroWorkers,
    /// An async pool needs room for at least one task in flight.
    #[error("an async pool needs max_in_flight of at least 1 (asked for 0)")]
    ZeroInFlight,
    /// The operating system refused to start a worker.
    // `error` is shown in the message, so it is not also a `source` (printed twice otherwise).
    #[error("cannot start worker {worker}: {error}")]
    Spawn {
        /// The worker slot, from 1.
        worker: usize,
        /// What the OS said.
        error: std::io::Error,
    },
    /// A worker process started but did not become a working pardo worker.
    #[error("worker {worker} did not start: {reason}")]
    WorkerStart {
        /// The worker slot, from 1.
        worker: usize,
        /// What went wrong, and what to check.
        reason: String,
    },
    /// A process pool was built inside a process started as a pardo worker whose `main` did not
    /// call [`worker_hook`](crate::worker_hook) first; refusing stops it from starting workers
    /// of its own, recursively.
    #[error(
        "this process was started as a pardo worker, but main() did not call \
         pardo::worker_hook() first; add it as the first line of main"
    )]
    InsideWorker,
    /// The async pool's runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Joins a pool's threads, except the calling thread: a pool dropped or shut down by one of its
/// own tasks must not wait for itself (that thread ends on its own once the pool is closed).
pub(crate) fn join_all_but_current(threads: impl IntoIterator<Item = std::thread::JoinHandle<()>>) {
    let me = std::thread::current().id();
    for t in threads {
        if t.thread().id() != me {
            let _ = t.join();
        }
    }
}
