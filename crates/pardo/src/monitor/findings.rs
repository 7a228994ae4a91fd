//! [`Finding`]s: the sentences a report ends with, and the rules that pick them. Each rule has a
//! threshold chosen so that a finding is worth a person's attention; the finding carries the
//! measured numbers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::monitor::classify::Workload;

/// Something worth knowing about a run, with the numbers that show it and what to try.
///
/// `Display` gives the sentence as a library user reads it ("use 2 workers");
/// [`Finding::for_command_line`] gives the same sentence for the `pardo` command ("try -j 2").
///
/// ```
/// use pardo::Finding;
/// let f = Finding::CpuBound { cpu_ratio: 0.99, cores: 2, workers: 4.0, suggested_workers: 2 };
/// assert_eq!(
///     f.to_string(),
///     "CPU-bound (cpu/wall 0.99) on 2 cores: more than 2 workers cannot help; use 2 workers"
/// );
/// assert!(f.for_command_line().to_string().ends_with("try -j 2"));
/// ```
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
        /// The worker count to use: the cores, or fewer when there were fewer tasks.
        suggested_workers: usize,
    },
    /// Tasks mostly waited; more workers would overlap the waiting.
    IoBound {
        /// Σ CPU / Σ wall.
        cpu_ratio: f64,
        /// Mean workers.
        workers: f64,
        /// Workers that would keep the cores busy (cores / cpu ratio), never more than there
        /// were tasks.
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
    /// On a run over several machines, one host ran its tasks much slower than the others.
    SlowHost {
        /// Its host name.
        host: String,
        /// Tasks it ran.
        tasks: u64,
        /// Their mean duration.
        mean_ns: u64,
        /// The mean duration of the other hosts' tasks.
        others_mean_ns: u64,
    },
}

fn dur(ns: u64) -> String {
    crate::monitor::format_duration(ns)
}

/// Who reads a finding: it names the knob they have.
#[derive(Clone, Copy)]
enum Reader {
    Library,
    CommandLine,
}

impl Reader {
    /// "use 4 workers" / "try -j 4".
    fn set_to(self, n: usize) -> String {
        match self {
            Reader::Library => format!("use {n} worker{}", if n == 1 { "" } else { "s" }),
            Reader::CommandLine => format!("try -j {n}"),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Reader::Library => "workers",
            Reader::CommandLine => "jobs",
        }
    }
}

/// A [`Finding`] worded for the `pardo` command line; see [`Finding::for_command_line`].
#[derive(Debug)]
pub struct CommandLineFinding<'a>(&'a Finding);

impl fmt::Display for CommandLineFinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, Reader::CommandLine)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, Reader::Library)
    }
}

