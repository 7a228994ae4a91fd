//! Running jobs: grouping, ordering, quoting, timeouts, retries, halt, joblog and resume,
//! interrupts. Concurrency is proven with files the jobs create, never with timers.

mod support;

use std::process::Stdio;

use predicates::prelude::*;
use proptest::prelude::*;
use support::{alive, pardo, wait_for};

#[test]
fn keep_order_prints_in_input_order_although_job_2_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // Job 1 waits until job 2 has finished, so both ran at once and 2 ended first.
    let script = format!(
        "if [ {{}} = 1 ]; then while [ ! -e {d}/2 ]; do sleep 0.01; done; fi; echo {{}}; touch {d}/{{}}"
    );
    pardo()
        .args(["-k", "-j", "2", &script, ":::", "1", "2"])
        .assert()
        .success()
        .stdout("1\n2\n")
        .stderr("");
    // Without -k the output comes as jobs end. Here job 1 waits until job 2 has been reaped
    // (its /proc entry is gone), not only until it wrote its file, so job 2's output is out
    // before job 1 can end.
    let script = format!(
        "if [ {{}} = 1 ]; then while [ ! -s {d}/pid ]; do sleep 0.01; done; \
         while [ -e /proc/$(cat {d}/pid) ]; do sleep 0.01; done; else echo $$ > {d}/pid; fi; \
         echo {{}}"
    );
    pardo()
        .args(["-j", "2", &script, ":::", "1", "2"])
        .assert()
        .success()
        .stdout("2\n1\n")
        .stderr("");
}

#[test]
fn grouped_output_never_interleaves() {
    let out = pardo()
        .args([
            "-j",
            "2",
            "echo {}-1; sleep 0.02; echo {}-2; echo {}-e >&2",
            ":::",
        ])
        .args(["a", "b", "c", "d"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    for pair in lines.chunks(2) {
        let job = &pair[0][..1];
        assert_eq!(pair, [format!("{job}-1"), format!("{job}-2")]);
    }
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 4);
}

#[test]
fn line_buffer_passes_whole_lines() {
    pardo()
        .args(["--line-buffer", "--tag", "printf 'x\\ny'", ":::", "a"])
        .assert()
        .success()
        .stdout("a\tx\na\ty")
        .stderr("");
}

const HOSTILE: &[&str] = &[
    "a; rm -rf ~",
    "$(echo pwned)",
    "`echo pwned`",
    "it's \"quoted\"",
    "line\nbreak",
    "-n",
    "--help",
    "  spaced  ",
    "*",
    "",
    "back\\slash",
    "semi;colon|pipe&amp>gt<lt",
];

#[test]
fn hostile_values_are_text_directly_and_under_a_shell() {
    let expected: String = HOSTILE.iter().map(|v| format!("[{v}]")).collect();
    // Direct (no shell syntax in the template) and shell (a pipe) must agree.
    for template in [
        &["printf", "[%s]", "{}"][..],
        &["printf '[%s]' {} | cat"][..],
    ] {
        pardo()
            .args(["-k"])
            .args(template)
            .arg(":::")
            .args(HOSTILE)
            .assert()
            .success()
            .stdout(expected.clone())
            .stderr("");
    }
}

#[test]
fn non_utf8_names_pass_through_byte_exact() {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.txt");
    pardo()
        .args(["printf", "%s/", "{}", "{.}", ":::"])
        .arg(name)
        .assert()
        .success()
        .stdout(predicate::eq(&b"caf\xe9 \xff.txt/caf\xe9 \xff/"[..]))
        .stderr("");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn any_value_arrives_as_one_word(values in proptest::collection::vec("[ -~\n\t]{0,12}", 1..6)) {
        let expected: String = values.iter().map(|v| format!("<{v}>")).collect();
        let out = pardo()
            .args(["-k", "printf '<%s>' {} | cat", ":::"])
            .args(&values)
            .output()
            .unwrap();
        prop_assert!(out.status.success());
        prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
        prop_assert_eq!(out.stderr, b"");
    }
}

#[test]
fn timeout_kills_the_whole_group_grandchildren_included() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    pardo()
        .args(["--timeout", "0.2", "--grace", "0.2"])
        .arg("sh -c 'sleep 30 & echo $! > {}; wait'")
        .arg(":::")
        .arg(&pidfile)
        .assert()
        .code(1)
        .stdout("")
        .stderr("");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "grandchild {pid} outlived its timed-out job");
}

