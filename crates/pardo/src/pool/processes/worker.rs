//! The worker side: [`worker_hook`], the registry of task functions, and the serve loop.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Instant;

use crate::clock::{rusage, timeval_ns, ThreadCpu};
use crate::pool::processes::wire::{self, Hello, ItemResult, Reply, Request};
use crate::pool::task_fn::TaskFn;
use crate::task::panic_message;

/// Starts the last argument of a worker: `--pardo-worker=<parent pid>[:<memory limit bytes>]`.
///
/// The marker is an argument, not an environment variable: an environment variable would be
/// inherited by everything a task starts (so it would have to be removed, and `remove_var`
/// while other threads may read the environment is undefined behaviour), while argv belongs
/// to this one process. It comes *last* so that a wrapper given as the worker program (for
/// example `taskset -c 0 ./app` as program and arguments) passes it on to the real binary.
const MARKER: &str = "--pardo-worker=";

/// The argument that makes a started program a worker of the pool in process `parent`.
pub(crate) fn marker(parent: u32, memory_limit: Option<u64>) -> OsString {
    match memory_limit {
        Some(bytes) => format!("{MARKER}{parent}:{bytes}").into(),
        None => format!("{MARKER}{parent}").into(),
    }
}

/// What the marker says, if this process has one.
fn marker_value() -> Option<String> {
    let last = std::env::args_os().last()?;
    let last = last.to_str()?;
    last.strip_prefix(MARKER).map(str::to_owned)
}

/// A registered task function: its name and a type-erased runner. Built by
/// [`task_fn!`](crate::task_fn); not meant to be used directly.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registered {
    name: &'static str,
    run: Runner,
}

/// Decodes an input, runs the function, encodes its output.
type Runner = fn(&[u8]) -> ItemResult;

impl Registered {
    /// The registry entry for `F`.
    pub const fn new<F: TaskFn>() -> Registered {
        Registered {
            name: F::NAME,
            run: run_erased::<F>,
        }
    }
}

inventory::collect!(Registered);

/// Decodes the input, runs `F` under `catch_unwind`, encodes the output.
fn run_erased<F: TaskFn>(input: &[u8]) -> ItemResult {
    let input: F::Input = match postcard::from_bytes(input) {
        Ok(v) => v,
        Err(e) => {
            return ItemResult::Failed(format!("cannot decode the input of {}: {e}", F::NAME))
        }
    };
    match catch_unwind(AssertUnwindSafe(|| F::call(input))) {
        Ok(out) => match postcard::to_allocvec(&out) {
            Ok(bytes) => ItemResult::Ok(bytes),
            Err(e) => ItemResult::Failed(format!("cannot encode the result of {}: {e}", F::NAME)),
        },
        Err(payload) => ItemResult::Panicked(panic_message(payload.as_ref())),
    }
}

/// Runs every input through the task function registered as `name`, each under its own
/// `catch_unwind`; every item gets a result. When this binary has no such function, every item
/// fails with the words `unknown` gives. Shared by the process pool's workers and the cluster's
/// serving workers, so a task runs the same way in both.
pub(crate) fn run_items(
    name: &str,
    inputs: &[&[u8]],
    unknown: impl FnOnce() -> String,
) -> Vec<ItemResult> {
    match registry().get(name) {
        Some(run) => inputs.iter().map(|input| run(input)).collect(),
        None => {
            let why = unknown();
            inputs
                .iter()
                .map(|_| ItemResult::Failed(why.clone()))
                .collect()
        }
    }
}

fn registry() -> &'static HashMap<&'static str, Runner> {
    static REGISTRY: OnceLock<HashMap<&'static str, Runner>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        inventory::iter::<Registered>
            .into_iter()
            .map(|r| (r.name, r.run))
            .collect()
    })
}