impl Finding {
    /// The same sentence, worded for the command line: `-j` instead of worker counts.
    pub fn for_command_line(&self) -> CommandLineFinding<'_> {
        CommandLineFinding(self)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, reader: Reader) -> fmt::Result {
        let unit = reader.unit();
        match *self {
            Finding::SlowHost { ref host, tasks, mean_ns, others_mean_ns } => write!(
                f,
                "slow host: {host} ran its {tasks} tasks in {} on average, {:.1}x the {} of the \
                 other hosts; look at what else runs there, or give it fewer {unit}",
                dur(mean_ns),
                mean_ns as f64 / others_mean_ns.max(1) as f64,
                dur(others_mean_ns)
            ),
            Finding::CpuBound { cpu_ratio, cores, workers, suggested_workers } => {
                write!(f, "CPU-bound (cpu/wall {cpu_ratio:.2}) on {cores} cores: ")?;
                if workers > cores as f64 + 0.5 {
                    write!(
                        f,
                        "more than {cores} {unit} cannot help; {}",
                        reader.set_to(suggested_workers)
                    )
                } else if workers + 0.5 < suggested_workers as f64 {
                    write!(
                        f,
                        "{workers:.0} {unit} leave cores idle; {}",
                        reader.set_to(suggested_workers)
                    )
                } else {
                    write!(f, "{workers:.0} {unit} match the cores, as they should")
                }
            }
            Finding::IoBound { cpu_ratio, workers, suggested_workers } => write!(
                f,
                "I/O-bound (cpu/wall {cpu_ratio:.2}): tasks mostly wait, so {workers:.0} {unit} leave \
                 the CPU idle; {} to keep it busier (more only helps if what they wait on \
                 scales too)",
                reader.set_to(suggested_workers)
            ),
            Finding::LowUtilisation { utilisation, queue_wait_p50_ns } => write!(
                f,
                "workers were busy {:.0}% of the time (median queue wait {}): tasks arrived slower \
                 than workers could run them; feed inputs faster or use fewer {unit}",
                utilisation * 100.0,
                dur(queue_wait_p50_ns)
            ),
            Finding::Stragglers { count, slowest_ns, median_ns } => write!(
                f,
                "{count} straggler(s): the slowest ran {} against a median of {}; start long tasks \
                 first or split them",
                dur(slowest_ns),
                dur(median_ns)
            ),
            Finding::IdleTail { tail_ns, share } => write!(
                f,
                "idle tail: for the last {} ({:.0}% of the run) some workers had nothing left to do; \
                 put long tasks first or split them",
                dur(tail_ns),
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
                 than its {cores} cores (other programs, or {workers:.0} {unit}); fewer {unit} \
                 would finish as soon",
                wait_share * 100.0
            ),
            Finding::TinyTasks { mean_ns } => match reader {
                Reader::Library => write!(
                    f,
                    "tiny tasks (mean {}): per-task overhead is a large share; give map a chunk \
                     size or do more per task",
                    dur(mean_ns)
                ),
                Reader::CommandLine => write!(
                    f,
                    "tiny jobs (mean {}): starting a process is a large share; give each job \
                     several inputs (-X or -n)",
                    dur(mean_ns)
                ),
            },
            Finding::Failures { failed, total } => {
                write!(f, "{failed} of {total} tasks did not succeed")
            }
            Finding::FewerTasksThanWorkers { tasks, workers } => write!(
                f,
                "only {tasks} task(s) for {workers:.0} {unit}: some had nothing to do"
            ),
        }
    }
}

/// Below this utilisation, idle workers are worth a finding.
const LOW_UTILISATION: f64 = 0.6;
/// An idle tail longer than this share of the run is worth a finding.
const IDLE_TAIL_SHARE: f64 = 0.2;
/// Busiest worker this much above the mean is worth a finding.
const IMBALANCE: f64 = 0.5;
/// Waiting for a core this share of task time or more is worth a finding.
const CPU_STARVED_SHARE: f64 = 0.2;
/// Tasks shorter than this on average are "tiny".
const TINY_TASK_NS: u64 = 20_000;
/// A host whose tasks took this many times the other hosts' mean is slow.
const SLOW_HOST_FACTOR: f64 = 1.5;
/// Hosts that ran fewer tasks than this are left out of the comparison: too few to tell.
const SLOW_HOST_MIN_TASKS: u64 = 10;

/// The numbers the rules look at, taken from a report (kept apart so that the rules do not
/// depend on the report type, which holds their results).
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    pub(crate) tasks: u64,
    pub(crate) items: u64,
    pub(crate) not_ok: u64,
    pub(crate) cores: usize,
    pub(crate) workers: f64,
    pub(crate) workload: Workload,
    pub(crate) cpu_ratio: Option<f64>,
    pub(crate) cpu_wait_ns: Option<u64>,
    pub(crate) busy_ns: u64,
    pub(crate) wall_ns: u64,
    pub(crate) utilisation: f64,
    pub(crate) queue_wait_p50_ns: u64,
    pub(crate) duration_p50_ns: u64,
    pub(crate) duration_mean_ns: u64,
    pub(crate) stragglers: usize,
    pub(crate) slowest_ns: Option<u64>,
    pub(crate) idle_tail_ns: u64,
    pub(crate) load_imbalance: f64,
    /// Per host: name, tasks, mean task duration (ns).
    pub(crate) hosts: Vec<(String, u64, u64)>,
}

