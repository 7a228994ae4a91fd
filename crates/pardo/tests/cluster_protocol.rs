//! The cluster protocol against a real `redis-server`: submit and accept, idempotent submit
//! and resume, retries across workers, and a run's keys removed at its end.

mod support;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pardo::cluster::{ClusterOptions, Submitter, Worker, WorkerOptions, WorkerStats};
use pardo::command::{Events, JobDone, RunControl, Template};
use pardo::monitor::{Recorder, Retention, RunRecord};
use support::redis::Redis;

/// A job's stdout, attempts and whether it ended well.
type Got = (Vec<u8>, u32, bool);

/// Every result handed on: job number → (stdout, attempts, ok), and a count per job.
#[derive(Default)]
struct Collect {
    got: Mutex<HashMap<u64, Got>>,
    times: Mutex<HashMap<u64, u32>>,
    skipped: Mutex<Vec<u64>>,
}

impl Events for Collect {
    fn done(&self, d: JobDone<'_>) -> io::Result<()> {
        *self.times.lock().unwrap().entry(d.seq).or_default() += 1;
        let ok = d.ok();
        self.got
            .lock()
            .unwrap()
            .insert(d.seq, (d.finished.stdout.to_vec()?, d.attempts, ok));
        Ok(())
    }
    fn skipped(&self, seq: u64) {
        self.skipped.lock().unwrap().push(seq);
    }
}

fn recorder() -> Recorder {
    Recorder::new(RunRecord::now("command", 2), true, Retention::All)
}

fn words(w: &[&str]) -> Template {
    Template::parse(&w.iter().map(|s| s.into()).collect::<Vec<_>>())
}

fn inputs(n: u64) -> impl Iterator<Item = io::Result<Vec<Vec<u8>>>> + Send + 'static {
    (1..=n).map(|i| Ok(vec![format!("in{i}").into_bytes()]))
}

/// Workers serving in threads of the test.
struct Workers(Arc<RunControl>, Vec<std::thread::JoinHandle<WorkerStats>>);

impl Workers {
    /// Stops them and returns what each did.
    fn stop(self) -> Vec<WorkerStats> {
        self.0.interrupt();
        self.1.into_iter().map(|h| h.join().unwrap()).collect()
    }
}

/// Runs `n` workers of `slots` each in threads until [`Workers::stop`].
fn workers(url: &str, n: usize, slots: usize) -> Workers {
    let control = Arc::new(RunControl::new().unwrap());
    let handles = (0..n)
        .map(|i| {
            let w = Worker::new(
                url,
                WorkerOptions {
                    slots,
                    name: Some(format!("w{i}")),
                    ..Default::default()
                },
            )
            .unwrap();
            let c = Arc::clone(&control);
            std::thread::spawn(move || w.serve(&c).unwrap())
        })
        .collect();
    Workers(control, handles)
}

#[test]
fn two_workers_run_every_job_once_and_the_run_leaves_no_key() {
    let redis = Redis::start();
    let ws = workers(&redis.url(), 2, 2);
    let rec = recorder();
    let sub = Submitter::new(
        &redis.url(),
        words(&["echo"]),
        ClusterOptions::default(),
        rec.clone(),
    )
    .unwrap();
    let out = Collect::default();
    let n = 300;
    let outcome = sub
        .run(inputs(n), &out, &RunControl::new().unwrap())
        .unwrap();
    assert_eq!(outcome.accepted, n);
    assert_eq!((outcome.run.jobs, outcome.run.failed), (n, 0));
    assert_eq!(outcome.dropped, 0);
    assert!(outcome.finished);
    let got = out.got.lock().unwrap();
    for i in 1..=n {
        assert_eq!(got[&i].0, format!("in{i}\n").into_bytes(), "job {i}");
    }
    assert!(out.times.lock().unwrap().values().all(|&t| t == 1));
    // One record per attempt, each from one of the two workers.
    let records = rec.records();
    assert_eq!(records.len(), n as usize);
    let mut by_worker: HashMap<u32, usize> = HashMap::new();
    for r in &records {
        *by_worker.entry(r.worker).or_default() += 1;
    }
    assert!(
        by_worker.keys().all(|w| (1..=2).contains(w)),
        "{by_worker:?}"
    );
    assert_eq!(rec.report().tasks, n);
    // Every key of the run is gone once it is done; the workers' stats agree.
    assert_eq!(
        redis.int(&["EXISTS", &format!("pardo:{{{}}}:jobs", sub.run_id())]),
        0
    );
    assert_eq!(redis.int(&["SCARD", "pardo:runs"]), 0);
    assert_eq!(redis.int(&["DBSIZE"]), 0);
    let stats = ws.stop();
    assert_eq!(stats.iter().map(|s| s.accepted).sum::<u64>(), n);
    assert_eq!(stats.iter().map(|s| s.dropped).sum::<u64>(), 0);
}

