//! The concurrency controller: samples of a running executor in, a target worker count out.
//!
//! One [`Controller`] steers every executor through [`Controller::observe`]. It knows nothing
//! about pools: the caller takes a [`ControlSample`] about every 100 ms, hands it over and applies
//! the [`Decision`]'s target (`set_workers`, job slots, the async pool's bound). Time is an input
//! (`ControlSample::elapsed`), so the controller is deterministic and tested against the
//! simulated workloads of [`crate::tune::sim`].
//!
//! Two modes share the guards (bounds, tasks left, memory, load, machine CPU):
//! - [`Mode::Throughput`] (thread, process and command executors): start at the core count, jump
//!   past `cores ÷ CPU demand` when tasks mostly wait, then climb on measured throughput, keep a
//!   move only when throughput rose by more than the measured noise, and step back when it does
//!   not. Fewer workers win a tie.
//! - [`Mode::Latency`] (the async pool): latency above the no-load latency means requests queue
//!   on the remote side, so the bound comes down to what the remote side serves without queueing
//!   (a Vegas-like queue estimate); errors cut the bound multiplicatively (AIMD).
//!
//! The states, thresholds and why they are what they are: `src/tune/README.md`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the controller is told about the run at one moment.
///
/// Counters are cumulative since the run began; the controller takes differences itself, so a
/// missed sample costs nothing. Fields that could not be measured stay `None`.
///
/// ```
/// use std::time::Duration;
/// use pardo::tune::controller::ControlSample;
///
/// let mut s = ControlSample::default();
/// s.elapsed = Duration::from_millis(100);
/// s.completions = 12;
/// s.tasks_left = Some(88);
/// assert_eq!(s.running, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ControlSample {
    /// Time since the run began, from the caller's clock.
    pub elapsed: Duration,
    /// Tasks finished since the run began (any outcome).
    pub completions: u64,
    /// Tasks not finished yet, running ones included; `None` when unknown (a stream).
    pub tasks_left: Option<u64>,
    /// Tasks running now.
    pub running: u64,
    /// Tasks queued and not started.
    pub queued: u64,
    /// CPU time used by finished tasks.
    pub task_cpu: Duration,
    /// Time finished tasks were ready to run but waited for a core, where measured.
    pub task_cpu_wait: Option<Duration>,
    /// Wall time of finished tasks.
    pub task_wall: Duration,
    /// Fraction of the machine's CPU time that was busy since the previous sample, 0 to 1.
    pub machine_busy: Option<f64>,
    /// Memory available (`MemAvailable`), in bytes.
    pub mem_available_bytes: Option<u64>,
    /// One-minute load average.
    pub load_avg: Option<f64>,
    /// Threads on the machine runnable at the sample (on a core or waiting for one), the
    /// sampling thread included.
    pub runnable: Option<u64>,
    /// Tasks that ended in an error since the run began.
    pub errors: u64,
    /// Mean latency of the tasks that finished since the previous sample.
    pub mean_latency: Option<Duration>,
}

impl ControlSample {
    /// Copies a machine sample's figures (CPU busy, memory available, load) into this one.
    pub fn with_machine(mut self, m: &crate::monitor::sampler::MachineSample) -> Self {
        self.machine_busy = m.busy;
        self.mem_available_bytes = m.mem_available_bytes;
        self.load_avg = m.load_avg;
        self.runnable = m.runnable;
        self
    }
}

/// Which signal the controller steers by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Climb on measured throughput (thread pool, process pool, commands).
    Throughput,
    /// Keep latency near its no-load value and back off on errors (async pool).
    Latency,
}

/// Settings of a [`Controller`]. Build with [`ControllerConfig::new`], then change fields.
///
/// ```
/// use pardo::tune::controller::{ControllerConfig, Mode};
/// let mut cfg = ControllerConfig::new(4, 256);
/// cfg.mode = Mode::Latency;
/// cfg.memory_floor_bytes = Some(512 << 20);
/// assert_eq!(cfg.min, 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ControllerConfig {
    /// Fewest workers; values below 1 count as 1.
    pub min: usize,
    /// Most workers (`--max-jobs`, `max_workers`); values below `min` count as `min`.
    pub max: usize,
    /// Cores this run may use (cgroup-aware); where the count starts.
    pub cores: usize,
    /// Which signal to steer by.
    pub mode: Mode,
    /// Machine CPU busy fraction at or above which no worker is added.
    pub busy_ceiling: f64,
    /// Memory available under which workers are removed; none when `None`.
    pub memory_floor_bytes: Option<u64>,
    /// Load average per core above which the run queue counts as overloaded.
    pub overload_per_core: f64,
    /// Completions a measurement window needs before it is judged.
    pub window_completions: u64,
    /// Shortest measurement window.
    pub min_window: Duration,
    /// Longest measurement window: judged then even with few completions, so a collapse of
    /// throughput is noticed.
    pub max_window: Duration,
    /// Completions after which the first CPU-demand reading may jump the count, before a full
    /// window.
    pub jump_completions: u64,
    /// Smallest relative throughput gain that counts, whatever the measured noise.
    pub min_gain: f64,
    /// Steady windows after which the throughput mode probes around its count again.
    pub probe_every: u32,
    /// Least time between two cuts for memory or load, so a slow signal is not cut on twice.
    pub backoff_interval: Duration,
}

impl ControllerConfig {
    /// Defaults for a run on `cores` cores with at most `max` workers.
    pub fn new(cores: usize, max: usize) -> Self {
        ControllerConfig {
            min: 1,
            max,
            cores,
            mode: Mode::Throughput,
            busy_ceiling: 0.95,
            memory_floor_bytes: None,
            overload_per_core: 2.0,
            window_completions: 16,
            min_window: Duration::from_millis(500),
            max_window: Duration::from_secs(10),
            jump_completions: 4,
            min_gain: 0.05,
            probe_every: 30,
            backoff_interval: Duration::from_secs(1),
        }
    }
}

