//! map, map_unordered, as_completed and scope on the thread pool.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pardo::{as_completed, TaskError, ThreadPool};

/// Deterministic "random" durations: some items much slower than others.
fn uneven_work(i: u64) -> u64 {
    let rounds = (i.wrapping_mul(2654435761) % 7) * 3_000;
    support::spin(rounds);
    i * 3
}

#[test]
fn map_yields_in_input_order_whatever_the_task_durations() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    for chunk in [None, Some(1), Some(7)] {
        let m = pool.map(0..300u64, uneven_work);
        let m = match chunk {
            Some(c) => m.chunk_size(c),
            None => m,
        };
        let got: Vec<u64> = m.map(Result::unwrap).collect();
        assert_eq!(
            got,
            (0..300u64).map(|i| i * 3).collect::<Vec<_>>(),
            "chunk {chunk:?}"
        );
    }
}

#[test]
fn map_pulls_inputs_lazily_with_a_bounded_window() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let inputs = (0..u64::MAX).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // An endless input: only what the window needs is ever pulled.
    let first: Vec<u64> = pool
        .map(inputs, |x| x + 1)
        .chunk_size(4)
        .in_flight(3)
        .take(10)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (1..=10).collect::<Vec<_>>());
    let n = pulled.load(Ordering::SeqCst);
    assert!(n >= 10, "at least what was consumed was pulled ({n})");
    assert!(
        n <= 10 + 4 * 4,
        "no more than the window ahead of the consumer ({n})"
    );
}

#[test]
fn a_panicking_item_is_its_own_error_and_its_neighbours_succeed() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let got: Vec<Result<u32, TaskError>> = pool
        .map(0..20u32, |x| {
            assert!(x != 13, "unlucky {x}");
            x
        })
        .chunk_size(5)
        .collect();
    for (i, r) in got.iter().enumerate() {
        if i == 13 {
            let e = r.as_ref().unwrap_err();
            assert!(e.is_panic());
            assert_eq!(e.id().0, 14, "item 13 is task #14");
            assert_eq!(e.panic_message(), Some("unlucky 13"));
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u32)));
        }
    }
}

#[test]
fn map_batches_tiny_items_and_keeps_records_per_batch() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let sum: u64 = pool.map(0..100_000u64, |x| x ^ 1).map(Result::unwrap).sum();
    assert_eq!(sum, (0..100_000u64).map(|x| x ^ 1).sum::<u64>());
    let records = pool.recorder().records();
    let items: u64 = records.iter().map(|r| u64::from(r.items)).sum();
    assert_eq!(
        items, 100_000,
        "every item is covered by exactly one record"
    );
    assert!(
        records.len() < 10_000,
        "tiny items were batched ({} records)",
        records.len()
    );
    assert_eq!(pool.report().items, 100_000);
}

#[test]
fn map_unordered_yields_every_item_once() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let got: Vec<(u64, u64)> = pool
        .map_unordered(0..500u64, uneven_work)
        .chunk_size(3)
        .map(|(id, r)| (id.0, r.unwrap()))
        .collect();
    assert_eq!(got.len(), 500);
    for (id, v) in &got {
        assert_eq!(*v, (id - 1) * 3, "task #{id} is input {}", id - 1);
    }
    let ids: BTreeSet<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=500).collect());
}

#[test]
fn as_completed_yields_each_handle_exactly_once() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let handles: Vec<_> = (0..200u64)
        .map(|i| pool.submit(move || uneven_work(i)))
        .collect();
    let ids: Vec<u64> = handles.iter().map(|h| h.id().0).collect();
    let mut seen = Vec::new();
    for (id, r) in as_completed(handles) {
        assert_eq!(r.unwrap(), (id.0 - 1) * 3);
        seen.push(id.0);
    }
    seen.sort();
    assert_eq!(seen, ids);
}

#[test]
fn scope_tasks_borrow_and_mutate_local_data() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let mut data: Vec<u64> = (0..1_000).collect();
    let factor = 3;
    pool.scope(|s| {
        for part in data.chunks_mut(100) {
            s.spawn(move || part.iter_mut().for_each(|x| *x *= factor));
        }
    });
    assert_eq!(data, (0..1_000).map(|x| x * 3).collect::<Vec<u64>>());
}

#[test]
fn scope_waits_for_its_tasks_even_when_the_body_panics() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let done = AtomicUsize::new(0);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.scope(|s| {
            for _ in 0..10 {
                s.spawn(|| {
                    support::spin(10_000);
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            panic!("body gives up");
        })
    }));
    assert!(result.is_err());
    assert_eq!(done.load(Ordering::SeqCst), 10);
}

#[test]
fn map_slice_returns_results_in_order_with_one_record_per_chunk() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let input: Vec<u64> = (0..100_003).collect();
    let out = pool.map_slice(&input, |x| x * 2 + 1).unwrap();
    assert_eq!(out, input.iter().map(|x| x * 2 + 1).collect::<Vec<_>>());
    let records = pool.recorder().records();
    assert!(
        records.len() > 1 && records.len() < 1_000,
        "{} chunk records",
        records.len()
    );
    let empty: Vec<u64> = pool.map_slice(&[] as &[u64], |x| *x).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn map_slice_reports_a_panicking_item_and_keeps_the_pool() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let input: Vec<String> = (0..1_000).map(|i| i.to_string()).collect();
    let err = pool
        .map_slice(&input, |s| {
            assert!(s != "777", "bad item {s}");
            s.clone()
        })
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("bad item 777"));
    // Owned results written before the panic are leaked, not double-dropped; the pool goes on.
    assert_eq!(
        pool.map_slice(&input[..3], |s| s.len()).unwrap(),
        vec![1, 1, 1]
    );
}

#[test]
fn map_slice_counts_every_item_in_the_report() {
    let pool = ThreadPool::builder().workers(2).build().unwrap();
    let input: Vec<u64> = (0..1_000).collect();
    let out = pool.map_slice(&input, |x| x + 1).unwrap();
    assert_eq!(out.len(), 1_000);
    let report = pool.report();
    assert_eq!(report.items, 1_000, "{report}");
    assert!(report.tasks < report.items, "chunks, not one task per item");
}
