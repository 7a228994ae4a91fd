//! The async pool's maps: an ordered `map` whose window is wider than the in-flight bound (a
//! slow task holds back only its own result), `map_unordered` in completion order, the window
//! setter, the errors for zero, and the deprecated names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pardo::{iter_stream, AsyncPool, Executor, PoolError, ShutdownMode, WINDOW_PER_IN_FLIGHT};
use tokio::sync::{Notify, Semaphore};

/// A hang detector: far above what a correct pool needs, so it only turns a deadlock into a
/// failure with a message.
const HANG: Duration = Duration::from_secs(30);

/// Counts tasks in flight and finished, remembers the most in flight at once, and lets a
/// waiter know when a count of finished tasks is reached.
#[derive(Default)]
struct Tally {
    now: AtomicUsize,
    most: AtomicUsize,
    done: AtomicUsize,
    changed: Notify,
}

impl Tally {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until at least `n` tasks have finished; false if that took longer than [`HANG`].
    async fn until_done(&self, n: usize) -> bool {
        let reached = async {
            loop {
                let changed = self.changed.notified();
                if self.done.load(Ordering::SeqCst) >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(HANG, reached).await.is_ok()
    }
}

/// The gate that holds item 0, opened when dropped at the latest: a failing assertion must not
/// leave the pool waiting for the held task forever as it is dropped.
struct Gate(Arc<Semaphore>);

impl Gate {
    fn new() -> Gate {
        Gate(Arc::new(Semaphore::new(0)))
    }

    fn open(&self) {
        if self.0.available_permits() == 0 {
            self.0.add_permits(1);
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// A task that holds item 0 until `gate` opens and counts every other one through `tally`.
fn held_at_zero(
    tally: &Arc<Tally>,
    gate: &Gate,
) -> impl FnMut(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> {
    let (tally, gate) = (Arc::clone(tally), Arc::clone(&gate.0));
    move |x| {
        let (tally, gate) = (Arc::clone(&tally), Arc::clone(&gate));
        Box::pin(async move {
            tally.enter();
            if x == 0 {
                drop(gate.acquire().await.expect("the gate is never closed"));
            }
            tokio::task::yield_now().await;
            tally.leave();
            x * 10
        })
    }
}

#[test]
fn a_slow_head_does_not_stall_the_ordered_map() {
    const BOUND: usize = 2;
    let window = BOUND * WINDOW_PER_IN_FLIGHT;
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(BOUND)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let gate = Gate::new();
    let inputs = 0..20u64;
    let (got, behind_the_head) = pool.block_on(async {
        let mut results = pool.map(iter_stream(inputs.clone()), held_at_zero(&tally, &gate));
        // The first poll fills the window: more tasks submitted than may run at once.
        let first = futures_poll_once(&mut results).await;
        assert!(
            first.is_none(),
            "item 0 is held, so nothing can be yielded yet"
        );
        assert_eq!(pool.counters().submitted, window as u64);
        // Every task in the window but the head runs to its end while the head is held.
        let reached = tally.until_done(window - 1).await;
        let behind_the_head = tally.done.load(Ordering::SeqCst);
        gate.open();
        assert!(
            reached,
            "only {behind_the_head} of the {} tasks behind a held head finished",
            window - 1
        );
        let mut got = Vec::new();
        while let Some(r) = results.next().await {
            got.push(r.unwrap());
        }
        (got, behind_the_head)
    });
    assert_eq!(got, inputs.map(|x| x * 10).collect::<Vec<_>>());
    assert_eq!(behind_the_head, window - 1);
    assert_eq!(tally.most.load(Ordering::SeqCst), BOUND, "the bound holds");
    assert_eq!(pool.shutdown(ShutdownMode::Wait).tasks, 20);
}

#[test]
fn the_window_setter_bounds_the_tasks_submitted_ahead() {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .max_in_flight(4)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let gate = Gate::new();
    let got = pool.block_on(async {
        let mut results = pool
            .map(iter_stream(0..10u64), held_at_zero(&tally, &gate))
            .window(3);
        assert!(futures_poll_once(&mut results).await.is_none());
        assert_eq!(pool.counters().submitted, 3, "a window of 3");
        // The two behind the head finish; no more are submitted while the head is held.
        assert!(tally.until_done(2).await);
        tokio::task::yield_now().await;
        assert!(futures_poll_once(&mut results).await.is_none());
        assert_eq!(pool.counters().submitted, 3);
        gate.open();
        let mut got = Vec::new();
        while let Some(r) = results.next().await {
            got.push(r.unwrap());
        }
        got
    });
    assert_eq!(got, (0..10u64).map(|x| x * 10).collect::<Vec<_>>());
}

#[test]
fn map_unordered_yields_in_completion_order_with_task_ids() {
    let pool = AsyncPool::builder()
        .runtime_threads(2)
        .max_in_flight(2)
        .build()
        .unwrap();
    let tally = Arc::new(Tally::default());
    let gate = Gate::new();
    let (early, last) = pool.block_on(async {
        let mut results = pool.map_unordered(iter_stream(0..6u64), held_at_zero(&tally, &gate));
        // Items 1..=5 finish while item 0 is held, and are yielded before it.
        let mut early = Vec::new();
        for _ in 0..5 {
            let next = tokio::time::timeout(HANG, results.next()).await;
            let (id, r) = next.expect("a finished task was not yielded").unwrap();
            early.push((id, r.unwrap()));
        }
        gate.open();
        let (id, r) = results.next().await.unwrap();
        assert!(results.next().await.is_none());
        (early, (id, r.unwrap()))
    });
    let mut values: Vec<u64> = early.iter().map(|(_, v)| *v).collect();
    values.sort_unstable();
    assert_eq!(values, [10, 20, 30, 40, 50]);
    assert_eq!(last.1, 0, "the held item comes last");
    // Ids count up in input order: the held first input has the smallest.
    assert!(
        early.iter().all(|(id, _)| *id > last.0),
        "{early:?} {last:?}"
    );
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.tasks, 6);
}

#[test]
fn map_unordered_reports_panics_as_errors_and_goes_on() {
    let pool = AsyncPool::builder()
        .runtime_threads(1)
        .max_in_flight(3)
        .build()
        .unwrap();
    let mut got = pool.block_on(async {
        let mut results = pool.map_unordered(iter_stream(0..5u64), |x| async move {
            if std::hint::black_box(x == 2) {
                panic!("item two");
            }
            x
        });
        let mut got = Vec::new();
        while let Some((_, r)) = results.next().await {
            got.push(r.map_err(|e| e.panic_message().map(str::to_owned)));
        }
        got
    });
    got.sort();
    assert_eq!(
        got,
        [Ok(0), Ok(1), Ok(3), Ok(4), Err(Some("item two".to_owned()))]
    );
}

#[test]
fn zero_in_flight_is_its_own_error() {
    let built = AsyncPool::builder().max_in_flight(0).build();
    assert!(matches!(built, Err(PoolError::ZeroInFlight)), "{built:?}");
    let message = PoolError::ZeroInFlight.to_string();
    assert!(message.contains("max_in_flight"), "{message}");
    let threads = AsyncPool::builder().runtime_threads(0).build();
    assert!(
        matches!(threads, Err(PoolError::ZeroWorkers)),
        "{threads:?}"
    );
    let pool = AsyncPool::builder().runtime_threads(1).build().unwrap();
    assert!(matches!(pool.set_workers(0), Err(PoolError::ZeroInFlight)));
    assert_eq!(pool.workers(), pardo::Executor::workers(&pool));
}

#[test]
#[allow(deprecated)]
fn the_old_names_still_work() {
    let pool = AsyncPool::builder()
        .workers(1)
        .max_in_flight(2)
        .build()
        .unwrap();
    let report_threads = pool
        .recorder()
        .report()
        .run
        .settings
        .iter()
        .find(|(k, _)| k == "runtime_threads")
        .map(|(_, v)| v.clone());
    assert_eq!(report_threads.as_deref(), Some("1"));
    let got = pool.block_on(async {
        let mut results = pool
            .map(pardo::pool_stream(1..=3u8), |x| async move { x })
            .in_flight(1);
        let mut got = Vec::new();
        while let Some(r) = results.next().await {
            got.push(r.unwrap());
        }
        got
    });
    assert_eq!(got, [1, 2, 3]);
}

/// Polls `stream` once: its item if one is ready, `None` if it is pending.
async fn futures_poll_once<S: futures_core::Stream + Unpin>(
    stream: &mut S,
) -> Option<Option<S::Item>> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *stream).poll_next(cx) {
            std::task::Poll::Ready(item) => Some(item),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
