//! A simulated workload and clock, to test concurrency controllers without threads or sleeps.
//!
//! A [`Sim`] runs a [`Model`] of how throughput, latency and CPU use answer to the number of
//! tasks in flight, advances simulated time by [`Sim::STEP`] per [`Sim::step`], and returns the
//! [`ControlSample`] a real executor would have taken. Everything is deterministic: noise comes
//! from a seeded generator.
//!
//! ```
//! use std::time::Duration;
//! use pardo::tune::sim::{Model, Sim};
//!
//! let mut sim = Sim::new(Model::cpu(Duration::from_millis(10)), 4);
//! let s = sim.step(4);
//! assert_eq!(s.elapsed, Duration::from_millis(100));
//! // 4 cores, 10 ms of CPU per task: about 40 tasks in 100 ms.
//! assert!((39..=40).contains(&s.completions));
//! assert_eq!(sim.best(), 4);
//! ```

use std::time::Duration;

use super::controller::ControlSample;

/// How a workload answers to concurrency.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Model {
    /// Each task needs `cpu_per_task` of CPU and nothing else; above the core count every extra
    /// worker costs `penalty` of throughput (switching, cache), relative.
    Cpu {
        /// CPU each task needs.
        cpu_per_task: Duration,
        /// Relative throughput lost per worker above the cores.
        penalty: f64,
    },
    /// Each task waits `service` on a server that serves `capacity` requests at once; more
    /// queue on it (latency grows, throughput stays flat) and `contention` makes throughput fall
    /// beyond it, relative per `capacity` extra. Above `errors_above` in flight, the excess fails.
    Server {
        /// Latency of one request without queueing.
        service: Duration,
        /// Requests the server handles at once.
        capacity: u64,
        /// CPU each task needs on this side.
        cpu_per_task: Duration,
        /// Relative throughput lost per `capacity` requests beyond it.
        contention: f64,
        /// In flight above which the excess requests fail.
        errors_above: Option<u64>,
    },
    /// Each task uses the CPU for `cpu_per_task`, then waits `wait` off it (a sleep, a disk, a
    /// remote side that never queues). Tasks queue for the cores, and the CPU times vary
    /// (exponentially, in a mean value analysis of the closed queue, with Seidmann's
    /// approximation for several cores), so the knee at `cores × (cpu + wait) / cpu` in flight is
    /// soft, as on a real machine: throughput there is well below the peak it reaches further up.
    Mixed {
        /// CPU each task needs.
        cpu_per_task: Duration,
        /// Time each task then waits off the CPU.
        wait: Duration,
    },
    /// `first` until `after` tasks completed, then `second`.
    Phase {
        /// The model at first.
        first: Box<Model>,
        /// The model after the change.
        second: Box<Model>,
        /// Completions after which the model changes.
        after: u64,
    },
}

impl Model {
    /// CPU-bound tasks of `cpu_per_task` each, 1 % lost per worker above the cores.
    pub fn cpu(cpu_per_task: Duration) -> Self {
        Model::Cpu {
            cpu_per_task,
            penalty: 0.01,
        }
    }

    /// Latency-bound tasks on a server that saturates at `capacity`, using 1 % of their time on
    /// the CPU here, throughput flat beyond `capacity`.
    pub fn server(service: Duration, capacity: u64) -> Self {
        Model::Server {
            service,
            capacity,
            cpu_per_task: service / 100,
            contention: 0.0,
            errors_above: None,
        }
    }

    /// Tasks that use `cpu_per_task` of CPU, then wait `wait` off it, queueing for the cores.
    pub fn mixed(cpu_per_task: Duration, wait: Duration) -> Self {
        Model::Mixed { cpu_per_task, wait }
    }

    /// `first`, then `second` once `after` tasks completed.
    pub fn phase(first: Model, second: Model, after: u64) -> Self {
        Model::Phase {
            first: Box::new(first),
            second: Box::new(second),
            after,
        }
    }

    fn current(&self, done: u64) -> &Model {
        match self {
            Model::Phase {
                first,
                second,
                after,
            } => {
                if done < *after {
                    first.current(done)
                } else {
                    second.current(done)
                }
            }
            m => m,
        }
    }
}

/// What the model says about `n` tasks in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Point {
    /// Completions per second.
    throughput: f64,
    /// Seconds per task, in flight.
    latency: f64,
    cpu: f64,
    cpu_wait: f64,
    /// Cores busy with these tasks.
    cores_used: f64,
    /// Fraction of completions that fail.
    error_share: f64,
}

