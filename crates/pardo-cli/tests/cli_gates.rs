//! `--delay`, `--load` and `--memfree` on the command line. What the gates do with a busy or
//! memory-short machine is tested in the library with a machine the test controls; here: the
//! options are read in GNU parallel's forms, refused with a reason, and `--delay` spaces starts.

mod support;

use predicates::prelude::*;
use support::pardo;

/// Start times (seconds since the epoch) of the joblog's jobs, in order of start.
fn start_times(log: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut times: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(2).unwrap().parse().unwrap())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

#[test]
fn delay_spaces_every_start_even_with_free_slots() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // Four slots for four jobs: without the delay all would start at once.
    pardo()
        .args(["-j", "4", "--delay", "0.2s", "--joblog"])
        .arg(&log)
        .args(["true", ":::", "1", "2", "3", "4"])
        .assert()
        .success();
    let times = start_times(&log);
    assert_eq!(times.len(), 4);
    for pair in times.windows(2) {
        // The joblog has milliseconds: allow a rounding at each end.
        assert!(pair[1] - pair[0] >= 0.198, "starts too close: {times:?}");
    }
}

#[test]
fn gates_that_are_open_let_every_job_run() {
    pardo()
        .args(["-k", "--load", "100000", "--memfree", "1k", "--delay", "0"])
        .args(["echo", ":::", "a", "b", "c"])
        .assert()
        .success()
        .stdout("a\nb\nc\n");
    // 1000% of the cores: as -j reads percentages.
    pardo()
        .args(["-k", "--load", "100000%", "echo", ":::", "x"])
        .assert()
        .success()
        .stdout("x\n");
}

#[test]
fn bad_gate_values_are_named_and_exit_255() {
    for (opt, value, says) in [
        ("--delay", "5x", "not a duration"),
        ("--delay", "1sauto", "not a duration"),
        ("--memfree", "12X", "unknown unit"),
        ("--memfree", "lots", "not a size"),
        ("--load", "high", "invalid --load"),
    ] {
        pardo()
            .args([opt, value, "echo", ":::", "a"])
            .assert()
            .code(255)
            .stdout("")
            .stderr(predicate::str::contains(says).and(predicate::str::contains(value)));
    }
}
