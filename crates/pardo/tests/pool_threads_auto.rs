//! An automatic thread pool chooses its own worker count and says what it chose.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pardo::tune::controller::ControllerConfig;
use pardo::{Executor, ShutdownMode, ThreadPool};

/// A controller as on a 2-core machine that nothing else uses, so the test does not depend on
/// how busy the shared test machine is.
fn two_cores(max: usize) -> ControllerConfig {
    let mut c = ControllerConfig::new(2, max);
    c.busy_ceiling = f64::INFINITY;
    c.overload_per_core = f64::INFINITY;
    c
}

#[test]
fn waiting_tasks_make_an_automatic_pool_grow_past_the_cores_and_the_report_says_so() {
    support::within("an automatic pool growing", 120, || {
        let pool = ThreadPool::builder()
            .auto_with(two_cores(32))
            .build()
            .unwrap();
        assert_eq!(pool.workers(), 2, "starts at the core count");
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..5_000)
            .map(|_| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                pool.submit(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // The task waits (as on I/O) without using the CPU.
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        support::eventually("more tasks at once than cores", || {
            peak.load(Ordering::SeqCst) > 2
        });
        let report = pool.shutdown(ShutdownMode::CancelPending);
        for h in handles {
            let _ = h.wait();
        }
        assert!(
            report.concurrency.iter().any(|c| c.to > 2),
            "{:?}",
            report.concurrency
        );
        assert!(
            report.concurrency.iter().all(|c| c.to <= 32),
            "{:?}",
            report.concurrency
        );
        assert!(!report.concurrency[0].reason.is_empty());
        assert!(report.to_string().contains("concurrency: 2 → "), "{report}");
    });
}

#[test]
fn set_workers_takes_over_from_the_controller() {
    let pool = ThreadPool::builder()
        .auto_with(two_cores(32))
        .build()
        .unwrap();
    pool.set_workers(3).unwrap();
    let before = pool.recorder().changes().len();
    // Tasks that wait would make a steered pool grow; this one no longer is.
    let waits: Vec<_> = pool
        .map(0..200, |_| std::thread::sleep(Duration::from_millis(1)))
        .collect();
    assert_eq!(waits.len(), 200);
    assert_eq!(pool.workers(), 3);
    assert_eq!(pool.recorder().changes().len(), before);
}
