//! Changing the worker count while the pool is busy.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use pardo::{Executor, ThreadPool};
use support::eventually;

#[test]
fn growing_while_busy_adds_workers_that_run_at_the_same_time() {
    let pool = ThreadPool::builder().workers(1).build().unwrap();
    // Three tasks that can only pass the barrier together with the test thread: this needs
    // three workers running at once, which a one-worker pool cannot do until it grows.
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let b = Arc::clone(&barrier);
            pool.submit(move || {
                b.wait();
                i
            })
        })
        .collect();
    pool.set_workers(3).unwrap();
    assert_eq!(pool.workers(), 3);
    barrier.wait();
    let mut got: Vec<i32> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![0, 1, 2]);
    let workers: std::collections::BTreeSet<u32> =
        pool.recorder().records().iter().map(|r| r.worker).collect();
    assert_eq!(
        workers.len(),
        3,
        "three distinct workers ran the three tasks"
    );
}

#[test]
fn shrinking_while_busy_lets_surplus_workers_leave_after_their_task() {
    let pool = ThreadPool::builder().workers(3).build().unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let b = Arc::clone(&barrier);
            pool.submit(move || {
                b.wait();
                b.wait();
            })
        })
        .collect();
    barrier.wait(); // all three are running
    pool.set_workers(1).unwrap();
    assert_eq!(pool.live_workers(), 3, "running tasks are not interrupted");
    barrier.wait(); // let them finish
    for h in busy {
        h.wait().unwrap();
    }
    eventually("surplus workers left", || pool.live_workers() == 1);

    // From now on one worker runs everything: never two tasks at once.
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
            pool.submit(move || {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                support::spin(1_000);
                now.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in tasks {
        t.wait().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

#[test]
fn resizing_up_and_down_under_load_loses_and_repeats_nothing() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let handles: Vec<_> = (0..2_000u64)
        .map(|i| {
            let h = pool.submit(move || {
                support::spin(200);
                i
            });
            if i % 250 == 0 {
                pool.set_workers(1 + (i as usize / 250) % 4).unwrap();
            }
            h
        })
        .collect();
    let sum: u64 = handles.into_iter().map(|h| h.wait().unwrap()).sum();
    assert_eq!(sum, (0..2_000u64).sum::<u64>());
    let records = pool.recorder().records();
    assert_eq!(records.len(), 2_000);
    let ids: std::collections::BTreeSet<u64> = records.iter().map(|r| r.id.0).collect();
    assert_eq!(ids.len(), 2_000, "each task recorded exactly once");
}
