//! A pool used from inside its own tasks: nested `map_slice`, `scope`, `submit(..).wait()` and
//! `map`, and a pool dropped by one of its own tasks. Each scenario runs under a hang detector,
//! because the failure these pin is a deadlock.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use pardo::{Executor, ShutdownMode, ThreadPool};
use support::within;

const LIMIT_S: u64 = 30;

/// Four outer tasks on two workers, each blocked until every worker runs one: then every
/// worker is inside an outer task when the nested calls start, the case that deadlocked.
fn every_worker_nests<R: Send + 'static>(
    nested: impl Fn(&ThreadPool, u64) -> R + Send + Sync + 'static,
) -> Vec<R> {
    let pool = Arc::new(ThreadPool::builder().workers(2).build().unwrap());
    let barrier = Arc::new(Barrier::new(2));
    let nested = Arc::new(nested);
    let outer: Vec<_> = (0..4u64)
        .map(|i| {
            let (p, b, f) = (Arc::clone(&pool), Arc::clone(&barrier), Arc::clone(&nested));
            pool.submit(move || {
                if i < 2 {
                    b.wait();
                }
                f(&p, i)
            })
        })
        .collect();
    outer.into_iter().map(|h| h.wait().unwrap()).collect()
}

#[test]
fn map_slice_inside_every_worker_completes() {
    let got = within("nested map_slice", LIMIT_S, || {
        every_worker_nests(|pool, i| {
            let items: Vec<u64> = (0..100).collect();
            pool.map_slice(&items, |x| x + i)
                .unwrap()
                .iter()
                .sum::<u64>()
        })
    });
    assert_eq!(got, (0..4u64).map(|i| 4950 + 100 * i).collect::<Vec<_>>());
}

#[test]
fn scope_inside_every_worker_completes() {
    let got = within("nested scope", LIMIT_S, || {
        every_worker_nests(|pool, i| {
            let mut cells = [0u64; 8];
            pool.scope(|s| {
                for (k, c) in cells.iter_mut().enumerate() {
                    s.spawn(move || *c = k as u64 * i);
                }
            });
            cells.iter().sum::<u64>()
        })
    });
    assert_eq!(got, (0..4u64).map(|i| 28 * i).collect::<Vec<_>>());
}

#[test]
fn submit_and_wait_inside_every_worker_completes() {
    let got = within("nested submit + wait", LIMIT_S, || {
        every_worker_nests(|pool, i| pool.submit(move || i * 10).wait().unwrap())
    });
    assert_eq!(got, vec![0, 10, 20, 30]);
}

#[test]
fn map_and_map_unordered_inside_every_worker_complete() {
    let got = within("nested map", LIMIT_S, || {
        every_worker_nests(|pool, i| {
            let ordered: u64 = pool.map(0..50u64, move |x| x * i).map(Result::unwrap).sum();
            let unordered: u64 = pool
                .map_unordered(0..50u64, move |x| x * i)
                .map(|(_, r)| r.unwrap())
                .sum();
            (ordered, unordered)
        })
    });
    let want: Vec<_> = (0..4u64).map(|i| (1225 * i, 1225 * i)).collect();
    assert_eq!(got, want);
}

#[test]
fn nesting_three_levels_deep_on_one_worker_completes() {
    let total = within("three levels on one worker", LIMIT_S, || {
        let pool = Arc::new(ThreadPool::builder().workers(1).build().unwrap());
        let p1 = Arc::clone(&pool);
        pool.submit(move || {
            let p2 = Arc::clone(&p1);
            p1.submit(move || {
                let items = [1u64, 2, 3];
                p2.map_slice(&items, |x| x * 2).unwrap().iter().sum::<u64>()
            })
            .wait()
            .unwrap()
        })
        .wait()
        .unwrap()
    });
    assert_eq!(total, 12);
}

/// Hands a pool to a task once the task is queued: the task takes it out of the returned slot
/// after `ready` opens, so it always finds it there.
type PoolSlot = Arc<Mutex<Option<ThreadPool>>>;

#[test]
fn a_pool_dropped_by_its_own_task_still_runs_what_was_queued() {
    let (ran_at_drop, ran) = within("drop from inside a task", LIMIT_S, || {
        let pool = ThreadPool::builder().workers(2).build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let slot: PoolSlot = Arc::default();
        let gate = Arc::new(support::Latch::default());
        let queued: Vec<_> = (0..6)
            .map(|_| {
                let (ran, gate) = (Arc::clone(&ran), Arc::clone(&gate));
                pool.submit(move || {
                    gate.wait();
                    ran.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let (holder, seen, g) = (Arc::clone(&slot), Arc::clone(&ran), Arc::clone(&gate));
        let dropper = pool.submit(move || {
            g.wait();
            let pool = holder.lock().unwrap().take();
            assert!(
                pool.is_some(),
                "the pool was handed over before the gate opened"
            );
            // Dropping is shutdown(Wait): it returns once everything else has run.
            drop(pool);
            seen.load(Ordering::SeqCst)
        });
        *slot.lock().unwrap() = Some(pool);
        gate.open();
        let at_drop = dropper.wait().unwrap();
        for h in queued {
            h.wait().unwrap();
        }
        (at_drop, ran.load(Ordering::SeqCst))
    });
    assert_eq!(ran, 6);
    assert_eq!(ran_at_drop, 6, "drop waited for the other tasks");
}

#[test]
fn shutdown_cancel_pending_from_its_own_task_returns() {
    let report = within("shutdown from inside a task", LIMIT_S, || {
        let pool = ThreadPool::builder().workers(2).build().unwrap();
        let slot: PoolSlot = Arc::default();
        let ready = Arc::new(support::Latch::default());
        let (holder, r) = (Arc::clone(&slot), Arc::clone(&ready));
        let closer = pool.submit(move || {
            r.wait();
            let pool = holder.lock().unwrap().take();
            pool.map(|p| p.shutdown(ShutdownMode::CancelPending))
        });
        *slot.lock().unwrap() = Some(pool);
        ready.open();
        closer.wait().unwrap()
    });
    let report = report.expect("the task found the pool");
    assert_eq!(report.run.workers, 2);
}

#[test]
fn a_worker_helping_while_it_waits_keeps_the_resize_protocol() {
    // Nested waits while the pool shrinks and grows: the helping worker must neither leave
    // mid-task nor run a job twice.
    let sums = within("nested waits across a resize", LIMIT_S, || {
        let pool = Arc::new(ThreadPool::builder().workers(2).build().unwrap());
        let outer: Vec<_> = (0..6u64)
            .map(|i| {
                let p = Arc::clone(&pool);
                pool.submit(move || {
                    let items: Vec<u64> = (0..64).collect();
                    p.map_slice(&items, |x| x * i).unwrap().iter().sum::<u64>()
                })
            })
            .collect();
        pool.set_workers(1).unwrap();
        pool.set_workers(3).unwrap();
        let sums: Vec<u64> = outer.into_iter().map(|h| h.wait().unwrap()).collect();
        assert_eq!(pool.workers(), 3);
        sums
    });
    assert_eq!(sums, (0..6u64).map(|i| 2016 * i).collect::<Vec<_>>());
}
