//! One job: spawn it in its own process group, collect its output, reap it with `wait4` for
//! its resource usage, and stop the whole group when it runs too long or the run is stopped.
//!
//! The wait is one `poll` over the job's stdout and stderr pipes and a wake pipe the runner
//! makes readable when it is interrupted; once both pipes are closed and the leader still
//! runs, a pidfd that becomes readable when it exits (Linux 5.3+; without it the job is reaped
//! with a blocking `wait4`). Most jobs have exited by the time their pipes close, and need no
//! pidfd at all. Nothing sleeps on a timer.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::guard::Guard;
use super::pipe::{self, Range};
use super::spool::Spool;

/// A block of `--pipe` input, shared between a job and its retries.
pub type Block = std::sync::Arc<Vec<u8>>;

/// Where a job's standard input comes from.
///
/// Anything but [`Stdin::Null`] is written to the job's stdin pipe by a feeder thread of its
/// own, so a job that reads slowly (or not at all) never stalls the collection of its output.
/// A job that exits without reading everything ends the feeding quietly (EPIPE).
#[derive(Clone, Debug, Default)]
pub enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// One block of bytes (`--pipe`).
    Bytes(Block),
    /// A byte range of a file, copied file to pipe in the kernel (`--pipepart`).
    Range(Range),
    /// Blocks taken, one after another, from a queue shared by several jobs until it closes:
    /// whichever job is ready takes the next block (`--round-robin`).
    Shared(std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Block>>>),
}

impl Stdin {
    /// Writes this input to `fd` to the end; a reader that went away is not an error.
    fn feed(&self, fd: &OwnedFd) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let r = match self {
            Stdin::Null => Ok(()),
            Stdin::Bytes(b) => pipe::write_all_fd(raw, b),
            Stdin::Range(r) => pipe::feed_range(r, raw),
            Stdin::Shared(q) => loop {
                let next = crate::sync::lock(q).recv();
                let Ok(block) = next else { break Ok(()) };
                if let Err(e) = pipe::write_all_fd(raw, &block) {
                    break Err(e);
                }
            },
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        }
    }
}

/// What to run: argv directly, or shell code under the chosen shell's `-c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// Executed directly; the first word is the program.
    Direct(Vec<OsString>),
    /// Shell code for `SHELL -c`, the shell chosen by [`shell`](super::shell).
    Shell(Vec<u8>),
}

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a job's output is handed over.
pub enum Capture<'a> {
    /// Kept whole and returned when the job ends (grouped output).
    Group,
    /// Passed on a complete line at a time as it arrives (`--line-buffer`); the last partial
    /// line when the stream ends.
    Lines(&'a mut dyn FnMut(OutputStream, &[u8])),
    /// Passed on as it arrives, in whatever pieces the job wrote it (`--ungroup`).
    Raw(&'a mut dyn FnMut(OutputStream, &[u8])),
}

impl std::fmt::Debug for Capture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Capture::Group => "Group",
            Capture::Lines(_) => "Lines",
            Capture::Raw(_) => "Raw",
        })
    }
}

/// Limits and the stop signal a job waits under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Stop the job after this long.
    pub timeout: Option<Duration>,
    /// Time between TERM and KILL.
    pub grace: Duration,
    /// The niceness the job runs at (`--nice`), not added to the inherited one (as GNU
    /// parallel); `None` leaves it as pardo's.
    pub nice: Option<i32>,
}

/// How a job ended and what it used.
#[derive(Debug, Default)]
pub struct Finished {
    /// Exit code when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it.
    pub signal: Option<i32>,
    /// It ran past its timeout and was stopped.
    pub timed_out: bool,
    /// It was stopped because the run was interrupted or halted, or refused by
    /// `StopSignal::go_ahead`.
    pub stopped: bool,
    /// It was stopped to free memory (`--memfree`); the runner runs it again.
    pub evicted: bool,
    /// User CPU of the job and its waited-for children.
    pub cpu_user_ns: u64,
    /// System CPU of the job and its waited-for children.
    pub cpu_sys_ns: u64,
    /// Peak resident memory of the largest process in the job.
    pub max_rss_bytes: u64,
    /// Standard output (empty when lines are streamed to the caller); in a temporary file when large.
    pub stdout: Spool,
    /// Standard error (empty when lines are streamed to the caller); in a temporary file when large.
    pub stderr: Spool,
    /// Bytes written to both streams.
    pub output_bytes: u64,
    /// Bytes written to standard output (GNU parallel's joblog `Receive`).
    pub stdout_bytes: u64,
}

