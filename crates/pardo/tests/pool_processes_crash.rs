//! Crash containment in the process pool: each way a worker can die fails its own task only,
//! the pool replaces the worker and goes on, nothing runs twice, and no worker outlives the
//! pool or its parent. Workers are this test binary re-executed (see support/harness.rs).

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mod.rs"]
mod support;
#[path = "support/tasks.rs"]
mod tasks;

use std::io::BufRead;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use pardo::{Outcome, ProcessPool, ShutdownMode, TaskError};
use tasks::*;

/// Set by a test that re-runs this binary as a parent process that then dies.
const ROLE: &str = "PARDO_TEST_ROLE";

fn main() -> ExitCode {
    pardo::worker_hook();
    if let Ok(role) = std::env::var(ROLE) {
        doomed_parent(&role);
    }
    harness::run(&[
        (
            "panic_is_reported_and_the_worker_lives_on",
            panic_is_reported_and_the_worker_lives_on,
        ),
        ("abort_fails_only_its_task", abort_fails_only_its_task),
        ("sigkill_fails_only_its_task", sigkill_fails_only_its_task),
        ("sigsegv_fails_only_its_task", sigsegv_fails_only_its_task),
        (
            "crashes_in_a_map_lose_nothing_and_run_nothing_twice",
            crashes_in_a_map_lose_nothing_and_run_nothing_twice,
        ),
        (
            "timeout_kills_and_replaces_the_worker",
            timeout_kills_and_replaces_the_worker,
        ),
        (
            "memory_limit_hit_is_a_clear_error",
            memory_limit_hit_is_a_clear_error,
        ),
        ("no_worker_is_left_after_drop", no_worker_is_left_after_drop),
        (
            "no_orphans_after_the_parent_panics",
            no_orphans_after_the_parent_panics,
        ),
        (
            "no_orphans_after_the_parent_aborts",
            no_orphans_after_the_parent_aborts,
        ),
        (
            "a_program_without_the_hook_is_refused",
            a_program_without_the_hook_is_refused,
        ),
        (
            "unbounded_timeouts_do_not_stop_the_pool",
            unbounded_timeouts_do_not_stop_the_pool,
        ),
        (
            "a_panicking_record_sink_hangs_no_handle",
            a_panicking_record_sink_hangs_no_handle,
        ),
        (
            "an_exit_code_is_not_reported_as_killed",
            an_exit_code_is_not_reported_as_killed,
        ),
        (
            "the_replacement_is_counted_when_the_crash_is_reported",
            the_replacement_is_counted_when_the_crash_is_reported,
        ),
    ])
}

fn pool(workers: usize) -> ProcessPool {
    ProcessPool::builder()
        .workers(workers)
        .build()
        .expect("start the pool")
}

fn panic_is_reported_and_the_worker_lives_on() {
    let pool = pool(1);
    let before = pool.submit(Pid, ()).wait().unwrap();
    let err = pool.submit(Panic, "boom".to_owned()).wait().unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), Some("boom"));
    assert_eq!(
        pool.submit(Pid, ()).wait().unwrap(),
        before,
        "same worker after a panic"
    );
    assert_eq!(pool.stats().died, 0);
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.outcomes.get(&Outcome::Panicked), Some(&1));
}

/// Submits good tasks around one crashing task on two workers and checks the crash is
/// contained: the crasher alone gets `WorkerDied` with `signal`, everything else its value,
/// one record each, and the pool keeps working on a replacement.
fn crash_is_contained(crash: impl Fn(&ProcessPool) -> pardo::Handle<()>, signal: i32) {
    let pool = pool(2);
    let before: Vec<_> = (0..5u64).map(|x| pool.submit(Square, x)).collect();
    let crashed = crash(&pool);
    let after: Vec<_> = (5..10u64).map(|x| pool.submit(Square, x)).collect();
    let err = crashed.wait().unwrap_err();
    match &err {
        TaskError::WorkerDied { signal: s, .. } => assert_eq!(*s, Some(signal), "{err}"),
        other => panic!("expected WorkerDied, got {other}"),
    }
    for (x, h) in (0..10u64).zip(before.into_iter().chain(after)) {
        assert_eq!(h.wait().unwrap(), x * x);
    }
    // The pool goes on with a replacement worker.
    assert_eq!(pool.submit(Square, 12).wait().unwrap(), 144);
    assert_eq!(pool.stats().died, 1);
    support::eventually("a replacement worker started", || pool.stats().started == 3);
    assert_eq!(pool.worker_pids().len(), 2);
    let records = pardo::Executor::recorder(&pool).records();
    assert_eq!(records.len(), 12, "one record per task");
    let dead: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Killed)
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, err.id());
    assert_eq!(dead[0].signal, Some(signal));
}

