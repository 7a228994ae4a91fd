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
}
