//! A model-based property test over every pool: random sequences of submit, resize, cancel,
//! panicking tasks, tasks held at a gate, and an ending (shutdown in either mode, or drop).
//! Whatever the sequence, every handle completes (value, error or cancelled) within a bound,
//! with the outcome the model predicts, each attempt has exactly one record, and no thread is
//! left behind.
//!
//! A pool joins the model by implementing [`ModelPool`] (build it, submit each [`Work`], open
//! its gate, end it) and adding one `name: Type` line to `model_tests!` at the end.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pardo::monitor::{Recorder, TaskRecord};
use pardo::{AsyncPool, Executor, Handle, Outcome, ShutdownMode, TaskError, TaskId, ThreadPool};
use proptest::prelude::*;
use support::{pardo_threads, within, Latch};

/// Bound on any one handle, shutdown or case: a hang detector, far above what a pool needs.
const LIMIT_S: u64 = 30;

/// What one submitted task does.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// Burns `spin` rounds of CPU, then returns `value`.
    Value { value: u64, spin: u64 },
    /// Panics.
    Panic,
    /// Waits until the pool's gate opens ([`ModelPool::open_gate`]), then returns `value`.
    Held { value: u64 },
    /// Uses its own pool from inside (where a pool can; else as `Value`), then returns `value`.
    Nested { value: u64 },
}

/// How the sequence ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Shutdown(ShutdownMode),
    Drop,
}

/// A pool under test.
trait ModelPool: Sized {
    /// True when a slot (the `worker` of a record) runs one task at a time, so two records of
    /// one slot never overlap. Not so for the thread pool: a worker that waits inside a task
    /// runs other tasks meanwhile, nested in the waiting one's time.
    const ONE_TASK_PER_SLOT: bool = true;
    /// A pool with `workers` workers and a closed gate.
    fn build(workers: usize) -> Self;
    /// Submits one task.
    fn submit(&self, work: Work) -> Handle<u64>;
    /// Lets every [`Work::Held`] task, submitted or still to come, finish.
    fn open_gate(&self);
    /// The pool, for resizing and its recorder.
    fn executor(&self) -> &dyn Executor;
    /// Where [`Work::Nested`] tasks note the ids of the tasks they submit themselves.
    fn inner_ids(&self) -> Arc<Mutex<Vec<TaskId>>> {
        Arc::default()
    }
    /// Ends the pool as `end` says; returns only once the pool says it is done.
    fn end(self, end: End);
}

/// The thread pool in the model. Nested tasks reach their pool through a weak reference;
/// while one uses it, it holds the pool, so a dropped pool may end inside one of its tasks.
struct Threads {
    pool: Arc<ThreadPool>,
    gate: Arc<Latch>,
    inner: Arc<Mutex<Vec<TaskId>>>,
}

impl ModelPool for Threads {
    const ONE_TASK_PER_SLOT: bool = false;

    fn build(workers: usize) -> Self {
        Threads {
            pool: Arc::new(ThreadPool::builder().workers(workers).build().unwrap()),
            gate: Arc::default(),
            inner: Arc::default(),
        }
    }

    fn submit(&self, work: Work) -> Handle<u64> {
        let (gate, inner_ids) = (Arc::clone(&self.gate), Arc::clone(&self.inner));
        let me = Arc::downgrade(&self.pool);
        self.pool.submit(move || {
            if let (Work::Nested { value }, Some(pool)) = (work, me.upgrade()) {
                let mut out = [0u64; 2];
                pool.scope(|s| {
                    for o in out.iter_mut() {
                        let h = s.spawn(move || *o = value);
                        inner_ids.lock().unwrap().push(h.id());
                    }
                });
                let h = pool.submit(move || value);
                inner_ids.lock().unwrap().push(h.id());
                // Cancelled when the pool is shut down with CancelPending meanwhile.
                let inner = h.wait();
                assert!(matches!(inner, Ok(_) | Err(TaskError::Cancelled { .. })));
            }
            run(work, || gate.wait())
        })
    }

    fn inner_ids(&self) -> Arc<Mutex<Vec<TaskId>>> {
        Arc::clone(&self.inner)
    }

    fn open_gate(&self) {
        self.gate.open();
    }

    fn executor(&self) -> &dyn Executor {
        &*self.pool
    }

    fn end(self, end: End) {
        match end {
            End::Shutdown(mode) => {
                // Shutting down needs the pool itself: wait for nested tasks to let go of it.
                let mut pool = self.pool;
                let pool = loop {
                    match Arc::try_unwrap(pool) {
                        Ok(p) => break p,
                        Err(back) => pool = back,
                    }
                    std::thread::yield_now();
                };
                drop(pool.shutdown(mode));
            }
            End::Drop => drop(self.pool),
        }
    }
}

/// The async pool in the model.
struct Async {
    pool: AsyncPool,
    gate: Arc<tokio::sync::Semaphore>,
}