fn abort_fails_only_its_task() {
    crash_is_contained(|p| p.submit(Abort, ()), libc::SIGABRT);
}

fn sigkill_fails_only_its_task() {
    crash_is_contained(|p| p.submit(SigKill, ()), libc::SIGKILL);
}

fn sigsegv_fails_only_its_task() {
    crash_is_contained(|p| p.submit(Segv, ()), libc::SIGSEGV);
}

fn crashes_in_a_map_lose_nothing_and_run_nothing_twice() {
    let dir = scratch_dir("exactly-once");
    let log = dir.join("executions");
    let pool = pool(2);
    let inputs: Vec<(u64, std::path::PathBuf)> = (0..30).map(|x| (x, log.clone())).collect();
    let results: Vec<_> = pool.map(inputs, MaybeAbort).collect();
    assert_eq!(results.len(), 30);
    for (x, r) in (0..30u64).zip(&results) {
        if x % 7 == 3 {
            assert!(
                matches!(
                    r,
                    Err(TaskError::WorkerDied {
                        signal: Some(libc::SIGABRT),
                        ..
                    })
                ),
                "{x}: {r:?}"
            );
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(x * x)), "{x}");
        }
    }
    let mut ran: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort_unstable();
    let expected: Vec<u64> = (0..30).filter(|x| x % 7 != 3).collect();
    assert_eq!(ran, expected, "every good input ran exactly once");
    assert_eq!(pool.stats().died, 4);
    let records = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(records.tasks, 30);
    let _ = std::fs::remove_dir_all(dir);
}

fn timeout_kills_and_replaces_the_worker() {
    let pool = ProcessPool::builder()
        .workers(1)
        .task_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let old = pool.worker_pids();
    assert_eq!(old.len(), 1);
    let err = pool.submit(SleepMs, 120_000).wait().unwrap_err();
    assert!(err.is_timed_out(), "{err}");
    assert!(gone(old[0]), "the timed-out worker was killed and reaped");
    let new = pool.submit(Pid, ()).wait().unwrap();
    assert_ne!(new, old[0], "a replacement runs the next task");
    assert_eq!(pool.stats().timed_out, 1);
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.outcomes.get(&Outcome::TimedOut), Some(&1));
}

fn memory_limit_hit_is_a_clear_error() {
    let pool = ProcessPool::builder()
        .workers(1)
        .memory_limit(512 << 20)
        .build()
        .unwrap();
    assert_eq!(pool.submit(Allocate, 16).wait().unwrap(), 16 << 20);
    let err = pool.submit(Allocate, 2048).wait().unwrap_err();
    let message = err.to_string();
    assert!(message.contains("memory limit of 512 MiB"), "{message}");
    assert!(message.contains("RLIMIT_AS"), "{message}");
    // The replacement has the same limit and still serves tasks that fit.
    assert_eq!(pool.submit(Allocate, 16).wait().unwrap(), 16 << 20);
    let records = pardo::Executor::recorder(&pool).records();
    assert!(records
        .iter()
        .all(|r| r.max_rss_bytes.is_some_and(|b| b > 0)));
}

fn no_worker_is_left_after_drop() {
    let pool = pool(2);
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| alive(p)));
    drop(pool);
    for pid in pids {
        assert!(gone(pid), "worker {pid} is neither running nor a zombie");
    }
}