/// Why the controller chose its target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum Reason {
    /// The run began at the core count.
    Start {
        /// Cores the run may use.
        cores: usize,
    },
    /// Tasks mostly wait, so more of them fit on the cores.
    JumpForWaiting {
        /// CPU demand of the tasks: their CPU time over their wall time less the wait for a
        /// core (what they would use of a core that is always free).
        cpu_ratio: f64,
    },
    /// Before any task finished: every worker busy, and the cores idle, so the tasks wait.
    IdleCores {
        /// Threads wanting a core at the sample, the sampler left out.
        wanting: u64,
        /// Tasks running.
        running: u64,
    },
    /// Tasks now want the CPU, so the count came down toward the cores.
    JumpForCpu {
        /// CPU demand of the tasks.
        cpu_ratio: f64,
    },
    /// Throughput rose with the last move; trying further.
    Climb {
        /// Relative throughput gain of the last move (0.2 = 20 %).
        gain: f64,
    },
    /// Fewer workers gave the same throughput.
    Fewer {
        /// Relative throughput lost (within the noise).
        loss: f64,
    },
    /// Trying another count to see how throughput answers.
    Probe,
    /// The last move did not pay; back to the best count found.
    StepBack {
        /// Relative throughput change of the move that was undone.
        change: f64,
    },
    /// Nothing to change.
    Hold,
    /// More workers were wanted but the machine's CPU is full.
    HoldMachineBusy {
        /// Machine CPU busy fraction.
        busy: f64,
    },
    /// Memory available is under the floor.
    MemoryFloor {
        /// Memory available, in bytes.
        available_bytes: u64,
    },
    /// The run queue is overloaded.
    Overloaded {
        /// Load average per core.
        load_per_core: f64,
    },
    /// No more workers than tasks left.
    CappedByTasksLeft {
        /// Tasks left.
        left: u64,
    },
    /// Latency rose above its no-load value: the other side is queueing.
    LatencyRising {
        /// Latency over no-load latency.
        ratio: f64,
    },
    /// Latency stays near its no-load value: room for more in flight.
    LatencySteady,
    /// Tasks failed, so the bound was cut.
    ErrorBackoff {
        /// Errors in the window.
        errors: u64,
    },
    /// Throughput at a steady count changed a lot: measuring again.
    WorkloadChanged {
        /// Relative change of throughput.
        change: f64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::Start { cores } => write!(f, "started at the core count ({cores})"),
            Reason::JumpForWaiting { cpu_ratio } => {
                write!(
                    f,
                    "tasks mostly wait (cpu/wall {cpu_ratio:.2}), so more fit"
                )
            }
            Reason::IdleCores { wanting, running } => write!(
                f,
                "{running} tasks running, {wanting} threads wanting a core: tasks wait, so more fit"
            ),
            Reason::JumpForCpu { cpu_ratio } => {
                write!(f, "tasks now use the CPU (cpu/wall {cpu_ratio:.2})")
            }
            Reason::Climb { gain } => write!(f, "throughput rose {:.0} %", gain * 100.0),
            Reason::Fewer { loss } => write!(
                f,
                "fewer workers kept throughput (within {:.0} %)",
                loss * 100.0
            ),
            Reason::Probe => f.write_str("probing how throughput answers"),
            Reason::StepBack { change } => write!(
                f,
                "throughput did not rise ({:+.0} %), stepped back",
                change * 100.0
            ),
            Reason::Hold => f.write_str("steady"),
            Reason::HoldMachineBusy { busy } => {
                write!(f, "machine CPU {:.0} % busy, no more workers", busy * 100.0)
            }
            Reason::MemoryFloor { available_bytes } => write!(
                f,
                "memory available {} MiB is under the floor",
                available_bytes >> 20
            ),
            Reason::Overloaded { load_per_core } => {
                write!(f, "run queue overloaded ({load_per_core:.1} per core)")
            }
            Reason::CappedByTasksLeft { left } => write!(f, "only {left} tasks left"),
            Reason::LatencyRising { ratio } => {
                write!(
                    f,
                    "latency {ratio:.1}× its no-load value, the other side queues"
                )
            }
            Reason::LatencySteady => f.write_str("latency near its no-load value, adding more"),
            Reason::ErrorBackoff { errors } => write!(f, "{errors} errors, backed off"),
            Reason::WorkloadChanged { change } => {
                write!(
                    f,
                    "throughput changed {:+.0} %, measuring again",
                    change * 100.0
                )
            }
        }
    }
}

/// What to do after a sample: the target worker count and why.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// Workers to run at, within `[min, max]`.
    pub target: usize,
    /// Why.
    pub reason: Reason,
    /// True when `target` differs from the previous one.
    pub changed: bool,
}

/// One change of the target, as the run's report keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// When, in ns since the run began.
    pub at_ns: u64,
    /// Target before (0 for the start).
    pub from: usize,
    /// Target after.
    pub to: usize,
    /// Why.
    pub reason: Reason,
}

/// The concurrency over time in one short line, for `--stats`: the first count and those held
/// for at least `min_hold` (brief probes left out), then why the count held longest was chosen.
/// The run's tail, where the count follows the tasks left down, says nothing of what was chosen
/// and is left out too (a run that held its first count to the end says just that). When no
/// later count was held that long, the last one stands for them.
///
/// ```
/// use std::time::Duration;
/// use pardo::tune::controller::{timeline, ControlSample, Controller, ControllerConfig};
///
/// let mut c = Controller::new(ControllerConfig::new(2, 64));
/// c.observe(&ControlSample::default());
/// let mut s = ControlSample::default();
/// s.elapsed = Duration::from_secs(1);
/// s.tasks_left = Some(1);
/// c.observe(&s);
/// let line = timeline(c.history(), Duration::from_secs(3), Duration::from_millis(500));
/// assert_eq!(line, "j: 2 (started at the core count (2))");
/// ```
pub fn timeline(history: &[Change], end: Duration, min_hold: Duration) -> String {
    let steps: Vec<(u64, u64, String)> = history
        .iter()
        .map(|c| (c.at_ns, c.to as u64, c.reason.to_string()))
        .collect();
    line(&steps, end, min_hold).unwrap_or_else(|| String::from("j: not started"))
}

/// [`timeline`] for the changes a run's report keeps
/// ([`Report::concurrency`](crate::monitor::Report::concurrency)); `None` when the count never
/// changed.
///
/// ```
/// use std::time::Duration;
/// use pardo::tune::controller::report_timeline;
///
/// let pool = pardo::ThreadPool::builder().workers(2).build().unwrap();
/// let report = pool.report();
/// assert_eq!(report_timeline(&report.concurrency, Duration::from_secs(1), Duration::ZERO), None);
/// ```
pub fn report_timeline(
    changes: &[crate::monitor::ConcurrencyChange],
    end: Duration,
    min_hold: Duration,
) -> Option<String> {
    let first = changes.first()?;
    let steps: Vec<(u64, u64, String)> = std::iter::once((0, first.from, String::new()))
        .chain(changes.iter().map(|c| (c.at_ns, c.to, c.reason.clone())))
        .collect();
    line(&steps, end, min_hold)
}

