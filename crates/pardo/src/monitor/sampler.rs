//! What the machine is doing: CPU busy fraction (`/proc/stat`), memory available
//! (`/proc/meminfo`), load average (`/proc/loadavg`), and the cores this process may use
//! (affinity mask and cgroup v2 quota).
//!
//! Parsing is separate from reading so it can be tested on given file contents; the reading
//! side ([`MachineSampler`]) reuses one buffer, so a steady stream of samples does not allocate.
//! Where a file is missing (not Linux, a locked-down container) the value is `None`.
//!
//! ```
//! use pardo::monitor::sampler::{parse_loadavg, parse_mem_available, parse_proc_stat};
//!
//! let before = parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\n").unwrap();
//! let after = parse_proc_stat("cpu  250 0 150 850 0 0 0 0 0 0\n").unwrap();
//! assert_eq!(after.busy_since(&before), Some(0.8)); // 200 busy of 250 ticks
//! assert_eq!(parse_mem_available("MemAvailable:    2048 kB\n"), Some(2048 * 1024));
//! assert_eq!(parse_loadavg("0.50 0.40 0.30 2/345 6789\n").map(|l| l.one_minute), Some(0.5));
//! ```

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Cumulative CPU time of the whole machine, in clock ticks, from the `cpu` line of
/// `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks spent doing anything but idling or waiting for I/O.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

impl CpuTimes {
    /// Fraction of the ticks between `earlier` and `self` that were busy, 0 to 1; `None` when
    /// no tick passed (or the counters went backwards).
    pub fn busy_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| (busy as f64 / total as f64).min(1.0))
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
///
/// The fields are user, nice, system, idle, iowait, irq, softirq, steal (then guest times,
/// already counted in user and nice). Idle and iowait are not busy; steal is busy, since the
/// tasks could not run in it either.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut fields = line.split_ascii_whitespace().skip(1).map(str::parse::<u64>);
    let mut ticks = [0u64; 8];
    let mut seen = 0;
    for slot in &mut ticks {
        match fields.next() {
            Some(Ok(v)) => {
                *slot = v;
                seen += 1;
            }
            Some(Err(_)) => return None,
            None => break,
        }
    }
    // Kernels since 2.6 print at least eight fields; four is the oldest format.
    if seen < 4 {
        return None;
    }
    let total = ticks.iter().fold(0u64, |a, &t| a.saturating_add(t));
    let idle = ticks[3].saturating_add(ticks[4]);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn parse_mem_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line["MemAvailable:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The load figures of `/proc/loadavg`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadAvg {
    /// One-minute load average.
    pub one_minute: f64,
    /// Tasks runnable right now (the number before the slash), where given.
    pub runnable: Option<u64>,
}

/// Parses `/proc/loadavg` (`0.50 0.40 0.30 2/345 6789`).
pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut parts = text.split_ascii_whitespace();
    let one_minute: f64 = parts.next()?.parse().ok()?;
    if !one_minute.is_finite() || one_minute < 0.0 {
        return None;
    }
    let runnable = parts
        .nth(2)
        .and_then(|p| p.split('/').next())
        .and_then(|r| r.parse().ok());
    Some(LoadAvg {
        one_minute,
        runnable,
    })
}

/// The CPU quota of a cgroup v2 `cpu.max` file (`QUOTA PERIOD`, or `max PERIOD` for none), in
/// cores.
///
/// ```
/// use pardo::monitor::sampler::parse_cpu_max;
/// assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
/// assert_eq!(parse_cpu_max("max 100000\n"), None);
/// ```
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_ascii_whitespace();
    let quota = parts.next()?;
    if quota == "max" {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    let period: f64 = parts.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    (quota > 0.0 && period > 0.0 && quota.is_finite()).then(|| quota / period)
}