fn point(m: &Model, n: f64, cores: f64) -> Point {
    if n <= 0.0 {
        return Point::default();
    }
    match m {
        Model::Cpu {
            cpu_per_task,
            penalty,
        } => {
            let s = cpu_per_task.as_secs_f64().max(1e-9);
            let over = (n - cores).max(0.0);
            let throughput = n.min(cores) / s / (1.0 + penalty * over);
            let latency = n / throughput;
            Point {
                throughput,
                latency,
                cpu: s,
                cpu_wait: (latency - s).max(0.0),
                cores_used: n.min(cores),
                error_share: 0.0,
            }
        }
        Model::Server {
            service,
            capacity,
            cpu_per_task,
            contention,
            errors_above,
        } => {
            let s = service.as_secs_f64().max(1e-9);
            let c = (*capacity).max(1) as f64;
            let cpu = cpu_per_task.as_secs_f64();
            let mut throughput = if n <= c {
                n / s
            } else {
                c / s / (1.0 + contention * (n - c) / c)
            };
            if cpu > 0.0 {
                throughput = throughput.min(cores / cpu);
            }
            let error_share = errors_above.map_or(0.0, |e| ((n - e as f64) / n).max(0.0));
            Point {
                throughput,
                latency: n / throughput,
                cpu,
                cpu_wait: 0.0,
                cores_used: (throughput * cpu).min(cores),
                error_share,
            }
        }
        Model::Mixed { cpu_per_task, wait } => {
            let d = cpu_per_task.as_secs_f64().max(1e-9);
            let z = wait.as_secs_f64();
            // Exact mean value analysis of the closed queue, the cores taken as one server of
            // `d / cores` behind a delay of the rest of `d` (Seidmann): a task arriving at the
            // cores finds the queue that `k − 1` tasks in flight left there.
            let fast = d / cores;
            let slow = d - fast;
            let (mut queue, mut throughput, mut latency) = (0.0, 0.0, d + z);
            for k in 1..=(n.ceil() as u64) {
                let at_cores = fast * (1.0 + queue);
                latency = at_cores + slow + z;
                throughput = k as f64 / latency;
                queue = throughput * at_cores;
            }
            Point {
                throughput,
                latency,
                cpu: d,
                cpu_wait: (latency - z - d).max(0.0),
                cores_used: (throughput * d).min(cores),
                error_share: 0.0,
            }
        }
        Model::Phase { first, .. } => point(first, n, cores),
    }
}

const SEED: u64 = 0x853c_49e6_748f_ea9b;

/// A simulated run: a model, a machine and a clock.
#[derive(Clone, Debug)]
pub struct Sim {
    model: Model,
    cores: usize,
    /// Relative noise on each step's completions and latency (0.1 = ±10 %, uniform).
    pub noise: f64,
    /// Tasks in the run; `None` for an endless stream.
    pub tasks: Option<u64>,
    /// Memory available with no task running, in bytes.
    pub memory_bytes: u64,
    /// Memory each task in flight takes, in bytes.
    pub memory_per_task_bytes: u64,
    /// Load average from other work on the machine; it keeps up to that many cores busy.
    pub other_load: f64,
    /// Whether tasks report the time they waited for a core.
    pub measures_cpu_wait: bool,
    /// Share of each task's wall time it waits for a core that other programs hold, however few
    /// tasks run (a crowded machine: a task that wakes from a wait queues behind them).
    pub others_wait_share: f64,
    rng: u64,
    elapsed: Duration,
    done_f: f64,
    done: u64,
    cpu: f64,
    cpu_wait: f64,
    wall: f64,
    errors_f: f64,
}

impl Sim {
    /// Simulated time between two samples.
    pub const STEP: Duration = Duration::from_millis(100);

    /// A run of `model` on `cores` cores: endless, noiseless, 64 GiB of memory nothing uses.
    pub fn new(model: Model, cores: usize) -> Self {
        Sim {
            model,
            cores: cores.max(1),
            noise: 0.0,
            tasks: None,
            memory_bytes: 64 << 30,
            memory_per_task_bytes: 0,
            other_load: 0.0,
            measures_cpu_wait: true,
            others_wait_share: 0.0,
            rng: SEED,
            elapsed: Duration::ZERO,
            done_f: 0.0,
            done: 0,
            cpu: 0.0,
            cpu_wait: 0.0,
            wall: 0.0,
            errors_f: 0.0,
        }
    }

