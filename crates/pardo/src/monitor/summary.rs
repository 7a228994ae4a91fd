//! Statistics and findings computed from task records.
//!
//! Everything here is a fold over [`TaskRecord`]s ([`Accumulator`]), so the same code serves a
//! live pool (each worker folds its own records as it writes them, and a report merges the
//! workers' folds) and a list of records read back or made up in a test ([`Report::from_records`]).
//! Memory for the fold is constant in the number of tasks: percentiles come from HDR histograms,
//! stragglers from a bounded list of the slowest tasks.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::monitor::record::{RunRecord, TaskRecord};
use crate::task::{Outcome, TaskId};
use crate::tune::classify::{classify, Workload};

/// How many of the slowest tasks a fold keeps to name stragglers.
const SLOWEST_KEPT: usize = 8;
/// A task is a straggler when it ran this many times longer than the median task.
const STRAGGLER_FACTOR: u64 = 4;

fn histogram() -> Histogram<u64> {
    // Three significant figures, auto-resizing: exact to 0.1 % over any range of durations.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// A running fold over task records. Add records with [`Accumulator::add`], combine the folds
/// of several workers with [`Accumulator::merge`], and turn the result into a [`Report`].
#[derive(Clone, Debug)]
pub struct Accumulator {
    tasks: u64,
    items: u64,
    outcomes: BTreeMap<Outcome, u64>,
    first_submitted_ns: u64,
    last_finished_ns: u64,
    busy_ns: u128,
    cpu_user_ns: u128,
    cpu_sys_ns: u128,
    /// Records whose run-queue wait was measured: Σ wall, Σ cpu, Σ wait.
    measured_wall_ns: u128,
    measured_cpu_ns: u128,
    cpu_wait_ns: u128,
    max_rss_bytes: Option<u64>,
    duration: Histogram<u64>,
    queue_wait: Histogram<u64>,
    workers: BTreeMap<u32, WorkerTotals>,
    slowest: Vec<Straggler>,
}

#[derive(Clone, Copy, Debug, Default)]
struct WorkerTotals {
    busy_ns: u128,
    last_finished_ns: u64,
}

impl Default for Accumulator {
    fn default() -> Self {
        Accumulator {
            tasks: 0,
            items: 0,
            outcomes: BTreeMap::new(),
            first_submitted_ns: u64::MAX,
            last_finished_ns: 0,
            busy_ns: 0,
            cpu_user_ns: 0,
            cpu_sys_ns: 0,
            measured_wall_ns: 0,
            measured_cpu_ns: 0,
            cpu_wait_ns: 0,
            max_rss_bytes: None,
            duration: histogram(),
            queue_wait: histogram(),
            workers: BTreeMap::new(),
            slowest: Vec::new(),
        }
    }
}

impl Accumulator {
    /// Folds one record in.
    pub fn add(&mut self, r: &TaskRecord) {
        self.tasks += 1;
        *self.outcomes.entry(r.outcome).or_default() += 1;
        self.first_submitted_ns = self.first_submitted_ns.min(r.submitted_ns);
        self.last_finished_ns = self.last_finished_ns.max(r.finished_ns);
        if !r.ran() {
            return;
        }
        let items = u64::from(r.items.max(1));
        self.items += items;
        let wall = r.wall_ns();
        self.busy_ns += u128::from(wall);
        self.cpu_user_ns += u128::from(r.cpu_user_ns);
        self.cpu_sys_ns += u128::from(r.cpu_sys_ns);
        if let Some(wait) = r.cpu_wait_ns {
            self.measured_wall_ns += u128::from(wall);
            self.measured_cpu_ns += u128::from(r.cpu_ns());
            self.cpu_wait_ns += u128::from(wait);
        }
        if let Some(rss) = r.max_rss_bytes {
            self.max_rss_bytes = Some(self.max_rss_bytes.map_or(rss, |m| m.max(rss)));
        }
        // A batch stands for `items` tasks of its mean duration. The histograms auto-resize, so
        // recording cannot fail (a saturating record would clamp instead of resizing).
        let _ = self.duration.record_n(wall / items, items);
        let _ = self.queue_wait.record_n(r.queue_wait_ns(), items);
        let w = self.workers.entry(r.worker).or_default();
        w.busy_ns += u128::from(wall);
        w.last_finished_ns = w.last_finished_ns.max(r.finished_ns);
        if r.items <= 1 {
            self.keep_if_slow(Straggler {
                id: r.id,
                input: r.input.clone(),
                duration_ns: wall,
            });
        }
    }

    fn keep_if_slow(&mut self, s: Straggler) {
        if self.slowest.len() < SLOWEST_KEPT {
            self.slowest.push(s);
        } else if let Some(min) = self.slowest.iter_mut().min_by_key(|s| s.duration_ns) {
            if s.duration_ns > min.duration_ns {
                *min = s;
            }
        }
    }

    /// Combines another fold into this one (records seen by either).
    pub fn merge(&mut self, other: &Accumulator) {
        self.tasks += other.tasks;
        self.items += other.items;
        for (o, n) in &other.outcomes {
            *self.outcomes.entry(*o).or_default() += n;
        }
        self.first_submitted_ns = self.first_submitted_ns.min(other.first_submitted_ns);
        self.last_finished_ns = self.last_finished_ns.max(other.last_finished_ns);
        self.busy_ns += other.busy_ns;
        self.cpu_user_ns += other.cpu_user_ns;
        self.cpu_sys_ns += other.cpu_sys_ns;
        self.measured_wall_ns += other.measured_wall_ns;
        self.measured_cpu_ns += other.measured_cpu_ns;
        self.cpu_wait_ns += other.cpu_wait_ns;
        self.max_rss_bytes = match (self.max_rss_bytes, other.max_rss_bytes) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // Both histograms auto-resize, so adding cannot fail for range reasons.
        let _ = self.duration.add(&other.duration);
        let _ = self.queue_wait.add(&other.queue_wait);
        for (w, t) in &other.workers {
            let mine = self.workers.entry(*w).or_default();
            mine.busy_ns += t.busy_ns;
            mine.last_finished_ns = mine.last_finished_ns.max(t.last_finished_ns);
        }
        for s in &other.slowest {
            self.keep_if_slow(s.clone());
        }
    }

    /// Records folded so far.
    pub fn tasks(&self) -> u64 {
        self.tasks
    }
}

/// Duration percentiles, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
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

/// A task that ran much longer than the median.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Straggler {
    /// The task.
    pub id: TaskId,
    /// Its input's display form.
    pub input: String,
    /// How long it ran.
    pub duration_ns: u64,
}