/// Something the waiting job should react to besides its own output and exit.
pub struct StopSignal<'a> {
    /// Readable once the run reaches level 1, and level 2, respectively.
    pub wake: [RawFd; 2],
    /// 0 running, 1 stop (TERM, then KILL after the grace), 2 KILL now.
    pub level: &'a std::sync::atomic::AtomicU8,
    /// Told of the job's process group while it may run, so it can kill the group if the
    /// runner dies.
    pub guard: Option<&'a Guard>,
    /// Readable when this job alone should be stopped (TERM, then KILL after the grace) to
    /// free memory; it then ends with [`Finished::evicted`].
    pub evict: Option<RawFd>,
    /// `--timeout P%`: the limit follows the median job time while the job runs; it is looked
    /// at again at least every [`RELATIVE_RECHECK`].
    pub relative: Option<&'a super::timeout::RelativeTimeout>,
    /// Asked once, as soon as the job is spawned, whether it may go on: false kills its group
    /// at once, and it ends [`Finished::stopped`]. A cluster worker starts a job while Redis
    /// is still answering whether the job is its to run, and asks here for that answer.
    pub go_ahead: Option<&'a dyn Fn() -> bool>,
}

impl std::fmt::Debug for StopSignal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopSignal")
            .field("wake", &self.wake)
            .field("level", &self.level)
            .field("guard", &self.guard)
            .field("evict", &self.evict)
            .field("relative", &self.relative)
            .field("go_ahead", &self.go_ahead.is_some())
            .finish()
    }
}

/// How often a job under a relative timeout looks at the limit again.
pub const RELATIVE_RECHECK: Duration = Duration::from_millis(50);