impl ModelPool for Async {
    fn build(workers: usize) -> Self {
        Async {
            pool: AsyncPool::builder()
                .runtime_threads(2)
                .max_in_flight(workers)
                .build()
                .unwrap(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    fn submit(&self, work: Work) -> Handle<u64> {
        let gate = Arc::clone(&self.gate);
        self.pool.submit(async move {
            if let Work::Held { .. } = work {
                // The gate is a semaphore that is closed to open it: every waiter wakes.
                let _ = gate.acquire().await;
            }
            run(work, || ())
        })
    }

    fn open_gate(&self) {
        self.gate.close();
    }

    fn executor(&self) -> &dyn Executor {
        &self.pool
    }

    fn end(self, end: End) {
        match end {
            End::Shutdown(mode) => drop(self.pool.shutdown(mode)),
            End::Drop => drop(self.pool),
        }
    }
}

/// Does `work`; `hold` waits at the gate.
fn run(work: Work, hold: impl FnOnce()) -> u64 {
    match work {
        Work::Value { value, spin } => {
            std::hint::black_box(support::spin(spin));
            value
        }
        Work::Panic => panic!("model task panicked"),
        Work::Held { value } => {
            hold();
            value
        }
        Work::Nested { value } => value,
    }
}

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Op {
    Submit(Work),
    /// Sets the worker count (1..=3).
    Resize(usize),
    /// Cancels the handle at this position (modulo the handles so far).
    Cancel(usize),
}

fn work() -> impl Strategy<Value = Work> {
    prop_oneof![
        4 => (0u64..1000, 0u64..20_000).prop_map(|(value, spin)| Work::Value { value, spin }),
        1 => Just(Work::Panic),
        2 => (0u64..1000).prop_map(|value| Work::Held { value }),
        2 => (0u64..1000).prop_map(|value| Work::Nested { value }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => work().prop_map(Op::Submit),
        2 => (1usize..=3).prop_map(Op::Resize),
        2 => any::<usize>().prop_map(Op::Cancel),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Shutdown(ShutdownMode::Wait)),
        Just(End::Shutdown(ShutdownMode::CancelPending)),
        Just(End::Drop),
    ]
}

/// Fails if two tasks that ran (slot 0 is for tasks that never did) share a slot at once.
fn one_task_per_slot(records: &[TaskRecord]) {
    let mut by_slot: BTreeMap<u32, Vec<&TaskRecord>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.worker > 0 && r.outcome != Outcome::Cancelled)
    {
        by_slot.entry(r.worker).or_default().push(r);
    }
    for (slot, mut rs) in by_slot {
        rs.sort_by_key(|r| r.started_ns);
        for w in rs.windows(2) {
            assert!(
                w[0].finished_ns <= w[1].started_ns,
                "slot {slot} ran {} and {} at once",
                w[0].id,
                w[1].id
            );
        }
    }
}

/// The model tests count threads, so they run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `ops` then `end` on a fresh pool of kind `P` and checks every promise the pools make.
fn check<P: ModelPool + 'static>(workers: usize, ops: Vec<Op>, end: End) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Longer than the checks inside, so that a stuck check reports itself, not a bare hang.
    within("a model sequence", 3 * LIMIT_S, move || {
        // A listing of /proc/self/task can miss a thread that exits while it is read, so the
        // count before is the largest of a few.
        let before = (0..3).map(|_| pardo_threads().len()).max().unwrap_or(0);
        let pool = P::build(workers);
        let recorder: Recorder = pool.executor().recorder().clone();
        let inner_ids = pool.inner_ids();
        let mut handles: Vec<(Work, bool, Handle<u64>)> = Vec::new();
        for op in &ops {
            match *op {
                Op::Submit(w) => handles.push((w, false, pool.submit(w))),
                Op::Resize(n) => pool.executor().set_workers(n).unwrap(),
                Op::Cancel(i) if !handles.is_empty() => {
                    let at = i % handles.len();
                    let won = handles[at].2.cancel();
                    handles[at].1 |= won;
                }
                Op::Cancel(_) => {}
            }
        }
        // Held tasks would keep a shutdown waiting for ever: release them first, as a user must.
        pool.open_gate();
        pool.end(end);
        let cancelling = matches!(end, End::Shutdown(ShutdownMode::CancelPending));
        let mut ids = Vec::new();
        for (work, cancelled, h) in handles {
            let id = h.id();
            ids.push(id);
            let got = h
                .wait_timeout(Duration::from_secs(LIMIT_S))
                .unwrap_or_else(|h| panic!("handle {:?} never completed", h.id()));
            match got {
                Err(TaskError::Cancelled { .. }) => {
                    assert!(
                        cancelled || cancelling,
                        "{id} cancelled, yet nobody cancelled it"
                    )
                }
                _ if cancelled => panic!("{id}: cancel() won, yet the task did not end cancelled"),
                Ok(v) => match work {
                    Work::Value { value, .. } | Work::Held { value } | Work::Nested { value } => {
                        assert_eq!(v, value)
                    }
                    Work::Panic => panic!("{id}: a panicking task returned {v}"),
                },
                Err(e) => assert!(
                    matches!(work, Work::Panic) && e.is_panic(),
                    "{id}: {work:?} ended with {e}"
                ),
            }
        }
        let records = recorder.records();
        if P::ONE_TASK_PER_SLOT {
            one_task_per_slot(&records);
        }
        let mut per_id: BTreeMap<_, Vec<Outcome>> = BTreeMap::new();
        for r in records {
            per_id.entry(r.id).or_default().push(r.outcome);
        }
        ids.extend(inner_ids.lock().unwrap().iter().copied());
        for id in &ids {
            let n = per_id.get(id).map_or(0, Vec::len);
            assert_eq!(n, 1, "{id} has {n} records: {:?}", per_id.get(id));
        }
        assert_eq!(per_id.len(), ids.len(), "records of tasks nobody submitted");
        // A joined thread leaves /proc a moment after the join returns.
        let gone = (0..60_000).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            pardo_threads().len() <= before
        });
        assert!(
            gone,
            "threads the pool left: {before} before, now {:?}",
            pardo_threads()
        );
    });
}

/// One property test per pool: `name: ModelPool type`.
macro_rules! model_tests {
    ($($name:ident: $pool:ty),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(
                    workers in 1usize..=3,
                    ops in proptest::collection::vec(op(), 0..30),
                    end in end(),
                ) {
                    check::<$pool>(workers, ops, end);
                }
            )*
        }
    };
}

model_tests! {
    thread_pool_keeps_every_promise: Threads,
    async_pool_keeps_every_promise: Async,
}