/// Worker capacity over the run, for utilisation: `(at_ns, workers)` steps, oldest first.
pub(crate) type CapacitySteps = [(u64, usize)];

/// Worker-nanoseconds available between `from` and `to` given capacity steps.
fn capacity_ns(steps: &CapacitySteps, from: u64, to: u64) -> u128 {
    let mut total = 0u128;
    for (i, &(at, workers)) in steps.iter().enumerate() {
        let end = steps.get(i + 1).map_or(to, |&(next, _)| next).min(to);
        let start = at.max(from);
        if end > start {
            total += u128::from(end - start) * workers as u128;
        }
    }
    total
}

/// What a run did, in numbers, with findings a person can act on.
///
/// Definitions: wall = first submission to last finish; utilisation = busy /
/// (workers × wall); speedup = Σ task wall / run wall; efficiency = speedup / workers;
/// CPU ratio = Σ CPU / Σ task wall (≈1 CPU-bound, ≈0 I/O-bound).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Σ task wall / run wall.
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
        let speedup = ratio(busy_ns, u128::from(wall_ns));
        let efficiency = if workers > 0.0 {
            speedup / workers
        } else {
            0.0
        };
        let cpu_ratio = (busy_ns > 0).then(|| ratio(cpu_ns, busy_ns));
        let measured = acc.measured_wall_ns > 0;
        let cpu_wait_ns = measured.then(|| u64::try_from(acc.cpu_wait_ns).unwrap_or(u64::MAX));
        let cpu_demand = measured
            .then(|| ratio(acc.measured_cpu_ns + acc.cpu_wait_ns, acc.measured_wall_ns).min(1.0));
        // Share of the machine's CPU the run used, over the cores the workers could occupy.
        let usable_cores = (workers.ceil() as usize).clamp(1, run.cores.max(1));
        let saturation = ratio(cpu_ns, u128::from(wall_ns) * usable_cores as u128);
        let workload = classify(cpu_demand.or(cpu_ratio), saturation, workers, run.cores);
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
            run,
        };
        report.findings = crate::monitor::findings::findings(&report, saturation);
        report
    }
}

