//! Seed scenario 1: time every task of a workload on the thread pool and print the timings.
//!
//! Run: `cargo run --release -p pardo --example timed_tasks`

use std::hash::{DefaultHasher, Hasher};

use pardo::monitor::format_duration;
use pardo::{ShutdownMode, ThreadPool};

/// The work per task: hashes `bytes` bytes of counter data, so its CPU time grows with `bytes`.
fn digest(bytes: usize) -> u64 {
    let mut h = DefaultHasher::new();
    for word in 0..(bytes / 8) as u64 {
        h.write_u64(word);
    }
    h.finish()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = ThreadPool::builder().workers(2).build()?;
    // Blocks of growing size, so the timings differ visibly.
    let sizes: Vec<usize> = (1..=8).map(|i| i * (512 << 10)).collect();
    let digests: Vec<u64> = pool
        .map(sizes.clone(), digest)
        .chunk_size(1)
        .collect::<Result<_, _>>()?;
    let expected: Vec<u64> = sizes.iter().copied().map(digest).collect();
    assert_eq!(
        digests, expected,
        "every task's digest is the serial one, in order"
    );
    let records = pool.recorder().records();
    let report = pool.shutdown(ShutdownMode::Wait);

    println!(
        "{:>4} {:>8} {:>6} {:>11} {:>11} {:>11}  digest",
        "task", "input", "worker", "queued", "ran", "cpu"
    );
    for ((r, bytes), digest) in records.iter().zip(&sizes).zip(&digests) {
        println!(
            "{:>4} {:>6}KiB {:>6} {:>11} {:>11} {:>11}  {digest:016x}",
            r.id,
            bytes >> 10,
            r.worker,
            format_duration(r.queue_wait_ns()),
            format_duration(r.wall_ns()),
            format_duration(r.cpu_ns()),
        );
    }
    println!(
        "\n{} tasks in {} on {:.0} workers: speedup {:.2}, utilisation {:.0}%, {}",
        report.tasks,
        format_duration(report.wall_ns),
        report.workers,
        report.speedup,
        report.utilisation * 100.0,
        report.workload
    );
    for f in &report.findings {
        println!("- {f}");
    }
    Ok(())
}
