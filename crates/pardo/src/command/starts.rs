//! When a job may start: GNU parallel's resource gates `--load`, `--memfree` and `--delay`.
//!
//! Every start of a job (a retry and a requeued attempt included) takes its turn at one
//! [`StartGates`]: turns are taken one at a time, so `--delay` spaces all starts of the run, and
//! a start waits while the load average is above `--load` or the memory available is below
//! `--memfree`. The machine's figures come through [`Machine`], so tests give their own.
//!
//! `--memfree` also works the other way: while two or more jobs run and the memory available
//! falls under half of it, the runner stops the youngest job (TERM, then KILL after the grace)
//! and runs it again once memory allows. The stopped attempt is recorded (outcome `killed`); it
//! does not count against `--retries`, because it was not the job's fault. The oldest job is
//! never stopped this way, so the run always makes progress.
//!
//! ```
//! use pardo::command::{Machine, StartGates};
//! use std::time::Duration;
//!
//! #[derive(Debug)]
//! struct Quiet;
//! impl Machine for Quiet {
//!     fn load_avg(&self) -> Option<f64> { Some(0.5) }
//!     fn mem_available_bytes(&self) -> Option<u64> { Some(8 << 30) }
//! }
//! let gates = StartGates {
//!     load: Some(2.0),
//!     memfree: Some(1 << 30),
//!     delay: Some(Duration::from_millis(100)),
//!     ..StartGates::default()
//! }
//! .with_machine(Quiet);
//! assert!(gates.is_set());
//! assert_eq!(gates.blocked(), None); // load 0.5 ≤ 2 and 8 GiB ≥ 1 GiB: a job may start
//! ```

use std::fmt;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::monitor::sampler::{parse_loadavg, parse_mem_available};
use crate::sync::lock;

/// The figures of the machine the gates look at.
pub trait Machine: Send + Sync + fmt::Debug {
    /// One-minute load average; `None` when it cannot be read (the gate then stays open).
    fn load_avg(&self) -> Option<f64>;
    /// Memory available for new work (`MemAvailable`), in bytes; `None` when it cannot be read.
    fn mem_available_bytes(&self) -> Option<u64>;
}

/// The machine as Linux's `/proc/loadavg` and `/proc/meminfo` describe it.
///
/// ```
/// use pardo::command::{Machine, ProcMachine};
/// if std::path::Path::new("/proc/meminfo").exists() {
///     assert!(ProcMachine.mem_available_bytes().is_some());
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcMachine;

impl Machine for ProcMachine {
    fn load_avg(&self) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/loadavg").ok()?;
        parse_loadavg(&text).map(|l| l.one_minute)
    }

    fn mem_available_bytes(&self) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_mem_available(&text)
    }
}

/// Which gate holds a start back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Blocked {
    /// The load average (the figure) is above `--load`.
    Load(f64),
    /// The memory available (bytes) is below `--memfree`.
    Memory(u64),
}

/// The resource gates of a run; all off by default.
#[derive(Clone)]
pub struct StartGates {
    /// Start no job while the one-minute load average is above this (`--load`).
    pub load: Option<f64>,
    /// Start no job while less memory than this is available, in bytes; stop the youngest job
    /// when under half of it (`--memfree`).
    pub memfree: Option<u64>,
    /// At least this long between two starts (`--delay`).
    pub delay: Option<Duration>,
    /// How often a held-back start looks at the machine again.
    pub poll: Duration,
    /// Where the figures come from; [`ProcMachine`] by default.
    pub machine: Arc<dyn Machine>,
}

impl Default for StartGates {
    fn default() -> Self {
        StartGates {
            load: None,
            memfree: None,
            delay: None,
            poll: Duration::from_millis(100),
            machine: Arc::new(ProcMachine),
        }
    }
}

impl fmt::Debug for StartGates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartGates")
            .field("load", &self.load)
            .field("memfree", &self.memfree)
            .field("delay", &self.delay)
            .field("poll", &self.poll)
            .field("machine", &self.machine)
            .finish()
    }
}

impl StartGates {
    /// The same gates reading `machine` instead of `/proc`.
    pub fn with_machine(mut self, machine: impl Machine + 'static) -> StartGates {
        self.machine = Arc::new(machine);
        self
    }

    /// True when any gate is on.
    pub fn is_set(&self) -> bool {
        self.load.is_some() || self.memfree.is_some() || self.delay.is_some()
    }

    /// The machine the gates read.
    pub fn machine(&self) -> &dyn Machine {
        &*self.machine
    }

