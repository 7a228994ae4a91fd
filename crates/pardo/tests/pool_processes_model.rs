//! A model-based property test of the process pool: random sequences of submit, resize,
//! cancel, panicking and aborting tasks, ended by a shutdown or a drop. Whatever the sequence:
//! every handle completes within a bound, with the result its task calls for; every task has
//! exactly one record, whose outcome matches its handle; and no worker process — running or
//! zombie — is left once the pool is gone. Workers are this test binary re-executed (see
//! support/harness.rs), so process spawns keep the case count modest.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mod.rs"]
mod support;
#[path = "support/tasks.rs"]
mod tasks;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use pardo::{Executor, Handle, Outcome, ProcessPool, ShutdownMode, TaskError, TaskId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tasks::*;

fn main() -> ExitCode {
    pardo::worker_hook();
    harness::run(&[(
        "random_sequences_complete_every_handle_and_leave_no_worker",
        random_sequences_complete_every_handle_and_leave_no_worker,
    )])
}

/// A hang detector for one handle: far above what a correct pool needs.
const HANG: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
enum Op {
    /// A task that returns x².
    Square(u64),
    /// A task that holds its worker for a few milliseconds, so later tasks queue up.
    Sleep(u64),
    /// A task that panics (the worker lives on).
    Panic,
    /// A task that aborts its worker (a replacement takes over).
    Abort,
    /// A task that ends its worker with `exit(code)`.
    Exit(i32),
    /// A resize to 1..=3 workers; once it settles, exactly that many worker processes run.
    SetWorkers(usize),
    /// Cancels the n-th handle so far (modulo their number).
    Cancel(usize),
    /// Waits for the oldest handle not yet waited for.
    WaitOldest,
}

#[derive(Clone, Copy, Debug)]
enum End {
    Wait,
    CancelPending,
    Drop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..1_000u64).prop_map(Op::Square),
        2 => (0..15u64).prop_map(Op::Sleep),
        1 => Just(Op::Panic),
        1 => Just(Op::Abort),
        1 => (1..5i32).prop_map(Op::Exit),
        2 => (1..=3usize).prop_map(Op::SetWorkers),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => Just(Op::WaitOldest),
    ]
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![Just(End::Wait), Just(End::CancelPending), Just(End::Drop)]
}

/// What a task's result must be, given what it was and whether it was cancelled first.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Value(u64),
    Panic,
    Abort,
    Exit(i32),
}

struct Submitted {
    handle: Option<Handle<u64>>,
    id: TaskId,
    expect: Expect,
    /// `cancel()` returned true: the task never ran.
    cancelled: bool,
    /// The result, once waited for.
    result: Option<Result<u64, TaskError>>,
}

pardo::task_fn! {
    /// Panics; typed like the other model tasks.
    pub PanicU64(_unit: ()) -> u64 { panic!("model panic") }
}

pardo::task_fn! {
    /// Aborts its worker; typed like the other model tasks.
    pub AbortU64(_unit: ()) -> u64 { std::process::abort() }
}

pardo::task_fn! {
    /// Exits its worker with `code`; typed like the other model tasks.
    pub ExitU64(code: i32) -> u64 { std::process::exit(code) }
}