#[test]
fn timeout_escalates_to_kill_when_term_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    pardo()
        .args(["--timeout", "0.1", "--grace", "0.1", "--joblog"])
        .arg(&log)
        .arg("trap '' TERM; touch {}; while :; do sleep 0.05; done")
        .arg(":::")
        .arg(dir.path().join("started"))
        .assert()
        .code(1)
        .stdout("")
        .stderr("");
    let text = std::fs::read_to_string(&log).unwrap();
    let fields: Vec<&str> = text.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(fields[7], "9", "killed by SIGKILL: {text}");
}

#[test]
fn retries_run_a_failing_job_again() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    pardo()
        .args(["--retries", "3"])
        .arg("echo x >> {}; [ $(wc -l < {}) -ge 3 ] && echo done")
        .arg(":::")
        .arg(&count)
        .assert()
        .success()
        .stdout("done\n")
        .stderr("");
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "x\nx\nx\n");
}

#[test]
fn halt_now_on_first_failure_returns_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    pardo()
        .args(["-j", "1", "--halt", "now,fail=1", "--joblog"])
        .arg(&log)
        .args(["exit {}", ":::", "0", "3", "0", "0"])
        .assert()
        .code(3)
        .stdout("")
        .stderr(predicates::str::contains(
            "pardo: --halt now,fail=1 stopped the run: job 2 failed with exit code 3 (exit 3)",
        ));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
    pardo()
        .args([
            "-j",
            "1",
            "--halt",
            "soon,success=2",
            "echo {}",
            ":::",
            "a",
            "b",
            "c",
        ])
        .assert()
        .success()
        .stdout("a\nb\n")
        .stderr(predicates::str::contains(
            "--halt soon,success=2 stopped the run: job 2 succeeded",
        ));
}

#[test]
fn joblog_has_gnu_parallels_exact_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    pardo()
        .args(["-k", "-j", "1", "--joblog"])
        .arg(&log)
        .args(["exit", ":::", "0", "4", "a b"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("exit"));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
    );
    let row =
        regex::Regex::new(r"^(\d+)\t:\t\d{10}\.\d{3}\t [ \d]{4}\d\.\d{3}\t0\t0\t(\d+)\t0\t(.*)$")
            .unwrap();
    let rows: Vec<(String, String, String)> = lines
        .map(|l| {
            let c = row
                .captures(l)
                .unwrap_or_else(|| panic!("bad joblog line {l:?}"));
            (c[1].to_owned(), c[2].to_owned(), c[3].to_owned())
        })
        .collect();
    let want = [
        ("1", "0", "exit 0"),
        ("2", "4", "exit 4"),
        ("3", "2", "exit 'a b'"),
    ];
    assert_eq!(rows.len(), 3);
    for (got, want) in rows.iter().zip(want) {
        assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), want);
    }
}

