//! The command line under stress: signals while input never comes, absurd option values, huge
//! output, pardo itself killed, planted symlinks, resume after Ctrl-C. Timeouts here are hang
//! detectors only: a test that reaches one fails.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{alive, pardo};

/// Far longer than any of these tests needs; reaching it means a hang.
const HANG: Duration = Duration::from_secs(60);

fn pardo_cmd() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("pardo"))
}

fn send(child: &Child, sig: i32) {
    // SAFETY: sending a signal to a child we spawned.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Waits for `child`, failing the test if it has not exited within [`HANG`].
fn wait_or_fail(child: &mut Child) -> std::process::ExitStatus {
    let until = Instant::now() + HANG;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("pardo did not exit: hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `path` to exist, failing the test after [`HANG`].
fn wait_for(path: &Path) {
    poll_until(&format!("{} to exist", path.display()), || path.exists());
}

fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < until, "hang waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_signal_stops_pardo_while_its_input_never_comes() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut child = pardo_cmd()
            .args(["--joblog"])
            .arg(&log)
            .arg("echo")
            .stdin(Stdio::piped()) // kept open, never written to
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The joblog's header is written before the run starts reading inputs.
        poll_until("the joblog header", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.ends_with('\n'))
        });
        send(&child, sig);
        let status = wait_or_fail(&mut child);
        assert_eq!(status.code(), Some(255), "signal {sig}");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains("interrupted"), "{err}");
        drop(child.stdin.take());
    }
}

#[test]
fn the_first_signal_lets_a_job_end_and_is_seen_while_input_is_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started.one");
    let mut child = pardo_cmd()
        .args(["-j", "1", "--grace", "30"])
        .arg(format!(
            "trap 'echo stopped; exit 0' TERM; touch {}/started.{{}}; while :; do sleep 0.05; done",
            dir.path().display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"one\n").unwrap();
    wait_for(&started);
    send(&child, libc::SIGINT);
    let status = wait_or_fail(&mut child);
    assert_eq!(status.code(), Some(255));
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(
        out, "stopped\n",
        "the job got TERM and its output was printed"
    );
}

#[test]
fn every_bad_number_is_a_clear_error_with_status_255() {
    let cases: &[&[&str]] = &[
        &["--timeout", "1e20"],
        &["--timeout", "NaN"],
        &["--timeout", "inf"],
        &["--timeout=-1", "-1"],
        &["--grace", "1e300"],
        &["--grace", "NaN"],
        &["--grace=-0.5", "-0.5"],
        &["--halt", "now,fail=NaN%"],
        &["--halt", "now,fail=inf%"],
        &["--halt", "now,fail=150%"],
        &["--halt", "soon,fail=-1"],
        &["--halt", "soon,success=x"],
        &["--retries=-1", "-1"],
        &["--retries", "99999999999"],
        &["-j", "NaN%"],
        &["-j", "1e400%"],
        &["-n", "x"],
    ];
    for args in cases {
        // `--opt=value` cases carry the value again, for the message check only.
        let argv = if args[0].contains('=') {
            &args[..1]
        } else {
            *args
        };
        let out = pardo()
            .args(argv)
            .args(["echo", ":::", "a"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(255), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(args[1]),
            "{args:?}: message names the value: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} ran a job");
    }
    // Large but valid values still run.
    pardo()
        .args(["--timeout", "1e18", "--grace", "1e9", "echo", ":::", "a"])
        .assert()
        .success()
        .stdout("a\n");
}

/// The lines of `seq 1 n`, each after `prefix`, made as they are compared: the test process
/// holds no large buffer. (That matters: a child spawned with vfork starts with its parent's
/// peak RSS, so a test holding the output would measure itself, not pardo.)
struct Expected {
    prefix: &'static [u8],
    next: u64,
    last: u64,
    pending: Vec<u8>,
    at: usize,
}

impl Expected {
    /// Checks that `data` comes next; false on a difference.
    fn matches(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.at == self.pending.len() {
                if self.next > self.last {
                    return false; // more output than expected
                }
                self.pending.clear();
                self.at = 0;
                while self.pending.len() < 64 * 1024 && self.next <= self.last {
                    self.pending.extend_from_slice(self.prefix);
                    self.pending
                        .extend_from_slice(format!("{}\n", self.next).as_bytes());
                    self.next += 1;
                }
            }
            let n = data.len().min(self.pending.len() - self.at);
            if data[..n] != self.pending[self.at..self.at + n] {
                return false;
            }
            self.at += n;
            data = &data[n..];
        }
        true
    }

    fn complete(&self) -> bool {
        self.next > self.last && self.at == self.pending.len()
    }
}

