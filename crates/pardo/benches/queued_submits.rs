//! Peak memory of 1,000,000 queued `submit`s: one worker is held at a gate while a million small
//! tasks queue up behind it; the growth of peak RSS over the baseline is what the queue costs.
//!
//! Run: `cargo bench -p pardo --bench queued_submits`

use std::sync::{Arc, Condvar, Mutex};

use pardo::ThreadPool;

const TASKS: usize = 1_000_000;

/// A field of /proc/self/status in bytes (VmHWM = peak RSS, VmRSS = current).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let pool = ThreadPool::builder().workers(1).build().expect("pool");
    let g = Arc::clone(&gate);
    let blocker = pool.submit(move || {
        let (m, c) = &*g;
        let mut open = m.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = c.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    });
    let before = status_bytes("VmRSS:");
    let handles: Vec<_> = (0..TASKS as u64)
        .map(|i| pool.submit(move || i ^ 1))
        .collect();
    let queued_rss = status_bytes("VmRSS:");
    {
        let (m, c) = &*gate;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        c.notify_all();
    }
    blocker.wait().expect("blocker");
    let sum: u64 = handles.into_iter().map(|h| h.wait().expect("task")).sum();
    assert_eq!(sum, (0..TASKS as u64).map(|i| i ^ 1).sum::<u64>());
    let peak = status_bytes("VmHWM:");
    let records = pool.recorder().records().len();
    println!("queued_submits: {TASKS} tasks queued behind one blocked worker");
    println!(
        "  RSS before submitting:        {:>8.1} MiB",
        before as f64 / 1048576.0
    );
    println!(
        "  RSS with all queued:          {:>8.1} MiB",
        queued_rss as f64 / 1048576.0
    );
    println!(
        "  queue cost (handles + jobs):  {:>8.1} MiB = {} bytes per queued task",
        (queued_rss - before) as f64 / 1048576.0,
        (queued_rss - before) / TASKS as u64
    );
    println!(
        "  peak RSS (after records too): {:>8.1} MiB; {records} records kept",
        peak as f64 / 1048576.0
    );
}
