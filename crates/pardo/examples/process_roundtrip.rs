//! Times N warm round trips (`submit(..).wait()`) of a small payload on a 2-worker process
//! pool and prints µs per task. Used by `bench/python/process_pool_roundtrip.py` to compare
//! with Python's ProcessPoolExecutor in one run.
//!
//! Run: `cargo run --release -p pardo --example process_roundtrip -- 20000`

use std::time::Instant;

use pardo::ProcessPool;

pardo::task_fn! {
    /// A small payload: 16 bytes in, 8 out.
    pub Mix((a, b): (u64, u64)) -> u64 { a.rotate_left(17) ^ b }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pardo::worker_hook();
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 20_000,
    };
    let pool = ProcessPool::builder().workers(2).build()?;
    for i in 0..100 {
        pool.submit(Mix, (i, 1)).wait()?;
    }
    let t0 = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        acc ^= pool.submit(Mix, (i, 7)).wait()?;
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "pardo ProcessPool(workers=2) submit().wait(): {us:.1} µs/task over {n} tasks (xor {acc})"
    );
    Ok(())
}