pardo::task_fn! {
    /// Sleeps, then returns the time it slept.
    pub SleepU64(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

fn random_sequences_complete_every_handle_and_leave_no_worker() {
    let config = Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = (1..=3usize, prop::collection::vec(op(), 1..14), end());
    TestRunner::new(config)
        .run(&strategy, |(workers, ops, end)| {
            run_case(workers, &ops, end)
        })
        .unwrap();
}

fn run_case(workers: usize, ops: &[Op], end: End) -> Result<(), TestCaseError> {
    let pool = ProcessPool::builder().workers(workers).build().unwrap();
    let recorder = pool.recorder().clone();
    let mut tasks: Vec<Submitted> = Vec::new();
    let mut oldest = 0;
    for op in ops {
        let (handle, expect) = match op {
            Op::Square(x) => (pool.submit(Square, *x), Expect::Value(x * x)),
            Op::Sleep(ms) => (pool.submit(SleepU64, *ms), Expect::Value(*ms)),
            Op::Panic => (pool.submit(PanicU64, ()), Expect::Panic),
            Op::Abort => (pool.submit(AbortU64, ()), Expect::Abort),
            Op::Exit(code) => (pool.submit(ExitU64, *code), Expect::Exit(*code)),
            Op::SetWorkers(n) => {
                pool.set_workers(*n).unwrap();
                prop_assert_eq!(pool.workers(), *n);
                settles(&pool, *n)?;
                continue;
            }
            Op::Cancel(k) => {
                if !tasks.is_empty() {
                    let n = tasks.len();
                    let t = &mut tasks[k % n];
                    if let Some(h) = &t.handle {
                        t.cancelled |= h.cancel();
                    }
                }
                continue;
            }
            Op::WaitOldest => {
                if let Some(t) = tasks.get_mut(oldest) {
                    wait(t)?;
                    oldest += 1;
                }
                continue;
            }
        };
        tasks.push(Submitted {
            id: handle.id(),
            handle: Some(handle),
            expect,
            cancelled: false,
            result: None,
        });
    }
    match end {
        End::Wait => drop(pool.shutdown(ShutdownMode::Wait)),
        End::CancelPending => drop(pool.shutdown(ShutdownMode::CancelPending)),
        End::Drop => drop(pool),
    }
    for t in &mut tasks {
        wait(t)?;
    }
    // Exactly one record per task, matching what its handle said.
    let records = recorder.records();
    let mut by_id: HashMap<TaskId, Vec<Outcome>> = HashMap::new();
    for r in &records {
        by_id.entry(r.id).or_default().push(r.outcome);
    }
    prop_assert_eq!(records.len(), tasks.len(), "{:?}", records);
    for t in &tasks {
        let outcomes = by_id.get(&t.id).cloned().unwrap_or_default();
        let result = t.result.as_ref().expect("waited for");
        let expected = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => e.outcome(),
        };
        prop_assert_eq!(outcomes, vec![expected], "task {}: {:?}", t.id, result);
        if t.cancelled {
            prop_assert!(
                matches!(result, Err(TaskError::Cancelled { .. })),
                "{:?}",
                result
            );
            continue;
        }
        match (t.expect, result) {
            (_, Err(TaskError::Cancelled { .. })) => {
                prop_assert!(
                    matches!(end, End::CancelPending),
                    "only a cancelling shutdown cancels uncancelled tasks: {:?}",
                    result
                );
            }
            (Expect::Value(v), r) => prop_assert_eq!(r, &Ok(v)),
            (Expect::Panic, r) => {
                prop_assert!(r.as_ref().is_err_and(TaskError::is_panic), "{:?}", r)
            }
            (Expect::Abort, r) => prop_assert!(
                matches!(
                    r,
                    Err(TaskError::WorkerDied {
                        signal: Some(libc::SIGABRT),
                        ..
                    })
                ),
                "{:?}",
                r
            ),
            (Expect::Exit(code), r) => {
                prop_assert!(
                    matches!(
                        r,
                        Err(TaskError::WorkerDied {
                            signal: None,
                            exit_code: Some(c),
                            ..
                        }) if *c == code
                    ),
                    "{:?}",
                    r
                );
                prop_assert_eq!(by_id[&t.id].clone(), vec![Outcome::Failed]);
            }
        }
    }
    prop_assert_eq!(recorder.counters().running, 0);
    // No worker is left, not even as a zombie.
    prop_assert_eq!(all_children(), Vec::<u32>::new());
    Ok(())
}

/// Waits until exactly `n` worker processes run (the pool's and the kernel's count agree),
/// failing the case if that never happens. Workers that crashed are replaced on the way, and
/// workers above a shrink retire after their task, hence a bound rather than an instant check.
fn settles(pool: &ProcessPool, n: usize) -> Result<(), TestCaseError> {
    let limit = std::time::Instant::now() + HANG;
    loop {
        let mut pids = pool.worker_pids();
        pids.sort_unstable();
        let children = live_children();
        if pids.len() == n && children == pids {
            return Ok(());
        }
        if std::time::Instant::now() > limit {
            return Err(TestCaseError::fail(format!(
                "{n} workers wanted; the pool lists {pids:?}, the kernel {children:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait(t: &mut Submitted) -> Result<(), TestCaseError> {
    if let Some(h) = t.handle.take() {
        match h.wait_timeout(HANG) {
            Ok(result) => t.result = Some(result),
            Err(_) => return Err(TestCaseError::fail(format!("task {} hangs", t.id))),
        }
    }
    Ok(())
}
