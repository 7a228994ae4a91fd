//! The fold over task records that every report is computed from.
//!
//! A live pool folds each record as a worker writes it (each worker its own [`Accumulator`]),
//! and a report merges the workers' folds; records read back or made up in a test fold the same
//! way. Memory is constant in the number of tasks: percentiles come from HDR histograms,
//! stragglers from a bounded list of the slowest tasks.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::monitor::record::TaskRecord;
use crate::task::{Outcome, TaskId};

/// How many of the slowest tasks a fold keeps to name stragglers.
const SLOWEST_KEPT: usize = 8;
/// A task is a straggler when it ran this many times longer than the median task.
pub(crate) const STRAGGLER_FACTOR: u64 = 4;

fn histogram() -> Histogram<u64> {
    // Two significant figures, auto-resizing: within 1 % over any range of durations. Every
    // worker keeps two of these, and at three figures a worker's pair grew to 256 KiB once a
    // task took 20 ms: a pool of 200 threads then spent most of its start-up in page faults
    // (0.45 ms of system time per worker). Two figures cost an eighth of that.
    Histogram::new(2).expect("2 significant figures is a valid histogram precision")
}

/// A running fold over task records. Add records with [`Accumulator::add`], combine the folds
/// of several workers with [`Accumulator::merge`], and turn the result into a
/// [`Report`](crate::monitor::Report).
#[derive(Clone, Debug)]
pub(crate) struct Accumulator {
    pub(crate) tasks: u64,
    pub(crate) items: u64,
    pub(crate) outcomes: BTreeMap<Outcome, u64>,
    pub(crate) first_submitted_ns: u64,
    pub(crate) last_finished_ns: u64,
    pub(crate) busy_ns: u128,
    pub(crate) cpu_user_ns: u128,
    pub(crate) cpu_sys_ns: u128,
    /// Records whose run-queue wait was measured: Σ wall, Σ cpu, Σ wait.
    pub(crate) measured_wall_ns: u128,
    pub(crate) measured_cpu_ns: u128,
    pub(crate) cpu_wait_ns: u128,
    pub(crate) max_rss_bytes: Option<u64>,
    pub(crate) duration: Histogram<u64>,
    pub(crate) queue_wait: Histogram<u64>,
    pub(crate) workers: BTreeMap<u32, WorkerTotals>,
    /// Per host, for records that name one (a run over several machines).
    pub(crate) hosts: BTreeMap<String, HostTotals>,
    pub(crate) slowest: Vec<Straggler>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HostTotals {
    pub(crate) tasks: u64,
    pub(crate) busy_ns: u128,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WorkerTotals {
    pub(crate) busy_ns: u128,
    pub(crate) last_finished_ns: u64,
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
            hosts: BTreeMap::new(),
            slowest: Vec::new(),
        }
    }
}

impl Accumulator {
    /// Folds one record in.
    pub(crate) fn add(&mut self, r: &TaskRecord) {
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
        if let Some(host) = &r.host {
            let h = match self.hosts.get_mut(host) {
                Some(h) => h,
                None => self.hosts.entry(host.clone()).or_default(),
            };
            h.tasks += 1;
            h.busy_ns += u128::from(wall);
        }
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
    pub(crate) fn merge(&mut self, other: &Accumulator) {
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
        for (host, t) in &other.hosts {
            let mine = self.hosts.entry(host.clone()).or_default();
            mine.tasks += t.tasks;
            mine.busy_ns += t.busy_ns;
        }
        for s in &other.slowest {
            self.keep_if_slow(s.clone());
        }
    }
}

/// A task that ran much longer than the median.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
pub(crate) fn capacity_ns(steps: &CapacitySteps, from: u64, to: u64) -> u128 {
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