#[test]
fn submitting_again_adds_no_job_twice_and_resume_hands_on_the_rest() {
    let redis = Redis::start();
    let n = 100;
    // The first submitter is stopped right after its first batch, before any worker runs.
    let control = Arc::new(RunControl::new().unwrap());
    let c = Arc::clone(&control);
    let asked = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&asked);
    let first = inputs(n).inspect(move |_| {
        if a.fetch_add(1, Ordering::SeqCst) == 10 {
            c.interrupt();
        }
    });
    let sub = Submitter::new(
        &redis.url(),
        words(&["echo"]),
        ClusterOptions::default(),
        recorder(),
    )
    .unwrap();
    let run = sub.run_id().to_string();
    let out = sub.run(first, &Collect::default(), &control).unwrap();
    assert!(out.run.interrupted && !out.finished);
    let jobs = format!("pardo:{{{run}}}:jobs");
    assert_eq!(redis.int(&["XLEN", &jobs]), n as i64);

    // Resumed twice over the same inputs: still one entry per job.
    let again = Submitter::resume(
        &redis.url(),
        &run,
        words(&["echo"]),
        ClusterOptions::default(),
        recorder(),
    )
    .unwrap();
    let interrupted = RunControl::new().unwrap();
    interrupted.interrupt();
    let _ = again
        .run(inputs(n), &Collect::default(), &interrupted)
        .unwrap();
    assert_eq!(
        redis.int(&["XLEN", &jobs]),
        n as i64,
        "a resumed submit added jobs"
    );

    let ws = workers(&redis.url(), 1, 2);
    let resumed = Submitter::resume(
        &redis.url(),
        &run,
        words(&["echo"]),
        ClusterOptions::default(),
        recorder(),
    )
    .unwrap();
    let got = Collect::default();
    let out = resumed
        .run(inputs(n), &got, &RunControl::new().unwrap())
        .unwrap();
    assert!(out.finished);
    assert_eq!(out.accepted, n);
    assert_eq!(got.got.lock().unwrap().len(), n as usize);
    assert!(got.times.lock().unwrap().values().all(|&t| t == 1));
    ws.stop();
    // A finished run cannot be resumed.
    assert!(Submitter::resume(
        &redis.url(),
        &run,
        words(&["echo"]),
        ClusterOptions::default(),
        recorder()
    )
    .is_err());
}

#[test]
fn a_failed_attempt_is_tried_again_and_every_attempt_is_recorded() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let ws = workers(&redis.url(), 2, 1);
    let rec = recorder();
    // Fails the first time it runs for an input, succeeds the second.
    let script = format!(
        "test -e {d}/{{}} && echo ok {{}} || {{ touch {d}/{{}}; exit 3; }}",
        d = dir.path().display()
    );
    let sub = Submitter::new(
        &redis.url(),
        Template::parse(&[script.into()]),
        ClusterOptions {
            tries: 2,
            ..ClusterOptions::default()
        },
        rec.clone(),
    )
    .unwrap();
    let got = Collect::default();
    let n = 20;
    let out = sub
        .run(inputs(n), &got, &RunControl::new().unwrap())
        .unwrap();
    assert_eq!((out.run.jobs, out.run.failed, out.retried), (n, 0, n));
    for (seq, (stdout, attempts, ok)) in got.got.lock().unwrap().iter() {
        assert_eq!(stdout, &format!("ok in{seq}\n").into_bytes());
        assert_eq!((*attempts, *ok), (2, true), "job {seq}");
    }
    let records = rec.records();
    assert_eq!(records.len(), 2 * n as usize);
    assert_eq!(
        records.iter().filter(|r| r.exit_code == Some(3)).count(),
        n as usize
    );
    ws.stop();
}

#[test]
fn a_job_failing_every_try_reports_its_last_exit() {
    let redis = Redis::start();
    let ws = workers(&redis.url(), 1, 2);
    let sub = Submitter::new(
        &redis.url(),
        words(&["echo err {} >&2; exit 4"]),
        ClusterOptions {
            tries: 3,
            ..ClusterOptions::default()
        },
        recorder(),
    )
    .unwrap();
    let got = Collect::default();
    let out = sub
        .run(inputs(3), &got, &RunControl::new().unwrap())
        .unwrap();
    assert_eq!((out.run.jobs, out.run.failed), (3, 3));
    assert!(got
        .got
        .lock()
        .unwrap()
        .values()
        .all(|(_, a, ok)| *a == 3 && !ok));
    ws.stop();
}

#[test]
fn large_output_comes_back_whole_in_chunks() {
    let redis = Redis::start();
    let ws = workers(&redis.url(), 1, 1);
    // 3 MiB and a bit: three full chunks and a partial one.
    let sub = Submitter::new(
        &redis.url(),
        words(&["head -c 3200000 /dev/zero; : {}"]),
        ClusterOptions::default(),
        recorder(),
    )
    .unwrap();
    let got = Collect::default();
    sub.run(inputs(1), &got, &RunControl::new().unwrap())
        .unwrap();
    let g = got.got.lock().unwrap();
    assert_eq!(g[&1].0.len(), 3_200_000);
    assert!(g[&1].0.iter().all(|&b| b == 0));
    assert_eq!(redis.int(&["DBSIZE"]), 0, "chunk lists left behind");
    ws.stop();
}
