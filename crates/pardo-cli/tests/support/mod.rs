//! Helpers shared by the CLI tests.
#![allow(dead_code)] // each test file uses a different subset

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A real `redis-server` for the cluster tests (the library's harness).
#[path = "../../../pardo/tests/support/redis.rs"]
pub mod redis;

/// The real `pardo` binary.
pub fn pardo() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("pardo").expect("the pardo binary is built")
}

/// Waits (without a time limit on the assertion) until `path` exists.
pub fn wait_for(path: &Path) {
    while !path.exists() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// True while a process with this pid exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// GNU parallel, which the comparison tests run against. Fails the test, naming the program,
/// when it is not installed: a comparison is never skipped silently.
pub fn gnu_parallel() -> &'static str {
    let found = Command::new("parallel")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "GNU parallel (`parallel`) is not installed, and this test compares pardo with it \
         (apt-get install -y parallel)"
    );
    "parallel"
}

/// GNU parallel with `--will-cite`, in an environment of its own: `HOME` is a private
/// directory under the test target, so neither a missing `HOME` (GNU parallel then warns on
/// stderr) nor the user's `~/.parallel/config` can change what it prints.
pub fn gnu_command() -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gnu-parallel-home");
    std::fs::create_dir_all(&home).expect("the private HOME for GNU parallel can be made");
    let mut cmd = Command::new(gnu_parallel());
    cmd.arg("--will-cite")
        .env("HOME", &home)
        .env_remove("PARALLEL")
        .env_remove("PARALLEL_HOME");
    cmd
}

/// Runs GNU parallel (see [`gnu_command`]) with `args`, `input` on its standard input.
pub fn gnu(args: &[&str], input: &[u8]) -> Output {
    let mut child = gnu_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU parallel starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("GNU parallel ends");
    // GNU parallel may stop reading its input early (a halt): a broken pipe is no failure.
    let _ = writer.join();
    out
}

/// Runs `args` with `input` under pardo and under GNU parallel; fails unless stdout and the
/// exit status are the same. Returns pardo's output for further checks.
pub fn same_as_gnu(args: &[&str], input: &[u8]) -> Output {
    let ours = pardo().args(args).write_stdin(input).output().unwrap();
    let theirs = gnu(args, input);
    assert_eq!(
        String::from_utf8_lossy(&ours.stdout),
        String::from_utf8_lossy(&theirs.stdout),
        "stdout differs for {args:?}"
    );
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "exit differs for {args:?}"
    );
    ours
}