    /// Seeds the noise generator.
    pub fn seed(&mut self, seed: u64) {
        // xorshift never leaves zero, so a zero seed is moved off it.
        self.rng = (seed ^ SEED).max(1);
    }

    /// Completions so far.
    pub fn completions(&self) -> u64 {
        self.done
    }

    /// The sample at time zero, before anything ran.
    pub fn first_sample(&self) -> ControlSample {
        let mut s = ControlSample {
            tasks_left: self.tasks,
            mem_available_bytes: Some(self.memory_bytes),
            load_avg: Some(self.other_load),
            machine_busy: Some(0.0),
            ..ControlSample::default()
        };
        s.task_cpu_wait = self.measures_cpu_wait.then_some(Duration::ZERO);
        s
    }

    /// The concurrency with the best throughput for the model in force now (the smallest such).
    pub fn best(&self) -> usize {
        let limit = 4096;
        let mut best = (1, 0.0);
        for n in 1..=limit {
            let x = self.throughput_at(n);
            if x > best.1 * (1.0 + 1e-9) {
                best = (n, x);
            }
        }
        best.0
    }

    /// The fewest in flight whose throughput reaches `share` of the best (0.95: within 5 %), for
    /// the model in force now: where the band of good counts begins when throughput rises
    /// smoothly toward a peak ([`Model::Mixed`]) rather than reaching it at one count.
    pub fn enough(&self, share: f64) -> usize {
        let best = self.best();
        let wanted = self.throughput_at(best) * share;
        (1..=best)
            .find(|&n| self.throughput_at(n) >= wanted)
            .unwrap_or(best)
    }

    /// The model's throughput (completions per second) at `n` in flight, for the model in
    /// force now.
    pub fn throughput_at(&self, n: usize) -> f64 {
        point(self.model.current(self.done), n as f64, self.cores as f64).throughput
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64*: tiny, seeded, and good enough for test noise.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let z = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// Runs [`Sim::STEP`] at `target` tasks in flight (fewer when fewer are left) and returns
    /// the sample taken at its end.
    pub fn step(&mut self, target: usize) -> ControlSample {
        let left = self.tasks.map(|t| t.saturating_sub(self.done));
        let n = left.map_or(target as u64, |l| l.min(target as u64));
        let cores = self.cores as f64;
        let p = point(self.model.current(self.done), n as f64, cores);
        let dt = Self::STEP.as_secs_f64();
        let jitter = 1.0 + self.noise * self.uniform();
        let lat_jitter = 1.0 + self.noise * self.uniform();
        self.elapsed += Self::STEP;
        self.done_f += p.throughput * dt * jitter.max(0.0);
        let mut done = self.done_f.floor() as u64;
        if let Some(t) = self.tasks {
            done = done.min(t);
        }
        let new = done.saturating_sub(self.done) as f64;
        self.done = done;
        let latency = p.latency * lat_jitter.max(0.0);
        self.cpu += new * p.cpu;
        self.cpu_wait += new * (p.cpu_wait + latency * self.others_wait_share.clamp(0.0, 1.0));
        self.wall += new * latency;
        self.errors_f += new * p.error_share;
        let running = n;
        let left_now = self.tasks.map(|t| t.saturating_sub(self.done));
        ControlSample {
            elapsed: self.elapsed,
            completions: self.done,
            tasks_left: left_now,
            running,
            queued: left_now.map_or(0, |l| l.saturating_sub(running)),
            task_cpu: Duration::from_secs_f64(self.cpu),
            task_cpu_wait: self
                .measures_cpu_wait
                .then(|| Duration::from_secs_f64(self.cpu_wait)),
            task_wall: Duration::from_secs_f64(self.wall),
            // Other work that wants the CPU takes cores first.
            machine_busy: Some(
                ((p.cores_used + self.other_load.min(cores)) / cores).clamp(0.0, 1.0),
            ),
            mem_available_bytes: Some(
                self.memory_bytes
                    .saturating_sub(n.saturating_mul(self.memory_per_task_bytes)),
            ),
            // Tasks on a core or waiting for one (Little's law): workers beyond the cores
            // lengthen the run queue only when they want the CPU.
            load_avg: Some(self.other_load + p.throughput * (p.cpu + p.cpu_wait)),
            errors: self.errors_f.floor() as u64,
            mean_latency: (new > 0.0).then(|| Duration::from_secs_f64(latency)),
            // Threads are not modelled: the rise on idle cores has tests of its own.
            runnable: None,
        }
    }
}
