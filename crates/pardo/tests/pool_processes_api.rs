//! The process pool's API behaves like the thread pool's: submit, map, map_unordered,
//! as_completed, shutdown, resizing, records — plus recycling and serialization errors, and the
//! one-line switch between executors. Workers are this test binary re-executed.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mod.rs"]
mod support;
#[path = "support/tasks.rs"]
mod tasks;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use pardo::{Executor, Outcome, ProcessPool, RunTask, ShutdownMode, TaskError, ThreadPool};
use tasks::*;

fn main() -> ExitCode {
    pardo::worker_hook();
    harness::run(&[
        (
            "submit_map_and_as_completed_return_every_value",
            submit_map_and_as_completed_return_every_value,
        ),
        ("two_workers_run_at_once", two_workers_run_at_once),
        (
            "records_carry_worker_cpu_and_peak_rss",
            records_carry_worker_cpu_and_peak_rss,
        ),
        (
            "workers_are_recycled_after_max_tasks",
            workers_are_recycled_after_max_tasks,
        ),
        (
            "serialization_failures_are_clear_errors",
            serialization_failures_are_clear_errors,
        ),
        (
            "cancel_pending_shutdown_cancels_queued_and_finishes_running",
            cancel_pending_shutdown_cancels_queued_and_finishes_running,
        ),
        (
            "resizing_starts_and_stops_workers",
            resizing_starts_and_stops_workers,
        ),
        (
            "one_line_switches_the_executor",
            one_line_switches_the_executor,
        ),
        (
            "a_failed_grow_keeps_the_pool_at_its_size",
            a_failed_grow_keeps_the_pool_at_its_size,
        ),
        (
            "shrink_then_grow_keeps_every_worker",
            shrink_then_grow_keeps_every_worker,
        ),
        (
            "running_counts_tasks_on_workers",
            running_counts_tasks_on_workers,
        ),
        (
            "the_worker_marker_is_not_in_the_environment",
            the_worker_marker_is_not_in_the_environment,
        ),
        (
            "waiting_tasks_make_an_automatic_pool_start_more_workers",
            waiting_tasks_make_an_automatic_pool_start_more_workers,
        ),
    ])
}

fn submit_map_and_as_completed_return_every_value() {
    let pool = ProcessPool::builder().workers(2).build().unwrap();
    assert_eq!(pool.submit(Square, 9).wait(), Ok(81));
    let squares: Vec<u64> = pool.map(0..20u64, Square).map(Result::unwrap).collect();
    assert_eq!(squares, (0..20u64).map(|x| x * x).collect::<Vec<_>>());
    let batched: Vec<u64> = pool
        .map(0..100u64, Square)
        .chunk_size(16)
        .map(Result::unwrap)
        .collect();
    assert_eq!(batched, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
    let mut unordered: Vec<u64> = pool
        .map_unordered(0..10u64, Square)
        .map(|(_, r)| r.unwrap())
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, (0..10u64).map(|x| x * x).collect::<Vec<_>>());
    let handles: Vec<_> = (0..6u64).map(|x| pool.submit(Square, x)).collect();
    let mut done: Vec<u64> = pardo::as_completed(handles)
        .map(|(_, r)| r.unwrap())
        .collect();
    done.sort_unstable();
    assert_eq!(done, vec![0, 1, 4, 9, 16, 25]);
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.items, 1 + 20 + 100 + 10 + 6);
    assert_eq!(
        report.outcomes.get(&Outcome::Ok).copied(),
        Some(report.tasks)
    );
}

fn two_workers_run_at_once() {
    let dir = scratch_dir("meet");
    let pool = ProcessPool::builder().workers(2).build().unwrap();
    let a = pool.submit(MeetPeer, (dir.clone(), "a".into(), "b".into()));
    let b = pool.submit(MeetPeer, (dir.clone(), "b".into(), "a".into()));
    let (pa, pb) = (a.wait().unwrap(), b.wait().unwrap());
    assert_ne!(
        pa, pb,
        "the two tasks met, so they ran in two workers at once"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn records_carry_worker_cpu_and_peak_rss() {
    pardo::task_fn! {
        /// A CPU-bound task: some million rounds of arithmetic.
        pub Hash(seed: u64) -> u64 { crate::support::spin((4 << 20) + seed) }
    }
    let pool = ProcessPool::builder().workers(2).build().unwrap();
    let sums: Vec<u64> = pool.map(0..4u64, Hash).map(Result::unwrap).collect();
    assert_eq!(sums[1], support::spin((4 << 20) + 1));
    let records = pool.recorder().records();
    assert_eq!(records.len(), 4);
    for r in &records {
        assert!(r.cpu_ns() > 0, "{r:?}");
        assert!(r.max_rss_bytes.is_some_and(|b| b > 0), "{r:?}");
        assert!(r.worker >= 1 && r.worker <= 2);
        // Run-queue wait is what tells CPU-bound work on a busy machine from work that waits
        // on I/O; a worker process measures it as a worker thread does.
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            assert!(r.cpu_wait_ns.is_some(), "{r:?}");
        }
    }
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.run.executor, "process_pool");
    assert!(report.cpu_ratio.is_some_and(|c| c > 0.0));
}