    /// Which gate holds a start back right now, if any (`--delay` aside).
    pub fn blocked(&self) -> Option<Blocked> {
        if let Some(max) = self.load {
            if let Some(l) = self.machine.load_avg().filter(|&l| l > max) {
                return Some(Blocked::Load(l));
            }
        }
        if let Some(min) = self.memfree {
            if let Some(m) = self.machine.mem_available_bytes().filter(|&m| m < min) {
                return Some(Blocked::Memory(m));
            }
        }
        None
    }

    /// True when memory is so short that the youngest job should be stopped.
    pub(crate) fn must_evict(&self) -> bool {
        match self.memfree {
            Some(min) => self
                .machine
                .mem_available_bytes()
                .is_some_and(|m| m < min / 2),
            None => false,
        }
    }
}

/// The turns of one run: the time of the last start, held while a start waits, so starts go
/// one at a time.
pub(crate) struct Turns {
    gates: StartGates,
    last: Mutex<Option<Instant>>,
}

impl Turns {
    pub(crate) fn new(gates: StartGates) -> Turns {
        Turns {
            gates,
            last: Mutex::new(None),
        }
    }

    pub(crate) fn gates(&self) -> &StartGates {
        &self.gates
    }

    /// Waits until a job may start and marks the start; false when `stopped` says the run is
    /// over first. `wake` becomes readable when the run is interrupted, which ends a wait early.
    pub(crate) fn wait_turn(&self, stopped: &dyn Fn() -> bool, wake: RawFd) -> bool {
        if !self.gates.is_set() {
            return !stopped();
        }
        let mut last = lock(&self.last);
        loop {
            if stopped() {
                return false;
            }
            let now = Instant::now();
            let spacing = match (self.gates.delay, *last) {
                (Some(d), Some(t)) => (t + d).checked_duration_since(now),
                _ => None,
            };
            let wait = match spacing {
                Some(w) if !w.is_zero() => Some(w),
                _ => self.gates.blocked().map(|_| self.gates.poll),
            };
            match wait {
                None => {
                    *last = Some(now);
                    return true;
                }
                // Never longer than one poll, so a stop is seen soon.
                Some(w) => sleep_unless_woken(wake, w.min(self.gates.poll)),
            }
        }
    }
}

/// Sleeps for `d`, or less when `fd` becomes readable.
pub(crate) fn sleep_unless_woken(fd: RawFd, d: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = d.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd; a poll error or EINTR only ends the sleep early, and the
    // caller looks at the gates again either way.
    unsafe {
        libc::poll(&mut pfd, 1, ms);
    }
}

/// The slot whose running attempt started last, when at least two run: the one `--memfree`
/// stops. `started` holds each slot's attempt start (`None` when idle).
pub(crate) fn youngest(started: &[Option<u64>]) -> Option<usize> {
    let running = started.iter().filter(|s| s.is_some()).count();
    if running < 2 {
        return None;
    }
    started
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|t| (t, i)))
        .max()
        .map(|(_, i)| i)
}

