//! Choose by workload: the same CPU-bound job (hashing) and the same I/O-bound job (HTTP GETs
//! against a server this example starts on 127.0.0.1) on a thread pool, a process pool and an
//! async pool, with one table of what pardo measured for each.
//!
//! Run: `cargo run --release -p pardo-demo --example executor_comparison`

use std::time::Duration;

use pardo::monitor::available_cores;
use pardo_demo::compare::{compare, Scenario};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pardo::worker_hook(); // the process pool's workers are this binary: they take over here
    let cores = available_cores();
    let cpu = compare(Scenario::Cpu {
        tasks: 8 * cores as u64,
        bytes: 2 << 20,
        workers: cores,
    })?;
    println!("{cpu}");
    let io = compare(Scenario::Http {
        // 8 threads (and processes) against async with 8 and with 80 requests in flight:
        // 40 rounds of 8, so each row's time is its concurrency at work, not start-up.
        requests: 320,
        delay: Duration::from_millis(20),
        concurrency: 8,
        workers: cores,
    })?;
    println!("{io}");
    Ok(())
}
