//! An async pool dropped or shut down from inside one of its own tasks, or from another
//! runtime's async context, neither deadlocks nor panics: the other tasks run to their end
//! (on a single runtime thread too) and every handle completes.

mod support;

use std::sync::Arc;

use pardo::{AsyncPool, Handle, ShutdownMode};
use support::within;

/// A pool with one runtime thread, so a closing task that kept its thread would starve the
/// rest, and `n` tasks that finish only once `gate` is closed (opened, for a semaphore).
fn pool_with_held_tasks(n: u64) -> (AsyncPool, Arc<tokio::sync::Semaphore>, Vec<Handle<u64>>) {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .max_in_flight(8)
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let held = (0..n)
        .map(|i| {
            let gate = Arc::clone(&gate);
            pool.submit(async move {
                let _ = gate.acquire().await;
                i
            })
        })
        .collect();
    (pool, gate, held)
}

#[test]
fn a_task_may_drop_its_own_pool() {
    within("a pool dropped by its own task", 30, || {
        let (pool, gate, held) = pool_with_held_tasks(4);
        // The pool reaches its task only once submitted: the task may well start first.
        let (give, theirs) = tokio::sync::oneshot::channel::<AsyncPool>();
        let closer = pool.submit(async move {
            let pool = theirs.await.expect("the pool");
            // The held tasks can end only while this one waits in the drop.
            gate.close();
            drop(pool);
            "dropped"
        });
        give.send(pool)
            .expect("the closing task waits for the pool");
        assert_eq!(closer.wait(), Ok("dropped"));
        for (i, h) in (0u64..).zip(held) {
            assert_eq!(h.wait(), Ok(i));
        }
    });
}

#[test]
fn a_task_may_shut_down_its_own_pool_and_gets_the_others_report() {
    within("a pool shut down by its own task", 30, || {
        let (pool, gate, held) = pool_with_held_tasks(4);
        let (give, theirs) = tokio::sync::oneshot::channel::<AsyncPool>();
        let closer = pool.submit(async move {
            let pool = theirs.await.expect("the pool");
            gate.close();
            pool.shutdown(ShutdownMode::Wait).tasks
        });
        give.send(pool)
            .expect("the closing task waits for the pool");
        // Every task but the closing one had ended when the report was made.
        assert_eq!(closer.wait(), Ok(4));
        for (i, h) in (0u64..).zip(held) {
            assert_eq!(h.wait(), Ok(i));
        }
    });
}

#[test]
fn a_pool_may_be_dropped_in_another_runtimes_async_context() {
    within("a pool dropped under #[tokio::main]", 30, || {
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        outer.block_on(async {
            let (pool, gate, held) = pool_with_held_tasks(3);
            gate.close();
            let report = pool.shutdown(ShutdownMode::Wait);
            assert_eq!(report.tasks, 3);
            for (i, h) in (0u64..).zip(held) {
                assert_eq!(h.await, Ok(i));
            }
            let (pool, gate, _held) = pool_with_held_tasks(2);
            gate.close();
            drop(pool);
        });
    });
}