/// The cgroup v2 directories of this process from `/proc/self/cgroup`, innermost first, under
/// `root` (normally `/sys/fs/cgroup`). A quota anywhere up the tree applies.
pub fn cgroup_dirs(proc_self_cgroup: &str, root: &Path) -> Vec<PathBuf> {
    let Some(path) = proc_self_cgroup.lines().find_map(|l| l.strip_prefix("0::")) else {
        return vec![root.to_path_buf()];
    };
    let mut dirs = Vec::new();
    let mut rel = Path::new(path.trim().trim_start_matches('/'));
    loop {
        dirs.push(root.join(rel));
        match rel.parent() {
            Some(p) if rel != Path::new("") => rel = p,
            _ => break,
        }
    }
    dirs
}

/// Cores usable with `affinity` CPUs in the mask and the tightest cgroup `quota` in cores: the
/// quota rounds up (1.5 cores of quota keep two workers busy part of the time), at least 1.
///
/// ```
/// use pardo::monitor::sampler::cores_from;
/// assert_eq!(cores_from(8, Some(2.0)), 2);
/// assert_eq!(cores_from(8, Some(1.5)), 2);
/// assert_eq!(cores_from(4, None), 4);
/// assert_eq!(cores_from(2, Some(16.0)), 2);
/// assert_eq!(cores_from(0, Some(0.1)), 1);
/// ```
pub fn cores_from(affinity: usize, quota: Option<f64>) -> usize {
    let by_quota = quota.map_or(usize::MAX, |q| q.ceil().clamp(1.0, 1e9) as usize);
    affinity.min(by_quota).max(1)
}

/// CPUs in this process's affinity mask.
pub fn affinity_cpus() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data, so zeroed is a valid value; sched_getaffinity writes
        // at most size_of::<cpu_set_t>() bytes into it, and CPU_COUNT only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            usize::try_from(libc::CPU_COUNT(&set)).ok()
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Cores this process may use: the affinity mask, cut by any cgroup v2 CPU quota on the way to
/// the root; `std::thread::available_parallelism` where the mask cannot be read.
pub fn usable_cores() -> usize {
    let affinity = affinity_cpus().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let root = Path::new("/sys/fs/cgroup");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let quota = cgroup_dirs(&own, root)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cpu.max")).ok())
        .filter_map(|t| parse_cpu_max(&t))
        .reduce(f64::min);
    cores_from(affinity, quota)
}

/// What one machine sample found; `None` where a file could not be read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineSample {
    /// Busy fraction of the machine's CPU since the previous sample.
    pub busy: Option<f64>,
    /// Memory available, in bytes.
    pub mem_available_bytes: Option<u64>,
    /// One-minute load average.
    pub load_avg: Option<f64>,
    /// Threads runnable right now, on a core or waiting for one, the reading one included.
    pub runnable: Option<u64>,
}

/// Reads the machine's figures again and again with one reused buffer.
///
/// ```
/// use pardo::monitor::sampler::MachineSampler;
/// let mut m = MachineSampler::new();
/// let first = m.sample();
/// // The busy fraction needs two readings.
/// assert_eq!(first.busy, None);
/// let _ = m.sample();
/// ```
#[derive(Debug, Default)]
pub struct MachineSampler {
    buf: String,
    last_cpu: Option<CpuTimes>,
}

impl MachineSampler {
    /// A sampler that has read nothing yet.
    pub fn new() -> Self {
        MachineSampler {
            buf: String::with_capacity(8192),
            last_cpu: None,
        }
    }

    fn read(&mut self, path: &str) -> Option<&str> {
        self.buf.clear();
        File::open(path).ok()?.read_to_string(&mut self.buf).ok()?;
        Some(&self.buf)
    }

