//! The cluster pool against a real `redis-server`, with serving workers that are this test
//! binary started again (`--serve URL SLOTS NAME`): results equal a thread pool's, a panic
//! fails its own task only, a worker killed with `kill -9` mid-task loses nothing and doubles
//! nothing, a task that kills every worker it lands on goes to the dead-letter list, an
//! unknown task name is a clear error, and no handle outlives Redis going away.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/mod.rs"]
mod support;
#[path = "support/tasks.rs"]
mod tasks;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use pardo::cluster::{ClusterPool, ServeOptions, Server};
use pardo::{Executor, Outcome, RunTask, ShutdownMode, TaskError, TaskFn, ThreadPool};
use support::redis::Redis;
use support::{eventually, within};
use tasks::{SigKill, Square};

fn main() -> ExitCode {
    pardo::worker_hook();
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        serve_until_stdin_closes(&args[at + 1..]);
        return ExitCode::SUCCESS;
    }
    harness::run(&[
        (
            "map_and_submit_give_what_a_thread_pool_gives",
            map_and_submit_give_what_a_thread_pool_gives,
        ),
        (
            "a_panic_is_an_error_for_its_task_only",
            a_panic_is_an_error_for_its_task_only,
        ),
        (
            "an_unknown_task_name_is_a_clear_error",
            an_unknown_task_name_is_a_clear_error,
        ),
        (
            "a_killed_workers_tasks_run_elsewhere_each_once",
            a_killed_workers_tasks_run_elsewhere_each_once,
        ),
        (
            "a_task_that_kills_its_workers_goes_to_the_dead_letter_list",
            a_task_that_kills_its_workers_goes_to_the_dead_letter_list,
        ),
        (
            "no_handle_outlives_redis_past_the_patience",
            no_handle_outlives_redis_past_the_patience,
        ),
        (
            "cancel_pending_cancels_what_the_in_flight_bound_kept_back",
            cancel_pending_cancels_what_the_in_flight_bound_kept_back,
        ),
        (
            "a_redis_restart_mid_run_loses_no_task_and_doubles_none",
            a_redis_restart_mid_run_loses_no_task_and_doubles_none,
        ),
        (
            "a_stopped_worker_hands_back_what_it_had_not_started",
            a_stopped_worker_hands_back_what_it_had_not_started,
        ),
    ])
}

/// The serving side: `--serve URL SLOTS NAME`; stops when the test closes our stdin.
fn serve_until_stdin_closes(args: &[String]) {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number: die with the test.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    let mut opts = ServeOptions::default();
    opts.slots = args[1].parse().expect("slots");
    opts.name = Some(args[2].clone());
    let server = Server::new(&args[0], opts).expect("a server");
    let stopper = server.stopper();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopper.stop();
    });
    server.serve().expect("serving");
}

/// Serving workers: this binary started again.
struct Servers(Vec<Child>);

impl Servers {
    fn start(url: &str, names: &[&str], slots: usize) -> Servers {
        let mut s = Servers(Vec::new());
        for n in names {
            s.add(url, n, slots);
        }
        s
    }

    fn add(&mut self, url: &str, name: &str, slots: usize) {
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--serve", url, &slots.to_string(), name])
            .stdin(Stdio::piped())
            .spawn()
            .expect("a serving worker");
        self.0.push(child);
    }

    /// Stops server `i` as a user would (its stdin closes, it stops); true when it exited 0.
    fn stop(&mut self, i: usize) -> bool {
        drop(self.0[i].stdin.take());
        self.0[i].wait().is_ok_and(|s| s.success())
    }

    /// `kill -9` of server `i`, reaped.
    fn kill9(&mut self, i: usize) {
        let _ = self.0[i].kill();
        let _ = self.0[i].wait();
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            drop(c.stdin.take());
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn pool(redis: &Redis) -> ClusterPool {
    ClusterPool::builder()
        .lease(Duration::from_millis(400))
        .connect(&redis.url())
        .expect("a cluster pool")
}

pardo::task_fn! {
    /// x + 1, but panics for multiples of 7.
    pub PanicOnSevens(x: u64) -> u64 {
        assert!(x % 7 != 0, "{x} is a multiple of 7");
        x + 1
    }
}

pardo::task_fn! {
    /// Appends `x` to `dir/started`, waits until `dir/go` exists, appends `x` to `dir/done`
    /// and returns x²: the test sees where each task runs, and when it may end.
    pub Held((x, dir): (u64, PathBuf)) -> u64 {
        append(&dir.join("started"), x);
        while !dir.join("go").exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        append(&dir.join("done"), x);
        x * x
    }
}

fn append(path: &Path, x: u64) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("a log");
    // One write per line: appends from several workers never interleave within a line.
    f.write_all(format!("{x}\n").as_bytes()).expect("a line");
}

/// How many times each number appears in the log at `path`.
fn counts(path: &Path) -> HashMap<u64, usize> {
    let mut c = HashMap::new();
    for l in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *c.entry(l.parse().expect("a number")).or_default() += 1;
    }
    c
}