/// Runs `program` to the end: spawns it as the leader of a new process group with stdin from
/// `stdin` (`/dev/null` for [`Stdin::Null`]), reads its output, and reaps it with `wait4`.
///
/// A program that cannot be found ends like it would under a shell: exit code 127 and a message
/// on its stderr. An argument list the system refuses (E2BIG) is an error.
pub fn run(
    program: &Program,
    stdin: &Stdin,
    limits: Limits,
    stop: &StopSignal<'_>,
    mut capture: Capture<'_>,
) -> io::Result<Finished> {
    let mut cmd = match program {
        Program::Direct(argv) => {
            let Some((prog, rest)) = argv.split_first() else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
            };
            if super::shell::is_exported_function(prog) {
                // `export -f prog`: only the shell can find it.
                let mut code = Vec::new();
                for (i, w) in argv.iter().enumerate() {
                    if i > 0 {
                        code.push(b' ');
                    }
                    super::quote_into(w.as_bytes(), &mut code);
                }
                shell_command(&code)?
            } else {
                let mut c = Command::new(prog);
                c.args(rest);
                c
            }
        }
        Program::Shell(code) => shell_command(code)?,
    };
    cmd.stdin(match stdin {
        Stdin::Null => Stdio::null(),
        _ => Stdio::piped(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    if let Some(n) = limits.nice {
        // SAFETY: setpriority is async-signal-safe and touches only the new process. The
        // niceness is set, not added to (as GNU parallel's); one the system refuses (lower
        // than the inherited one, without the right) leaves the job at the inherited one, as
        // `nice` does; the caller warns of that before the run.
        unsafe {
            cmd.pre_exec(move || {
                libc::setpriority(libc::PRIO_PROCESS, 0, n);
                Ok(())
            });
        }
    }
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return not_started(program, e),
    };
    let pid = child.id() as libc::pid_t;
    if let Some(g) = stop.guard {
        g.add(pid);
    }
    let mut unreaped = ReapOnError(Some(pid), stop.guard);
    let refused = stop.go_ahead.is_some_and(|go| !go());
    if refused {
        signal_group(pid, libc::SIGKILL);
    }
    let feeder = match child.stdin.take().map(OwnedFd::from) {
        Some(fd) => {
            let input = stdin.clone();
            Some(
                std::thread::Builder::new()
                    .name("pardo-stdin".into())
                    .spawn(move || input.feed(&fd))?,
            )
        }
        None => None,
    };
    let mut out = child.stdout.take().map(OwnedFd::from);
    let mut err = child.stderr.take().map(OwnedFd::from);
    // Opened once the pipes are closed and the leader has not exited (see the module docs).
    let mut pidfd: Option<OwnedFd> = None;
    let mut pidfd_tried = false;
    let mut fin = Finished::default();
    // The leader has exited but is left unreaped (a zombie) until the end: while it is, its pid
    // and so its process group id cannot be taken by another process, and signalling the group
    // can only reach this job.
    let mut exited = false;
    let mut acted_level = 0u8;
    let mut interrupted = refused;
    let mut kill_at: Option<Instant> = None;
    let mut killed = refused;
    fin.stopped = refused;
    let mut evict = stop.evict;
    let mut deadline = limits.timeout.map(|t| later(started, t));
    let mut partial = [Vec::new(), Vec::new()];
    let mut buf = ReadBuf::take();

    loop {
        let level = stop.level.load(std::sync::atomic::Ordering::SeqCst);
        if level > acted_level {
            acted_level = level;
            // A job whose leader already ended on its own was not stopped: it finished, and
            // counts so. What it left in its group is stopped all the same.
            exited = exited || has_exited(pid);
            fin.stopped |= !exited;
            interrupted = true;
            if level >= 2 {
                signal_group(pid, libc::SIGKILL);
                killed = true;
            } else if kill_at.is_none() {
                signal_group(pid, libc::SIGTERM);
                kill_at = Some(later(Instant::now(), limits.grace));
            }
        }
        let now = Instant::now();
        if let Some(r) = stop.relative {
            deadline = r.limit().map(|t| later(started, t));
        }
        if let Some(d) = deadline {
            if now >= d && kill_at.is_none() && !killed {
                fin.timed_out = true;
                signal_group(pid, libc::SIGTERM);
                kill_at = Some(later(now, limits.grace));
            }
        }
        if let Some(k) = kill_at {
            if now >= k && !killed {
                signal_group(pid, libc::SIGKILL);
                killed = true;
            }
        }
        let pipes_open = out.is_some() || err.is_some();
        if !pipes_open && !exited && !pidfd_tried {
            exited = has_exited(pid);
            if !exited {
                pidfd = pidfd_open(pid);
            }
            pidfd_tried = true;
        }
        if !pipes_open && (exited || pidfd.is_none()) {
            break;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut kinds: Vec<u8> = Vec::with_capacity(4);
        for (i, fd) in [&out, &err].into_iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(pollfd(fd.as_raw_fd()));
                kinds.push(i as u8);
            }
        }
        if let (Some(p), false) = (&pidfd, exited) {
            fds.push(pollfd(p.as_raw_fd()));
            kinds.push(2);
        }
        if acted_level < 2 {
            // The pipe of the next level only: the one already acted on stays readable.
            fds.push(pollfd(stop.wake[usize::from(acted_level)]));
            kinds.push(3);
        }
        if let Some(fd) = evict {
            fds.push(pollfd(fd));
            kinds.push(4);
        }
        let wait_until = [
            if killed { None } else { kill_at },
            deadline.filter(|_| kill_at.is_none()),
            stop.relative
                .filter(|_| kill_at.is_none())
                .map(|_| later(Instant::now(), RELATIVE_RECHECK)),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout_ms = match wait_until {
            None => -1,
            Some(t) => {
                t.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128 - 1) as i32
                    + 1
            }
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for (pfd, kind) in fds.iter().zip(&kinds) {
            if pfd.revents == 0 {
                continue;
            }
            match kind {
                0 | 1 => {
                    let slot = if *kind == 0 { &mut out } else { &mut err };
                    let n = match slot.as_ref().map(|fd| read_fd(fd.as_raw_fd(), &mut buf.0)) {
                        Some(Ok(n)) => n,
                        Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                        _ => 0,
                    };
                    let stream = if *kind == 0 {
                        OutputStream::Stdout
                    } else {
                        OutputStream::Stderr
                    };
                    let part = &mut partial[*kind as usize];
                    if n == 0 {
                        *slot = None;
                        if let Capture::Lines(f) | Capture::Raw(f) = &mut capture {
                            if !part.is_empty() {
                                f(stream, part);
                                part.clear();
                            }
                        }
                        continue;
                    }
                    fin.output_bytes += n as u64;
                    if matches!(stream, OutputStream::Stdout) {
                        fin.stdout_bytes += n as u64;
                    }
                    let data = &buf.0[..n];
                    match &mut capture {
                        Capture::Group => match stream {
                            OutputStream::Stdout => fin.stdout.write_all(data)?,
                            OutputStream::Stderr => fin.stderr.write_all(data)?,
                        },
                        Capture::Raw(f) => f(stream, data),
                        Capture::Lines(f) => {
                            part.extend_from_slice(data);
                            if let Some(end) = part.iter().rposition(|&b| b == b'\n') {
                                f(stream, &part[..=end]);
                                part.drain(..=end);
                            }
                        }
                    }
                }
                2 => exited = has_exited(pid),
                4 => {
                    // Acted on once; the pipe stays readable until the runner drains it.
                    evict = None;
                    exited = exited || has_exited(pid);
                    if !exited && kill_at.is_none() && !killed {
                        fin.evicted = true;
                        signal_group(pid, libc::SIGTERM);
                        kill_at = Some(later(Instant::now(), limits.grace));
                    }
                }
                _ => {}
            }
        }
    }
    if fin.timed_out || interrupted || fin.evicted {
        // Take down anything the leader left in its group, while the unreaped leader still
        // holds the group id.
        signal_group(pid, libc::SIGKILL);
    }
    if let Some(g) = stop.guard {
        g.remove(pid);
    }
    // The job's end closed the pipe's read side (the group is gone, or let go of stdin), so
    // the feeder is done or about to fail with EPIPE.
    let fed = feeder.map(|f| f.join());
    unreaped.0 = None;
    reap(pid, &mut fin)?;
    drop(child);
    match fed {
        Some(Ok(Err(e))) => Err(io::Error::new(
            e.kind(),
            format!("cannot feed the job's standard input: {e}"),
        )),
        Some(Err(_)) => Err(io::Error::other("the job's standard input feeder panicked")),
        _ => Ok(fin),
    }
}

/// Kills and reaps a job whose wait ended in an error, so an error never leaves a zombie or a
/// running process group behind. Disarmed (set to `None`) just before the leader is reaped:
/// after that its pid may belong to another process.
struct ReapOnError<'a>(Option<libc::pid_t>, Option<&'a Guard>);

