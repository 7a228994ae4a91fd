//! One workload on all three executors — [`ThreadPool`], [`ProcessPool`], [`AsyncPool`] — and
//! one table of what each run's [`Report`] measured: wall time, speedup, CPU ratio, verdict.
//! This is the "choose by workload" scenario of `pardo demo` and `examples/executor_comparison.rs`.
//!
//! Every number in the table comes from the pools' own records; nothing is computed outside
//! the [`Report`]. The process pool runs in re-executed copies of the current binary, so the
//! calling program needs [`worker_hook`](pardo::worker_hook) first in `main`.

use std::fmt;
use std::time::Duration;

use crate::loopback::{self, Fetch, LoopbackServer};
use pardo::monitor::format_duration;
use pardo::{
    iter_stream, AsyncPool, PoolError, ProcessPool, Report, RunTask, ShutdownMode, TaskError,
    ThreadPool,
};

pardo::task_fn! {
    /// [`workloads::hash_block`](crate::workloads::hash_block) of `(seed, bytes)`: the CPU-bound
    /// workload.
    pub HashBlock((seed, bytes): (u64, u64)) -> u64 {
        crate::workloads::hash_block(seed, usize::try_from(bytes).unwrap_or(usize::MAX))
    }
}

/// How many times more requests the last async row keeps in flight than the threads do: what
/// async buys for I/O (a waiting request costs a task, not a thread).
pub const ASYNC_FAN_OUT: usize = 10;

/// What to run on each executor.
#[derive(Clone, Copy, Debug)]
pub enum Scenario {
    /// `tasks` × [`HashBlock`] of `bytes` each, on `workers` workers.
    Cpu {
        /// How many blocks.
        tasks: u64,
        /// Bytes per block.
        bytes: u64,
        /// Workers of each pool (runtime threads and in-flight bound for the async pool).
        workers: usize,
    },
    /// `requests` HTTP GETs to a [`LoopbackServer`] answering after `delay`: on `concurrency`
    /// threads, on as many processes, and as async tasks on `workers` runtime threads with
    /// `concurrency` and with [`ASYNC_FAN_OUT`] × `concurrency` in flight. The server waits
    /// without a thread per request, so what differs is how many requests each executor
    /// keeps waiting at once — not the server's own limit.
    Http {
        /// How many requests.
        requests: u64,
        /// The server's delay per response.
        delay: Duration,
        /// Threads, processes and (in the first async row) tasks in flight.
        concurrency: usize,
        /// Runtime threads of the async pool.
        workers: usize,
    },
}

impl Scenario {
    fn name(&self) -> String {
        match *self {
            Scenario::Cpu { tasks, bytes, .. } => {
                format!("CPU-bound: {tasks} × hash {} KiB", bytes >> 10)
            }
            Scenario::Http {
                requests, delay, ..
            } => format!(
                "I/O-bound: {requests} × HTTP GET on 127.0.0.1, {} ms server delay",
                delay.as_millis()
            ),
        }
    }
}

/// Why a comparison could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// A pool could not be built.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A task of the workload failed.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The loopback server or a request failed.
    #[error("loopback HTTP: {0}")]
    Http(String),
    /// An executor computed a different answer from the thread pool's.
    #[error("{executor} computed a different answer from the thread pool")]
    Mismatch {
        /// The executor whose results differ.
        executor: &'static str,
    },
}

/// One executor's run.
#[derive(Debug)]
pub struct Row {
    /// `thread_pool`, `process_pool` or `async_pool`.
    pub executor: &'static str,
    /// Its concurrency: workers, or tasks in flight.
    pub concurrency: usize,
    /// What its records say.
    pub report: Report,
}

/// A workload's rows, one per executor; `Display` prints the table.
#[derive(Debug)]
pub struct Comparison {
    /// What ran.
    pub workload: String,
    /// Threads, processes, async — in that order (for HTTP, async twice: at the threads'
    /// concurrency and at [`ASYNC_FAN_OUT`] times it).
    pub rows: Vec<Row>,
}

