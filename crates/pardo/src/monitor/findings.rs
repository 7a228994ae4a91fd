//! The rules that turn a report's numbers into [`Finding`]s. Each rule has a threshold chosen so
//! that a finding is worth a person's attention; the finding carries the measured numbers.

use crate::monitor::summary::{Finding, Report};
use crate::tune::classify::Workload;

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

pub(crate) fn findings(r: &Report, _saturation: f64) -> Vec<Finding> {
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
    let cores = r.run.cores.max(1);
    match (r.workload, r.cpu_ratio) {
        (Workload::CpuBound, Some(cpu_ratio)) => {
            out.push(Finding::CpuBound {
                cpu_ratio,
                cores,
                workers: r.workers,
            });
        }
        (Workload::IoBound, Some(cpu_ratio)) => {
            let suggested_workers = suggested_io_workers(cpu_ratio, cores);
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
            queue_wait_p50_ns: r.queue_wait.p50_ns,
        });
    }
    if let Some(slowest) = r.stragglers.first() {
        out.push(Finding::Stragglers {
            count: r.stragglers.len(),
            slowest_ns: slowest.duration_ns,
            median_ns: r.duration.p50_ns,
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
    if r.items == r.tasks && r.duration.mean_ns > 0 && r.duration.mean_ns < TINY_TASK_NS {
        out.push(Finding::TinyTasks {
            mean_ns: r.duration.mean_ns,
        });
    }
    out
}

/// Workers needed to keep `cores` busy when each task uses the CPU `cpu_ratio` of its time
/// (Little's law: each worker contributes `cpu_ratio` of a core).
pub(crate) fn suggested_io_workers(cpu_ratio: f64, cores: usize) -> usize {
    let ratio = cpu_ratio.max(0.005);
    ((cores as f64 / ratio).ceil() as usize).clamp(cores, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::record::{RunRecord, TaskRecord};
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
            "CPU-bound (cpu/wall 0.99) on 2 cores: more than 2 jobs cannot help; try -j 2"
        );
    }

    #[test]
    fn io_bound_suggests_workers_from_littles_law() {
        let report = Report::from_records(run(2, 2), &tasks(40, 2, 10_000_000, 100_000));
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
                 than its 2 cores (other programs, or 4 workers); fewer jobs would finish as soon"
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

    #[test]
    fn evenly_spread_work_has_no_complaints_but_the_verdict() {
        let report = Report::from_records(run(2, 2), &tasks(100, 2, 1_000_000, 1_000_000));
        assert_eq!(report.utilisation, 1.0);
        assert_eq!(report.load_imbalance, 0.0);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(matches!(report.findings[0], Finding::CpuBound { .. }));
    }
}
