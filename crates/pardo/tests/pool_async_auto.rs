//! The async pool with `auto()`: the bound on tasks in flight is steered by the controller's
//! latency mode, within its maximum, and the report says how it moved.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pardo::{AsyncPool, Executor, ShutdownMode};

/// Counts tasks in flight and remembers the most seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Runs `tasks` tasks that each wait `wait` and use no CPU; returns the most seen in flight.
fn run_waits(pool: &AsyncPool, tasks: usize, wait: Duration) -> usize {
    let seen = Arc::new(InFlight::default());
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let seen = Arc::clone(&seen);
            pool.submit(async move {
                let n = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(wait).await;
                seen.now.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    seen.most.load(Ordering::SeqCst)
}

#[test]
fn waiting_tasks_raise_the_bound_above_the_cores_and_never_above_the_maximum() {
    let cores = pardo::monitor::available_cores();
    let max = 4 * cores.max(2) + 8;
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .auto()
        .max_in_flight(max)
        .build()
        .unwrap();
    let start = pool.workers();
    assert_eq!(start, cores.clamp(1, max), "starts at the core count");
    // Latency stays at its no-load value however many of these run, so the bound should keep
    // doubling up to the maximum.
    let most = run_waits(&pool, 3000, Duration::from_millis(5));
    let report = pool.shutdown(ShutdownMode::Wait);
    assert!(most <= max, "{most} in flight, maximum {max}");
    assert!(
        most > start,
        "never more than {most} in flight: {:?}",
        report.concurrency
    );
    let raised = report.concurrency.iter().any(|c| c.to > start as u64);
    assert!(raised, "no change above {start}: {:?}", report.concurrency);
    assert!(report.concurrency.iter().all(|c| c.to <= max as u64));
}

#[test]
fn set_workers_takes_the_bound_over_from_the_controller() {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .auto()
        .max_in_flight(64)
        .build()
        .unwrap();
    pool.set_workers(3).unwrap();
    let most = run_waits(&pool, 400, Duration::from_millis(2));
    assert_eq!(pool.workers(), 3);
    assert!(most <= 3, "{most} in flight");
}
