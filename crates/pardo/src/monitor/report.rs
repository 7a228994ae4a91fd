//! [`Report`]: what a run did, in numbers, computed from the fold over its records.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::monitor::classify::{classify, Workload};
use crate::monitor::findings::{findings, Facts, Finding};
use crate::monitor::fold::{capacity_ns, Accumulator, CapacitySteps, Straggler, STRAGGLER_FACTOR};
use crate::monitor::record::{ConcurrencyChange, RunRecord, TaskRecord};
use crate::task::Outcome;

/// Duration percentiles, in nanoseconds, to within 1 % (the fold keeps HDR histograms of two
/// significant figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
            mean_ns: h.mean().round() as u64,
        }
    }
}

/// What one machine did in a run spread over several (a `--cluster` run): from the records
/// that name their host.
///
/// ```
/// use pardo::{TaskId, monitor::{RunRecord, Report, TaskRecord}};
/// let mut a = TaskRecord::new(TaskId(1), 1, 0, 0, 100);
/// a.host = Some("left".into());
/// let mut b = TaskRecord::new(TaskId(2), 2, 0, 0, 300);
/// b.host = Some("right".into());
/// let report = Report::from_records(RunRecord::now("command", 2), &[a, b]);
/// assert_eq!(report.hosts.len(), 2);
/// assert_eq!((report.hosts[1].host.as_str(), report.hosts[1].mean_ns), ("right", 300));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostStats {
    /// The host name.
    pub host: String,
    /// Attempts it ran.
    pub tasks: u64,
    /// Σ their wall time.
    pub busy_ns: u64,
    /// Their mean wall time.
    pub mean_ns: u64,
}

/// What a run did, in numbers, with findings a person can act on.
///
/// The definitions, all computed from the run's [`TaskRecord`]s:
///
/// - **wall**: first submission to last finish.
/// - **busy**: Σ task wall time (start to finish of each attempt).
/// - **utilisation**: busy / (workers × wall), the share of worker time spent running tasks.
/// - **speedup**: Σ (task wall − time the task waited for a core) / wall — how many tasks were
///   *making progress* at once, on average. Time a task spent ready to run but without a core is
///   not work, so 8 CPU-bound workers on 2 cores report a speedup of at most about 2, not 8.
///   Where that wait could not be measured (worker processes and commands: the kernel does not
///   report it after a process exits) and the run kept every core busy, the speedup is capped at
///   the cores the workers could use. It never exceeds the mean worker count.
/// - **efficiency**: speedup / workers, 0 to 1.
/// - **CPU ratio**: Σ CPU / busy (≈1 CPU-bound, ≈0 I/O-bound); **CPU demand** adds the time
///   spent waiting for a core to the CPU time.
///
/// `Display` gives a short summary for a person; the fields are for programs.
///
/// ```
/// use pardo::{ShutdownMode, ThreadPool};
/// let pool = ThreadPool::builder().workers(2).build()?;
/// pool.map(0..10u64, |x| x * 2).for_each(drop);
/// let report = pool.shutdown(ShutdownMode::Wait);
/// assert_eq!(report.items, 10);
/// assert!(report.speedup <= report.workers + 1e-9);
/// println!("{report}");
/// # Ok::<(), pardo::PoolError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// The run these numbers describe.
    pub run: RunRecord,
    /// Records (task attempts; a batch counts once).
    pub tasks: u64,
    /// Inputs covered by those records (a batch counts its items).
    pub items: u64,
    /// Records that ended [`Outcome::Ok`].
    pub ok: u64,
    /// Records that ended any other way, cancellations included.
    pub not_ok: u64,
    /// Count of records per outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// First submission to last finish.
    pub wall_ns: u64,
    /// Σ task wall time.
    pub busy_ns: u64,
    /// Σ user CPU.
    pub cpu_user_ns: u64,
    /// Σ system CPU.
    pub cpu_sys_ns: u64,
    /// Mean worker count over the run (time-weighted).
    pub workers: f64,
    /// Items finished per second of wall time.
    pub throughput_per_s: f64,
    /// Busy time / (workers × wall), 0 to 1.
    pub utilisation: f64,
    /// Σ (task wall − wait for a core) / run wall; see the definitions above.
    pub speedup: f64,
    /// Speedup / workers.
    pub efficiency: f64,
    /// Σ CPU / Σ task wall; `None` when nothing ran.
    pub cpu_ratio: Option<f64>,
    /// Σ time tasks were ready to run but waited for a core, where measured.
    pub cpu_wait_ns: Option<u64>,
    /// (Σ CPU + Σ wait for a core) / Σ task wall over tasks where the wait was measured: how
    /// much of their time tasks *wanted* a CPU, whether or not they got one.
    pub cpu_demand: Option<f64>,
    /// The verdict drawn from the CPU ratio and CPU saturation.
    pub workload: Workload,
    /// Per-item run time.
    pub duration: Percentiles,
    /// Per-item time spent queued.
    pub queue_wait: Percentiles,
    /// Busiest worker's busy time over the mean worker's, minus one (0 = perfectly even).
    pub load_imbalance: f64,
    /// From the moment the first worker ran out of work for good to the end of the run.
    pub idle_tail_ns: u64,
    /// Tasks that ran at least four times the median, slowest first.
    pub stragglers: Vec<Straggler>,
    /// Peak resident memory of any task, where measured (processes).
    pub max_rss_bytes: Option<u64>,
    /// Plain sentences with numbers, most important first.
    pub findings: Vec<Finding>,
    /// How the concurrency changed during the run, and why (empty when it stayed put).
    #[serde(default)]
    pub concurrency: Vec<ConcurrencyChange>,
    /// Per host, by name, for a run spread over several machines (empty otherwise).
    #[serde(default)]
    pub hosts: Vec<HostStats>,
}

