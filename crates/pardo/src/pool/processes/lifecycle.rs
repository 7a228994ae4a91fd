//! One worker process: spawning it with its pipes, forwarding its stderr, waiting for its
//! hello, killing, reaping and retiring it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// A worker process as the kill and reap paths see it: shared between its manager (which
/// reaps it) and whoever may kill it (a timeout, a panicking drop of the pool).
///
/// Signals go through a pidfd when the kernel has them (Linux 5.3+): a pidfd names one process
/// for good, so a signal can never reach another process that was given the same pid after
/// this one was reaped. Without pidfds, `reaped` guards every `kill(2)`: killing and reaping
/// both hold it, so no signal is sent once the pid is free for reuse.
pub(super) struct Tracked {
    pub(super) pid: u32,
    /// The slot the worker serves, from 0.
    pub(super) index: usize,
    pidfd: Option<OwnedFd>,
    reaped: Mutex<bool>,
}

impl Tracked {
    pub(super) fn new(pid: u32, index: usize) -> Tracked {
        Tracked {
            pid,
            index,
            pidfd: pidfd_open(pid),
            reaped: Mutex::new(false),
        }
    }

    /// Sends SIGKILL unless the process was reaped; true when a signal was sent.
    pub(super) fn kill(&self) -> bool {
        let reaped = lock(&self.reaped);
        if *reaped {
            return false;
        }
        let rc = match &self.pidfd {
            // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            // SAFETY: kill(2) on our own child, which `reaped` (held) says is not reaped yet.
            None => {
                libc::c_long::from(unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) })
            }
        };
        rc == 0
    }

    /// Waits for the process to end and reaps it; `None` when it was reaped already.
    pub(super) fn reap(&self) -> Option<Exit> {
        // Wait without reaping first, so the lock is not held while the worker runs on: a
        // killer must be able to take it. The process stays a zombie until `wait4` below, so
        // its pid cannot be reused in between.
        loop {
            let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: valid out-pointer; WNOWAIT leaves the child waitable.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    info.as_mut_ptr(),
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
        }
        let mut reaped = lock(&self.reaped);
        if *reaped {
            return None;
        }
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
        *reaped = true;
        if rc < 0 {
            return Some(Exit::default());
        }
        // SAFETY: wait4 succeeded and filled the rusage.
        let ru = unsafe { ru.assume_init() };
        Some(Exit {
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            max_rss_bytes: Some(ru.ru_maxrss as u64 * 1024),
            cpu_user_ns: crate::clock::timeval_ns(&ru.ru_utime),
            cpu_sys_ns: crate::clock::timeval_ns(&ru.ru_stime),
        })
    }

    pub(super) fn is_reaped(&self) -> bool {
        *lock(&self.reaped)
    }
}

/// A pidfd for `pid`, or `None` where the kernel (or a seccomp filter) has none.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the descriptor is new and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Kills and reaps a just-spawned child unless disarmed: any step after `spawn` that fails
/// must not leave a zombie (or a live worker nobody feeds).
struct ReapUnlessDisarmed<'a>(Option<&'a Tracked>);

impl ReapUnlessDisarmed<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ReapUnlessDisarmed<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            t.kill();
            let _ = t.reap();
        }
    }
}

/// Starts a thread; the indirection lets a test make it fail.
pub(super) type SpawnThread = fn(String, Box<dyn FnOnce() + Send>) -> std::io::Result<()>;

fn spawn_thread(name: String, f: Box<dyn FnOnce() + Send>) -> std::io::Result<()> {
    std::thread::Builder::new().name(name).spawn(f).map(drop)
}

/// A worker process that was spawned and has not said hello yet.
pub(super) struct Starting {
    proc: Proc,
}

impl Starting {
    /// Waits for the worker's hello; a worker that does not give it is killed and reaped.
    pub(super) fn ready(self, shared: &Shared) -> Result<Proc, PoolError> {
        let mut proc = self.proc;
        let cfg = &shared.config;
        let worker = proc.index() + 1;
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
            Ok(h) if h.protocol == wire::PROTOCOL => Ok(proc),
            Ok(h) => {
                let why = format!(
                    "it speaks protocol {}, this pool {}",
                    h.protocol,
                    wire::PROTOCOL
                );
                Err(refuse(&mut proc, why))
            }
            Err(e) => {
                let why = format!("it did not answer as a pardo worker ({e}); {hint}");
                Err(refuse(&mut proc, why))
            }
        }
    }
}

/// One live worker process and its pipes.
pub(super) struct Proc {
    tracked: Arc<Tracked>,
    /// Kept only so the handles below stay valid; never waited on (`wait4` reaps instead).
    _child: Child,
    to: Option<ChildStdin>,
    from: ChildStdout,
    buf: Vec<u8>,
    frame: Vec<u8>,
    pub(super) tasks: u64,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_done: mpsc::Receiver<()>,
}

impl Proc {
    /// Starts a worker for slot `index` and waits for its hello.
    pub(super) fn start(shared: &Shared, index: usize) -> Result<Proc, PoolError> {
        Proc::spawn(shared, index)?.ready(shared)
    }