/// Whether a change's reason, as [`Reason`]'s `Display` wrote it, is the cap to the tasks left.
fn is_tail(reason: &str) -> bool {
    reason.starts_with("only ") && reason.ends_with(" tasks left")
}

/// The line of [`timeline`] over `(at_ns, count, reason)` steps, oldest first.
fn line(steps: &[(u64, u64, String)], end: Duration, min_hold: Duration) -> Option<String> {
    let min_ns = nanos(min_hold);
    // The tail: the caps to the tasks left at the end, unless they are all there is.
    let tail = steps
        .iter()
        .rev()
        .take_while(|(_, _, reason)| is_tail(reason))
        .count();
    let first_of_tail = steps.len().saturating_sub(tail);
    let (steps, end_ns) = match steps.get(first_of_tail) {
        Some(t) if first_of_tail >= 1 => (&steps[..first_of_tail], t.0),
        _ => (steps, nanos(end)),
    };
    // (count, reason, time held)
    let mut kept: Vec<(u64, &str, u64)> = Vec::new();
    for (i, (at, to, reason)) in steps.iter().enumerate() {
        let until = steps.get(i + 1).map_or(end_ns, |n| n.0);
        let held = until.saturating_sub(*at);
        let nothing_else = i + 1 == steps.len() && kept.len() <= 1;
        if held < min_ns && i > 0 && !nothing_else {
            continue;
        }
        match kept.last_mut() {
            Some(k) if k.0 == *to => k.2 += held,
            _ => kept.push((*to, reason, held)),
        }
    }
    let counts: Vec<String> = kept.iter().map(|k| k.0.to_string()).collect();
    // Why: the count held longest (the later one on a tie) that has a reason.
    let why =
        kept.iter()
            .filter(|k| !k.1.is_empty())
            .fold(None::<&(u64, &str, u64)>, |best, k| match best {
                Some(b) if b.2 > k.2 => Some(b),
                _ => Some(k),
            })?;
    Some(format!("j: {} ({})", counts.join(" → "), why.1))
}

/// CPU demand (CPU time over wall time less the wait for a core) from which tasks count as
/// wanting the CPU: a quarter of the time they are not queued for a core, on one.
const CPU_HUNGRY: f64 = 0.25;

/// Machine CPU busy fraction from which the cores are what limits the tasks that want them.
const CPU_FULL: f64 = 0.8;

/// Start of a measurement window: the cumulative counters at that sample.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Duration,
    done: u64,
    cpu: Duration,
    wait: Option<Duration>,
    wall: Duration,
    errors: u64,
}

impl Mark {
    fn of(s: &ControlSample) -> Self {
        Mark {
            at: s.elapsed,
            done: s.completions,
            cpu: s.task_cpu,
            wait: s.task_cpu_wait,
            wall: s.task_wall,
            errors: s.errors,
        }
    }
}

/// What one closed window measured.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// How long it lasted, in seconds.
    secs: f64,
    /// Completions per second.
    throughput: f64,
    /// CPU / (wall − wait for a core) of the tasks that finished in it: their demand with a
    /// core always free. Queueing for the cores, ours or other programs', lengthens the wall
    /// time but not this, so more workers on a busy machine do not read as hungrier tasks.
    demand: Option<f64>,
    /// Mean latency in seconds.
    latency: Option<f64>,
    errors: u64,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Measuring at a fresh count: the first window only tells the CPU demand (it holds the
    /// ramp-up), the next two give the throughput and a first noise estimate.
    Measure { windows: u32, prev: Option<f64> },
    /// Moving the count and judging each move against the best so far.
    Explore {
        base: usize,
        base_x: f64,
        peak_x: f64,
        up: bool,
        step: usize,
        moved: bool,
        /// A probe from a steady count: one move each way, no refining.
        probe: bool,
    },
    /// At the best count found, watching for a change of workload.
    Hold {
        reference: f64,
        windows: u32,
        strikes: u32,
    },
}

/// The concurrency controller. See the [module docs](self) for the algorithm.
///
/// ```
/// use std::time::Duration;
/// use pardo::tune::controller::{ControlSample, Controller, ControllerConfig};
///
/// let mut c = Controller::new(ControllerConfig::new(4, 64));
/// let mut s = ControlSample::default();
/// assert_eq!(c.observe(&s).target, 4); // starts at the core count
/// s.elapsed = Duration::from_millis(100);
/// s.tasks_left = Some(2);
/// assert_eq!(c.observe(&s).target, 2); // never more workers than tasks left
/// assert_eq!(c.history().len(), 2);
/// ```
#[derive(Debug)]
pub struct Controller {
    cfg: ControllerConfig,
    target: usize,
    started: bool,
    last_at: Duration,
    mark: Option<Mark>,
    settle_until: Duration,
    phase: Phase,
    /// EWMA of the relative difference between consecutive windows at one count, scaled to a
    /// one-second window (noise shrinks with the square root of the window's length).
    noise: Option<f64>,
    last_backoff: Option<Duration>,
    /// Memory available before the run's tasks took any, and what each one seems to take.
    memory_baseline: Option<u64>,
    memory_per_worker: Option<f64>,
    jumped_demand: Option<f64>,
    /// CPU demand of the tasks in the last window measured.
    last_demand: Option<f64>,
    noload_latency: Option<f64>,
    smooth_latency: Option<f64>,
    /// EWMA of the relative latency difference between consecutive windows at one count.
    latency_noise: Option<f64>,
    last_latency: Option<(usize, f64)>,
    latency_windows: u32,
    slow_start: bool,
    /// The count rose on idle cores before any task finished (see [`Controller::idle_cores`]).
    rose_on_idle: bool,
    history: Vec<Change>,
}