/// Every one of `1..=n` appears exactly once in the log at `path`.
fn each_once(path: &Path, n: u64) {
    let c = counts(path);
    for x in 1..=n {
        assert_eq!(c.get(&x), Some(&1), "{x} in {}: {c:?}", path.display());
    }
    assert_eq!(c.len() as u64, n, "{c:?}");
}

/// A task function nobody registered (written by hand, not with `task_fn!`).
#[derive(Clone, Copy)]
struct Unregistered;

impl TaskFn for Unregistered {
    type Input = u64;
    type Output = u64;
    const NAME: &'static str = "nowhere::Unregistered";
    fn call(x: u64) -> u64 {
        x
    }
}

fn map_and_submit_give_what_a_thread_pool_gives() {
    let redis = Redis::start();
    let _servers = Servers::start(&redis.url(), &["a", "b"], 2);
    let threads = ThreadPool::builder().workers(2).build().unwrap();
    let pool = pool(&redis);
    let n = 400u64;
    let want: Vec<u64> = threads.map_task(0..n, Square).map(Result::unwrap).collect();
    let got: Vec<u64> = pool.map_task(0..n, Square).map(Result::unwrap).collect();
    assert_eq!(got, want);
    let mut unordered: Vec<u64> = pool
        .map_unordered_task(0..n, Square)
        .map(|(_, r)| r.unwrap())
        .collect();
    unordered.sort();
    assert_eq!(unordered, want);
    let handles: Vec<_> = (0..10u64).map(|x| pool.submit_task(Square, x)).collect();
    let by_handle: Vec<u64> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    assert_eq!(by_handle, want[..10]);
    // In chunks: one entry (and one record) per 50 inputs, the same values.
    let chunked: Vec<u64> = pool
        .map(0..n, Square)
        .chunk_size(50)
        .map(Result::unwrap)
        .collect();
    assert_eq!(chunked, want);
    let tasks = 2 * n + 10 + n / 50;
    let records = pool.recorder().records();
    assert_eq!(records.len() as u64, tasks, "one record per task");
    assert!(records
        .iter()
        .all(|r| r.attempt == 1 && r.outcome == Outcome::Ok));
    let names = pool.worker_names();
    assert!(!names.is_empty() && names.len() <= 4, "{names:?}");
    assert!(records
        .iter()
        .all(|r| names.iter().any(|(w, _)| *w == r.worker)));
    // Each record names the machine that ran it: the serving workers run here.
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        records
            .iter()
            .all(|r| r.host.as_deref() == Some(here.trim())),
        "{:?}",
        records[0].host
    );
    let report = pool.shutdown(ShutdownMode::Wait);
    assert_eq!(report.tasks, tasks);
    assert_eq!(report.items, 3 * n + 10);
    assert_eq!(redis.int(&["DBSIZE"]), 0, "the run leaves no key");
}

fn a_panic_is_an_error_for_its_task_only() {
    let redis = Redis::start();
    let _servers = Servers::start(&redis.url(), &["a"], 2);
    let pool = pool(&redis);
    let got: Vec<Result<u64, TaskError>> = pool.map_task(1..=30u64, PanicOnSevens).collect();
    for (x, r) in (1..=30u64).zip(&got) {
        if x % 7 == 0 {
            let e = r.as_ref().unwrap_err();
            assert!(e.is_panic(), "{e}");
            assert_eq!(
                e.panic_message(),
                Some(format!("{x} is a multiple of 7").as_str())
            );
        } else {
            assert_eq!(r, &Ok(x + 1));
        }
    }
    let panicked = pool
        .recorder()
        .records()
        .iter()
        .filter(|r| r.outcome == Outcome::Panicked)
        .count();
    assert_eq!(panicked, 4);
    pool.shutdown(ShutdownMode::Wait);
}

fn an_unknown_task_name_is_a_clear_error() {
    let redis = Redis::start();
    let _servers = Servers::start(&redis.url(), &["a"], 1);
    let pool = pool(&redis);
    let e = pool.submit_task(Unregistered, 1).wait().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TaskError::Failed { .. }), "{msg}");
    assert!(
        msg.contains("no task function named nowhere::Unregistered is registered")
            && msg.contains("serving worker a"),
        "{msg}"
    );
    // The worker goes on serving.
    assert_eq!(pool.submit_task(Square, 9).wait(), Ok(81));
    pool.shutdown(ShutdownMode::Wait);
}