pub(crate) fn findings(r: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    if r.tasks == 0 {
        return out;
    }
    if r.not_ok > 0 {
        out.push(Finding::Failures {
            failed: r.not_ok,
            total: r.tasks,
        });
    }
    let cores = r.cores.max(1);
    // Advice is for running the same tasks again: never more workers than there were tasks.
    let tasks = usize::try_from(r.items.max(1)).unwrap_or(usize::MAX);
    match (r.workload, r.cpu_ratio) {
        (Workload::CpuBound, Some(cpu_ratio)) => {
            out.push(Finding::CpuBound {
                cpu_ratio,
                cores,
                workers: r.workers,
                suggested_workers: cores.min(tasks),
            });
        }
        (Workload::IoBound, Some(cpu_ratio)) => {
            let suggested_workers = suggested_io_workers(cpu_ratio, cores).min(tasks);
            if (suggested_workers as f64) > r.workers * 1.5 {
                out.push(Finding::IoBound {
                    cpu_ratio,
                    workers: r.workers,
                    suggested_workers,
                });
            }
        }
        _ => {}
    }
    if let (Some(wait), true) = (r.cpu_wait_ns, r.busy_ns > 0) {
        let wait_share = wait as f64 / r.busy_ns as f64;
        if wait_share >= CPU_STARVED_SHARE {
            out.push(Finding::CpuStarved {
                wait_share,
                workers: r.workers,
                cores,
            });
        }
    }
    if (r.tasks as f64) < r.workers.floor() {
        out.push(Finding::FewerTasksThanWorkers {
            tasks: r.tasks,
            workers: r.workers,
        });
    } else if r.utilisation < LOW_UTILISATION && r.wall_ns > 0 {
        out.push(Finding::LowUtilisation {
            utilisation: r.utilisation,
            queue_wait_p50_ns: r.queue_wait_p50_ns,
        });
    }
    if let Some(slowest_ns) = r.slowest_ns {
        out.push(Finding::Stragglers {
            count: r.stragglers,
            slowest_ns,
            median_ns: r.duration_p50_ns,
        });
    }
    if r.wall_ns > 0 && r.tasks as f64 >= r.workers {
        let share = r.idle_tail_ns as f64 / r.wall_ns as f64;
        if share > IDLE_TAIL_SHARE {
            out.push(Finding::IdleTail {
                tail_ns: r.idle_tail_ns,
                share,
            });
        }
    }
    if r.load_imbalance > IMBALANCE && r.tasks as f64 >= 4.0 * r.workers {
        out.push(Finding::LoadImbalance {
            imbalance: r.load_imbalance,
        });
    }
    if r.items == r.tasks && r.duration_mean_ns > 0 && r.duration_mean_ns < TINY_TASK_NS {
        out.push(Finding::TinyTasks {
            mean_ns: r.duration_mean_ns,
        });
    }
    out.extend(slow_host(&r.hosts));
    out
}

/// The host whose mean task time is furthest above the other hosts' (tasks pooled), when it
/// is at least [`SLOW_HOST_FACTOR`] above; hosts with fewer than [`SLOW_HOST_MIN_TASKS`]
/// tasks take no part. `hosts`: name, tasks, mean task duration (ns).
pub(crate) fn slow_host(hosts: &[(String, u64, u64)]) -> Option<Finding> {
    let counted: Vec<&(String, u64, u64)> = hosts
        .iter()
        .filter(|(_, tasks, _)| *tasks >= SLOW_HOST_MIN_TASKS)
        .collect();
    let total = |skip: usize| -> (u128, u128) {
        counted.iter().enumerate().filter(|(i, _)| *i != skip).fold(
            (0, 0),
            |(n, busy), (_, (_, tasks, mean))| {
                (
                    n + u128::from(*tasks),
                    busy + u128::from(*tasks) * u128::from(*mean),
                )
            },
        )
    };
    counted
        .iter()
        .enumerate()
        .filter_map(|(i, (host, tasks, mean_ns))| {
            let (n, busy) = total(i);
            let others_mean_ns = u64::try_from(busy / n.max(1)).unwrap_or(u64::MAX);
            (n > 0 && *mean_ns as f64 >= SLOW_HOST_FACTOR * others_mean_ns.max(1) as f64).then(
                || Finding::SlowHost {
                    host: host.clone(),
                    tasks: *tasks,
                    mean_ns: *mean_ns,
                    others_mean_ns,
                },
            )
        })
        .max_by(|a, b| ratio(a).total_cmp(&ratio(b)))
}