    /// Spawns a worker for slot `index`, counted as started from here on; its hello is
    /// awaited by [`Starting::ready`].
    pub(super) fn spawn(shared: &Shared, index: usize) -> Result<Starting, PoolError> {
        Proc::spawn_with(shared, index, spawn_thread)
    }

    pub(super) fn spawn_with(
        shared: &Shared,
        index: usize,
        spawn_thread: SpawnThread,
    ) -> Result<Starting, PoolError> {
        let cfg = &shared.config;
        let worker = index + 1;
        let mut cmd = Command::new(&cfg.program);
        cmd.args(&cfg.args)
            .arg(worker::marker(std::process::id(), cfg.memory_limit))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| PoolError::Spawn {
            worker,
            error: source,
        })?;
        let tracked = Arc::new(Tracked::new(child.id(), index));
        let guard = ReapUnlessDisarmed(Some(&tracked));
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(to), Some(from), Some(err)) = pipes else {
            let source = std::io::Error::other("the worker's pipes were not created");
            return Err(PoolError::Spawn {
                worker,
                error: source,
            });
        };
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let tail = Arc::clone(&stderr_tail);
        spawn_thread(
            format!("pardo-proc-{worker}-stderr"),
            Box::new(move || forward_stderr(err, &tail, done_tx)),
        )
        .map_err(|source| PoolError::Spawn {
            worker,
            error: source,
        })?;
        guard.disarm();
        shared.register(&tracked);
        shared.stats.started.fetch_add(1, Ordering::Relaxed);
        Ok(Starting {
            proc: Proc {
                tracked,
                _child: child,
                to: Some(to),
                from,
                buf: Vec::new(),
                frame: Vec::new(),
                tasks: 0,
                stderr_tail,
                stderr_done,
            },
        })
    }

    pub(super) fn index(&self) -> usize {
        self.tracked.index
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
        self.tracked.kill();
    }

    /// Waits for the worker to end and says how it ended.
    pub(super) fn reap(&mut self, shared: &Shared) -> Exit {
        let exit = self.tracked.reap().unwrap_or_default();
        shared.deregister(&self.tracked);
        exit
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
        // Reached unreaped only on an unwinding manager: the worker must not outlive it.
        if !self.tracked.is_reaped() {
            self.kill();
            let _ = self.tracked.reap();
        }
        // The registry is the manager's: it forgets the worker when it sees it reaped.
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
pub(super) mod tests {
    use super::*;

    use crate::monitor::{Recorder, Retention, RunRecord};

    /// A pool's shared state whose "workers" are `program args… marker` (no hello needed
    /// here; `sh -c` takes the marker for its `$0`).
    pub(crate) fn shared_for(program: &str, args: &[&str]) -> Shared {
        let config = super::super::builder::Config {
            program: program.into(),
            args: args.iter().map(Into::into).collect(),
            max_tasks_per_worker: None,
            memory_limit: None,
            task_timeout: None,
            start_timeout: Duration::from_secs(30),
        };
        let recorder = Recorder::new(RunRecord::now("test", 1), true, Retention::All);
        Shared::new(recorder, config)
    }

    /// The children this thread has started that still exist (zombies included).
    fn my_children() -> Vec<u32> {
        std::fs::read_to_string("/proc/thread-self/children")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    #[test]
    fn a_failure_after_spawn_kills_and_reaps_the_child() {
        let shared = shared_for("/bin/sh", &["-c", "exec sleep 1000"]);
        let before = my_children();
        let failing: SpawnThread = |_, _| Err(std::io::Error::other("no threads left"));
        let err = Proc::spawn_with(&shared, 0, failing)
            .err()
            .expect("the spawn fails");
        assert!(err.to_string().contains("no threads left"), "{err}");
        assert_eq!(my_children(), before, "the child was killed and reaped");
        assert!(lock(&shared.workers).is_empty());
    }

    #[test]
    fn a_reaped_worker_is_never_signalled() {
        let shared = shared_for("/bin/sh", &["-c", "exec sleep 1000"]);
        let starting = Proc::spawn(&shared, 0).expect("spawn sleep");
        let mut proc = starting.proc;
        let tracked = Arc::clone(&proc.tracked);
        assert_eq!(lock(&shared.workers).len(), 1);
        assert!(tracked.kill(), "a live worker is signalled");
        let exit = proc.reap(&shared);
        assert_eq!(exit.signal, Some(libc::SIGKILL));
        assert!(
            lock(&shared.workers).is_empty(),
            "a reaped worker is forgotten"
        );
        // Its pid may now belong to anyone: no signal goes out, whoever holds a reference.
        assert!(!tracked.kill());
        assert!(tracked.reap().is_none());
        drop(proc);
    }

    #[test]
    fn the_allocator_line_is_found_in_a_stderr_tail() {
        let tail = "noise\nmemory allocation of 1073741824 bytes failed\n";
        assert_eq!(
            out_of_memory_line(tail),
            Some("memory allocation of 1073741824 bytes failed")
        );
        assert_eq!(out_of_memory_line("thread 'main' panicked"), None);
    }
}