impl Controller {
    /// A controller with `cfg`; bounds are normalised (`min ≥ 1`, `max ≥ min`, `cores ≥ 1`).
    pub fn new(mut cfg: ControllerConfig) -> Self {
        cfg.min = cfg.min.max(1);
        cfg.max = cfg.max.max(cfg.min);
        cfg.cores = cfg.cores.max(1);
        cfg.window_completions = cfg.window_completions.max(1);
        let target = cfg.cores.clamp(cfg.min, cfg.max);
        Controller {
            cfg,
            target,
            started: false,
            last_at: Duration::ZERO,
            mark: None,
            settle_until: Duration::ZERO,
            phase: Phase::Measure {
                windows: 0,
                prev: None,
            },
            noise: None,
            last_backoff: None,
            memory_baseline: None,
            memory_per_worker: None,
            jumped_demand: None,
            last_demand: None,
            noload_latency: None,
            smooth_latency: None,
            latency_noise: None,
            last_latency: None,
            latency_windows: 0,
            slow_start: true,
            rose_on_idle: false,
            history: Vec::new(),
        }
    }

    /// The current target.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The settings, normalised.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// Every change of the target so far, oldest first; the first is the start.
    pub fn history(&self) -> &[Change] {
        &self.history
    }

    /// The relative throughput change that counts as real: the larger of `min_gain` and what
    /// the window-to-window noise measured so far allows.
    pub fn threshold(&self) -> f64 {
        // A difference of two noisy windows spreads about 2.5× the mean relative difference
        // between consecutive windows before it means anything.
        let from_noise = self
            .noise
            .map_or(0.0, |n| 2.5 * n / self.window_len().as_secs_f64().sqrt());
        from_noise.max(self.cfg.min_gain).min(0.5)
    }

    /// How long a throughput window lasts: long enough that its noise lets a gain of about
    /// 1.5 × `min_gain` show, within `min_window` and half of `max_window`.
    pub fn window_len(&self) -> Duration {
        let shortest = self.cfg.min_window.as_secs_f64();
        let longest = (self.cfg.max_window.as_secs_f64() / 2.0).max(shortest);
        let wanted = match self.noise {
            // 2.5 × noise ≤ 1.5 × min_gain
            Some(n) if self.cfg.min_gain > 0.0 => (n * 2.5 / (1.5 * self.cfg.min_gain)).powi(2),
            _ => shortest,
        };
        Duration::from_secs_f64(wanted.clamp(shortest, longest))
    }

    /// Takes one sample and returns the target to run at.
    pub fn observe(&mut self, raw: &ControlSample) -> Decision {
        let s = self.sanitise(raw);
        if self.cfg.memory_floor_bytes.is_some() {
            self.learn_memory(&s);
        }
        if !self.started {
            self.started = true;
            self.mark = Some(Mark::of(&s));
            let cores = self.cfg.cores;
            let reason = Reason::Start { cores };
            let to = self.cap(self.target, &s);
            self.target = to;
            self.history.push(Change {
                at_ns: nanos(s.elapsed),
                from: 0,
                to,
                reason,
            });
            return Decision {
                target: to,
                reason,
                changed: true,
            };
        }
        if let Some(d) = self.guards(&s) {
            return d;
        }
        let draining = s.tasks_left.is_some_and(|l| l <= self.target as u64);
        if draining || s.elapsed < self.settle_until {
            // A draining run's throughput falls whatever the count; a fresh count needs its
            // tasks to finish once before throughput shows it.
            self.mark = Some(Mark::of(&s));
            return self.hold(Reason::Hold);
        }
        if let Some(d) = self.early_jump(&s) {
            return d;
        }
        if let Some(d) = self.idle_cores(&s) {
            return d;
        }
        let Some(w) = self.close_window(&s) else {
            return self.hold(Reason::Hold);
        };
        let (to, reason) = match self.cfg.mode {
            Mode::Throughput => self.climb(&s, &w),
            Mode::Latency => self.latency_step(&s, &w),
        };
        self.apply(&s, to, reason, w.latency)
    }

    /// At a fresh start, a few completions already tell the CPU demand: a short run of waiting
    /// tasks cannot afford a whole throughput window at the core count.
    fn early_jump(&mut self, s: &ControlSample) -> Option<Decision> {
        if self.cfg.mode != Mode::Throughput {
            return None;
        }
        let (Phase::Measure { windows: 0, .. }, Some(m)) = (self.phase, self.mark) else {
            return None;
        };
        // One completion per worker is enough to read the demand: at 2 workers and 20 ms tasks,
        // waiting for 4 would cost a run of 64 a third of its best wall time.
        let needed = self.cfg.jump_completions.min(self.target as u64).max(1);
        if s.completions.saturating_sub(m.done) < needed {
            return None;
        }
        let w = measure(&m, s)?;
        self.note_demand(&w);
        let (to, reason) = self.jump(s, &w)?;
        Some(self.apply(s, to, reason, w.latency))
    }

    /// Before the first completions tell the demand: when every worker is busy, more tasks
    /// wait to start, and few threads on the whole machine want a core, the tasks are
    /// waiting, and the first wave at the core count would cost a short run most of its
    /// time (200 × `sleep 0.05` on 2 cores: about 55 ms of a best 257 ms). The count rises
    /// as the jump would for the highest demand the sample allows (one thread more than
    /// those wanting a core, over the tasks running), so on idle cores each rise is about
    /// `2 × cores` times the last; CPU-bound tasks (as many wanting a core as running)
    /// never rise here. The
    /// reading is one instant, so a sample taken while the runner is still starting tasks
    /// (it wants a core then) only holds the count.
    fn idle_cores(&mut self, s: &ControlSample) -> Option<Decision> {
        if self.cfg.mode != Mode::Throughput
            || self.jumped_demand.is_some()
            || self.last_demand.is_some()
            || !matches!(self.phase, Phase::Measure { windows: 0, .. })
        {
            return None;
        }
        let running = s.running;
        let more = s
            .tasks_left
            .map_or(s.queued > 0, |l| l > self.target as u64);
        if running < self.target as u64 || running == 0 || !more {
            return None;
        }
        // The sampling thread is one of the runnable.
        let wanting = s.runnable?.saturating_sub(1);
        // One more than the instant saw, for what a single reading misses.
        let demand = (wanting + 1) as f64 / running as f64;
        let knee = to_count(self.cfg.cores as f64 / demand);
        if knee < self.target.saturating_mul(2) || self.refuse_rise_waiting(s).is_some() {
            return None;
        }
        let to = to_count(past_the_knee(self.cfg.cores as f64, demand));
        let to = s.tasks_left.map_or(to, |left| whole_waves(to, left));
        if to <= self.target || self.ceiling(s) <= self.target {
            return None;
        }
        self.rose_on_idle = true;
        Some(self.apply(s, to, Reason::IdleCores { wanting, running }, None))
    }