/// Runs `workload` on a thread pool, a process pool and an async pool, one after another.
pub fn compare(workload: Scenario) -> Result<Comparison, CompareError> {
    let rows = match workload {
        Scenario::Cpu {
            tasks,
            bytes,
            workers,
        } => {
            let inputs = move || (0..tasks).map(move |seed| (seed, bytes));
            let threads = ThreadPool::builder().workers(workers).build()?;
            let processes = ProcessPool::builder().workers(workers).build()?;
            let tasks_pool = AsyncPool::builder()
                .runtime_threads(workers)
                .max_in_flight(workers)
                .build()?;
            // The thread pool's digests are the reference the other two must reproduce.
            let expected = digests(&threads, inputs())?;
            let thread_report = threads.shutdown(ShutdownMode::Wait);
            same_digests("process_pool", &processes, inputs(), &expected)?;
            let process_report = processes.shutdown(ShutdownMode::Wait);
            same_digests("async_pool", &tasks_pool, inputs(), &expected)?;
            let async_report = tasks_pool.shutdown(ShutdownMode::Wait);
            vec![
                row("thread_pool", workers, thread_report),
                row("process_pool", workers, process_report),
                row("async_pool", workers, async_report),
            ]
        }
        Scenario::Http {
            requests,
            delay,
            concurrency,
            workers,
        } => {
            let server =
                LoopbackServer::start(delay).map_err(|e| CompareError::Http(e.to_string()))?;
            let addr = server.addr();
            let urls = move || std::iter::repeat_n(addr.to_string(), requests as usize);
            let threads = ThreadPool::builder().workers(concurrency).build()?;
            let thread_report =
                fetch_all(&threads, urls()).map(|()| threads.shutdown(ShutdownMode::Wait))?;
            let processes = ProcessPool::builder().workers(concurrency).build()?;
            let process_report =
                fetch_all(&processes, urls()).map(|()| processes.shutdown(ShutdownMode::Wait))?;
            let fan_out = concurrency.saturating_mul(ASYNC_FAN_OUT);
            vec![
                row("thread_pool", concurrency, thread_report),
                row("process_pool", concurrency, process_report),
                row(
                    "async_pool",
                    concurrency,
                    fetch_async(addr, requests, workers, concurrency)?,
                ),
                row(
                    "async_pool",
                    fan_out,
                    fetch_async(addr, requests, workers, fan_out)?,
                ),
            ]
        }
    };
    Ok(Comparison {
        workload: workload.name(),
        rows,
    })
}

fn row(executor: &'static str, concurrency: usize, report: Report) -> Row {
    Row {
        executor,
        concurrency,
        report,
    }
}

/// `requests` GETs from `addr` on an async pool of `workers` runtime threads with `in_flight`
/// at once, every body checked; the pool's report.
fn fetch_async(
    addr: std::net::SocketAddr,
    requests: u64,
    workers: usize,
    in_flight: usize,
) -> Result<Report, CompareError> {
    let pool = AsyncPool::builder()
        .runtime_threads(workers)
        .max_in_flight(in_flight)
        .build()?;
    let fetched = pool.block_on(async {
        let mut results = pool.map(iter_stream(0..requests), move |_| loopback::get(addr));
        while let Some(r) = results.next().await {
            let len = r?.map_err(|e| CompareError::Http(e.to_string()))?;
            check_body(len)?;
        }
        Ok::<(), CompareError>(())
    });
    fetched.map(|()| pool.shutdown(ShutdownMode::Wait))
}

/// Hashes the inputs on `pool` and fails unless it computes `expected`.
fn same_digests<P: RunTask>(
    executor: &'static str,
    pool: &P,
    inputs: impl Iterator<Item = (u64, u64)>,
    expected: &[u64],
) -> Result<(), CompareError> {
    if digests(pool, inputs)? == expected {
        Ok(())
    } else {
        Err(CompareError::Mismatch { executor })
    }
}

/// Hashes every input on `pool`, one input per task, and returns the digests in input order.
fn digests<P: RunTask>(
    pool: &P,
    inputs: impl Iterator<Item = (u64, u64)>,
) -> Result<Vec<u64>, CompareError> {
    Ok(pool
        .map_task(inputs, HashBlock)
        .chunk_size(1)
        .collect::<Result<_, _>>()?)
}

/// Fetches every URL on `pool`, one per task, and checks every body.
fn fetch_all<P: RunTask>(pool: &P, urls: impl Iterator<Item = String>) -> Result<(), CompareError> {
    for r in pool.map_task(urls, Fetch).chunk_size(1) {
        check_body(r?.map_err(CompareError::Http)?)?;
    }
    Ok(())
}

/// A response must carry the server's whole body.
fn check_body(len: usize) -> Result<(), CompareError> {
    if len == loopback::BODY.len() {
        Ok(())
    } else {
        Err(CompareError::Http(format!(
            "a body of {len} bytes, expected {}",
            loopback::BODY.len()
        )))
    }
}

impl Comparison {
    /// The row with the shortest wall time.
    pub fn fastest(&self) -> Option<&Row> {
        self.rows.iter().min_by_key(|r| r.report.wall_ns)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.workload)?;
        writeln!(
            f,
            "  {:<13} {:>5} {:>6} {:>10} {:>8} {:>8} {:>9}  verdict",
            "executor", "conc", "tasks", "wall", "speedup", "cpu/wall", "vs fastest"
        )?;
        let best = self.fastest().map_or(1, |r| r.report.wall_ns.max(1));
        for row in &self.rows {
            let r = &row.report;
            writeln!(
                f,
                "  {:<13} {:>5} {:>6} {:>10} {:>8.2} {:>8} {:>9.2}x  {}",
                row.executor,
                row.concurrency,
                r.tasks,
                format_duration(r.wall_ns),
                r.speedup,
                r.cpu_ratio.map_or("-".to_owned(), |c| format!("{c:.2}")),
                r.wall_ns as f64 / best as f64,
                r.workload
            )?;
        }
        if let Some(row) = self.fastest() {
            write!(f, "  fastest: {}", row.executor)?;
            if let Some(finding) = row.report.findings.first() {
                write!(f, "; pardo says: {finding}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