/// Parses a size with GNU parallel's unit suffixes: K M G T P are powers of 1024, k m g t p
/// powers of 1000 (`1G`, `500m`, `1.5K`, `4096`).
///
/// ```
/// use pardo::command::parse_size;
/// assert_eq!(parse_size("1G"), Ok(1 << 30));
/// assert_eq!(parse_size("2k"), Ok(2000));
/// assert!(parse_size("12X").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], Some(c)),
        _ => (t, None),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number, then an optional unit)"))?;
    let mult = match unit {
        None => 1.0,
        Some('K') => 1024f64,
        Some('M') => 1024f64.powi(2),
        Some('G') => 1024f64.powi(3),
        Some('T') => 1024f64.powi(4),
        Some('P') => 1024f64.powi(5),
        Some('k') => 1e3,
        Some('m') => 1e6,
        Some('g') => 1e9,
        Some('t') => 1e12,
        Some('p') => 1e15,
        Some(c) => {
            return Err(format!(
                "{s:?}: unknown unit {c:?}; expected K, M, G, T, P (×1024) or k, m, g, t, p (×1000)"
            ))
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?}: expected a size from 0 to 16E"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration with GNU parallel's time suffixes: seconds, or numbers each followed by
/// `s`, `m`, `h` or `d` (`0.1`, `0.1s`, `1m`, `1d3.5h16.6m4s`).
///
/// ```
/// use pardo::command::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("5x").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a duration: expected seconds, or e.g. 0.5s, 2m, 1h30m, 1d");
    if t.is_empty() {
        return Err(bad());
    }
    let mut secs = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..end].parse().map_err(|_| bad())?;
        let (unit, len) = match rest[end..].chars().next() {
            None => (1.0, 0),
            Some('s') => (1.0, 1),
            Some('m') => (60.0, 1),
            Some('h') => (3600.0, 1),
            Some('d') => (86400.0, 1),
            Some(_) => return Err(bad()),
        };
        if len == 0 && end != rest.len() {
            return Err(bad());
        }
        secs += n * unit;
        rest = &rest[end + len..];
    }
    // Whole nanoseconds, so `16.6m` is 996 s and not a hair more.
    let nanos = (secs * 1e9).round();
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(format!("{s:?}: too long a duration"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Reports the figures of a script, one per read, then the last one for ever.
    #[derive(Debug)]
    struct Script {
        load: Vec<f64>,
        mem: Vec<u64>,
        load_reads: Arc<AtomicUsize>,
        mem_reads: Arc<AtomicUsize>,
    }

    impl Script {
        fn new(load: &[f64], mem: &[u64]) -> Script {
            Script {
                load: load.to_vec(),
                mem: mem.to_vec(),
                load_reads: Arc::default(),
                mem_reads: Arc::default(),
            }
        }
    }

    fn nth<T: Copy>(v: &[T], i: usize) -> Option<T> {
        v.get(i).or(v.last()).copied()
    }

    impl Machine for Script {
        fn load_avg(&self) -> Option<f64> {
            nth(&self.load, self.load_reads.fetch_add(1, Ordering::SeqCst))
        }
        fn mem_available_bytes(&self) -> Option<u64> {
            nth(&self.mem, self.mem_reads.fetch_add(1, Ordering::SeqCst))
        }
    }

    fn never() -> bool {
        false
    }

    fn fast(gates: StartGates) -> StartGates {
        StartGates {
            poll: Duration::from_millis(1),
            ..gates
        }
    }

    #[test]
    fn a_start_waits_until_the_load_falls_to_the_limit() {
        let script = Script::new(&[3.0, 2.5, 2.0, 9.0], &[]);
        let reads = Arc::clone(&script.load_reads);
        let turns = Turns::new(fast(
            StartGates {
                load: Some(2.0),
                ..StartGates::default()
            }
            .with_machine(script),
        ));
        assert!(turns.wait_turn(&never, -1));
        // 3.0 and 2.5 are above the limit; 2.0 is not (GNU: start while not above).
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_start_waits_for_memory_and_unknown_figures_do_not_block() {
        let script = Script::new(&[], &[100, 500, 1000]);
        let reads = Arc::clone(&script.mem_reads);
        let turns = Turns::new(fast(
            StartGates {
                memfree: Some(1000),
                load: Some(1.0),
                ..StartGates::default()
            }
            .with_machine(script),
        ));
        assert!(turns.wait_turn(&never, -1));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_stopped_run_ends_the_wait() {
        let turns = Turns::new(fast(
            StartGates {
                load: Some(1.0),
                ..StartGates::default()
            }
            .with_machine(Script::new(&[5.0], &[])),
        ));
        let calls = AtomicUsize::new(0);
        let stop_on_third = || calls.fetch_add(1, Ordering::SeqCst) >= 2;
        assert!(!turns.wait_turn(&stop_on_third, -1));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn delay_spaces_consecutive_starts() {
        let d = Duration::from_millis(30);
        let turns = Turns::new(StartGates {
            delay: Some(d),
            ..StartGates::default()
        });
        assert!(turns.wait_turn(&never, -1));
        let first = lock(&turns.last).unwrap();
        assert!(turns.wait_turn(&never, -1));
        let second = lock(&turns.last).unwrap();
        assert!(second.duration_since(first) >= d);
    }

    #[test]
    fn eviction_needs_half_of_memfree_and_two_running_jobs() {
        let gates = StartGates {
            memfree: Some(1000),
            ..StartGates::default()
        };
        assert!(!gates
            .clone()
            .with_machine(Script::new(&[], &[600]))
            .must_evict());
        assert!(gates.with_machine(Script::new(&[], &[499])).must_evict());
        assert_eq!(youngest(&[Some(5), None, Some(9), Some(7)]), Some(2));
        assert_eq!(youngest(&[None, Some(9), None]), None);
        assert_eq!(youngest(&[]), None);
    }

    #[test]
    fn sizes_and_durations_in_gnu_forms() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("1t"), Ok(1_000_000_000_000));
        for bad in ["", "G", "-1G", "1e400", "1 G", "nanG"] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_duration("1d3.5h16.6m4s"),
            Ok(Duration::from_secs(100_000))
        );
        for bad in ["", "s", "1x", "1sauto", "-1", "1e999", "1..2"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