impl Report {
    /// A report over records, e.g. synthetic ones in a test or records read back from JSON.
    /// `run.workers` is taken as the worker count for the whole run.
    ///
    /// ```
    /// use pardo::{TaskId, monitor::{RunRecord, Report, TaskRecord}};
    /// let run = RunRecord::now("thread_pool", 2);
    /// // Two tasks of 100 ns each, side by side on two workers.
    /// let recs = [TaskRecord::new(TaskId(1), 1, 0, 0, 100), TaskRecord::new(TaskId(2), 2, 0, 0, 100)];
    /// let report = Report::from_records(run, &recs);
    /// assert_eq!(report.speedup, 2.0);
    /// assert_eq!(report.utilisation, 1.0);
    /// ```
    pub fn from_records(run: RunRecord, records: &[TaskRecord]) -> Report {
        let mut acc = Accumulator::default();
        for r in records {
            acc.add(r);
        }
        let steps = [(0, run.workers)];
        Report::from_accumulator(run, &acc, &steps)
    }

    pub(crate) fn from_accumulator(
        run: RunRecord,
        acc: &Accumulator,
        steps: &CapacitySteps,
    ) -> Report {
        let started = if acc.tasks == 0 {
            0
        } else {
            acc.first_submitted_ns
        };
        let wall_ns = acc.last_finished_ns.saturating_sub(started);
        let busy_ns = acc.busy_ns;
        let cpu_ns = acc.cpu_user_ns + acc.cpu_sys_ns;
        let capacity = capacity_ns(steps, started, acc.last_finished_ns);
        let workers = if wall_ns == 0 {
            steps.last().map_or(run.workers, |s| s.1) as f64
        } else {
            capacity as f64 / wall_ns as f64
        };
        let ratio = |a: u128, b: u128| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let utilisation = ratio(busy_ns, capacity).min(1.0);
        let cpu_ratio = (busy_ns > 0).then(|| ratio(cpu_ns, busy_ns));
        let measured = acc.measured_wall_ns > 0;
        let cpu_wait_ns = measured.then(|| u64::try_from(acc.cpu_wait_ns).unwrap_or(u64::MAX));
        let cpu_demand = measured
            .then(|| ratio(acc.measured_cpu_ns + acc.cpu_wait_ns, acc.measured_wall_ns).min(1.0));
        // Share of the machine's CPU the run used, over the cores the workers could occupy.
        let usable_cores = (workers.ceil() as usize).clamp(1, run.cores.max(1));
        let saturation = ratio(cpu_ns, u128::from(wall_ns) * usable_cores as u128);
        let workload = classify(cpu_demand.or(cpu_ratio), saturation, workers, run.cores);
        let speedup = speedup(acc, wall_ns, workers, usable_cores, workload);
        let efficiency = if workers > 0.0 {
            (speedup / workers).min(1.0)
        } else {
            0.0
        };
        let throughput_per_s = if wall_ns == 0 {
            0.0
        } else {
            acc.items as f64 * 1e9 / wall_ns as f64
        };

        let load_imbalance = if acc.workers.is_empty() {
            0.0
        } else {
            let max = acc.workers.values().map(|w| w.busy_ns).max().unwrap_or(0);
            let mean = acc.workers.values().map(|w| w.busy_ns).sum::<u128>() as f64
                / acc.workers.len() as f64;
            if mean > 0.0 {
                max as f64 / mean - 1.0
            } else {
                0.0
            }
        };
        let idle_tail_ns = acc
            .workers
            .values()
            .map(|w| w.last_finished_ns)
            .min()
            .map_or(0, |first_idle| {
                acc.last_finished_ns.saturating_sub(first_idle)
            });

        let duration = Percentiles::of(&acc.duration);
        let queue_wait = Percentiles::of(&acc.queue_wait);
        let mut stragglers: Vec<Straggler> = acc
            .slowest
            .iter()
            .filter(|s| duration.p50_ns > 0 && s.duration_ns >= duration.p50_ns * STRAGGLER_FACTOR)
            .cloned()
            .collect();
        stragglers.sort_by(|a, b| b.duration_ns.cmp(&a.duration_ns).then(a.id.cmp(&b.id)));

        let hosts = acc
            .hosts
            .iter()
            .map(|(host, t)| HostStats {
                host: host.clone(),
                tasks: t.tasks,
                busy_ns: u64::try_from(t.busy_ns).unwrap_or(u64::MAX),
                mean_ns: u64::try_from(t.busy_ns / u128::from(t.tasks.max(1))).unwrap_or(u64::MAX),
            })
            .collect();
        let ok = acc.outcomes.get(&Outcome::Ok).copied().unwrap_or(0);
        let mut report = Report {
            tasks: acc.tasks,
            items: acc.items,
            ok,
            not_ok: acc.tasks - ok,
            outcomes: acc.outcomes.clone(),
            wall_ns,
            busy_ns: u64::try_from(busy_ns).unwrap_or(u64::MAX),
            cpu_user_ns: u64::try_from(acc.cpu_user_ns).unwrap_or(u64::MAX),
            cpu_sys_ns: u64::try_from(acc.cpu_sys_ns).unwrap_or(u64::MAX),
            workers,
            throughput_per_s,
            utilisation,
            speedup,
            efficiency,
            cpu_ratio,
            cpu_wait_ns,
            cpu_demand,
            workload,
            duration,
            queue_wait,
            load_imbalance,
            idle_tail_ns,
            stragglers,
            max_rss_bytes: acc.max_rss_bytes,
            findings: Vec::new(),
            concurrency: Vec::new(),
            hosts,
            run,
        };
        report.findings = findings(&Facts::of(&report));
        report
    }
}

