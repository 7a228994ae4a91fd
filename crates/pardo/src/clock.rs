//! The kernel's clocks for CPU time, read one way everywhere: the thread CPU clock and
//! `getrusage`. Every executor measures through here, so a task's CPU time means the same in
//! every pool and in the command runner.

/// The calling thread's CPU time in ns (`CLOCK_THREAD_CPUTIME_ID`, exact at the moment of
/// reading); 0 if the clock cannot be read.
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes; the clock id is a constant the kernel knows.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    } else {
        0
    }
}

/// `getrusage(who)`, or `None` if the kernel refused.
pub(crate) fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is valid for writes.
    if unsafe { libc::getrusage(who, ru.as_mut_ptr()) } == 0 {
        // SAFETY: getrusage succeeded and filled it.
        Some(unsafe { ru.assume_init() })
    } else {
        None
    }
}

/// A `timeval` (as in `rusage`) in ns.
pub(crate) fn timeval_ns(t: &libc::timeval) -> u64 {
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_usec as u64 * 1_000)
}

/// The calling thread's CPU time so far, with the system share of it and the run-queue wait.
///
/// The total comes from `CLOCK_THREAD_CPUTIME_ID`, exact to the nanosecond at the moment of
/// reading. `getrusage(RUSAGE_THREAD)` alone lags by up to a scheduler tick (it is brought up
/// to date only at ticks and context switches), which made millisecond tasks look partly idle.
///
/// The user/system split is the kernel's own estimate from tick samples, so it says nothing
/// about an interval shorter than a few ticks, and `getrusage` is the dearest of the three
/// reads (most of what monitoring cost on a million-item `map_slice`). The split is therefore
/// read once per [`SPLIT_EVERY_NS`] of the thread's CPU time, and every interval gets the
/// system share last measured on its thread: one `getrusage` per millisecond of work, and the
/// split of many short tasks sums to what the kernel accounted for them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ThreadCpu {
    total_ns: u64,
    /// System share of this thread's CPU time over the last interval the split was read for.
    sys_share: f64,
    /// Run-queue delay so far, when the kernel exposes it.
    wait_ns: Option<u64>,
}

/// The thread CPU time between two reads of the user/system split.
pub(crate) const SPLIT_EVERY_NS: u64 = 1_000_000;

/// Where the user/system split of one thread was last read.
#[derive(Clone, Copy)]
struct Split {
    at_cpu_ns: u64,
    sys_ns: u64,
    share: f64,
}

thread_local! {
    static SPLIT: std::cell::Cell<Option<Split>> = const { std::cell::Cell::new(None) };
}

/// The system share of this thread's CPU time, read again when `total_ns` has moved on by
/// [`SPLIT_EVERY_NS`] since the last read (or on a thread's first read).
fn sys_share(total_ns: u64) -> f64 {
    SPLIT.with(|cell| {
        let last = cell.get();
        if let Some(l) = last.filter(|l| total_ns.saturating_sub(l.at_cpu_ns) < SPLIT_EVERY_NS) {
            return l.share;
        }
        let Some(ru) = rusage(libc::RUSAGE_THREAD) else {
            return last.map_or(0.0, |l| l.share);
        };
        let sys_ns = timeval_ns(&ru.ru_stime);
        let (d_cpu, d_sys) = match last {
            Some(l) => (
                total_ns.saturating_sub(l.at_cpu_ns),
                sys_ns.saturating_sub(l.sys_ns),
            ),
            None => (total_ns, sys_ns),
        };
        let share = if d_cpu == 0 {
            last.map_or(0.0, |l| l.share)
        } else {
            (d_sys as f64 / d_cpu as f64).clamp(0.0, 1.0)
        };
        cell.set(Some(Split {
            at_cpu_ns: total_ns,
            sys_ns,
            share,
        }));
        share
    })
}

impl ThreadCpu {
    pub(crate) fn now() -> ThreadCpu {
        let total_ns = thread_cpu_ns();
        ThreadCpu {
            total_ns,
            sys_share: sys_share(total_ns),
            wait_ns: run_queue_wait_ns(),
        }
    }

    /// CPU time so far (user and system), in ns.
    pub(crate) fn total_ns(&self) -> u64 {
        self.total_ns
    }

    /// Time spent waiting for a core since `earlier`, if measured both times.
    pub(crate) fn waited_since(&self, earlier: &ThreadCpu) -> Option<u64> {
        Some(self.wait_ns?.saturating_sub(earlier.wait_ns?))
    }

    /// CPU used since `earlier`, as (user, system): the exact total, split by the system share
    /// measured last (see [`ThreadCpu`]).
    pub(crate) fn since(&self, earlier: &ThreadCpu) -> (u64, u64) {
        let total = self.total_ns.saturating_sub(earlier.total_ns);
        let sys = ((total as f64 * self.sys_share).round() as u64).min(total);
        (total - sys, sys)
    }
}

thread_local! {
    /// This thread's `/proc/thread-self/schedstat`, opened once: `thread-self` is resolved at
    /// open time, so the descriptor keeps describing this thread, and each read is one `pread`.
    static SCHEDSTAT: Option<std::fs::File> = std::fs::File::open("/proc/thread-self/schedstat").ok();
}

/// The calling thread's total run-queue delay in ns (second field of `schedstat`).
pub(crate) fn run_queue_wait_ns() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    SCHEDSTAT.with(|f| {
        let f = f.as_ref()?;
        let mut buf = [0u8; 96];
        let n = f.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.split_ascii_whitespace().nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_clock_advances_with_work_and_timeval_converts() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(thread_cpu_ns() > before);
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 5,
        };
        assert_eq!(timeval_ns(&tv), 2_000_005_000);
        assert!(rusage(libc::RUSAGE_SELF).is_some());
    }

    #[test]
    fn thread_cpu_counts_work_and_run_queue_wait_is_read() {
        let before = ThreadCpu::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let after = ThreadCpu::now();
        let (user, sys) = after.since(&before);
        assert!(user + sys > 0);
        if std::path::Path::new("/proc/thread-self/schedstat").exists() {
            assert!(after.waited_since(&before).is_some());
        }
    }

    #[test]
    fn system_time_shows_in_the_split_and_short_intervals_reuse_the_share() {
        // Work that is nearly all system calls: at least 40 ms of this thread's CPU, a dozen
        // scheduler ticks, so the kernel's tick-sampled split has something to say.
        let before = ThreadCpu::now();
        while thread_cpu_ns() - before.total_ns() < 40_000_000 {
            for _ in 0..200 {
                let _ = std::hint::black_box(std::fs::metadata("/proc/self/stat"));
            }
        }
        let after = ThreadCpu::now();
        let (user, sys) = after.since(&before);
        assert_eq!(user + sys, after.total_ns() - before.total_ns());
        assert!(
            sys > 0,
            "system calls counted as user time only: user {user} ns, sys {sys} ns"
        );
        // A read right after (well under SPLIT_EVERY_NS of CPU) reuses the share just measured.
        let again = ThreadCpu::now();
        assert_eq!(again.sys_share.to_bits(), after.sys_share.to_bits());
    }
}
