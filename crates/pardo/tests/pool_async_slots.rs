//! The async pool's live `running` counter and its slot numbers (the `worker` field of its
//! records): a running task is counted, and two tasks in flight never share a slot, however
//! often the pool was shrunk and grown.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use pardo::{AsyncPool, Executor, ShutdownMode};
use support::{eventually, within};

#[test]
fn a_running_task_is_counted_as_running() {
    within("async running counter", 30, || {
        let pool = AsyncPool::builder()
            .runtime_threads(1)
            .max_in_flight(4)
            .build()
            .unwrap();
        let gate = Arc::new(tokio::sync::Notify::new());
        let g = Arc::clone(&gate);
        let h = pool.submit(async move { g.notified().await });
        eventually("the task counted as running", || {
            pool.counters().running == 1
        });
        gate.notify_one();
        h.wait().unwrap();
        eventually("the task no longer running", || {
            pool.counters().running == 0
        });
        assert_eq!(pool.counters().done, 1);
    });
}

#[test]
fn slots_are_never_shared_after_shrinking_and_growing() {
    let slots = within("async slots after resizes", 30, || {
        let pool = AsyncPool::builder()
            .runtime_threads(2)
            .max_in_flight(2)
            .build()
            .unwrap();
        for _ in 0..3 {
            pool.set_workers(1).unwrap();
            pool.set_workers(2).unwrap();
        }
        // Rounds of two tasks that can only pass the barrier together: both are in flight at
        // once, so their slots must differ.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = Arc::clone(&barrier);
                pool.submit(async move {
                    b.wait().await;
                })
            })
            .collect();
        for h in handles {
            h.wait().unwrap();
        }
        let records = pool.recorder().records();
        pool.shutdown(ShutdownMode::Wait);
        records
    });
    assert_eq!(slots.len(), 8);
    // Barrier rounds pair tasks by arrival, not by id, so check the records themselves: two
    // records on one slot never overlap in time.
    let mut by_slot: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for r in &slots {
        by_slot
            .entry(r.worker)
            .or_default()
            .push((r.started_ns, r.finished_ns, r.id));
    }
    for (slot, mut spans) in by_slot {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "slot {slot} ran {} and {} at once: {spans:?}",
                w[0].2,
                w[1].2
            );
        }
    }
}
