//! [`Guard`]: a separate process that kills the runner's jobs if the runner itself dies.
//!
//! A runner killed with SIGKILL gets no chance to stop its jobs, and each job sits in its own
//! process group, so nothing else stops them either. The guard is a small process started
//! before the first job. It waits on a pipe from the runner: `done` when the runner ends
//! normally, end of file when it dies. At end of file without `done` the guard sends SIGKILL
//! to every group the runner still listed, and exits.
//!
//! The list is a table in memory both processes share (a memfd, the guard's standard output):
//! the runner writes a job's group id into a free entry when the group starts and clears it
//! just before the job's leader is reaped. Nothing is sent and the guard sleeps through the
//! run, so a job costs the guard no wakeup; it reads the table once, after the runner is gone.
//! Should the table be full, the group goes over the pipe as a record instead (`+PGID`, and
//! `-PGID` when it ends), one `write` shorter than `PIPE_BUF`, so records never mix.
//!
//! Why a process and a pipe: end of file on a pipe is the one notice of death the kernel gives
//! for any way a process can end. The write end is close-on-exec (every descriptor the standard
//! library creates is), so no job holds it open and the end of file really means the runner
//! is gone. Jobs are still spawned with `posix_spawn`: nothing runs in the child before `exec`.
//!
//! A job's leader stays unreaped until its group has left the list, so a listed group id
//! cannot belong to anything else while the runner lives.

use std::collections::HashSet;
use std::io::{self, BufRead};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// Entries in the shared table: groups listed without a record on the pipe. Only the pages
/// holding entries in use become memory (the table is filled from the front).
const TABLE_ENTRIES: usize = 1 << 16;
const TABLE_BYTES: usize = TABLE_ENTRIES * std::mem::size_of::<i32>();

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
    table: Table,
    child: Mutex<Option<Child>>,
}

/// The runner's view of the shared table: entries are group ids, 0 is free.
#[derive(Debug)]
struct Table {
    entries: std::ptr::NonNull<AtomicI32>,
    len: usize,
}

// SAFETY: the mapping is only ever accessed through atomics, from any thread.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

impl Table {
    /// A new zeroed table in a memfd, mapped shared; the descriptor is for the guard.
    fn create() -> io::Result<(Table, OwnedFd)> {
        Table::with_len(TABLE_ENTRIES)
    }

    fn with_len(len: usize) -> io::Result<(Table, OwnedFd)> {
        let bytes = len * std::mem::size_of::<i32>();
        // SAFETY: a NUL-terminated name and valid flags; returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(c"pardo-guard".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscalls on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), bytes as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: mapping `bytes` of a file that long, shared, readable and writable.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let entries = std::ptr::NonNull::new(p.cast::<AtomicI32>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok((Table { entries, len }, fd))
    }

    fn entries(&self) -> &[AtomicI32] {
        // SAFETY: the mapping holds `len` zero-initialised i32s (a valid AtomicI32 each), is
        // suitably aligned (page-aligned) and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.entries.as_ptr(), self.len) }
    }

    /// Puts `pgid` in the first free entry; false when the table is full.
    fn add(&self, pgid: libc::pid_t) -> bool {
        self.entries().iter().any(|e| {
            e.load(Ordering::Relaxed) == 0
                && e.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Frees the entry holding `pgid`; false when it is not in the table.
    fn remove(&self, pgid: libc::pid_t) -> bool {
        match self
            .entries()
            .iter()
            .find(|e| e.load(Ordering::Relaxed) == pgid)
        {
            Some(e) => {
                e.store(0, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `create` made; nothing refers to it any more.
        unsafe {
            libc::munmap(
                self.entries.as_ptr().cast(),
                self.len * std::mem::size_of::<i32>(),
            );
        }
    }
}

impl Guard {
    /// Starts `cmd` as the guard, its stdin the pipe from the runner and its stdout the
    /// shared table, in a process group of its own (a Ctrl-C at the terminal is for the
    /// runner, which stops its jobs itself).
    pub fn spawn(mut cmd: Command) -> io::Result<Guard> {
        use std::os::unix::process::CommandExt;
        let (table, table_fd) = Table::create()?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::from(table_fd))
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let pipe = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("the guard has no stdin pipe"))?;
        Ok(Guard {
            pipe,
            table,
            child: Mutex::new(Some(child)),
        })
    }

    /// Notes that process group `pgid` is running.
    pub fn add(&self, pgid: libc::pid_t) {
        if !self.table.add(pgid) {
            self.record(&format!("+{pgid}\n"));
        }
    }

    /// Notes that process group `pgid` was handled and its leader is about to be reaped.
    pub fn remove(&self, pgid: libc::pid_t) {
        if !self.table.remove(pgid) {
            self.record(&format!("-{pgid}\n"));
        }
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
/// of file (kills every group still listed, in the table on its standard output or by a
/// record, then returns). Call it from the guard process's `main` with its stdin, and exit
/// afterwards.
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
    groups.extend(read_table(1));
    for pgid in groups {
        // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// The group ids listed in the table that `fd` (the guard's standard output) holds; none when
/// `fd` is not a table (a guard started by hand).
fn read_table(fd: std::os::fd::RawFd) -> Vec<libc::pid_t> {
    // SAFETY: borrowing a descriptor this process holds open for the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let Ok(file) = fd.try_clone_to_owned().map(std::fs::File::from) else {
        return Vec::new();
    };
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() == TABLE_BYTES as u64 => {}
        _ => return Vec::new(),
    }
    let mut bytes = vec![0u8; TABLE_BYTES];
    // The runner is gone; nothing writes to the table any more.
    if file.read_exact_at(&mut bytes, 0).is_err() {
        return Vec::new();
    }
    bytes
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok().map(libc::pid_t::from_ne_bytes))
        .filter(|&p| p > 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_running_groups_for_the_guard_and_reuses_freed_entries() {
        let (table, fd) = Table::create().unwrap();
        assert!(table.add(1001));
        assert!(table.add(1002));
        assert!(table.add(1003));
        assert!(table.remove(1002));
        assert!(!table.remove(1002), "a group is listed once");
        // The freed entry is taken again: the table stays as short as the jobs running.
        assert!(table.add(1004));
        assert_eq!(table.entries()[1].load(Ordering::SeqCst), 1004);
        let mut seen = read_table(fd.as_raw_fd());
        seen.sort();
        assert_eq!(seen, [1001, 1003, 1004]);
    }

    #[test]
    fn a_full_table_refuses_a_group_so_it_goes_over_the_pipe() {
        let (table, _fd) = Table::with_len(8).unwrap();
        for i in 0..8 {
            assert!(table.add(2 + i));
        }
        assert!(!table.add(1_000_000));
        assert!(!table.remove(1_000_000));
    }

    #[test]
    fn anything_but_a_table_on_stdout_lists_nothing() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(16).unwrap();
        assert!(read_table(file.as_raw_fd()).is_empty());
    }
}