/// Tasks making progress at once, on average (see [`Report`]'s definitions).
fn speedup(
    acc: &Accumulator,
    wall_ns: u64,
    workers: f64,
    usable_cores: usize,
    workload: Workload,
) -> f64 {
    if wall_ns == 0 {
        return 0.0;
    }
    // Time waiting for a core is summed only over records where it was measured.
    let progress_ns = acc.busy_ns.saturating_sub(acc.cpu_wait_ns);
    let mut s = progress_ns as f64 / wall_ns as f64;
    let unmeasured = acc.measured_wall_ns < acc.busy_ns;
    if unmeasured && workload == Workload::CpuBound {
        s = s.min(usable_cores as f64);
    }
    s.min(workers.max(1.0))
}

impl fmt::Display for Report {
    /// A few lines for a person: what ran, how fast, the verdict, then the findings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dur = crate::monitor::format_duration;
        write!(f, "{} task(s)", self.tasks)?;
        if self.items != self.tasks {
            write!(f, " ({} items)", self.items)?;
        }
        writeln!(
            f,
            " in {} on {:.1} worker(s), {} core(s): {:.1}/s, {}",
            dur(self.wall_ns),
            self.workers,
            self.run.cores,
            self.throughput_per_s,
            self.workload
        )?;
        write!(
            f,
            "speedup {:.2}, efficiency {:.0}%, utilisation {:.0}%",
            self.speedup,
            self.efficiency * 100.0,
            self.utilisation * 100.0
        )?;
        if let Some(c) = self.cpu_ratio {
            write!(f, ", cpu/wall {c:.2}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "task time p50 {}, p90 {}, max {}; queue wait p50 {}",
            dur(self.duration.p50_ns),
            dur(self.duration.p90_ns),
            dur(self.duration.max_ns),
            dur(self.queue_wait.p50_ns)
        )?;
        if self.not_ok > 0 {
            write!(f, "\n{} of {} did not succeed", self.not_ok, self.tasks)?;
        }
        if let (Some(first), Some(last)) = (self.concurrency.first(), self.concurrency.last()) {
            write!(f, "\nconcurrency: {}", first.from)?;
            for c in &self.concurrency {
                write!(f, " → {}", c.to)?;
            }
            write!(f, " ({})", last.reason)?;
        }
        for finding in &self.findings {
            write!(f, "\n- {finding}")?;
        }
        Ok(())
    }
}