fn a_killed_workers_tasks_run_elsewhere_each_once() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let mut servers = Servers::start(&redis.url(), &["doomed"], 1);
    let pool = pool(&redis);
    // Task 1 runs on the only worker, which also takes the next one ahead of its slot.
    let first = pool.submit_task(Held, (1, d.clone()));
    eventually("task 1 runs", || {
        counts(&d.join("started")).contains_key(&1)
    });
    let n = 40u64;
    let rest: Vec<_> = (2..=n)
        .map(|x| pool.submit_task(Held, (x, d.clone())))
        .collect();
    servers.add(&redis.url(), "survivor", 2);
    eventually("the survivor runs tasks", || {
        counts(&d.join("started")).len() >= 3
    });
    servers.kill9(0);
    std::fs::write(d.join("go"), b"").unwrap();
    assert_eq!(first.wait(), Ok(1));
    for (x, h) in (2..=n).zip(rest) {
        assert_eq!(h.wait(), Ok(x * x), "task {x}");
    }
    // Every task ran to its end exactly once; task 1 also started on the killed worker.
    each_once(&d.join("done"), n);
    assert_eq!(counts(&d.join("started"))[&1], 2);
    // One record per attempt: the lost ones are killed, then exactly one ok per task.
    let records = pool.recorder().records();
    let mut ok: HashMap<u64, usize> = HashMap::new();
    for r in &records {
        match r.outcome {
            Outcome::Ok => *ok.entry(r.id.0).or_default() += 1,
            Outcome::Killed => assert_eq!((r.worker, r.items), (0, 1), "{r:?}"),
            o => panic!("unexpected outcome {o} in {r:?}"),
        }
    }
    assert!((1..=n).all(|x| ok.get(&x) == Some(&1)), "{ok:?}");
    let task1: Vec<(u32, Outcome)> = records
        .iter()
        .filter(|r| r.id.0 == 1)
        .map(|r| (r.attempt, r.outcome))
        .collect();
    assert_eq!(task1, [(1, Outcome::Killed), (2, Outcome::Ok)]);
    pool.shutdown(ShutdownMode::Wait);
    assert_eq!(redis.int(&["DBSIZE"]), 0);
}

fn a_task_that_kills_its_workers_goes_to_the_dead_letter_list() {
    let redis = Redis::start();
    let _servers = Servers::start(&redis.url(), &["a", "b"], 1);
    let pool = ClusterPool::builder()
        .lease(Duration::from_millis(300))
        .lost(0)
        .connect(&redis.url())
        .unwrap();
    let e = pool.submit_task(SigKill, ()).wait().unwrap_err();
    assert!(matches!(e, TaskError::WorkerDied { .. }), "{e}");
    let dead = format!("pardo:{{{}}}:dead", pool.run_id());
    assert_eq!(redis.int(&["LLEN", &dead]), 1);
    let records = pool.recorder().records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].attempt, records[0].outcome),
        (1, Outcome::Killed)
    );
    // The other worker is still serving.
    assert_eq!(pool.submit_task(Square, 3).wait(), Ok(9));
    pool.shutdown(ShutdownMode::Wait);
}

fn no_handle_outlives_redis_past_the_patience() {
    let mut redis = Redis::start();
    // No worker: the tasks wait on Redis until it goes away.
    let pool = ClusterPool::builder()
        .patience(Duration::from_millis(500))
        .connect(&redis.url())
        .unwrap();
    let handles: Vec<_> = (0..5u64).map(|x| pool.submit_task(Square, x)).collect();
    eventually("the tasks are on Redis", || {
        redis.int(&["XLEN", &format!("pardo:{{{}}}:jobs", pool.run_id())]) == 5
    });
    redis.kill9();
    let errors = within("the handles complete", 60, move || {
        handles
            .into_iter()
            .map(|h| h.wait().unwrap_err().to_string())
            .collect::<Vec<_>>()
    });
    assert!(
        errors.iter().all(|e| e.contains("gave up on Redis")),
        "{errors:?}"
    );
    // Later tasks fail at once, and shutting down does not wait for Redis.
    let later = pool.submit_task(Square, 1).wait().unwrap_err();
    assert!(later.to_string().contains("gave up on Redis"), "{later}");
    let report = within("the pool shuts down", 60, move || {
        pool.shutdown(ShutdownMode::Wait)
    });
    assert_eq!(report.tasks, 6);
}

