//! One worker process: spawning it with its pipes, forwarding its stderr, waiting for its
//! hello, killing, reaping and retiring it.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::delivery::Job;
use super::manager::Shared;
use super::wire::{self, Hello, Reply, Request};
use super::worker;
use crate::pool::PoolError;
use crate::sync::lock;

/// How long a closed-down worker's stderr may stay open after it died (a grandchild can hold
/// it); past this, its last words are not waited for.
const STDERR_GRACE: Duration = Duration::from_secs(1);
/// The bytes of a worker's stderr kept to explain its death: enough for the allocator's line
/// followed by a backtrace.
const STDERR_TAIL: usize = 64 << 10;

/// How a task's worker ended, for the record.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Exit {
    pub(super) signal: Option<i32>,
    pub(super) exit_code: Option<i32>,
    pub(super) max_rss_bytes: Option<u64>,
    pub(super) cpu_user_ns: u64,
    pub(super) cpu_sys_ns: u64,
}

/// The line Rust's allocator prints before aborting on a failed allocation, if `stderr` has it.
pub(super) fn out_of_memory_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("memory allocation of"))
}

pub(super) enum Received {
    Reply(Reply),
    Ended,
    TimedOut(Duration),
}

/// One live worker process and its pipes.
pub(super) struct Proc {
    pub(super) index: usize,
    pub(super) pid: u32,
    /// Kept only so the handles below stay valid; never waited on (`wait4` reaps instead).
    pub(super) _child: Child,
    pub(super) to: Option<ChildStdin>,
    pub(super) from: ChildStdout,
    pub(super) buf: Vec<u8>,
    pub(super) frame: Vec<u8>,
    pub(super) tasks: u64,
    pub(super) reaped: bool,
    pub(super) stderr_tail: Arc<Mutex<Vec<u8>>>,
    pub(super) stderr_done: mpsc::Receiver<()>,
}