/// A child that builds a pool, prints its worker pids, starts a long task and then dies the
/// way `role` says.
fn doomed_parent(role: &str) -> ! {
    let pool = pool(2);
    let pids = pool.worker_pids();
    let _long = pool.submit(SleepMs, 120_000);
    println!(
        "{}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // Let the long task reach a worker so one worker is busy and one idle when we die.
    std::thread::sleep(Duration::from_millis(100));
    match role {
        "panic" => panic!("the parent panics with its pool alive"),
        _ => std::process::abort(),
    }
}

fn workers_of_a_doomed_parent(role: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{line:?}");
    let status = child.wait().unwrap();
    assert!(!status.success());
    for pid in pids {
        support::eventually(&format!("worker {pid} ended"), || !alive(pid));
    }
}

fn no_orphans_after_the_parent_panics() {
    workers_of_a_doomed_parent("panic");
}

fn no_orphans_after_the_parent_aborts() {
    workers_of_a_doomed_parent("abort");
}

fn a_program_without_the_hook_is_refused() {
    let err = ProcessPool::builder()
        .workers(1)
        .worker_program("/bin/true")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, pardo::PoolError::WorkerStart { worker: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("worker_hook"), "{err}");
}

/// A hang detector for one handle: far above what a correct pool needs.
const HANG: Duration = Duration::from_secs(30);

fn unbounded_timeouts_do_not_stop_the_pool() {
    let pool = ProcessPool::builder()
        .workers(1)
        .start_timeout(Duration::MAX)
        .task_timeout(Duration::MAX)
        .build()
        .unwrap();
    let got = pool
        .submit(Square, 5)
        .wait_timeout(HANG)
        .expect("the task hangs");
    assert_eq!(got, Ok(25));
    assert_eq!(pool.shutdown(ShutdownMode::Wait).tasks, 1);
}

/// A sink that panics on every record.
struct PanickingSink;

impl pardo::monitor::RecordSink for PanickingSink {
    fn on_record(&self, _record: &pardo::monitor::TaskRecord) {
        panic!("the sink fails");
    }
}

fn a_panicking_record_sink_hangs_no_handle() {
    let pool = pool(1);
    pardo::Executor::recorder(&pool).add_sink(std::sync::Arc::new(PanickingSink));
    let handles: Vec<_> = (0..4u64).map(|x| pool.submit(Square, x)).collect();
    for (x, h) in (0..4u64).zip(handles) {
        let got = h.wait_timeout(HANG).expect("a handle hangs");
        // The sink's failure is the sink's: the task still reports what it did.
        assert_eq!(got, Ok(x * x));
    }
    let later = pool
        .submit(Square, 9)
        .wait_timeout(HANG)
        .expect("a later handle hangs");
    assert_eq!(later, Ok(81));
    drop(pool);
}

fn an_exit_code_is_not_reported_as_killed() {
    let pool = pool(1);
    let err = pool.submit(ExitWith, 3).wait().unwrap_err();
    assert!(
        matches!(
            err,
            TaskError::WorkerDied {
                signal: None,
                exit_code: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("exited with code 3"), "{err}");
    assert_eq!(err.outcome(), Outcome::Failed);
    let records = pardo::Executor::recorder(&pool).records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, Outcome::Failed);
    assert_eq!(records[0].exit_code, Some(3));
    assert_eq!(records[0].signal, None);
    // A signal is still a kill.
    let err = pool.submit(SigKill, ()).wait().unwrap_err();
    assert_eq!(err.outcome(), Outcome::Killed);
}

fn the_replacement_is_counted_when_the_crash_is_reported() {
    let pool = pool(1);
    assert_eq!(pool.stats().started, 1);
    assert!(pool.submit(Abort, ()).wait().is_err());
    assert_eq!(
        pool.stats().started,
        2,
        "the replacement counts from the moment it exists"
    );
    assert_eq!(pool.submit(Square, 3).wait(), Ok(9));
}
