//! Executors, one file per kind. See `README.md` in this folder for the thread pool's protocol.

pub mod map;
pub mod threads;

/// Why a pool could not be built or resized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool needs at least one worker.
    #[error("a pool needs at least one worker (asked for 0)")]
    ZeroWorkers,
    /// The operating system refused to start a worker.
    #[error("cannot start worker {worker}: {source}")]
    Spawn {
        /// The worker slot, from 1.
        worker: usize,
        /// What the OS said.
        source: std::io::Error,
    },
}