    /// The refusals of [`refuse_rise`](Self::refuse_rise) that hold for tasks that wait:
    /// memory near its floor.
    fn refuse_rise_waiting(&self, s: &ControlSample) -> Option<Reason> {
        self.refuse_rise(s)
            .filter(|r| matches!(r, Reason::MemoryFloor { .. }))
    }

    /// Clamps nonsense: time never runs backwards, fractions stay in range.
    fn sanitise(&mut self, raw: &ControlSample) -> ControlSample {
        let mut s = *raw;
        s.elapsed = s.elapsed.max(self.last_at);
        self.last_at = s.elapsed;
        s.machine_busy = s
            .machine_busy
            .filter(|b| b.is_finite())
            .map(|b| b.clamp(0.0, 1.0));
        s.load_avg = s.load_avg.filter(|l| l.is_finite() && *l >= 0.0);
        s
    }

    /// Most workers allowed now: `max`, tasks left, and what memory is expected to hold.
    fn ceiling(&self, s: &ControlSample) -> usize {
        let left = s
            .tasks_left
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        self.cfg
            .max
            .min(left)
            .min(self.memory_cap().unwrap_or(usize::MAX))
            .max(self.cfg.min)
    }

    /// Workers that fit above the memory floor, from what each took so far.
    fn memory_cap(&self) -> Option<usize> {
        let floor = self.cfg.memory_floor_bytes? as f64 * 1.2;
        let per = self.memory_per_worker.filter(|p| *p > 0.0)?;
        let room = (self.memory_baseline? as f64 - floor).max(0.0);
        Some((room / per).floor().min(usize::MAX as f64) as usize)
    }

    fn learn_memory(&mut self, s: &ControlSample) {
        let Some(avail) = s.mem_available_bytes else {
            return;
        };
        let baseline = *self.memory_baseline.get_or_insert(avail);
        if s.running > 0 && baseline > avail {
            self.memory_per_worker = Some((baseline - avail) as f64 / s.running as f64);
        }
    }

    fn cap(&self, n: usize, s: &ControlSample) -> usize {
        n.clamp(self.cfg.min, self.ceiling(s))
    }

    /// Why no worker may be added now, if something forbids it.
    fn refuse_rise(&self, s: &ControlSample) -> Option<Reason> {
        if let (Some(floor), Some(avail)) = (self.cfg.memory_floor_bytes, s.mem_available_bytes) {
            // Some room above the floor, or one more worker would sink it again.
            if (avail as f64) < floor as f64 * 1.2 {
                return Some(Reason::MemoryFloor {
                    available_bytes: avail,
                });
            }
        }
        if !self.wants_cpu() {
            return None;
        }
        if let Some(per_core) = self.load_per_core(s) {
            if per_core > self.cfg.overload_per_core * 0.75 {
                return Some(Reason::Overloaded {
                    load_per_core: per_core,
                });
            }
        }
        match s.machine_busy {
            Some(busy) if busy >= self.cfg.busy_ceiling => Some(Reason::HoldMachineBusy { busy }),
            _ => None,
        }
    }

    /// Load average per core, when it means a queue for the CPU: a long run queue beside idle
    /// cores is tasks waiting on disks, and throughput tells whether more workers help then.
    fn load_per_core(&self, s: &ControlSample) -> Option<f64> {
        if s.machine_busy.is_some_and(|b| b < CPU_FULL) {
            return None;
        }
        s.load_avg.map(|l| l / self.cfg.cores as f64)
    }

    /// Bounds that act on every sample, before any measurement.
    fn guards(&mut self, s: &ControlSample) -> Option<Decision> {
        let may_cut = self
            .last_backoff
            .is_none_or(|t| s.elapsed.saturating_sub(t) >= self.cfg.backoff_interval);
        if let (Some(floor), Some(avail)) = (self.cfg.memory_floor_bytes, s.mem_available_bytes) {
            if avail < floor && self.target > self.cfg.min && may_cut {
                self.last_backoff = Some(s.elapsed);
                let to = cut(self.target).min(self.memory_cap().unwrap_or(usize::MAX));
                let reason = Reason::MemoryFloor {
                    available_bytes: avail,
                };
                self.restart_measure();
                return Some(self.apply(s, to, reason, None));
            }
        }
        if let Some(per_core) = self.load_per_core(s) {
            // Only workers beyond the cores can be ours to blame for the queue.
            if per_core > self.cfg.overload_per_core
                && self.target > self.cfg.cores
                && self.wants_cpu()
                && may_cut
            {
                self.last_backoff = Some(s.elapsed);
                let to = cut(self.target).max(self.cfg.cores);
                let reason = Reason::Overloaded {
                    load_per_core: per_core,
                };
                self.restart_measure();
                return Some(self.apply(s, to, reason, None));
            }
        }
        let ceiling = self.ceiling(s);
        if self.target > ceiling {
            let reason = Reason::CappedByTasksLeft {
                left: s.tasks_left.unwrap_or(0),
            };
            return Some(self.apply(s, ceiling, reason, None));
        }
        None
    }

    fn restart_measure(&mut self) {
        self.phase = Phase::Measure {
            windows: 1,
            prev: None,
        };
    }

    fn close_window(&mut self, s: &ControlSample) -> Option<Window> {
        let Some(m) = self.mark else {
            self.mark = Some(Mark::of(s));
            return None;
        };
        let span = s.elapsed.saturating_sub(m.at);
        let done = s.completions.saturating_sub(m.done);
        let full = done >= self.cfg.window_completions && span >= self.window_len();
        if !full && span < self.cfg.max_window {
            return None;
        }
        self.mark = Some(Mark::of(s));
        let w = measure(&m, s)?;
        self.note_demand(&w);
        Some(w)
    }

    fn note_demand(&mut self, w: &Window) {
        if w.demand.is_some() {
            self.last_demand = w.demand;
        }
    }

    /// Whether the tasks want the CPU enough that a busy machine or a long run queue limits
    /// them (and that they add to it). Tasks that mostly wait neither gain from an idle core nor
    /// lengthen the queue much, so other programs' load is no reason to keep them few: measured
    /// throughput decides for them. Unknown until a window measured it, and then it counts as yes.
    fn wants_cpu(&self) -> bool {
        match self.last_demand {
            Some(d) => d >= CPU_HUNGRY,
            // Idle cores with every worker busy said no.
            None => !self.rose_on_idle,
        }
    }