fn workers_are_recycled_after_max_tasks() {
    let pool = ProcessPool::builder()
        .workers(1)
        .max_tasks_per_worker(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = pool
        .map(std::iter::repeat_n((), 9), Pid)
        .map(Result::unwrap)
        .collect();
    let mut per_pid: HashMap<u32, usize> = HashMap::new();
    for p in &pids {
        *per_pid.entry(*p).or_default() += 1;
    }
    assert_eq!(per_pid.len(), 3, "{pids:?}");
    assert!(per_pid.values().all(|&n| n == 3), "{per_pid:?}");
    support::eventually("three recycles", || pool.stats().recycled == 3);
    assert_eq!(pool.stats().died, 0);
}

fn serialization_failures_are_clear_errors() {
    let pool = ProcessPool::builder().workers(1).build().unwrap();
    let worker = pool.worker_pids();
    let err = pool.submit(BadInput, Unencodable).wait().unwrap_err();
    assert!(matches!(err, TaskError::Failed { .. }), "{err}");
    assert!(err.to_string().contains("cannot encode the input"), "{err}");
    let err = pool.submit(BadOutput, ()).wait().unwrap_err();
    assert!(
        err.to_string().contains("cannot encode the result"),
        "{err}"
    );
    let err = pool.submit(UndecodableOutput, ()).wait().unwrap_err();
    assert!(
        err.to_string().contains("cannot decode the result"),
        "{err}"
    );
    // In a map, each item fails on its own.
    let results: Vec<_> = pool.map([(), ()], BadOutput).collect();
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(TaskError::Failed { .. }))));
    // None of it cost a worker.
    assert_eq!(pool.submit(Square, 3).wait(), Ok(9));
    assert_eq!(pool.worker_pids(), worker);
    assert_eq!(pool.stats().died, 0);
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.outcomes.get(&Outcome::Failed), Some(&5));
}

fn cancel_pending_shutdown_cancels_queued_and_finishes_running() {
    let dir = scratch_dir("gate");
    let pool = ProcessPool::builder().workers(1).build().unwrap();
    let running = pool.submit(Gate, dir.clone());
    support::eventually("the gated task started", || dir.join("started").exists());
    let queued: Vec<_> = (0..5u64).map(|x| pool.submit(Square, x)).collect();
    // Open the gate only once the queued tasks have been cancelled, so the running task is
    // provably still running while shutdown cancels.
    let recorder = pool.recorder().clone();
    let go = dir.join("go");
    let opener = std::thread::spawn(move || {
        support::eventually("five cancelled records", || recorder.counters().done >= 5);
        std::fs::write(go, b"").unwrap();
    });
    let report = pool.shutdown(ShutdownMode::CancelPending);
    opener.join().unwrap();
    assert!(running.wait().is_ok());
    for h in queued {
        assert!(h.wait().unwrap_err().is_cancelled());
    }
    assert_eq!(report.outcomes.get(&Outcome::Cancelled), Some(&5));
    assert_eq!(report.outcomes.get(&Outcome::Ok), Some(&1));
    let _ = std::fs::remove_dir_all(dir);
}

fn resizing_starts_and_stops_workers() {
    let pool = ProcessPool::builder().workers(1).build().unwrap();
    pool.set_workers(3).unwrap();
    assert_eq!(pool.workers(), 3);
    assert_eq!(pool.worker_pids().len(), 3);
    assert_eq!(pool.stats().started, 3);
    pool.set_workers(1).unwrap();
    support::eventually("two workers left", || pool.worker_pids().len() == 1);
    let got: Vec<u64> = pool.map(0..8u64, Square).map(Result::unwrap).collect();
    assert_eq!(got[7], 49);
    assert!(pool.set_workers(0).is_err());
}

/// The workload, written once against `RunTask`.
fn total_of_squares(pool: &impl RunTask) -> u64 {
    let mapped: u64 = pool.map_task(1..=10u64, Square).map(Result::unwrap).sum();
    mapped + pool.submit_task(Square, 100).wait().unwrap()
}

fn one_line_switches_the_executor() {
    let expected = 385 + 10_000;
    let threads = ThreadPool::builder().workers(2).build().unwrap();
    assert_eq!(total_of_squares(&threads), expected);
    let processes = ProcessPool::builder().workers(2).build().unwrap();
    assert_eq!(total_of_squares(&processes), expected);
    // The same records on each.
    for report in [threads.report(), processes.report()] {
        assert_eq!(report.items, 11, "{}", report.run.executor);
    }
    #[cfg(feature = "async")] // the async pool is behind the default-on `async` feature
    {
        let tasks = pardo::AsyncPool::builder()
            .runtime_threads(2)
            .build()
            .unwrap();
        assert_eq!(total_of_squares(&tasks), expected);
        assert_eq!(tasks.report().items, 11);
    }
}