impl Proc {
    /// Starts a worker for slot `index` and waits for its hello.
    pub(super) fn start(shared: &Shared, index: usize) -> Result<Proc, PoolError> {
        let cfg = &shared.config;
        let worker = index + 1;
        let mut cmd = Command::new(&cfg.program);
        cmd.args(&cfg.args)
            .env(worker::ENV_WORKER, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(limit) = cfg.memory_limit {
            cmd.env(worker::ENV_MEMORY, limit.to_string());
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| PoolError::Spawn { worker, source })?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(to), Some(from), Some(err)) = pipes else {
            let source = std::io::Error::other("the worker's pipes were not created");
            return Err(PoolError::Spawn { worker, source });
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let tail = Arc::clone(&stderr_tail);
        std::thread::Builder::new()
            .name(format!("pardo-proc-{worker}-stderr"))
            .spawn(move || forward_stderr(err, &tail, done_tx))
            .map_err(|source| PoolError::Spawn { worker, source })?;
        let mut proc = Proc {
            index,
            pid: child.id(),
            _child: child,
            to: Some(to),
            from,
            buf: Vec::new(),
            frame: Vec::new(),
            tasks: 0,
            reaped: false,
            stderr_tail,
            stderr_done,
        };
        shared.set_pid(index, Some(proc.pid));
        let hint = "does the worker program call pardo::worker_hook() first thing in main?";
        let refuse = |proc: &mut Proc, reason: String| {
            proc.kill();
            let _ = proc.reap(shared);
            PoolError::WorkerStart { worker, reason }
        };
        match wire::readable_within(&proc.from, cfg.start_timeout) {
            Ok(true) => {}
            Ok(false) => {
                let why = format!("no answer within {:?}; {hint}", cfg.start_timeout);
                return Err(refuse(&mut proc, why));
            }
            Err(e) => return Err(refuse(&mut proc, e.to_string())),
        }
        let hello = match wire::read_frame(&mut proc.from, &mut proc.frame) {
            Ok(true) => wire::decode::<Hello>(&proc.frame),
            Ok(false) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(e),
        };
        match hello {
            Ok(h) if h.protocol == wire::PROTOCOL => {}
            Ok(h) => {
                let why = format!(
                    "it speaks protocol {}, this pool {}",
                    h.protocol,
                    wire::PROTOCOL
                );
                return Err(refuse(&mut proc, why));
            }
            Err(e) => {
                let why = format!("it did not answer as a pardo worker ({e}); {hint}");
                return Err(refuse(&mut proc, why));
            }
        }
        shared.stats.started.fetch_add(1, Ordering::Relaxed);
        Ok(proc)
    }

    pub(super) fn send(&mut self, job: &Job) -> std::io::Result<()> {
        let req = Request {
            name: job.name,
            inputs: job.inputs.iter().map(Vec::as_slice).collect(),
        };
        match self.to.as_mut() {
            Some(to) => wire::write_frame(to, &req, &mut self.buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    pub(super) fn receive(&mut self, timeout: Option<Duration>) -> Received {
        if let Some(limit) = timeout {
            match wire::readable_within(&self.from, limit) {
                Ok(true) => {}
                Ok(false) => return Received::TimedOut(limit),
                Err(_) => return Received::Ended,
            }
        }
        match wire::read_frame(&mut self.from, &mut self.frame) {
            Ok(true) => match wire::decode::<Reply>(&self.frame) {
                Ok(reply) => Received::Reply(reply),
                // A garbled reply means the worker can no longer be trusted: treat it as dead.
                Err(_) => {
                    self.kill();
                    Received::Ended
                }
            },
            Ok(false) | Err(_) => Received::Ended,
        }
    }

    pub(super) fn kill(&self) {
        if !self.reaped {
            // SAFETY: plain kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// Waits for the worker to end and says how it ended.
    pub(super) fn reap(&mut self, shared: &Shared) -> Exit {
        if self.reaped {
            return Exit::default();
        }
        // Forget the pid before reaping it, so a concurrent kill can never hit a reused pid.
        shared.set_pid(self.index, None);
        let mut status = 0;
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        let rc = loop {
            // SAFETY: valid out-pointers; the pid is our child, not yet reaped.
            let rc =
                unsafe { libc::wait4(self.pid as libc::pid_t, &mut status, 0, ru.as_mut_ptr()) };
            if rc >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break rc;
            }
        };
        self.reaped = true;
        if rc < 0 {
            return Exit::default();
        }
        // SAFETY: wait4 succeeded and filled the rusage.
        let ru = unsafe { ru.assume_init() };
        let signaled = libc::WIFSIGNALED(status);
        Exit {
            signal: signaled.then(|| libc::WTERMSIG(status)),
            exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            max_rss_bytes: Some(ru.ru_maxrss as u64 * 1024),
            cpu_user_ns: worker::timeval_ns(&ru.ru_utime),
            cpu_sys_ns: worker::timeval_ns(&ru.ru_stime),
        }
    }

    /// Closes the worker's input so it exits, and reaps it; kills it if it lingers.
    pub(super) fn retire(mut self, shared: &Shared) {
        self.to = None;
        if !matches!(
            wire::readable_within(&self.from, shared.config.start_timeout),
            Ok(true)
        ) {
            self.kill();
        }
        let _ = self.reap(shared);
    }

    /// The last bytes the (dead) worker wrote to stderr.
    pub(super) fn stderr_tail(&self) -> String {
        let _ = self.stderr_done.recv_timeout(STDERR_GRACE);
        String::from_utf8_lossy(&lock(&self.stderr_tail)).into_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let mut status = 0;
            // SAFETY: reaping our own child so it does not stay a zombie.
            unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, 0) };
        }
    }
}

/// Copies a worker's stderr to ours, keeping the tail to explain a death.
pub(super) fn forward_stderr(mut from: impl Read, tail: &Mutex<Vec<u8>>, done: mpsc::Sender<()>) {
    let mut chunk = [0u8; 4096];
    loop {
        match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let _ = std::io::stderr().write_all(&chunk[..n]);
                let mut t = lock(tail);
                t.extend_from_slice(&chunk[..n]);
                if t.len() > STDERR_TAIL {
                    let cut = t.len() - STDERR_TAIL;
                    t.drain(..cut);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = done.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn the_allocator_line_is_found_in_a_stderr_tail() {
        let tail = "noise\nmemory allocation of 1073741824 bytes failed\n";
        assert_eq!(
            out_of_memory_line(tail),
            Some("memory allocation of 1073741824 bytes failed")
        );
        assert_eq!(out_of_memory_line("thread 'main' panicked"), None);
    }
}
