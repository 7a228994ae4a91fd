//! [`Guard`]: a separate process that kills the runner's jobs if the runner itself dies.
//!
//! A runner killed with SIGKILL gets no chance to stop its jobs, and each job sits in its own
//! process group, so nothing else stops them either. The guard is a small process started
//! before the first job. The runner sends it a record over a pipe when a job's group starts
//! (`+PGID`) and just before the job's leader is reaped (`-PGID`), and `done` when it ends
//! normally. If the pipe reaches end of file without `done`, the runner is gone: the guard
//! sends SIGKILL to every group it still holds and exits.
//!
//! Why a process and a pipe: end of file on a pipe is the one notice of death the kernel gives
//! for any way a process can end. The write end is close-on-exec (every descriptor the standard
//! library creates is), so no job holds it open and the end of file really means the runner
//! is gone. Jobs are still spawned with `posix_spawn`: nothing runs in the child before `exec`.
//!
//! Each record is one `write` shorter than `PIPE_BUF`, so records from many slots never mix.
//! A job's leader stays unreaped until after its `-PGID` record, so a listed group id cannot
//! belong to anything else while the runner lives.

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// The runner's side of a guard process; see the [module docs](self).
///
/// ```no_run
/// // In the runner: start this same program in guard mode (its `main` calls `guard::serve`).
/// let mut cmd = std::process::Command::new(std::env::current_exe()?);
/// cmd.arg("--internal-guard");
/// let guard = pardo::command::Guard::spawn(cmd)?;
/// // ... hand `guard` to the runner through `RunOptions::guard`, run, then:
/// guard.finish();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Guard {
    pipe: ChildStdin,
    child: Mutex<Option<Child>>,
}

impl Guard {
    /// Starts `cmd` as the guard, its stdin the record pipe, in a process group of its own (a
    /// Ctrl-C at the terminal is for the runner, which stops its jobs itself).
    pub fn spawn(mut cmd: Command) -> io::Result<Guard> {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("the guard has no stdin pipe"))?;
        Ok(Guard {
            pipe,
            child: Mutex::new(Some(child)),
        })
    }

    /// Notes that process group `pgid` is running.
    pub fn add(&self, pgid: libc::pid_t) {
        self.record(&format!("+{pgid}\n"));
    }

    /// Notes that process group `pgid` was handled and its leader is about to be reaped.
    pub fn remove(&self, pgid: libc::pid_t) {
        self.record(&format!("-{pgid}\n"));
    }

    fn record(&self, line: &str) {
        // One write per record (shorter than PIPE_BUF, so atomic). A guard that died gives
        // EPIPE (SIGPIPE is ignored in Rust programs); the run goes on without it.
        // SAFETY: writing from a valid buffer to a pipe we own.
        unsafe {
            libc::write(self.pipe.as_raw_fd(), line.as_ptr().cast(), line.len());
        }
    }

    /// Tells the guard the run ended normally and waits for it to exit.
    pub fn finish(self) {
        // Drop does the work; a method makes the end of the run visible at the call site.
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.record("done\n");
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // The guard exits on reading `done`; reap it so no zombie is left.
            let _ = child.wait();
        }
    }
}

/// The guard's side: reads records from `input` until `done` (returns, killing nothing) or end
/// of file (kills every group still listed, then returns). Call it from the guard process's
/// `main` and exit afterwards.
pub fn serve(input: impl BufRead) {
    // The guard must outlive the runner's death, whatever signal the terminal sends around.
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut groups: HashSet<libc::pid_t> = HashSet::new();
    for line in input.split(b'\n') {
        let Ok(line) = line else { break };
        if line == b"done" {
            return;
        }
        let Some((&op, num)) = line.split_first() else {
            continue;
        };
        let Some(pgid) = std::str::from_utf8(num)
            .ok()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
            .filter(|&p| p > 1)
        else {
            continue;
        };
        match op {
            b'+' => {
                groups.insert(pgid);
            }
            b'-' => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}
