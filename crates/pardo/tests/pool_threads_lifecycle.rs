//! Submitting, panics, cancellation, shutdown and drop on the thread pool.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pardo::{Outcome, ShutdownMode, TaskError, ThreadPool};
use support::{eventually, occupy_worker, Latch};

#[test]
fn a_panic_fails_only_its_own_task_and_the_pool_keeps_working() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let bad = pool.submit(|| -> u32 { panic!("task exploded") });
    let good: Vec<_> = (0..10u32).map(|i| pool.submit(move || i * 2)).collect();
    let err = bad.wait().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("task exploded"));
    assert_eq!(err.to_string(), "task #1 panicked: task exploded");
    let values: Vec<u32> = good.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(values, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    // Both workers are still there and still run tasks.
    assert_eq!(pool.live_workers(), 2);
    assert_eq!(pool.submit(|| 7).wait(), Ok(7));
    let report = pool.report();
    assert_eq!(report.outcomes.get(&Outcome::Panicked), Some(&1));
    assert_eq!(report.ok, 11);
}

#[test]
fn cancel_before_start_cancels_and_records_it() {
    let pool = ThreadPool::builder().workers(1).build().unwrap();
    let gate = Arc::new(Latch::default());
    let blocker = occupy_worker(&pool, &gate);
    let queued = pool.submit(|| "must not run");
    assert!(queued.cancel(), "a queued task can be cancelled");
    assert!(!blocker.cancel(), "a running task cannot");
    gate.open();
    assert_eq!(blocker.wait(), Ok("blocker"));
    assert!(matches!(queued.wait(), Err(TaskError::Cancelled { .. })));
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.tasks, 2, "a cancelled task still has its record");
    assert_eq!(report.outcomes.get(&Outcome::Cancelled), Some(&1));
}

#[test]
fn shutdown_wait_runs_everything_submitted() {
    let pool = ThreadPool::builder().workers(1).build().unwrap();
    let gate = Arc::new(Latch::default());
    let ran = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..6 {
        let (gate, ran) = (Arc::clone(&gate), Arc::clone(&ran));
        handles.push(pool.submit(move || {
            gate.wait();
            ran.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let closer = std::thread::spawn(move || pool.shutdown(ShutdownMode::Wait));
    gate.open();
    let report = closer.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 6);
    assert!(handles.into_iter().all(|h| h.wait().is_ok()));
    assert_eq!(report.ok, 6);
}

#[test]
fn shutdown_cancel_pending_lets_running_tasks_finish_and_cancels_the_rest() {
    let pool = ThreadPool::builder().workers(1).build().unwrap();
    let gate = Arc::new(Latch::default());
    let running = occupy_worker(&pool, &gate);
    let queued: Vec<_> = (0..5).map(|_| pool.submit(|| 2)).collect();
    let watch: Vec<_> = queued.iter().map(|h| h.id()).collect();
    let closer = std::thread::spawn(move || pool.shutdown(ShutdownMode::CancelPending));
    // The queued tasks are cancelled while the running one is still held at the gate.
    eventually("queued tasks cancelled", || {
        queued.iter().all(|h| h.is_finished())
    });
    gate.open();
    let report = closer.join().unwrap();
    assert_eq!(running.wait(), Ok("blocker"));
    for h in queued {
        let id = h.id();
        assert_eq!(h.wait(), Err(TaskError::Cancelled { id }));
    }
    assert_eq!(watch.len(), 5);
    assert_eq!(report.tasks, 6);
    assert_eq!(report.outcomes.get(&Outcome::Cancelled), Some(&5));
    assert_eq!(report.ok, 1);
}

#[test]
fn dropping_the_pool_waits_for_running_and_queued_tasks() {
    let done = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Latch::default());
    {
        let pool = ThreadPool::builder().workers(2).build().unwrap();
        for _ in 0..20 {
            let (done, gate) = (Arc::clone(&done), Arc::clone(&gate));
            // Detached: the handle is dropped, the task still runs.
            drop(pool.submit(move || {
                gate.wait();
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        gate.open();
    }
    assert_eq!(done.load(Ordering::SeqCst), 20);
}

#[test]
fn handles_are_futures() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let h = pool.submit(|| 21 * 2);
    // A minimal executor for one future: poll it, parking the thread between wake-ups.
    let value = block_on(h);
    assert_eq!(value, Ok(42));
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[test]
fn try_wait_and_wait_timeout_give_the_handle_back_until_done() {
    let pool = ThreadPool::builder().workers(1).build().unwrap();
    let gate = Arc::new(Latch::default());
    let h = {
        let gate = Arc::clone(&gate);
        pool.submit(move || {
            gate.wait();
            5
        })
    };
    let h = h.try_wait().unwrap_err();
    let h = h
        .wait_timeout(std::time::Duration::from_millis(1))
        .unwrap_err();
    gate.open();
    assert_eq!(
        h.wait_timeout(std::time::Duration::from_secs(60)).ok(),
        Some(Ok(5))
    );
}

#[test]
fn zero_workers_is_a_clear_error() {
    let err = ThreadPool::builder().workers(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "a pool needs at least one worker (asked for 0)"
    );
}