fn cancel_pending_cancels_what_the_in_flight_bound_kept_back() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let _servers = Servers::start(&redis.url(), &["a"], 2);
    // One task out at a time: while task 1 is held, 2 and 3 stay in the pool.
    let pool = ClusterPool::builder()
        .in_flight(1)
        .connect(&redis.url())
        .unwrap();
    assert_eq!(pool.workers(), 1);
    assert!(pool.set_workers(0).is_err());
    let first = pool.submit_task(Held, (1, d.clone()));
    let kept: Vec<_> = (2..=3u64)
        .map(|x| pool.submit_task(Held, (x, d.clone())))
        .collect();
    let fourth = pool.submit_task(Held, (4, d.clone()));
    eventually("task 1 runs", || {
        counts(&d.join("started")).contains_key(&1)
    });
    let jobs = format!("pardo:{{{}}}:jobs", pool.run_id());
    assert_eq!(
        redis.int(&["XLEN", &jobs]),
        1,
        "the bound keeps 2 to 4 back"
    );
    // A task kept back can be cancelled by its handle.
    assert!(fourth.cancel());
    assert!(fourth.wait().unwrap_err().is_cancelled());
    let closing = std::thread::spawn(move || pool.shutdown(ShutdownMode::CancelPending));
    // Cancelled as the shutdown begins, while task 1 still runs.
    for h in kept {
        assert!(h.wait().unwrap_err().is_cancelled());
    }
    std::fs::write(d.join("go"), b"").unwrap();
    assert_eq!(first.wait(), Ok(1));
    let report = closing.join().unwrap();
    assert_eq!(
        report.tasks, 4,
        "one record per task, cancelled ones included"
    );
    assert_eq!(counts(&d.join("started")).len(), 1, "2 and 3 never ran");
    assert_eq!(redis.int(&["DBSIZE"]), 0);
}

fn a_redis_restart_mid_run_loses_no_task_and_doubles_none() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let _servers = Servers::start(&redis.url(), &["a", "b"], 2);
    let pool = pool(&redis);
    let n = 30u64;
    let handles: Vec<_> = (1..=n)
        .map(|x| pool.submit_task(Held, (x, d.clone())))
        .collect();
    // Four run (two workers of two slots), the rest wait on Redis: then it dies and comes back
    // from its append-only file.
    eventually("four tasks run", || counts(&d.join("started")).len() == 4);
    redis.restart();
    std::fs::write(d.join("go"), b"").unwrap();
    for (x, h) in (1..=n).zip(handles) {
        assert_eq!(h.wait(), Ok(x * x), "task {x}");
    }
    each_once(&d.join("done"), n);
    let ok = pool
        .recorder()
        .records()
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .count();
    assert_eq!(ok as u64, n, "one accepted result per task");
    pool.shutdown(ShutdownMode::Wait);
    assert_eq!(redis.int(&["DBSIZE"]), 0);
}

fn a_stopped_worker_hands_back_what_it_had_not_started() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let mut servers = Servers::start(&redis.url(), &["leaving"], 1);
    // Without the hand-back, task 2 would come back only as attempt 2, its first one lost.
    let pool = pool(&redis);
    let first = pool.submit_task(Held, (1, d.clone()));
    eventually("task 1 runs", || {
        counts(&d.join("started")).contains_key(&1)
    });
    // The only worker's one slot is busy: it takes task 2 ahead, started but waiting.
    let second = pool.submit_task(Held, (2, d.clone()));
    let attempts = format!("pardo:{{{}}}:attempts", pool.run_id());
    eventually("task 2 is taken", || {
        redis
            .cmd(&["HGET", &attempts, "2"])
            .is_some_and(|r| r != "$-1")
    });
    servers.add(&redis.url(), "staying", 1);
    let stopper = std::thread::spawn(move || servers.stop(0).then_some(servers));
    eventually("task 2 runs on the other worker", || {
        counts(&d.join("started")).contains_key(&2)
    });
    std::fs::write(d.join("go"), b"").unwrap();
    assert_eq!(first.wait(), Ok(1));
    assert_eq!(second.wait(), Ok(4));
    let servers = stopper.join().unwrap();
    assert!(servers.is_some(), "the stopped worker exits 0");
    each_once(&d.join("started"), 2);
    // Handed back, not lost: one attempt each, both ok.
    let got: Vec<(u64, u32, Outcome)> = pool
        .recorder()
        .records()
        .iter()
        .map(|r| (r.id.0, r.attempt, r.outcome))
        .collect();
    assert_eq!(got, [(1, 1, Outcome::Ok), (2, 1, Outcome::Ok)]);
    pool.shutdown(ShutdownMode::Wait);
}