impl Drop for ReapOnError<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal_group(pid, libc::SIGKILL);
            if let Some(g) = self.1 {
                g.remove(pid);
            }
            // SAFETY: `pid` is our own unreaped child; a null status pointer is allowed.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// `SHELL -c code` under the shell chosen by [`shell::current`](super::shell::current).
fn shell_command(code: &[u8]) -> io::Result<Command> {
    let sh = super::shell::current()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut c = Command::new(sh);
    c.arg("-c").arg(std::ffi::OsStr::from_bytes(code));
    Ok(c)
}

fn not_started(program: &Program, e: io::Error) -> io::Result<Finished> {
    if e.raw_os_error() == Some(libc::E2BIG) {
        return Err(e);
    }
    let name = match program {
        Program::Direct(argv) => argv.first().cloned().unwrap_or_default(),
        Program::Shell(_) => super::shell::current()
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_else(|_| OsString::from("/bin/sh")),
    };
    let (code, what) = match e.kind() {
        io::ErrorKind::NotFound => (127, "command not found".to_owned()),
        io::ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
        _ => (126, e.to_string()),
    };
    let mut msg = b"pardo: ".to_vec();
    msg.extend_from_slice(name.as_encoded_bytes());
    msg.extend_from_slice(format!(": {what}\n").as_bytes());
    Ok(Finished {
        exit_code: Some(code),
        output_bytes: msg.len() as u64,
        stderr: Spool::from(msg),
        ..Finished::default()
    })
}

/// The buffer a slot's thread reads its jobs' output into, 64 KiB allocated once per thread
/// rather than once per job; handed back when the job's wait ends.
struct ReadBuf(Vec<u8>);

thread_local! {
    static READ_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl ReadBuf {
    const LEN: usize = 64 * 1024;

    fn take() -> ReadBuf {
        let mut b = READ_BUF.with(|c| c.take());
        b.resize(Self::LEN, 0);
        ReadBuf(b)
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        let b = std::mem::take(&mut self.0);
        let _ = READ_BUF.try_with(|c| c.set(b));
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; `fd` is open for the duration.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) })
}

/// `now + d`, or a time too far away to matter when that is past what an `Instant` holds (a
/// `--timeout` of 1e18 seconds must not panic).
fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