/// A slow host's mean over the others'.
fn ratio(f: &Finding) -> f64 {
    match f {
        Finding::SlowHost {
            mean_ns,
            others_mean_ns,
            ..
        } => *mean_ns as f64 / (*others_mean_ns).max(1) as f64,
        _ => 0.0,
    }
}

/// Workers needed to keep `cores` busy when each task uses the CPU `cpu_ratio` of its time
/// (Little's law: each worker contributes `cpu_ratio` of a core).
/// The result is at least `cores` and at most 200 per core (a CPU ratio under 0.5 % is noise).
pub(crate) fn suggested_io_workers(cpu_ratio: f64, cores: usize) -> usize {
    let ratio = cpu_ratio.max(0.005);
    let n = (cores as f64 / ratio).ceil();
    // Saturating float-to-int conversion: a huge core count cannot overflow or panic.
    (n as usize).max(cores).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::record::{RunRecord, TaskRecord};
    use crate::monitor::Report;
    use crate::task::{Outcome, TaskId};

    fn run(workers: usize, cores: usize) -> RunRecord {
        let mut r = RunRecord::now("test", workers);
        r.cores = cores;
        r
    }

    /// `n` tasks of `wall` ns each using `cpu` ns, laid back to back over `workers` workers.
    fn tasks(n: u64, workers: u32, wall: u64, cpu: u64) -> Vec<TaskRecord> {
        (0..n)
            .map(|i| {
                let w = (i % u64::from(workers)) as u32;
                let start = (i / u64::from(workers)) * wall;
                let mut r = TaskRecord::new(TaskId(i + 1), w + 1, 0, start, start + wall);
                r.cpu_user_ns = cpu;
                r
            })
            .collect()
    }

    #[test]
    fn cpu_bound_on_too_many_workers_says_use_the_cores() {
        let report = Report::from_records(run(4, 2), &tasks(40, 4, 1_000_000, 990_000));
        let f = report
            .findings
            .iter()
            .find(|f| matches!(f, Finding::CpuBound { .. }));
        let text = f.expect("a CPU-bound finding").to_string();
        assert_eq!(
            text,
            "CPU-bound (cpu/wall 0.99) on 2 cores: more than 2 workers cannot help; use 2 workers"
        );
        assert_eq!(
            f.expect("a CPU-bound finding")
                .for_command_line()
                .to_string(),
            "CPU-bound (cpu/wall 0.99) on 2 cores: more than 2 jobs cannot help; try -j 2"
        );
    }

    #[test]
    fn io_bound_suggests_workers_from_littles_law() {
        let report = Report::from_records(run(2, 2), &tasks(400, 2, 10_000_000, 100_000));
        assert_eq!(report.workload, Workload::IoBound);
        let f = report.findings.iter().find_map(|f| match f {
            Finding::IoBound {
                suggested_workers, ..
            } => Some(*suggested_workers),
            _ => None,
        });
        // cpu ratio 0.01 on 2 cores: 200 workers keep both cores busy.
        assert_eq!(f, Some(200));
    }

    #[test]
    fn a_straggler_is_named_with_its_numbers() {
        let mut recs = tasks(20, 2, 1_000_000, 0);
        recs[5].finished_ns = recs[5].started_ns + 50_000_000;
        let report = Report::from_records(run(2, 2), &recs);
        assert_eq!(report.stragglers.len(), 1);
        assert_eq!(report.stragglers[0].id, TaskId(6));
        assert!(report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Stragglers { count: 1, .. })));
        assert!(report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::IdleTail { .. })));
    }

    #[test]
    fn waiting_for_a_core_still_counts_as_cpu_bound_and_is_reported() {
        // Each task ran 1 ms, half on the CPU and half waiting for a core.
        let mut recs = tasks(20, 4, 1_000_000, 500_000);
        for r in &mut recs {
            r.cpu_wait_ns = Some(500_000);
        }
        let report = Report::from_records(run(4, 2), &recs);
        assert_eq!(report.cpu_ratio, Some(0.5));
        assert_eq!(report.cpu_demand, Some(1.0));
        assert_eq!(report.workload, Workload::CpuBound);
        let starved = report
            .findings
            .iter()
            .find(|f| matches!(f, Finding::CpuStarved { .. }));
        assert_eq!(
            starved.map(ToString::to_string).as_deref(),
            Some(
                "tasks waited for a free core 50% of their run time: more threads wanted the CPU \
                 than its 2 cores (other programs, or 4 workers); fewer workers would finish as \
                 soon"
            )
        );
    }

    #[test]
    fn failures_are_counted() {
        let mut recs = tasks(10, 2, 1_000, 0);
        recs[0].outcome = Outcome::Panicked;
        recs[1].outcome = Outcome::Cancelled;
        let report = Report::from_records(run(2, 2), &recs);
        assert!(report.findings.contains(&Finding::Failures {
            failed: 2,
            total: 10
        }));
        assert_eq!(report.outcomes.get(&Outcome::Panicked), Some(&1));
    }

    fn host(name: &str, tasks: u64, mean_ns: u64) -> (String, u64, u64) {
        (name.to_string(), tasks, mean_ns)
    }

    #[test]
    fn a_host_much_slower_than_the_others_is_named() {
        // b's tasks took 3 ms against 1 ms on a and c (pooled: 1 ms).
        let hosts = [
            host("a", 100, 1_000_000),
            host("b", 50, 3_000_000),
            host("c", 100, 1_000_000),
        ];
        let f = slow_host(&hosts).expect("a slow host");
        assert_eq!(
            f,
            Finding::SlowHost {
                host: "b".into(),
                tasks: 50,
                mean_ns: 3_000_000,
                others_mean_ns: 1_000_000,
            }
        );
        assert_eq!(
            f.for_command_line().to_string(),
            "slow host: b ran its 50 tasks in 3.00 ms on average, 3.0x the 1.00 ms of the other \
             hosts; look at what else runs there, or give it fewer jobs"
        );
    }

    #[test]
    fn hosts_within_the_factor_or_with_few_tasks_are_not_named() {
        // 1.4x is within the factor.
        assert_eq!(
            slow_host(&[host("a", 100, 1_000_000), host("b", 100, 1_400_000)]),
            None
        );
        // 9 tasks are too few to tell; with it left out, no other host is left to compare.
        assert_eq!(
            slow_host(&[host("a", 100, 1_000_000), host("b", 9, 9_000_000)]),
            None
        );
        // One host: nothing to compare with.
        assert_eq!(slow_host(&[host("a", 100, 1_000_000)]), None);
        assert_eq!(slow_host(&[]), None);
    }

    #[test]
    fn the_slow_host_finding_comes_from_the_records_hosts() {
        let mut recs = tasks(40, 2, 1_000_000, 0);
        for r in &mut recs {
            let slow = r.worker == 2;
            r.host = Some(if slow { "slow" } else { "fast" }.into());
            if slow {
                r.finished_ns = r.started_ns + 2_000_000;
            }
        }
        let report = Report::from_records(run(2, 2), &recs);
        assert!(
            report.findings.iter().any(|f| matches!(
                f,
                Finding::SlowHost { host, tasks: 20, mean_ns: 2_000_000, others_mean_ns: 1_000_000 }
                    if host == "slow"
            )),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn evenly_spread_work_has_no_complaints_but_the_verdict() {
        let report = Report::from_records(run(2, 2), &tasks(100, 2, 1_000_000, 1_000_000));
        assert_eq!(report.utilisation, 1.0);
        assert_eq!(report.load_imbalance, 0.0);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(matches!(report.findings[0], Finding::CpuBound { .. }));
    }
}