    fn hold(&self, reason: Reason) -> Decision {
        Decision {
            target: self.target,
            reason,
            changed: false,
        }
    }

    /// Sets the target (within bounds), records the change, and waits for the new count to show.
    fn apply(
        &mut self,
        s: &ControlSample,
        to: usize,
        reason: Reason,
        latency: Option<f64>,
    ) -> Decision {
        let to = self.cap(to, s);
        let from = self.target;
        if to == from {
            return self.hold(reason);
        }
        self.target = to;
        let at_ns = nanos(s.elapsed);
        match self.history.last_mut() {
            // The tail of a run lowers the cap on every sample; one entry says it.
            Some(last)
                if matches!(last.reason, Reason::CappedByTasksLeft { .. })
                    && matches!(reason, Reason::CappedByTasksLeft { .. }) =>
            {
                last.to = to;
                last.reason = reason;
            }
            _ => self.history.push(Change {
                at_ns,
                from,
                to,
                reason,
            }),
        }
        let settle = latency
            .or_else(|| s.mean_latency.map(|l| l.as_secs_f64()))
            .map_or(Duration::ZERO, |l| {
                Duration::from_secs_f64(l.clamp(0.0, self.cfg.max_window.as_secs_f64()))
            });
        self.settle_until = s.elapsed + settle;
        self.mark = Some(Mark::of(s));
        Decision {
            target: to,
            reason,
            changed: true,
        }
    }

    /// A target for the demand measured in `w`, if it is far from the current one.
    ///
    /// The cores fill at `knee = cores ÷ demand` tasks in flight, but only on average: task CPU
    /// times vary and tasks arrive in bursts, so at the knee they queue for the cores part of
    /// the time and idle them another part, and throughput there is well under its peak (on 2
    /// cores, 200 × (8 ms of gzip, 50 ms of sleep) took 913 ms at 16 jobs, 795 ms at 32 and
    /// 820 ms at 64). Below the knee throughput falls steeply, above it the extra tasks only
    /// queue. So the jump lands past the knee, by as much again for tasks that barely use the
    /// CPU and not at all for CPU-bound ones ([`past_the_knee`]); climbing trims it afterwards
    /// when a long run shows fewer do as well. The decision to jump is taken on the knee itself,
    /// so CPU-bound work is never pushed above the cores.
    fn jump(&mut self, s: &ControlSample, w: &Window) -> Option<(usize, Reason)> {
        let demand = w.demand?;
        if let Some(before) = self.jumped_demand {
            // Jump again only for a real change of work, not to undo what climbing found.
            let ratio = demand.max(1e-6) / before.max(1e-6);
            if (0.5..=2.0).contains(&ratio) {
                return None;
            }
        }
        let cores = self.cfg.cores as f64;
        let knee = to_count(cores / demand.max(1e-3));
        let to = to_count(past_the_knee(cores, demand));
        let cpu_ratio = demand;
        let cores_full = s.machine_busy.is_none_or(|b| b >= CPU_FULL);
        // After a rise on idle cores the count may be near the knee already; the measured
        // jump still goes past it when that is well above the count.
        let after_idle = self.rose_on_idle && knee > self.target && to >= self.target * 3 / 2;
        if knee >= self.target.saturating_mul(2) || after_idle {
            // After a jump, tasks that seem to wait more on full cores wait for the cores: where
            // the wait for a core is not measured (commands), the queue the jump made lengthens
            // the wall time and lowers CPU / wall, and jumping again on that only deepens it.
            let queued =
                self.jumped_demand.is_some() && s.machine_busy.is_some_and(|b| b >= CPU_FULL);
            if queued || self.refuse_rise(s).is_some() || self.ceiling(s) <= self.target {
                return None;
            }
            self.jumped_demand = Some(demand);
            let to = s.tasks_left.map_or(to, |left| whole_waves(to, left));
            return Some((to, Reason::JumpForWaiting { cpu_ratio }));
        }
        // Tasks that want the CPU fill it; a machine with idle cores says the demand measured is
        // not what limits them (a short window, a few long tasks), so it is no reason to cut.
        // A count that rose on idle cores is only cut for tasks the measurement shows want
        // the CPU: for tasks that wait, the busy cores are the runner starting them.
        let hungry = !self.rose_on_idle || demand >= CPU_HUNGRY;
        if knee.saturating_mul(2) <= self.target && cores_full && hungry {
            self.jumped_demand = Some(demand);
            return Some((to, Reason::JumpForCpu { cpu_ratio }));
        }
        None
    }

    fn min_step(&self, base: usize) -> usize {
        // A smaller move changes throughput by less than the noise can show.
        ((base as f64 * 1.5 * self.threshold()).ceil() as usize).max(1)
    }

    /// The first move of an exploration from `base`: up if allowed, else down, else hold.
    fn explore_from(
        &mut self,
        s: &ControlSample,
        base: usize,
        x: f64,
        step: usize,
        probe: bool,
    ) -> (usize, Reason) {
        let step = step.max(self.min_step(base));
        let can_rise = self.refuse_rise(s).is_none() && base < self.ceiling(s);
        let up = can_rise;
        let trial = if up {
            base.saturating_add(step)
        } else {
            base.saturating_sub(step)
        };
        if !up && base <= self.cfg.min {
            self.phase = Phase::Hold {
                reference: x,
                windows: 0,
                strikes: 0,
            };
            let reason = self.refuse_rise(s).unwrap_or(Reason::Hold);
            return (base, reason);
        }
        self.phase = Phase::Explore {
            base,
            base_x: x,
            peak_x: x,
            up,
            step,
            moved: false,
            probe,
        };
        (trial.max(self.cfg.min), Reason::Probe)
    }

    fn note_noise(&mut self, a: f64, b: f64, secs: f64) {
        let mean = (a + b) / 2.0;
        if mean <= 0.0 || secs <= 0.0 {
            return;
        }
        let d = (a - b).abs() / mean * secs.sqrt();
        self.noise = Some(self.noise.map_or(d, |n| 0.7 * n + 0.3 * d));
    }

    fn settle_at(&mut self, x: f64) {
        self.phase = Phase::Hold {
            reference: x,
            windows: 0,
            strikes: 0,
        };
    }