#[test]
fn resume_after_the_runner_was_sigkilled_loses_and_repeats_no_finished_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let log = dir.path().join("log");
    // Job 5 SIGKILLs pardo itself (its parent) the first time it runs.
    let script = format!(
        "echo {{}} >> {d}/ran; if [ {{}} = 5 ] && [ ! -e {d}/killed ]; then touch {d}/killed; kill -9 $PPID; sleep 1; fi"
    );
    let first = pardo()
        .args(["-j", "1", "--joblog"])
        .arg(&log)
        .args([&script, ":::", "1", "2", "3", "4", "5", "6", "7", "8"])
        .output()
        .unwrap();
    assert_eq!(first.status.code(), None, "pardo was killed by a signal");
    pardo()
        .args(["-j", "1", "--resume", "--joblog"])
        .arg(&log)
        .args([&script, ":::", "1", "2", "3", "4", "5", "6", "7", "8"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap();
    assert_eq!(
        ran, "1\n2\n3\n4\n5\n5\n6\n7\n8\n",
        "only the job that was running ran twice"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut seqs: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
}

#[test]
fn resume_failed_runs_only_failed_jobs_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let run = |flags: &[&str]| {
        let mut c = pardo();
        c.args(["-k", "-j", "1"])
            .args(flags)
            .arg("--joblog")
            .arg(&log);
        c.args(["echo {}; test {} != b", ":::", "a", "b", "c"]);
        c
    };
    run(&[]).assert().code(1).stdout("a\nb\nc\n").stderr("");
    run(&["--resume"]).assert().success().stdout("").stderr("");
    run(&["--resume-failed"])
        .assert()
        .code(1)
        .stdout("b\n")
        .stderr("");
}

#[test]
fn ctrl_c_stops_running_jobs_and_writes_the_joblog() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let pidfile = dir.path().join("pid");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pardo"))
        .args(["-j", "1", "--grace", "0.2", "--joblog"])
        .arg(&log)
        .arg("sleep 30 & echo $! > {}.tmp; mv {}.tmp {}; wait")
        .arg(":::")
        .arg(&pidfile)
        .arg(dir.path().join("never"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&pidfile);
    // SAFETY: sending SIGINT to the child we spawned.
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(255));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("interrupted"), "{err}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "job's child {pid} survived Ctrl-C");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "only the header: the interrupted job did not finish, so --resume must run it: {text}"
    );
    assert!(!dir.path().join("never").exists());
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn joblog_receive_counts_stdout_bytes_as_gnu_parallel_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    pardo()
        .args(["-k", "--joblog"])
        .arg(&log)
        .args(["echo {}; echo err >&2", ":::", "abc", "z"])
        .assert()
        .success()
        .stdout("abc\nz\n")
        .stderr("err\nerr\n");
    let text = std::fs::read_to_string(&log).unwrap();
    // Lines come in completion order, as in GNU parallel: pair each with its job number.
    let mut receive: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[5].to_owned())
        })
        .collect();
    receive.sort();
    // "abc\n" and "z\n"; what went to stderr is not counted.
    assert_eq!(
        receive,
        [("1".into(), "4".into()), ("2".into(), "2".into())]
    );
}

/// Regression: with -k, a job that could not start (here: a command line over the kernel's
/// limit) left a gap that held back, and finally dropped, every later job's output. Which later
/// jobs start before the error stops scheduling is a race; whichever the joblog lists as done
/// must have printed, in order.
#[test]
fn keep_order_still_prints_later_jobs_when_one_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let log = dir.path().join("log");
    let mut text = "a".repeat(200_000);
    text.push_str("\nb\nc\n");
    std::fs::write(&input, text).unwrap();
    let out = pardo()
        .args(["-k", "-j", "2", "--joblog"])
        .arg(&log)
        .args(["echo", "::::"])
        .arg(&input)
        .assert()
        .code(255)
        .stderr(predicate::str::contains(
            "job 1: the command line (200005 bytes) is longer than the system allows",
        ))
        .get_output()
        .stdout
        .clone();
    let mut done: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    done.sort();
    let expected: String = done
        .iter()
        .map(|seq| if *seq == 2 { "b\n" } else { "c\n" })
        .collect();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        expected,
        "jobs done: {done:?}"
    );
}

/// Regression: a job that traps TERM and exits 0 after its timeout counted as a success.
#[test]
fn a_job_stopped_by_its_timeout_fails_even_if_it_exits_zero() {
    pardo()
        .args(["--timeout", "0.3", "--grace", "5"])
        .args(["trap 'exit 0' TERM; sleep 30 & wait; echo {}", ":::", "x"])
        .assert()
        .code(1)
        .stdout("");
}
