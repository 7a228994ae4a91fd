//! "See the run" from the command line: `--json` JSON Lines as jobs end (and what a killed run
//! leaves), `--trace`, `--report`, `pardo report` and `--metrics-addr`. Waits here are hang
//! detectors: a test that reaches one fails.

mod support;

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pardo::monitor::export::read_json_lines;
use predicates::prelude::*;
use support::pardo;

const HANG: Duration = Duration::from_secs(60);

fn pardo_cmd() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("pardo"))
}

/// Polls `cond` until it holds; reaching [`HANG`] fails the test.
fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + HANG;
    while !cond() {
        assert!(Instant::now() < until, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn read_log(path: &std::path::Path) -> pardo::monitor::export::RunLog {
    read_json_lines(BufReader::new(std::fs::File::open(path).unwrap())).unwrap()
}

#[test]
fn json_lines_fold_back_into_the_summary_and_keep_failed_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.jsonl");
    pardo()
        .arg("--json")
        .arg(&json)
        .args([
            "-j",
            "2",
            "echo out-{}; echo oops-{} >&2; exit {}",
            ":::",
            "0",
            "4",
            "0",
        ])
        .assert()
        .code(1);
    let log = read_log(&json);
    let run = log.run.as_ref().expect("a header line");
    assert_eq!(run.executor, "command");
    assert_eq!(log.records.len(), 3);
    let summary = log.summary.clone().expect("a summary line");
    assert_eq!(
        log.report(),
        summary,
        "the records give the summary's numbers"
    );
    assert_eq!(log.stderr.len(), 1, "{:?}", log.stderr);
    assert_eq!(log.stderr[0].id, pardo::TaskId(2));
    assert_eq!(log.stderr[0].tail, "oops-4\n");
}

#[test]
fn json_to_stdout_is_refused_because_job_output_goes_there() {
    pardo()
        .args(["--json", "-", "echo", ":::", "a"])
        .assert()
        .code(255)
        .stdout("")
        .stderr(predicates::str::contains("--json -").and(predicates::str::contains("file name")));
}

#[test]
fn a_run_killed_with_sigkill_keeps_the_records_of_the_jobs_that_ended() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.jsonl");
    // Jobs 1-3 end at once; job 4 waits for a file that never comes.
    let never = dir.path().join("never");
    let script = format!(
        "if [ {{}} = 4 ]; then while [ ! -e {} ]; do sleep 0.05; done; fi",
        never.display()
    );
    let mut child = pardo_cmd()
        .arg("--json")
        .arg(&json)
        .args(["-j", "4", &script, ":::", "1", "2", "3", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_until("three task lines", || {
        std::fs::read_to_string(&json)
            .map(|t| t.matches("\"type\":\"task\"").count() == 3)
            .unwrap_or(false)
    });
    // SAFETY: sending a signal to a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    assert_eq!(child.wait().unwrap().code(), None);
    let log = read_log(&json);
    assert_eq!(log.records.len(), 3);
    assert!(log.records.iter().all(|r| r.outcome.is_ok()));
    assert_eq!(log.summary, None, "killed: no summary line");
    assert_eq!(
        log.report().tasks,
        3,
        "a report is still made from what finished"
    );
}
