//! A deliberately crashing task among good ones: one task aborts its worker process; the pool
//! reports that task as `WorkerDied`, starts a replacement worker and finishes all the others.
//! (Python's `ProcessPoolExecutor` would mark the whole pool broken here.)
//!
//! Run: `cargo run -p pardo --example crashing_task`

use pardo::{ProcessPool, ShutdownMode, TaskError};

pardo::task_fn! {
    /// Sums 1..=n — except for n == 13, where the worker aborts (SIGABRT).
    pub SumTo(n: u64) -> u64 {
        if n == 13 {
            std::process::abort();
        }
        (1..=n).sum()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pardo::worker_hook(); // workers are this binary: they take over here
    let pool = ProcessPool::builder().workers(2).build()?;
    let mut ok = 0;
    for (n, result) in (1..=20u64).zip(pool.map(1..=20u64, SumTo)) {
        match result {
            Ok(sum) => {
                assert_eq!(sum, n * (n + 1) / 2);
                ok += 1;
            }
            Err(e @ TaskError::WorkerDied { .. }) => println!("input {n}: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "{ok} of 20 tasks succeeded; workers started: {}",
        pool.stats().started
    );
    let report = pool.shutdown(ShutdownMode::Wait);
    println!(
        "{}",
        report
            .outcomes
            .iter()
            .map(|(o, n)| format!("{o}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(ok, 19, "every task but the crashing one finished");
    Ok(())
}
