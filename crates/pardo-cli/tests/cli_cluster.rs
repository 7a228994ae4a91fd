//! `pardo --cluster` and `pardo worker` as a user runs them, against a real `redis-server`:
//! the output and joblog of a local run, and every job exactly one accepted result through a
//! worker's `kill -9`, a worker paused past its lease, the submitter's `kill -9` and
//! `--resume`, and a `kill -9` and restart of Redis itself.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::redis::Redis;
use support::{pardo, wait_for};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("pardo")
}

/// A `pardo worker` process, killed (SIGKILL) and reaped when dropped.
struct WorkerProc(Child);

impl WorkerProc {
    fn start(url: &str, jobs: u32, name: &str) -> WorkerProc {
        let child = Command::new(bin())
            .args(["worker", url, "-j", &jobs.to_string(), "--name", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pardo worker starts");
        WorkerProc(child)
    }
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child by its pid.
        unsafe {
            libc::kill(self.0.id() as i32, sig);
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `pardo --cluster` run in the background, its stdout and stderr in files.
struct Submit {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Submit {
    fn start(dir: &Path, name: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Submit {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(bin())
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("pardo --cluster starts");
        Submit { child, out, err }
    }
    fn wait(mut self) -> (i32, String, String) {
        let st = self.child.wait().unwrap();
        (
            st.code().unwrap_or(-1),
            std::fs::read_to_string(&self.out).unwrap(),
            std::fs::read_to_string(&self.err).unwrap(),
        )
    }
    /// The run id from the first line on stderr.
    fn run_id(&self) -> String {
        loop {
            let text = std::fs::read_to_string(&self.err).unwrap();
            if let Some(id) = text
                .lines()
                .find_map(|l| l.strip_prefix("pardo: cluster run "))
                .and_then(|rest| rest.split_whitespace().next())
            {
                return id.to_string();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The numbers in `pardo: cluster run …: A results accepted, D late results dropped, …`.
fn summary(stderr: &str) -> HashMap<String, u64> {
    let line = stderr
        .lines()
        .rfind(|l| l.contains("results accepted"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let tail = line.split_once(": ").unwrap().1;
    let tail = &tail[tail.find(": ").map_or(0, |i| i + 2)..];
    tail.split(", ")
        .map(|part| {
            let (n, what) = part.split_once(' ').unwrap();
            (what.to_string(), n.parse().unwrap())
        })
        .collect()
}

/// Job numbers in a joblog (header skipped), in file order.
fn joblog_seqs(path: &Path) -> Vec<u64> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return Vec::new(),
    };
    BufReader::new(f)
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .filter_map(|l| l.split('\t').next()?.parse().ok())
        .collect()
}

/// Asserts that the joblog at `path` has one line for every job 1..=n, and no other.
fn joblog_has_each(path: &Path, n: u64) {
    let mut seqs = joblog_seqs(path);
    seqs.sort();
    assert_eq!(seqs, (1..=n).collect::<Vec<u64>>(), "{}", path.display());
}

fn wait_lines(path: &Path, n: usize) {
    while joblog_seqs(path).len() < n {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn counts(text: &str) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for l in text.lines() {
        *m.entry(l).or_default() += 1;
    }
    m
}

/// Asserts that `out` holds the line `"{word} i"` exactly once for every job i in 1..=n.
fn each_once(out: &str, word: &str, n: u32) {
    let c = counts(out);
    for i in 1..=n {
        assert_eq!(
            c.get(format!("{word} {i}").as_str()),
            Some(&1),
            "job {i}: {out}"
        );
    }
}

fn numbers(n: u32) -> Vec<String> {
    (1..=n).map(|i| i.to_string()).collect()
}

/// A job that echoes `out N`; jobs above `free` first wait until `flag` exists in `dir`.
fn held_above(dir: &Path, free: u32, flag: &str) -> String {
    format!(
        "if [ {{}} -gt {free} ]; then while [ ! -e {d}/{flag} ]; do sleep 0.02; done; fi; echo out {{}}",
        d = dir.display()
    )
}

/// `--cluster URL [extra…] --joblog LOG SCRIPT ::: 1 … n`.
fn cluster_args(url: &str, extra: &[&str], joblog: &Path, script: &str, n: u32) -> Vec<String> {
    let mut args: Vec<String> = ["--cluster", url].iter().map(|s| s.to_string()).collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend([
        "--joblog".into(),
        joblog.display().to_string(),
        script.into(),
        ":::".into(),
    ]);
    args.extend(numbers(n));
    args
}

#[test]
fn two_workers_give_the_output_and_joblog_of_a_local_run() {
    let redis = Redis::start();
    let url = redis.url();
    let _a = WorkerProc::start(&url, 2, "a");
    let _b = WorkerProc::start(&url, 2, "b");
    let dir = tempfile::tempdir().unwrap();
    let inputs = numbers(1000);
    let mut args = vec!["-k", "echo", "job", "{}", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let local = pardo().args(&args).output().unwrap();
    assert!(local.status.success());

    let joblog = dir.path().join("joblog");
    let mut cl = vec!["--cluster", &url, "--joblog", joblog.to_str().unwrap()];
    cl.extend(&args);
    let out = pardo().args(&cl).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        out.stdout, local.stdout,
        "-k output differs from a local run"
    );
    let s = summary(&stderr);
    assert_eq!(s["results accepted"], 1000);
    assert_eq!(s["late results dropped"], 0);
    joblog_has_each(&joblog, 1000);
    // Where GNU parallel names the --sshlogin, the joblog names the worker's host.
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let log = std::fs::read_to_string(&joblog).unwrap();
    assert!(
        log.lines()
            .skip(1)
            .all(|l| l.split('\t').nth(1) == Some(here.trim())),
        "{}",
        log.lines().nth(1).unwrap_or_default()
    );

    // Without -k the lines come in any order, each once.
    let mut unordered = vec!["--cluster", &url];
    unordered.extend(&args[1..]);
    let out = pardo().args(&unordered).output().unwrap();
    let mut got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    let mut want: Vec<&str> = std::str::from_utf8(&local.stdout)
        .unwrap()
        .lines()
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Nothing of the runs is left on Redis.
    assert_eq!(redis.int(&["DBSIZE"]), 0);
}

#[test]
fn the_exit_status_counts_failed_jobs_as_gnu_parallel_does() {
    let redis = Redis::start();
    let _w = WorkerProc::start(&redis.url(), 2, "w");
    let out = pardo()
        .args([
            "--cluster",
            &redis.url(),
            "--tag",
            "echo x; exit {}",
            ":::",
            "0",
            "3",
            "0",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(lines, ["0\tx", "0\tx", "1\tx", "3\tx"]);
}

#[test]
fn a_bad_cluster_url_or_option_fails_with_a_message_and_255() {
    pardo()
        .args(["--cluster", "http://nope", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stderr(predicates::str::contains("http://nope"));
    pardo()
        .args(["--cluster", "redis://10.9.9.9:6379/0", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stderr(predicates::str::contains("--cluster-insecure"));
    pardo()
        .args(["--cluster", "redis://127.0.0.1:1/0", "--pipe", "cat"])
        .assert()
        .code(255)
        .stderr(predicates::str::contains("--pipe"));
}

/// A job that echoes `done N`; job 1's first attempt marks that it started and waits for the
/// test's go first (later attempts, and other jobs, run straight through).
fn first_attempt_waits(dir: &Path) -> String {
    format!(
        "if [ {{}} = 1 ] && mkdir {d}/first.{{}} 2>/dev/null; then touch {d}/running.{{}}; \
         while [ ! -e {d}/go.{{}} ]; do sleep 0.02; done; fi; echo done {{}}",
        d = dir.display()
    )
}

#[test]
fn a_worker_killed_mid_job_has_its_job_run_elsewhere_once() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let a = WorkerProc::start(&url, 1, "a");
    let script = first_attempt_waits(dir.path());
    let joblog = dir.path().join("joblog");
    let mut args = vec![
        "--cluster",
        &url,
        "--joblog",
        joblog.to_str().unwrap(),
        &script,
        ":::",
    ];
    let inputs = numbers(10);
    args.extend(inputs.iter().map(String::as_str));
    let sub = Submit::start(dir.path(), "sub", &args);
    // Worker a is in the middle of job 1.
    wait_for(&dir.path().join("running.1"));
    a.signal(libc::SIGKILL);
    drop(a);
    let _b = WorkerProc::start(&url, 2, "b");
    let (code, out, err) = sub.wait();
    assert_eq!(code, 0, "{err}");
    each_once(&out, "done", 10);
    let s = summary(&err);
    assert_eq!((s["results accepted"], s["dead"]), (10, 0));
    joblog_has_each(&joblog, 10);
}

#[test]
fn a_worker_paused_past_its_lease_has_its_late_result_dropped_and_counted() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = WorkerProc::start(&url, 1, "a");
    // Job 1 waits for the go the first time; job 2 waits until the test saw the late result.
    let script = format!(
        "if [ {{}} = 2 ]; then while [ ! -e {d}/end ]; do sleep 0.02; done; fi; {}",
        first_attempt_waits(d),
        d = d.display()
    );
    let joblog = d.join("joblog");
    let sub = Submit::start(
        d,
        "sub",
        &[
            "--cluster",
            &url,
            "--joblog",
            joblog.to_str().unwrap(),
            &script,
            ":::",
            "1",
            "2",
        ],
    );
    let run = sub.run_id();
    wait_for(&d.join("running.1"));
    a.signal(libc::SIGSTOP);
    // Worker b takes both jobs once a's lease runs out, and finishes job 1.
    let _b = WorkerProc::start(&url, 2, "b");
    wait_lines(&joblog, 1);
    assert_eq!(joblog_seqs(&joblog), [1]);
    // a goes on; its job 1 ends and its result comes second.
    a.signal(libc::SIGCONT);
    std::fs::write(d.join("go.1"), "").unwrap();
    let stats = format!("pardo:{{{run}}}:stats");
    let dropped = || {
        redis
            .get(&["HGET", &stats, "dropped"])
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    while dropped() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(d.join("end"), "").unwrap();
    let (code, out, err) = sub.wait();
    assert_eq!(code, 0, "{err}");
    let c = counts(&out);
    assert_eq!(
        (c.get("done 1"), c.get("done 2")),
        (Some(&1), Some(&1)),
        "{out}"
    );
    let s = summary(&err);
    assert_eq!(s["results accepted"], 2);
    // a's result for job 1, at least: a machine too busy to renew a lease in time may make
    // another worker take a job it still runs, and that result is dropped too.
    assert!(s["late results dropped"] >= 1, "{err}");
    joblog_has_each(&joblog, 2);
    drop(a);
}

#[test]
fn a_submitter_killed_mid_run_resumes_and_loses_nothing() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _w = WorkerProc::start(&url, 2, "w");
    // Jobs above 10 wait until the first submitter is gone.
    let script = held_above(d, 10, "killed");
    let log1 = d.join("log1");
    let args = cluster_args(&url, &[], &log1, &script, 40);
    let mut first = Submit::start(d, "first", &args);
    let run = first.run_id();
    wait_lines(&log1, 10);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    std::fs::write(d.join("killed"), "").unwrap();
    let first_out = std::fs::read_to_string(&first.out).unwrap();

    let log2 = d.join("log2");
    let resume = format!("--resume={run}");
    let args = cluster_args(&url, &[&resume], &log2, &script, 40);
    let (code, out, err) = Submit::start(d, "second", &args).wait();
    assert_eq!(code, 0, "{err}");
    let all = format!("{first_out}{out}");
    let c = counts(&all);
    for i in 1..=40 {
        assert!(
            c.contains_key(format!("out {i}").as_str()),
            "job {i} lost: {all}"
        );
    }
    // Exactly one accepted result per job over both submitters; what the first one handed
    // on is skipped, not run again.
    let s = summary(&err);
    assert_eq!(s["results accepted"], 40);
    assert!(s["skipped as done before"] >= 10, "{err}");
    let mut seqs = joblog_seqs(&log1);
    seqs.extend(joblog_seqs(&log2));
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
    assert_eq!(redis.int(&["DBSIZE"]), 0);
}

#[test]
fn a_redis_killed_and_restarted_loses_no_job_and_doubles_none() {
    let mut redis = Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let _a = WorkerProc::start(&url, 2, "a");
    let _b = WorkerProc::start(&url, 2, "b");
    // Jobs above 5 wait until Redis has been restarted.
    let script = held_above(d, 5, "restarted");
    let joblog = d.join("joblog");
    let args = cluster_args(&url, &[], &joblog, &script, 30);
    let sub = Submit::start(d, "sub", &args);
    wait_lines(&joblog, 5);
    redis.kill9();
    redis.restart();
    std::fs::write(d.join("restarted"), "").unwrap();
    let (code, out, err) = sub.wait();
    assert_eq!(code, 0, "{err}");
    each_once(&out, "out", 30);
    assert_eq!(summary(&err)["results accepted"], 30);
    joblog_has_each(&joblog, 30);
}

#[test]
fn a_worker_whose_redis_is_gone_still_stops_on_term() {
    let mut redis = Redis::start();
    let mut child = Command::new(bin())
        .args(["worker", &redis.url(), "-j", "1", "--name", "orphan"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pardo worker starts");
    // It says it serves once its signal handlers are in place, so TERM is the worker's to
    // handle (not the default action, which would end it whatever the code did).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("serving"), "{line}");
    let worker = WorkerProc(child);
    redis.kill9();
    worker.signal(libc::SIGTERM);
    // Before, its connection was retried for the worker's whole patience (a year).
    let mut worker = worker;
    let ended = (0..1500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        worker.0.try_wait().ok().flatten().is_some()
    });
    assert!(
        ended,
        "pardo worker ignored SIGTERM while its Redis was gone"
    );
}

/// Entries of run `run` that consumer `name` holds (taken, not yet acked).
fn held_by(redis: &Redis, run: &str, name: &str) -> usize {
    let jobs = format!("pardo:{{{run}}}:jobs");
    let reply = redis
        .cmd(&["XPENDING", &jobs, "pardo", "-", "+", "100000", name])
        .expect("redis answers");
    reply
        .strip_prefix('*')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("XPENDING answered {reply:?}"))
}

#[test]
fn a_batch_held_by_a_killed_worker_comes_back_with_every_job_run_once() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = WorkerProc::start(&url, 1, "a");
    // Every run of a job leaves a line in a file of its own; job 30's first attempt waits
    // until it is killed.
    let script = format!(
        "echo x >> {d}/runs.{{}}; if [ {{}} = 30 ] && mkdir {d}/first 2>/dev/null; then \
         touch {d}/running; while :; do sleep 0.02; done; fi; echo done {{}}",
        d = d.display()
    );
    let joblog = d.join("joblog");
    let args = cluster_args(&url, &[], &joblog, &script, 60);
    let sub = Submit::start(d, "sub", &args);
    let run = sub.run_id();
    wait_for(&d.join("running"));
    // Worker a holds job 30 and the entries it took ahead of it, in one batch.
    while held_by(&redis, &run, "a") < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    a.signal(libc::SIGKILL);
    drop(a);
    let _b = WorkerProc::start(&url, 1, "b");
    let (code, out, err) = sub.wait();
    assert_eq!(code, 0, "{err}");
    each_once(&out, "done", 60);
    let s = summary(&err);
    assert_eq!((s["results accepted"], s["dead"]), (60, 0), "{err}");
    // Job 30 ran twice (its first attempt died with a); the entries a had taken ahead but
    // not started ran once, on b.
    for i in 1..=60 {
        let runs = std::fs::read_to_string(d.join(format!("runs.{i}"))).unwrap();
        assert_eq!(runs.lines().count(), if i == 30 { 2 } else { 1 }, "job {i}");
    }
    joblog_has_each(&joblog, 60);
}

#[test]
fn the_records_and_stats_name_the_host_that_ran_each_job() {
    let redis = Redis::start();
    let url = redis.url();
    let _w = WorkerProc::start(&url, 2, "w");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.jsonl");
    let out = pardo()
        .args(["--cluster", &url, "--stats", "--json"])
        .arg(&json)
        .args(["echo", ":::"])
        .args(numbers(20))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The worker runs on this machine, the one the run line names.
    let host = lines
        .iter()
        .find(|l| l["type"] == "run")
        .and_then(|l| l["host"].as_str())
        .expect("a run line with the host")
        .to_string();
    let tasks: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "task").collect();
    assert_eq!(tasks.len(), 20);
    assert!(
        tasks.iter().all(|t| t["host"] == host.as_str()),
        "{tasks:?}"
    );
    assert!(
        stderr.contains(&format!("pardo: host {host} ran 20 jobs, ")),
        "{stderr}"
    );
}

#[test]
fn a_job_that_kills_every_worker_it_lands_on_goes_to_the_dead_letter_list() {
    let redis = Redis::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Job 1 kills the worker running it (its shell's parent); job 2 runs through.
    let script = format!(
        "echo x >> {d}/runs.{{}}; if [ {{}} = 1 ]; then kill -9 $PPID; sleep 5; fi; echo done {{}}",
        d = d.display()
    );
    let joblog = d.join("joblog");
    let args = cluster_args(&url, &["--cluster-lease", "0.2"], &joblog, &script, 2);
    let mut sub = Submit::start(d, "sub", &args);
    // Workers one after another, each started once the one before died.
    let mut started = 0;
    let mut worker = None;
    while sub.child.try_wait().unwrap().is_none() {
        let dead = match &mut worker {
            None => true,
            Some(WorkerProc(c)) => c.try_wait().unwrap().is_some(),
        };
        if dead {
            started += 1;
            worker = Some(WorkerProc::start(&url, 1, &format!("w{started}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, out, err) = sub.wait();
    // The dead job counts as failed.
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("job 1 went to the dead-letter list"), "{err}");
    let s = summary(&err);
    assert_eq!((s["results accepted"], s["dead"]), (2, 1), "{err}");
    assert_eq!(counts(&out).get("done 2"), Some(&1), "{out}");
    assert_eq!(counts(&out).get("done 1"), None, "{out}");
    // It ran once per lost attempt allowed and once more, and no more: the attempt that found
    // it over the limit sent it to the list instead of running it.
    let lost = pardo::cluster::ClusterOptions::default().lost as usize;
    let runs = std::fs::read_to_string(d.join("runs.1")).unwrap();
    assert_eq!(runs.lines().count(), lost + 1, "{err}");
    assert!(started > lost, "{started} workers");
    joblog_has_each(&joblog, 2);
    drop(worker);
}