    /// Reads `/proc/stat`, `/proc/meminfo` and `/proc/loadavg` once.
    pub fn sample(&mut self) -> MachineSample {
        let cpu = self.read("/proc/stat").and_then(parse_proc_stat);
        let busy = match (cpu, self.last_cpu) {
            (Some(now), Some(then)) => now.busy_since(&then),
            _ => None,
        };
        if cpu.is_some() {
            self.last_cpu = cpu;
        }
        let mem_available_bytes = self.read("/proc/meminfo").and_then(parse_mem_available);
        let load = self.read("/proc/loadavg").and_then(parse_loadavg);
        MachineSample {
            busy,
            mem_available_bytes,
            load_avg: load.map(|l| l.one_minute),
            runnable: load.and_then(|l| l.runnable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  4705 356 584 3699176 23060 0 277 0 0 0\n\
        cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\n\
        intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]\n";

    #[test]
    fn proc_stat_counts_iowait_as_idle_and_steal_as_busy() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(t.total, 4705 + 356 + 584 + 3699176 + 23060 + 277);
        assert_eq!(t.busy, 4705 + 356 + 584 + 277);
        let stolen = parse_proc_stat("cpu 10 0 0 80 0 0 0 10 0 0").unwrap();
        assert_eq!(stolen.busy, 20);
    }

    #[test]
    fn proc_stat_rejects_garbage_and_reads_the_old_format() {
        assert_eq!(parse_proc_stat(""), None);
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 x 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2\n"), None);
        let old = parse_proc_stat("cpu  1 2 3 4\n").unwrap();
        assert_eq!((old.busy, old.total), (6, 10));
    }

    #[test]
    fn busy_fraction_needs_time_to_pass_and_counters_to_grow() {
        let a = CpuTimes {
            busy: 10,
            total: 100,
        };
        assert_eq!(a.busy_since(&a), None);
        let b = CpuTimes {
            busy: 60,
            total: 200,
        };
        assert_eq!(b.busy_since(&a), Some(0.5));
        assert_eq!(a.busy_since(&b), None);
    }

    #[test]
    fn meminfo_in_kilobytes() {
        let text = "MemTotal:       16318680 kB\nMemFree:         1234567 kB\n\
                    MemAvailable:    8123456 kB\nBuffers:          204800 kB\n";
        assert_eq!(parse_mem_available(text), Some(8_123_456 * 1024));
        assert_eq!(parse_mem_available("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots kB\n"), None);
    }

    #[test]
    fn loadavg_fields() {
        let l = parse_loadavg("1.25 0.80 0.40 3/812 12345\n").unwrap();
        assert_eq!(l.one_minute, 1.25);
        assert_eq!(l.runnable, Some(3));
        assert_eq!(parse_loadavg("nan 0 0 1/1 1").map(|l| l.one_minute), None);
        assert_eq!(parse_loadavg("").map(|l| l.one_minute), None);
        assert_eq!(parse_loadavg("0.5").unwrap().runnable, None);
    }

    #[test]
    fn cpu_max_quota() {
        assert_eq!(parse_cpu_max("200000 100000"), Some(2.0));
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("0 100000"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("100000 0"), None);
    }

    #[test]
    fn cgroup_dirs_walk_up_to_the_root() {
        let root = Path::new("/sys/fs/cgroup");
        let dirs = cgroup_dirs("0::/user.slice/session-1.scope\n", root);
        assert_eq!(
            dirs,
            [
                root.join("user.slice/session-1.scope"),
                root.join("user.slice"),
                root.to_path_buf(),
            ]
        );
        assert_eq!(cgroup_dirs("0::/\n", root), [root.to_path_buf()]);
        // cgroup v1 only: no unified line, the root is all there is to look at.
        assert_eq!(
            cgroup_dirs("12:cpu,cpuacct:/foo\n", root),
            [root.to_path_buf()]
        );
    }

    #[test]
    fn this_machine_has_cores_and_readable_figures() {
        assert!(usable_cores() >= 1);
        let mut m = MachineSampler::new();
        m.sample();
        let s = m.sample();
        if cfg!(target_os = "linux") {
            assert!(s.mem_available_bytes.is_some_and(|b| b > 0));
            assert!(s.load_avg.is_some());
        }
    }
}