impl Facts {
    fn of(r: &Report) -> Facts {
        Facts {
            tasks: r.tasks,
            items: r.items,
            not_ok: r.not_ok,
            cores: r.run.cores,
            workers: r.workers,
            workload: r.workload,
            cpu_ratio: r.cpu_ratio,
            cpu_wait_ns: r.cpu_wait_ns,
            busy_ns: r.busy_ns,
            wall_ns: r.wall_ns,
            utilisation: r.utilisation,
            queue_wait_p50_ns: r.queue_wait.p50_ns,
            duration_p50_ns: r.duration.p50_ns,
            duration_mean_ns: r.duration.mean_ns,
            stragglers: r.stragglers.len(),
            slowest_ns: r.stragglers.first().map(|s| s.duration_ns),
            idle_tail_ns: r.idle_tail_ns,
            load_imbalance: r.load_imbalance,
            hosts: r
                .hosts
                .iter()
                .map(|h| (h.host.clone(), h.tasks, h.mean_ns))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskId;

    fn run(workers: usize, cores: usize) -> RunRecord {
        let mut r = RunRecord::now("test", workers);
        r.cores = cores;
        r
    }

    /// `n` tasks on `workers` workers, each `wall` ns long of which `wait` ns waiting for a core
    /// and the rest on the CPU, laid back to back.
    fn crowded(n: u64, workers: u32, wall: u64, wait: Option<u64>) -> Vec<TaskRecord> {
        (0..n)
            .map(|i| {
                let w = (i % u64::from(workers)) as u32;
                let start = (i / u64::from(workers)) * wall;
                let mut r = TaskRecord::new(TaskId(i + 1), w + 1, 0, start, start + wall);
                r.cpu_user_ns = wall - wait.unwrap_or(wall * 3 / 4);
                r.cpu_wait_ns = wait;
                r
            })
            .collect()
    }

    #[test]
    fn eight_cpu_bound_workers_on_two_cores_report_a_speedup_of_two_not_eight() {
        // Each task ran 4 ms of wall time: 1 ms on a core, 3 ms waiting for one.
        let recs = crowded(64, 8, 4_000_000, Some(3_000_000));
        let r = Report::from_records(run(8, 2), &recs);
        assert!((r.speedup - 2.0).abs() < 1e-9, "{}", r.speedup);
        assert!((r.efficiency - 0.25).abs() < 1e-9, "{}", r.efficiency);
    }

    #[test]
    fn without_a_measured_wait_a_saturated_run_is_capped_at_its_cores() {
        // Worker processes and commands: no run-queue wait, but the cores were full.
        let recs = crowded(64, 8, 4_000_000, None);
        let r = Report::from_records(run(8, 2), &recs);
        assert_eq!(r.workload, Workload::CpuBound);
        assert!(r.speedup <= 2.0 + 1e-9, "{}", r.speedup);
    }

    #[test]
    fn waiting_tasks_may_overlap_beyond_the_cores() {
        // 64 sleeping workers on 2 cores: all of them make progress at once.
        let mut recs = crowded(64, 64, 20_000_000, Some(0));
        for r in &mut recs {
            r.cpu_user_ns = 10_000;
        }
        let r = Report::from_records(run(64, 2), &recs);
        assert!((r.speedup - 64.0).abs() < 1e-9, "{}", r.speedup);
    }

    #[test]
    fn a_machine_with_more_than_1024_cores_gets_a_report() {
        let mut recs = crowded(40, 2, 10_000_000, Some(0));
        for r in &mut recs {
            r.cpu_user_ns = 100_000;
        }
        let r = Report::from_records(run(2, 2048), &recs);
        assert_eq!(r.tasks, 40);
    }

    #[test]
    fn advice_never_asks_for_more_workers_than_there_were_tasks() {
        let mut recs = crowded(40, 2, 10_000_000, Some(0));
        for r in &mut recs {
            r.cpu_user_ns = 10_000;
        }
        let r = Report::from_records(run(2, 2), &recs);
        let suggested = r.findings.iter().find_map(|f| match f {
            Finding::IoBound {
                suggested_workers, ..
            } => Some(*suggested_workers),
            _ => None,
        });
        assert_eq!(suggested, Some(40), "{:?}", r.findings);
    }

    #[test]
    fn display_is_a_short_summary_with_the_findings() {
        let recs = crowded(64, 8, 4_000_000, Some(3_000_000));
        let text = Report::from_records(run(8, 2), &recs).to_string();
        assert!(text.starts_with("64 task(s) in "), "{text}");
        assert!(text.contains("speedup 2.00, efficiency 25%"), "{text}");
        assert!(text.contains("\n- CPU-bound"), "{text}");
    }
}
