//! Task functions for the process-pool tests: small programs that compute, crash in a chosen
//! way, sleep, allocate, or refuse to be serialized. Each test binary that includes this file
//! registers them, so its re-executed workers know them too.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pardo::task_fn! {
    /// x².
    pub Square(x: u64) -> u64 { x * x }
}

pardo::task_fn! {
    /// The worker's process id.
    pub Pid(_unit: ()) -> u32 { std::process::id() }
}

pardo::task_fn! {
    /// Panics with the given message.
    pub Panic(message: String) -> u64 { panic!("{message}") }
}

pardo::task_fn! {
    /// Ends the worker with `abort()` (SIGABRT).
    pub Abort(_unit: ()) -> () { std::process::abort() }
}

pardo::task_fn! {
    /// The worker SIGKILLs itself, as the OOM killer would.
    pub SigKill(_unit: ()) -> () {
        // SAFETY: signalling our own process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

pardo::task_fn! {
    /// The worker dies of SIGSEGV. Rust installs a SIGSEGV handler (for stack overflows) that
    /// would swallow a raised signal, so restore the default action first.
    pub Segv(_unit: ()) -> () {
        // SAFETY: resetting a signal disposition and raising it in our own process.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        }
    }
}

pardo::task_fn! {
    /// Aborts for inputs ≡ 3 (mod 7); otherwise appends the input to a log file (one line per
    /// execution, to prove nothing runs twice) and returns its square.
    pub MaybeAbort((x, log): (u64, PathBuf)) -> u64 {
        if x % 7 == 3 {
            std::process::abort();
        }
        append_line(&log, &x.to_string());
        x * x
    }
}

pardo::task_fn! {
    /// Sleeps for the given number of milliseconds and returns the worker's pid.
    pub SleepMs(ms: u64) -> u32 {
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
}

pardo::task_fn! {
    /// Allocates and touches `mib` MiB; returns how many bytes it held.
    pub Allocate(mib: usize) -> usize {
        let v = vec![1u8; mib << 20];
        std::hint::black_box(&v).len()
    }
}

pardo::task_fn! {
    /// Marks `dir/started`, then waits until `dir/go` exists (at most a minute).
    pub Gate(dir: PathBuf) -> u32 {
        std::fs::write(dir.join("started"), b"").ok();
        wait_for_file(&dir.join("go"));
        std::process::id()
    }
}

pardo::task_fn! {
    /// Creates `dir/<me>` and waits until `dir/<peer>` exists: two of these finish only if they
    /// run at the same time.
    pub MeetPeer((dir, me, peer): (PathBuf, String, String)) -> u32 {
        std::fs::write(dir.join(me), b"").ok();
        wait_for_file(&dir.join(peer));
        std::process::id()
    }
}

pardo::task_fn! {
    /// Returns a value that cannot be serialized.
    pub BadOutput(_unit: ()) -> Unencodable { Unencodable }
}

pardo::task_fn! {
    /// Returns a value the parent cannot deserialize.
    pub UndecodableOutput(_unit: ()) -> Undecodable { Undecodable(7) }
}

pardo::task_fn! {
    /// Takes an input that cannot be serialized.
    pub BadInput(_x: Unencodable) -> u64 { 1 }
}

/// Serializing this always fails.
#[derive(Debug, Deserialize)]
pub struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be serialized",
        ))
    }
}

/// Deserializing this always fails.
#[derive(Debug, Serialize)]
pub struct Undecodable(pub u64);

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(_d: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "Undecodable refuses to be deserialized",
        ))
    }
}

fn append_line(path: &std::path::Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the execution log");
    // One write per line with O_APPEND: lines from concurrent workers never interleave.
    f.write_all(format!("{line}\n").as_bytes()).expect("append");
}

fn wait_for_file(path: &std::path::Path) {
    let limit = Instant::now() + Duration::from_secs(60);
    while !path.exists() && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A fresh empty directory under the target's temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pardo-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// True while `pid` names a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// True when `pid` is gone entirely: neither running nor a zombie.
pub fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pardo::task_fn! {
    /// Ends the worker with `exit(code)` in the middle of the task.
    pub ExitWith(code: i32) -> () { std::process::exit(code) }
}

pardo::task_fn! {
    /// The names of the worker's environment as the kernel gave it at exec
    /// (`/proc/self/environ`), whatever the process did to its environment since.
    pub ExecEnvironment(_unit: ()) -> Vec<String> {
        std::fs::read("/proc/self/environ")
            .unwrap_or_default()
            .split(|&b| b == 0)
            .filter_map(|kv| kv.split(|&b| b == b'=').next())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .filter(|k| !k.is_empty())
            .collect()
    }
}

/// Every child of the process, running or zombie, whichever of its threads started it.
pub fn all_children() -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids.sort_unstable();
    pids
}

/// The live (not zombie) children of the process.
pub fn live_children() -> Vec<u32> {
    let mut pids = all_children();
    pids.retain(|&p| alive(p));
    pids
}
