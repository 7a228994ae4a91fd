//! Seed scenario 2: split a list of work items across workers with `map`, and keep a shared total
//! three ways — a lock, an atomic, and a lock-free reduce — each checked against the right answer.
//!
//! Run: `cargo run --release -p pardo --example shared_total`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pardo::monitor::format_duration;
use pardo::ThreadPool;

const ITEMS: u64 = 200_000;

/// The work per item: a small computation whose results we add up.
fn score(i: u64) -> u64 {
    (i * i) % 1_009
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let expected: u64 = (0..ITEMS).map(score).sum();
    let pool = ThreadPool::builder().workers(4).build()?;

    // 1. A lock: every item takes the mutex to add its score.
    let locked = Arc::new(Mutex::new(0u64));
    let total = Arc::clone(&locked);
    for r in pool.map(0..ITEMS, move |i| {
        let s = score(i);
        *total.lock().unwrap_or_else(|p| p.into_inner()) += s;
    }) {
        r?;
    }
    let by_lock = *locked.lock().unwrap_or_else(|p| p.into_inner());

    // 2. An atomic: no lock, one fetch_add per item.
    let atomic = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&atomic);
    for r in pool.map(0..ITEMS, move |i| {
        total.fetch_add(score(i), Ordering::Relaxed);
    }) {
        r?;
    }
    let by_atomic = atomic.load(Ordering::Relaxed);

    // 3. A reduce: nothing shared; each result comes back and the caller sums them.
    let by_reduce = pool
        .map(0..ITEMS, score)
        .try_fold(0u64, |acc, r| r.map(|s| acc + s))?;

    println!("expected total: {expected}");
    for (how, got) in [
        ("mutex", by_lock),
        ("atomic", by_atomic),
        ("reduce", by_reduce),
    ] {
        let verdict = if got == expected { "correct" } else { "WRONG" };
        println!("{how:>7}: {got} ({verdict})");
        if got != expected {
            return Err(format!("{how} total {got} differs from {expected}").into());
        }
    }
    let report = pool.report();
    println!(
        "\n{} items in {} batched records; mean item {}; {}",
        report.items,
        report.tasks,
        format_duration(report.duration.mean_ns),
        report.workload
    );
    Ok(())
}
