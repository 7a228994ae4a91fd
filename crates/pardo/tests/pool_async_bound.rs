//! The async pool: the in-flight bound holds (and is reached), `map` over a stream keeps input
//! order, panics are data, records measure wall and poll time, shutdown cancels what waits.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pardo::{iter_stream, AsyncPool, Executor, Outcome, ShutdownMode};

/// Counts tasks in flight and remembers the most seen at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn the_in_flight_bound_is_reached_and_never_exceeded() {
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(4)
        .build()
        .unwrap();
    let counter = Arc::new(InFlight::default());
    // Tasks pass the barrier in groups of four: only possible if four run at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let handles: Vec<_> = (0..40)
        .map(|_| {
            let (counter, barrier) = (Arc::clone(&counter), Arc::clone(&barrier));
            pool.submit(async move {
                counter.enter();
                barrier.wait().await;
                tokio::task::yield_now().await;
                counter.leave();
            })
        })
        .collect();
    for h in handles {
        h.wait().unwrap();
    }
    assert_eq!(counter.most.load(Ordering::SeqCst), 4);
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.tasks, 40);
    assert_eq!(report.run.executor, "async_pool");
}

#[test]
fn map_over_a_stream_keeps_input_order_within_the_bound() {
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(8)
        .build()
        .unwrap();
    let counter = Arc::new(InFlight::default());
    let got: Vec<u64> = pool.block_on(async {
        let c = Arc::clone(&counter);
        let mut results = pool.map(iter_stream(0..200u64), move |x| {
            let c = Arc::clone(&c);
            async move {
                c.enter();
                // Later inputs finish first more often than not.
                for _ in 0..(200 - x) % 5 {
                    tokio::task::yield_now().await;
                }
                c.leave();
                x * 3
            }
        });
        let mut out = Vec::new();
        while let Some(r) = results.next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert_eq!(got, (0..200u64).map(|x| x * 3).collect::<Vec<_>>());
    let most = counter.most.load(Ordering::SeqCst);
    assert!((1..=8).contains(&most), "{most}");
}

#[test]
fn a_panicking_future_is_panicked_and_the_pool_goes_on() {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .max_in_flight(2)
        .build()
        .unwrap();
    let err = pool
        .submit(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("async boom");
            }
            1
        })
        .wait()
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("async boom"));
    assert_eq!(pool.submit(async { 2 }).wait(), Ok(2));
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.outcomes.get(&Outcome::Panicked), Some(&1));
}

#[test]
fn records_count_poll_time_as_cpu_and_waiting_as_wall_only() {
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(16)
        .build()
        .unwrap();
    let sleepers: Vec<_> = (0..8)
        .map(|_| pool.submit(async { tokio::time::sleep(Duration::from_millis(20)).await }))
        .collect();
    let hasher = pool.submit(async { support::spin(4 << 20) });
    for h in sleepers {
        h.wait().unwrap();
    }
    assert_eq!(hasher.wait().unwrap(), support::spin(4 << 20));
    let records = pool.recorder().records();
    assert_eq!(records.len(), 9);
    let (cpu, io): (Vec<_>, Vec<_>) = records.iter().partition(|r| r.id.0 == 9);
    assert!(cpu[0].cpu_ns() > 0);
    for r in io {
        assert!(
            r.cpu_ns() < r.wall_ns(),
            "a sleeping task waits without CPU: {r:?}"
        );
        assert!(r.worker >= 1 && r.worker <= 16);
    }
}

/// A future that blocks its thread inside one poll (a sync task run on the pool) is one long
/// poll: its CPU comes from the thread CPU clock, so the time it slept is not CPU.
#[test]
fn a_poll_that_blocks_is_not_counted_as_cpu() {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .max_in_flight(1)
        .build()
        .unwrap();
    let nap = pardo::SHORT_POLL * 200;
    pool.submit(async move { std::thread::sleep(nap) })
        .wait()
        .unwrap();
    let records = pool.recorder().records();
    let r = &records[0];
    assert!(r.wall_ns() >= nap.as_nanos() as u64, "{r:?}");
    assert!(
        r.cpu_ns() < r.wall_ns() / 2,
        "blocked time counted as CPU: {r:?}"
    );
}

#[test]
fn cancel_pending_cancels_tasks_still_waiting_for_a_slot() {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .max_in_flight(1)
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(support::Latch::default());
    let running = {
        let (gate, started) = (Arc::clone(&gate), Arc::clone(&started));
        pool.submit(async move {
            started.open();
            let _ = gate.acquire().await;
            "ran"
        })
    };
    started.wait();
    let queued: Vec<_> = (0..5).map(|i| pool.submit(async move { i })).collect();
    let recorder = pool.recorder().clone();
    let opener = std::thread::spawn(move || {
        support::eventually("five cancelled records", || recorder.counters().done >= 5);
        gate.add_permits(1);
    });
    let report = pool.shutdown(ShutdownMode::CancelPending);
    opener.join().unwrap();
    assert_eq!(running.wait(), Ok("ran"));
    for h in queued {
        assert!(h.wait().unwrap_err().is_cancelled());
    }
    assert_eq!(report.outcomes.get(&Outcome::Cancelled), Some(&5));
}

#[test]
fn handles_are_awaitable_and_work_with_as_completed() {
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(4)
        .build()
        .unwrap();
    let inner = pool.submit(async { 20 });
    let outer = pool.submit(async move { inner.await.unwrap() + 1 });
    assert_eq!(outer.wait(), Ok(21));
    let handles: Vec<_> = (0..5u64)
        .map(|i| pool.submit(async move { i * i }))
        .collect();
    let mut got: Vec<u64> = pardo::as_completed(handles)
        .map(|(_, r)| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 4, 9, 16]);
}

#[test]
fn raising_the_bound_lets_more_run_at_once() {
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(1)
        .build()
        .unwrap();
    pool.set_workers(3).unwrap();
    assert_eq!(pool.workers(), 3);
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let b = Arc::clone(&barrier);
            pool.submit(async move { b.wait().await.is_leader() })
        })
        .collect();
    let leaders = handles
        .into_iter()
        .filter(|_| true)
        .map(|h| h.wait().unwrap())
        .filter(|&l| l)
        .count();
    assert_eq!(leaders, 1, "three tasks met at the barrier");
    let slots: std::collections::BTreeSet<u32> =
        pool.recorder().records().iter().map(|r| r.worker).collect();
    assert_eq!(slots.len(), 3, "three distinct slots: {slots:?}");
    assert!(pool.set_workers(0).is_err());
}