/// Something worth knowing about a run, with the numbers that show it and what to try.
/// `Display` gives the sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// Tasks kept the CPU busy; more workers than cores cannot help.
    CpuBound {
        /// Σ CPU / Σ wall.
        cpu_ratio: f64,
        /// Cores available.
        cores: usize,
        /// Mean workers.
        workers: f64,
    },
    /// Tasks mostly waited; more workers would overlap the waiting.
    IoBound {
        /// Σ CPU / Σ wall.
        cpu_ratio: f64,
        /// Mean workers.
        workers: f64,
        /// Workers that would keep the cores busy: cores / cpu ratio.
        suggested_workers: usize,
    },
    /// Workers sat idle for a large share of the run.
    LowUtilisation {
        /// Busy / capacity.
        utilisation: f64,
        /// Median queue wait, ns.
        queue_wait_p50_ns: u64,
    },
    /// Some tasks ran far longer than the median.
    Stragglers {
        /// How many.
        count: usize,
        /// The slowest one's duration.
        slowest_ns: u64,
        /// The median duration.
        median_ns: u64,
    },
    /// The end of the run waited on few workers while the rest were idle.
    IdleTail {
        /// Length of the tail.
        tail_ns: u64,
        /// Tail / wall.
        share: f64,
    },
    /// Work was spread unevenly across workers.
    LoadImbalance {
        /// Busiest / mean − 1.
        imbalance: f64,
    },
    /// Tasks were ready to run but waited for a free core for a large share of their time.
    CpuStarved {
        /// Σ wait for a core / Σ task wall.
        wait_share: f64,
        /// Mean workers.
        workers: f64,
        /// Cores available.
        cores: usize,
    },
    /// Tasks so short that dispatch overhead matters.
    TinyTasks {
        /// Mean task duration.
        mean_ns: u64,
    },
    /// Some tasks did not succeed.
    Failures {
        /// Records that did not end Ok.
        failed: u64,
        /// All records.
        total: u64,
    },
    /// Fewer tasks than workers: some workers never had anything to do.
    FewerTasksThanWorkers {
        /// Tasks.
        tasks: u64,
        /// Mean workers.
        workers: f64,
    },
}

fn ms(ns: u64) -> String {
    crate::monitor::format_duration(ns)
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Finding::CpuBound { cpu_ratio, cores, workers } => {
                write!(f, "CPU-bound (cpu/wall {cpu_ratio:.2}) on {cores} cores: ")?;
                if workers > cores as f64 + 0.5 {
                    write!(f, "more than {cores} jobs cannot help; try -j {cores}")
                } else if workers + 0.5 < cores as f64 {
                    write!(f, "{workers:.0} jobs leave cores idle; try -j {cores}")
                } else {
                    write!(f, "{workers:.0} jobs match the cores, as they should")
                }
            }
            Finding::IoBound { cpu_ratio, workers, suggested_workers } => write!(
                f,
                "I/O-bound (cpu/wall {cpu_ratio:.2}): tasks mostly wait, so {workers:.0} workers leave \
                 the CPU idle; about {suggested_workers} would keep it busy (more only helps if what \
                 they wait on scales too)"
            ),
            Finding::LowUtilisation { utilisation, queue_wait_p50_ns } => write!(
                f,
                "workers were busy {:.0}% of the time (median queue wait {}): tasks arrived slower \
                 than workers could run them; feed inputs faster or use fewer workers",
                utilisation * 100.0,
                ms(queue_wait_p50_ns)
            ),
            Finding::Stragglers { count, slowest_ns, median_ns } => write!(
                f,
                "{count} straggler(s): the slowest ran {} against a median of {}; start long tasks \
                 first or split them",
                ms(slowest_ns),
                ms(median_ns)
            ),
            Finding::IdleTail { tail_ns, share } => write!(
                f,
                "idle tail: for the last {} ({:.0}% of the run) some workers had nothing left to do; \
                 put long tasks first or split them",
                ms(tail_ns),
                share * 100.0
            ),
            Finding::LoadImbalance { imbalance } => write!(
                f,
                "uneven load: the busiest worker worked {:.0}% more than the average",
                imbalance * 100.0
            ),
            Finding::CpuStarved { wait_share, workers, cores } => write!(
                f,
                "tasks waited for a free core {:.0}% of their run time: more threads wanted the CPU \
                 than its {cores} cores (other programs, or {workers:.0} workers); fewer jobs \
                 would finish as soon",
                wait_share * 100.0
            ),
            Finding::TinyTasks { mean_ns } => write!(
                f,
                "tiny tasks (mean {}): per-task overhead is a large share; give map a chunk size or \
                 do more per task",
                ms(mean_ns)
            ),
            Finding::Failures { failed, total } => {
                write!(f, "{failed} of {total} tasks did not succeed")
            }
            Finding::FewerTasksThanWorkers { tasks, workers } => write!(
                f,
                "only {tasks} task(s) for {workers:.0} workers: some workers had nothing to do"
            ),
        }
    }
}