/// True once `pid` (our child) has exited. It is not reaped: `WNOWAIT` leaves it a zombie.
fn has_exited(pid: libc::pid_t) -> bool {
    loop {
        // SAFETY: zeroed siginfo is valid; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writes; `pid` is our own unreaped child.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            // SAFETY: waitid succeeded; with WNOHANG `si_pid` is 0 when nothing has exited.
            return unsafe { info.si_pid() } != 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // ECHILD cannot happen for our unreaped child; treat anything else as "not yet"
            // and let the final blocking reap settle it.
            return false;
        }
    }
}

/// Reaps `pid` with `wait4` (waiting for it to exit), filling exit status and usage.
fn reap(pid: libc::pid_t, fin: &mut Finished) -> io::Result<()> {
    trace("reap");
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 writes into both out-parameters.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid for writes.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break;
    }
    if libc::WIFEXITED(status) {
        fin.exit_code = Some(libc::WEXITSTATUS(status));
    } else if libc::WIFSIGNALED(status) {
        fin.signal = Some(libc::WTERMSIG(status));
    }
    fin.cpu_user_ns = crate::clock::timeval_ns(&ru.ru_utime);
    fin.cpu_sys_ns = crate::clock::timeval_ns(&ru.ru_stime);
    fin.max_rss_bytes = (ru.ru_maxrss as u64).saturating_mul(1024);
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// What this thread did to its jobs, in order, for tests of the ordering.
    static TRACE: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn trace(_what: &'static str) {
    #[cfg(test)]
    TRACE.with(|t| t.borrow_mut().push(_what));
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    trace("signal");
    // SAFETY: killpg only sends a signal; a group that no longer exists gives ESRCH.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU8;

    /// Nothing to stop the job but what the test sets.
    fn quiet<'a>(level: &'a AtomicU8, go_ahead: Option<&'a dyn Fn() -> bool>) -> StopSignal<'a> {
        StopSignal {
            wake: [-1, -1],
            level,
            guard: None,
            evict: None,
            relative: None,
            go_ahead,
        }
    }

    #[test]
    fn a_stopped_jobs_group_is_signalled_before_its_leader_is_reaped() {
        let level = AtomicU8::new(0);
        let stop = quiet(&level, None);
        // A timeout of zero: the job is stopped (TERM, then the group KILL) as it starts.
        let limits = Limits {
            timeout: Some(Duration::ZERO),
            grace: Duration::from_secs(30),
            nice: None,
        };
        let fin = run(
            &Program::Shell(b"sleep 30 & wait".to_vec()),
            &Stdin::Null,
            limits,
            &stop,
            Capture::Group,
        )
        .unwrap();
        assert!(fin.timed_out);
        let trace = TRACE.with(|t| t.take());
        assert!(trace.contains(&"signal"), "{trace:?}");
        // Once reaped, the leader's pid (the group id) may be another process's: nothing
        // may be signalled after the reap.
        assert_eq!(trace.last(), Some(&"reap"), "{trace:?}");
    }

    fn asked(go: bool) -> (Finished, u32) {
        let level = AtomicU8::new(0);
        let asked = std::cell::Cell::new(0);
        let go_ahead = || {
            asked.set(asked.get() + 1);
            go
        };
        let stop = quiet(&level, Some(&go_ahead));
        let limits = Limits {
            timeout: None,
            grace: Duration::from_secs(30),
            nice: None,
        };
        // With the go-ahead it prints and ends; refused, only a kill of the whole group ends
        // it (the shell waits for a sleep it put in the background).
        let program = Program::Shell(b"echo started; sleep 30 & wait".to_vec());
        let program = if go {
            Program::Shell(b"echo started".to_vec())
        } else {
            program
        };
        let fin = run(&program, &Stdin::Null, limits, &stop, Capture::Group).unwrap();
        (fin, asked.get())
    }

    #[test]
    fn a_job_refused_once_spawned_is_killed_with_its_group_and_ends_stopped() {
        let (fin, asked) = asked(false);
        assert_eq!(asked, 1);
        assert!(fin.stopped);
        assert_eq!(fin.signal, Some(libc::SIGKILL));
    }

    #[test]
    fn a_job_given_the_go_ahead_runs_to_its_end() {
        let (fin, asked) = asked(true);
        assert_eq!(asked, 1);
        assert!(!fin.stopped);
        assert_eq!(fin.exit_code, Some(0));
        assert_eq!(fin.stdout.to_vec().unwrap(), b"started\n");
    }
}