/// Lets this process serve as a [`ProcessPool`](crate::ProcessPool) worker when it was started
/// as one; otherwise returns at once and does nothing.
///
/// Put it on the **first line of `main`** of every binary that builds a process pool — the
/// pool's workers are that same binary, started again with a last argument of the form
/// `--pardo-worker=…`. In any other process the hook reads its arguments and returns; it never
/// changes the environment or the arguments, so `main` sees what it was given. In a worker, this call serves tasks until the pool closes its pipe and then
/// ends the process (`exit(0)`); it never returns. That exit is the one place pardo ends a
/// process, and only a process pardo itself started.
///
/// - **Binaries and examples**: `fn main() { pardo::worker_hook(); … }`.
/// - **Integration tests**: give the test target `harness = false` and call the hook first in
///   its `main`, or point [`ProcessPoolBuilder::worker_program`](crate::ProcessPoolBuilder) at
///   a binary that has it. (A libtest harness has no `main` of yours to put it in.)
/// - **Doc tests**: write `fn main` explicitly, as the [`ProcessPool`](crate::ProcessPool)
///   example does.
///
/// Before serving, a worker asks to be killed when its parent dies (`PR_SET_PDEATHSIG`), applies
/// its memory limit (`RLIMIT_AS`), keeps the pool's pipes to itself and points its own stdout at
/// stderr, so a task that prints cannot corrupt the protocol.
pub fn worker_hook() {
    let Some(marker) = marker_value() else {
        return;
    };
    let code = match serve(&marker) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pardo worker {}: {e}", std::process::id());
            70
        }
    };
    std::process::exit(code);
}

/// True in a process that was started as a worker and has not (yet) called [`worker_hook`].
pub(crate) fn started_as_worker() -> bool {
    marker_value().is_some()
}

fn serve(marker: &str) -> io::Result<()> {
    let bad = || io::Error::other(format!("{MARKER}{marker} is not <pid>[:<bytes>]"));
    let (parent, limit) = match marker.split_once(':') {
        Some((pid, bytes)) => (pid, Some(bytes.parse::<u64>().map_err(|_| bad())?)),
        None => (marker, None),
    };
    let parent: libc::pid_t = parent.parse().map_err(|_| bad())?;
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        // The parent may have died before the line above: then nobody will ever read from us.
        if libc::getppid() != parent {
            return Ok(());
        }
    }
    if let Some(bytes) = limit {
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: a valid rlimit struct for RLIMIT_AS.
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (mut from_pool, mut to_pool) = take_protocol_fds()?;

    let mut buf = Vec::new();
    let hello = Hello {
        pid: std::process::id(),
        protocol: wire::PROTOCOL,
    };
    wire::write_frame(&mut to_pool, &hello, &mut buf)?;
    let mut frame = Vec::new();
    while wire::read_frame(&mut from_pool, &mut frame)? {
        let req: Request<'_> = wire::decode(&frame)?;
        let before = Usage::now();
        let t0 = Instant::now();
        let outputs = run_items(req.name, &req.inputs, || {
            format!(
                "no task function named {} is registered in the worker binary",
                req.name
            )
        });
        let busy_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let after = Usage::now();
        let total = after.cpu.total_ns().saturating_sub(before.cpu.total_ns());
        let sys = after.sys_ns.saturating_sub(before.sys_ns).min(total);
        let reply = Reply {
            outputs,
            busy_ns,
            cpu_user_ns: total - sys,
            cpu_sys_ns: sys,
            cpu_wait_ns: after.cpu.waited_since(&before.cpu),
            max_rss_bytes: after.max_rss_bytes,
        };
        wire::write_frame(&mut to_pool, &reply, &mut buf)?;
    }
    Ok(())
}

/// Moves the pool's pipes (our stdin and stdout) to fresh descriptors, then points stdin at
/// /dev/null and stdout at stderr: output of tasks goes to the pool's stderr, never into the
/// protocol stream.
fn take_protocol_fds() -> io::Result<(File, File)> {
    // SAFETY: dup/dup2/open on descriptors this process owns; each new descriptor is wrapped in
    // exactly one File, which then owns it.
    unsafe {
        let input = libc::dup(0);
        let output = libc::dup(1);
        if input < 0 || output < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::close(null);
        }
        libc::fcntl(input, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(output, libc::F_SETFD, libc::FD_CLOEXEC);
        Ok((File::from_raw_fd(input), File::from_raw_fd(output)))
    }
}

/// The worker's CPU time and peak memory at one moment.
struct Usage {
    /// CPU and run-queue wait of the serving thread (tasks run on it), read as the thread
    /// pool reads them, so a worker process's task is measured like a worker thread's.
    cpu: ThreadCpu,
    /// System CPU of the whole process (`getrusage`), for the user/system split.
    sys_ns: u64,
    max_rss_bytes: u64,
}

impl Usage {
    fn now() -> Usage {
        let cpu = ThreadCpu::now();
        let ru = rusage(libc::RUSAGE_SELF);
        Usage {
            cpu,
            sys_ns: ru.map_or(0, |r| timeval_ns(&r.ru_stime)),
            max_rss_bytes: ru.map_or(0, |r| r.ru_maxrss as u64 * 1024),
        }
    }
}