/// Runs pardo with `args`, checks its stdout against `want` as it streams, and returns
/// pardo's peak RSS in bytes (from `wait4`).
// The child is reaped by the `wait4` below, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn run_with_peak_rss(args: &[&str], mut want: Expected) -> u64 {
    let mut child = pardo_cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let mut same = true;
        loop {
            let n = out.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
            same = same && want.matches(&buf[..n]);
        }
        (same && want.complete(), total)
    });
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 writes into both out-parameters for our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(rc, child.id() as i32);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let (same, total) = reader.join().unwrap();
    assert!(same, "{args:?}: output differs from seq's ({total} bytes)");
    ru.ru_maxrss as u64 * 1024
}

#[test]
fn huge_grouped_output_goes_through_a_file_and_arrives_byte_exact() {
    // About 55 MB from one job, far past the 1 MiB kept in memory per stream.
    let n = 7_000_000;
    let size = (1..=n)
        .map(|i: u64| i.to_string().len() as u64 + 1)
        .sum::<u64>();
    let cmd = format!("seq 1 {n}; : {{}}");
    for (extra, prefix) in [
        (&[][..], &b""[..]),
        (&["-k"][..], &b""[..]),
        (&["--tag"][..], &b"x\t"[..]),
    ] {
        let mut args = vec!["-j", "2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&cmd, ":::", "x"]);
        let want = Expected {
            prefix,
            next: 1,
            last: n,
            pending: Vec::new(),
            at: 0,
        };
        let peak = run_with_peak_rss(&args, want);
        assert!(
            peak < size / 2,
            "{extra:?}: pardo peaked at {peak} bytes for {size} bytes of output"
        );
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn jobs_do_not_outlive_pardo_killed_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // Each job records its shell and a background child (same group), then waits.
    let script = format!(
        "sleep 1000 & echo $! > {d}/{{}}.child.tmp; mv {d}/{{}}.child.tmp {d}/{{}}.child; \
         echo $$ > {d}/{{}}.sh.tmp; mv {d}/{{}}.sh.tmp {d}/{{}}.sh; wait"
    );
    let mut child = pardo_cmd()
        .args(["-j", "3", &script, ":::", "1", "2", "3", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pids = Vec::new();
    for job in 1..=3 {
        for kind in ["child", "sh"] {
            let p = dir.path().join(format!("{job}.{kind}"));
            wait_for(&p);
            pids.push(read_pid(&p));
        }
    }
    assert!(pids.iter().all(|&p| alive(p)));
    send(&child, libc::SIGKILL);
    assert_eq!(wait_or_fail(&mut child).code(), None);
    for pid in pids {
        poll_until(&format!("job process {pid} to die"), || !alive(pid));
    }
    assert!(
        !dir.path().join("4.sh").exists(),
        "no job started after pardo died"
    );
}

#[test]
fn a_normal_run_leaves_its_jobs_background_children_alone() {
    // The guard kills only when pardo dies; a finished run does not kill what jobs left behind
    // on purpose (as before, and as GNU parallel).
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg");
    pardo()
        .arg(format!(
            "sleep 1000 > /dev/null 2>&1 & echo $! > {}; : {{}}",
            pidfile.display()
        ))
        .args([":::", "x"])
        .assert()
        .success();
    let pid = read_pid(&pidfile);
    // pardo waits for its guard before exiting, so the guard is gone by now.
    assert!(
        alive(pid),
        "a background child of a finished job was killed"
    );
    // SAFETY: killing the sleep this test started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[cfg(unix)]
fn plant_symlink(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let target = dir.join(format!("{name}.target"));
    std::fs::write(&target, "precious\n").unwrap();
    let link = dir.join(name);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    (link, target)
}

#[test]
fn joblog_json_and_results_never_write_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, resume) in [("--joblog", false), ("--joblog", true), ("--json", false)] {
        let (link, target) = plant_symlink(dir.path(), &format!("{}{resume}", &flag[2..]));
        let mut c = pardo();
        c.arg(flag).arg(&link);
        if resume {
            c.arg("--resume");
        }
        let out = c.args(["echo", ":::", "a"]).output().unwrap();
        assert_eq!(out.status.code(), Some(255), "{flag} resume={resume}");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "precious\n",
            "{flag} resume={resume} wrote through the link"
        );
    }
    // --results: a link planted where a job's stdout file goes (GNU's tree: source 1, value a).
    let results = dir.path().join("res");
    std::fs::create_dir_all(results.join("1/a")).unwrap();
    let target = dir.path().join("results.target");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, results.join("1/a/stdout")).unwrap();
    pardo()
        .arg("--results")
        .arg(&results)
        .args(["echo", ":::", "a"])
        .assert()
        .success()
        .stdout("");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let stdout = results.join("1/a/stdout");
    assert!(!std::fs::symlink_metadata(&stdout).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&stdout).unwrap(), "a\n");
    // A planted link in place of a job's directory is refused.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, results.join("1/b")).unwrap();
    let out = pardo()
        .arg("--results")
        .arg(&results)
        .args(["echo", ":::", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
}

#[test]
fn resume_appends_to_an_existing_regular_joblog() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let run = || {
        let mut c = pardo();
        c.args(["-k", "--resume", "--joblog"])
            .arg(&log)
            .args(["echo", ":::", "a", "b"]);
        c
    };
    run().assert().success().stdout("a\nb\n");
    run().assert().success().stdout("");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn resume_after_ctrl_c_runs_every_interrupted_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let log = dir.path().join("log");
    // A job marks its start, sleeps, then records that it completed.
    let script = format!("touch {d}/started.{{}}; sleep 0.3; echo {{}} >> {d}/completed.{{}}");
    let inputs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let run = |resume: bool| {
        let mut c = pardo_cmd();
        c.args(["-j", "2", "--grace", "10", "--joblog"]).arg(&log);
        if resume {
            c.arg("--resume");
        }
        c.arg(&script)
            .arg(":::")
            .args(&inputs)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut first = run(false).spawn().unwrap();
    // Interrupt while jobs 5 and 6 (or thereabouts) run.
    wait_for(&dir.path().join("started.5"));
    send(&first, libc::SIGINT);
    assert_eq!(wait_or_fail(&mut first).code(), Some(255));
    let done_before = (1..=20)
        .filter(|i| dir.path().join(format!("completed.{i}")).exists())
        .count();
    assert!(
        done_before < 20,
        "the interrupt came too late to test anything"
    );
    let mut second = run(true).spawn().unwrap();
    assert_eq!(wait_or_fail(&mut second).code(), Some(0));
    for i in 1..=20 {
        let f = dir.path().join(format!("completed.{i}"));
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert_eq!(
            text,
            format!("{i}\n"),
            "job {i} completed {:?}",
            text.lines().count()
        );
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().count(),
        21,
        "header and each job once: {logged}"
    );
    assert!(
        logged
            .lines()
            .skip(1)
            .all(|l| l.split('\t').nth(7) == Some("0")),
        "no job is logged as ended by a signal: {logged}"
    );
}