    /// The throughput mode's step for one closed window.
    fn climb(&mut self, s: &ControlSample, w: &Window) -> (usize, Reason) {
        let x = w.throughput;
        match self.phase {
            Phase::Measure { windows, prev } => {
                if let Some(j) = self.jump(s, w) {
                    self.phase = Phase::Measure {
                        windows: 0,
                        prev: None,
                    };
                    return j;
                }
                match (windows, prev) {
                    (0, _) => {
                        self.phase = Phase::Measure {
                            windows: 1,
                            prev: None,
                        };
                        (self.target, Reason::Hold)
                    }
                    (_, None) => {
                        self.phase = Phase::Measure {
                            windows: windows + 1,
                            prev: Some(x),
                        };
                        (self.target, Reason::Hold)
                    }
                    (_, Some(p)) => {
                        self.note_noise(p, x, w.secs);
                        let base = self.target;
                        self.explore_from(s, base, (p + x) / 2.0, (base / 2).max(1), false)
                    }
                }
            }
            Phase::Explore {
                base,
                base_x,
                peak_x,
                up,
                step,
                moved,
                probe,
            } => {
                let th = self.threshold();
                let change = relative_change(x, base_x);
                let tried = self.target;
                let accepted = if up {
                    x > base_x * (1.0 + th) || (base_x <= 0.0 && x > 0.0)
                } else {
                    // Fewer workers win a tie, but only a clear one: a loss well inside the
                    // noise, counted from the best seen, so small losses cannot add up.
                    x >= peak_x * (1.0 - th / 2.0)
                };
                if accepted {
                    let peak_x = peak_x.max(x);
                    let next_step = if up {
                        step.max(tried / 2).max(1)
                    } else {
                        (tried / 2).max(1)
                    };
                    let reason = if up {
                        Reason::Climb { gain: change }
                    } else {
                        Reason::Fewer {
                            loss: (1.0 - x / peak_x.max(f64::MIN_POSITIVE)).max(0.0),
                        }
                    };
                    let next = if up {
                        if self.refuse_rise(s).is_some() || tried >= self.ceiling(s) {
                            None
                        } else {
                            Some(tried.saturating_add(next_step))
                        }
                    } else if tried > self.cfg.min {
                        Some(tried.saturating_sub(next_step).max(self.cfg.min))
                    } else {
                        None
                    };
                    match next {
                        Some(n) if n != tried => {
                            self.phase = Phase::Explore {
                                base: tried,
                                base_x: x,
                                peak_x,
                                up,
                                step: next_step,
                                moved: true,
                                probe,
                            };
                            (n, reason)
                        }
                        _ => {
                            self.settle_at(x);
                            let reason = self.refuse_rise(s).unwrap_or(reason);
                            (tried, reason)
                        }
                    }
                } else {
                    let half = step / 2;
                    let back = Reason::StepBack { change };
                    if !probe && half >= self.min_step(base) {
                        let n = if up {
                            base.saturating_add(half)
                        } else {
                            base.saturating_sub(half)
                        };
                        if n != base && n >= self.cfg.min {
                            self.phase = Phase::Explore {
                                base,
                                base_x,
                                peak_x,
                                up,
                                step: half,
                                moved,
                                probe,
                            };
                            return (n, back);
                        }
                    }
                    if up && !moved && base > self.cfg.min {
                        let step = if probe {
                            step
                        } else {
                            (base / 2).max(self.min_step(base))
                        };
                        let n = base.saturating_sub(step).max(self.cfg.min);
                        if n < base {
                            self.phase = Phase::Explore {
                                base,
                                base_x,
                                peak_x,
                                up: false,
                                step,
                                moved,
                                probe,
                            };
                            return (n, back);
                        }
                    }
                    self.settle_at(base_x);
                    (base, back)
                }
            }
            Phase::Hold {
                reference,
                windows,
                strikes,
            } => {
                let change = relative_change(x, reference);
                let band = (3.0 * self.threshold()).max(0.3);
                if change.abs() > band {
                    if strikes + 1 >= 2 {
                        self.phase = Phase::Measure {
                            windows: 1,
                            prev: None,
                        };
                        if let Some(j) = self.jump(s, w) {
                            self.phase = Phase::Measure {
                                windows: 0,
                                prev: None,
                            };
                            return j;
                        }
                        return (self.target, Reason::WorkloadChanged { change });
                    }
                    self.phase = Phase::Hold {
                        reference,
                        windows,
                        strikes: strikes + 1,
                    };
                    return (self.target, Reason::Hold);
                }
                self.note_noise(reference, x, w.secs);
                let reference = 0.8 * reference + 0.2 * x;
                if windows + 1 >= self.cfg.probe_every {
                    let base = self.target;
                    return self.explore_from(s, base, reference, (base / 4).max(1), true);
                }
                self.phase = Phase::Hold {
                    reference,
                    windows: windows + 1,
                    strikes: 0,
                };
                (self.target, Reason::Hold)
            }
        }
    }

    /// The latency mode's step for one closed window.
    fn latency_step(&mut self, s: &ControlSample, w: &Window) -> (usize, Reason) {
        let n = self.target;
        if w.errors > 0 {
            self.slow_start = false;
            return (cut_by(n, 0.9), Reason::ErrorBackoff { errors: w.errors });
        }
        let Some(latency) = w.latency.filter(|l| *l > 0.0 && l.is_finite()) else {
            return (n, Reason::Hold);
        };
        if let Some((at, before)) = self.last_latency {
            if at == n {
                let d = (latency - before).abs() / ((latency + before) / 2.0);
                self.latency_noise = Some(self.latency_noise.map_or(d, |x| 0.7 * x + 0.3 * d));
            }
        }
        self.last_latency = Some((n, latency));
        // The no-load latency is the least smoothed latency seen: the minimum of raw windows
        // would follow the noise's low tail and read queueing into every window after.
        let smooth = self
            .smooth_latency
            .map_or(latency, |m| 0.75 * m + 0.25 * latency);
        self.smooth_latency = Some(smooth);
        self.latency_windows = self.latency_windows.saturating_add(1);
        // Until a few windows went into the average, one lucky window would set the baseline
        // for the whole run.
        let noload = match self.noload_latency {
            Some(b) if self.latency_windows > 4 => b.min(smooth),
            _ => smooth,
        };
        self.noload_latency = Some(noload);
        let ratio = latency / noload;
        let noise = self.latency_noise.unwrap_or(0.0);
        // Latency above no-load means requests wait on the other side (Little's law: about
        // n × (1 − noload/latency) of them); allow what the noise can explain.
        let high = 1.0 + (2.5 * noise).max(0.25);
        let low = 1.0 + (1.5 * noise).max(0.1);
        if ratio > high && self.latency_noise.is_none() && ratio < 1.5 {
            // Could be noise, and no window at this count has measured it yet: look again.
            return (n, Reason::Hold);
        }
        if ratio > high {
            self.slow_start = false;
            let served = (n as f64 / ratio).floor();
            let to = (served * low).floor() as usize;
            let to = to.min(n.saturating_sub(1)).max(self.cfg.min);
            return (to, Reason::LatencyRising { ratio });
        }
        if ratio < low {
            if let Some(r) = self.refuse_rise(s) {
                return (n, r);
            }
            let to = if self.slow_start {
                n.saturating_mul(2)
            } else {
                n.saturating_add((n / 16).max(1))
            };
            return (to, Reason::LatencySteady);
        }
        (n, Reason::Hold)
    }
}