/// A hang detector for one handle: far above what a correct pool needs.
const HANG: Duration = Duration::from_secs(30);

fn a_failed_grow_keeps_the_pool_at_its_size() {
    // The pool's workers run through a symlink; once it is gone, starting a worker fails.
    let dir = scratch_dir("failed-grow");
    let link = dir.join("worker");
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &link).unwrap();
    let pool = ProcessPool::builder()
        .workers(1)
        .worker_program(&link)
        .build()
        .unwrap();
    std::fs::remove_file(&link).unwrap();
    let err = pool.set_workers(3).unwrap_err();
    assert!(matches!(err, pardo::PoolError::Spawn { .. }), "{err}");
    assert_eq!(pool.workers(), 1, "the pool stays at its previous size");
    let got = pool
        .submit(Square, 6)
        .wait_timeout(HANG)
        .expect("submit after a failed grow");
    assert_eq!(got, Ok(36));
    support::eventually("one worker left", || pool.worker_pids().len() == 1);
    // Once workers can start again, growing works.
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &link).unwrap();
    pool.set_workers(2).unwrap();
    assert_eq!(pool.worker_pids().len(), 2);
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.outcomes.get(&Outcome::Ok), Some(&1));
    let _ = std::fs::remove_dir_all(dir);
}

fn shrink_then_grow_keeps_every_worker() {
    let pool = ProcessPool::builder().workers(2).build().unwrap();
    for round in 0..30 {
        pool.set_workers(1).unwrap();
        pool.set_workers(2).unwrap();
        // Both slots serve: two tasks that only finish together.
        let dir = scratch_dir(&format!("regrow-{round}"));
        let a = pool.submit(MeetPeer, (dir.clone(), "a".into(), "b".into()));
        let b = pool.submit(MeetPeer, (dir.clone(), "b".into(), "a".into()));
        assert!(a
            .wait_timeout(HANG)
            .expect("round {round}: a hangs")
            .is_ok());
        assert!(b
            .wait_timeout(HANG)
            .expect("round {round}: b hangs")
            .is_ok());
        let _ = std::fs::remove_dir_all(dir);
        support::eventually(&format!("round {round}: two live workers"), || {
            live_children().len() == 2 && pool.worker_pids().len() == 2
        });
        let mut pids = pool.worker_pids();
        pids.sort_unstable();
        assert_eq!(pids, live_children(), "round {round}");
    }
    drop(pool);
    assert_eq!(live_children(), Vec::<u32>::new());
}

fn running_counts_tasks_on_workers() {
    let dir = scratch_dir("running");
    let pool = ProcessPool::builder().workers(1).build().unwrap();
    assert_eq!(pool.counters().running, 0);
    let gated = pool.submit(Gate, dir.clone());
    support::eventually("the gated task started", || dir.join("started").exists());
    assert_eq!(pool.counters().running, 1);
    std::fs::write(dir.join("go"), b"").unwrap();
    assert!(gated
        .wait_timeout(HANG)
        .expect("the gated task hangs")
        .is_ok());
    assert_eq!(pool.counters().running, 0);
    let _ = std::fs::remove_dir_all(dir);
}

fn the_worker_marker_is_not_in_the_environment() {
    // A worker's environment is exactly its parent's: the marker travels elsewhere, so neither
    // side ever edits an environment other threads may be reading.
    let pool = ProcessPool::builder().workers(1).build().unwrap();
    let names = pool.submit(ExecEnvironment, ()).wait().unwrap();
    assert!(!names.is_empty());
    let marked: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("PARDO_WORKER"))
        .collect();
    assert!(marked.is_empty(), "{marked:?}");
    assert!(std::env::var_os("PARDO_WORKER").is_none());
}

fn waiting_tasks_make_an_automatic_pool_start_more_workers() {
    // A controller as on an otherwise idle 2-core machine, so the shared test machine's load
    // does not decide the outcome.
    let mut config = pardo::tune::controller::ControllerConfig::new(2, 8);
    config.busy_ceiling = f64::INFINITY;
    config.overload_per_core = f64::INFINITY;
    let pool = ProcessPool::builder().auto_with(config).build().unwrap();
    assert_eq!(pool.workers(), 2, "starts at the core count");
    let handles: Vec<_> = (0..2_000).map(|_| pool.submit(SleepMs, 5)).collect();
    // Tasks that sleep use no CPU: the controller must add workers (a bounded wait for it).
    support::eventually("more workers than cores", || pool.workers() > 2);
    let report = pool.shutdown(ShutdownMode::CancelPending);
    for h in handles {
        let _ = h.wait_timeout(HANG).expect("a handle hangs");
    }
    assert!(
        report.concurrency.iter().any(|c| c.to > 2 && c.to <= 8),
        "{:?}",
        report.concurrency
    );
}