/// What happened between mark `m` and sample `s`; `None` when no time passed.
fn measure(m: &Mark, s: &ControlSample) -> Option<Window> {
    let secs = s.elapsed.saturating_sub(m.at).as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let done = s.completions.saturating_sub(m.done);
    let wall = s.task_wall.saturating_sub(m.wall).as_secs_f64();
    let cpu = s.task_cpu.saturating_sub(m.cpu).as_secs_f64();
    let wait = match (s.task_cpu_wait, m.wait) {
        (Some(now), Some(then)) => now.saturating_sub(then).as_secs_f64(),
        (Some(now), None) => now.as_secs_f64(),
        _ => 0.0,
    };
    // A wait longer than the wall time is a measuring error; then the wall time is all there is.
    let unqueued = if wall > wait { wall - wait } else { wall };
    let demand = (wall > 0.0 && done > 0).then(|| cpu / unqueued);
    // The whole window's mean is steadier than the last sample's.
    let latency = (done > 0 && wall > 0.0)
        .then(|| wall / done as f64)
        .or_else(|| s.mean_latency.map(|l| l.as_secs_f64()));
    Some(Window {
        secs,
        throughput: done as f64 / secs,
        demand,
        latency,
        errors: s.errors.saturating_sub(m.errors),
    })
}

/// Tasks in flight to jump to for tasks of CPU `demand` on `cores`: past the knee
/// `cores ÷ demand` by a factor of `2 − demand`, so twice the knee for tasks that barely use the
/// CPU and the knee itself (the cores) for CPU-bound ones. See [`Controller::jump`].
fn past_the_knee(cores: f64, demand: f64) -> f64 {
    let demand = demand.max(1e-3);
    cores / demand * (2.0 - demand.min(1.0))
}

/// `n` workers for `left` tasks, raised by up to a quarter where that saves a wave: tasks that
/// mostly wait start together after a jump and end together, so 198 sleeps at 98 take three
/// waves (98, 98 and 2) and at 99 two.
fn whole_waves(n: usize, left: u64) -> usize {
    let Ok(left) = usize::try_from(left) else {
        return n;
    };
    if n == 0 || left <= n {
        return n;
    }
    let waves = left.div_ceil(n);
    let fewer = left.div_ceil(waves - 1);
    if fewer <= n.saturating_add(n / 4) {
        fewer
    } else {
        n
    }
}

/// `x` rounded up to a count, saturating.
fn to_count(x: f64) -> usize {
    let x = x.ceil();
    if x >= usize::MAX as f64 {
        usize::MAX
    } else {
        x.max(0.0) as usize
    }
}

/// `x` relative to `reference` (0.1 = 10 % more); from nothing to something counts as +100 %.
fn relative_change(x: f64, reference: f64) -> f64 {
    if reference > 0.0 {
        x / reference - 1.0
    } else if x > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// A quarter fewer, at least one fewer.
fn cut(n: usize) -> usize {
    cut_by(n, 0.75)
}

fn cut_by(n: usize, keep: f64) -> usize {
    let kept = (n as f64 * keep).floor() as usize;
    kept.min(n.saturating_sub(1)).max(1)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(list: &[(u64, u64, &str)]) -> Vec<(u64, u64, String)> {
        list.iter()
            .map(|&(ms, to, why)| (ms * 1_000_000, to, why.to_string()))
            .collect()
    }

    #[test]
    fn the_line_leaves_out_the_tail_of_the_run() {
        // What the runner notes: a change per sample as the tail follows the tasks left down.
        // Its last step read as a move down ("2 → 15 → 6") in the bench's notes.
        let run = steps(&[
            (0, 2, ""),
            (60, 27, "jump"),
            (820, 20, "only 20 tasks left"),
            (880, 9, "only 9 tasks left"),
            (940, 1, "only 1 tasks left"),
        ]);
        let end = Duration::from_millis(990);
        assert_eq!(
            line(&run, end, end / 10).as_deref(),
            Some("j: 2 → 27 (jump)")
        );
        // However long the last wave takes.
        let run = steps(&[
            (0, 2, ""),
            (60, 27, "jump"),
            (500, 20, "only 20 tasks left"),
            (700, 1, "only 1 tasks left"),
        ]);
        assert_eq!(
            line(&run, end, end / 10).as_deref(),
            Some("j: 2 → 27 (jump)")
        );
        // A run that held its first count until the tail says that: the CPU-bound bench
        // read "j: 2 → 1 (only 0 tasks left)", as if the count had come down.
        let run = steps(&[(0, 2, "start"), (100, 1, "only 1 tasks left")]);
        assert_eq!(line(&run, end, end / 10).as_deref(), Some("j: 2 (start)"));
    }

    #[test]
    fn the_tail_is_known_by_its_reason() {
        assert!(is_tail(&Reason::CappedByTasksLeft { left: 7 }.to_string()));
        assert!(!is_tail(&Reason::Hold.to_string()));
        assert!(!is_tail(&Reason::Start { cores: 2 }.to_string()));
    }

    #[test]
    fn the_line_keeps_the_last_count_when_nothing_else_was_held() {
        let run = steps(&[(0, 2, ""), (900, 40, "jump")]);
        let end = Duration::from_millis(950);
        assert_eq!(
            line(&run, end, end / 10).as_deref(),
            Some("j: 2 → 40 (jump)")
        );
        // A count held long enough is kept whatever follows it.
        let run = steps(&[(0, 2, ""), (100, 40, "jump"), (900, 30, "fewer")]);
        assert_eq!(
            line(&run, end, end / 10).as_deref(),
            Some("j: 2 → 40 (jump)")
        );
    }
}
