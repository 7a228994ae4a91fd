//! The steering loop: every `interval` (100 ms by default, more often in the first few
//! hundred milliseconds) it reads a running executor's
//! recorder and the machine, hands the [`Controller`] a [`ControlSample`], applies the target it
//! returns, and keeps a [`Sample`](crate::monitor::Sample) and every change of concurrency in the
//! run's records.
//!
//! It runs on a thread of its own, off the tasks' hot path: the only cost to the workers is the
//! uncontended per-worker lock the recorder takes when the loop sums their totals, once per
//! sample.
//!
//! An executor takes part by implementing [`Steerable`]; [`Steering::start`] starts the loop and
//! dropping the [`Steering`] (or [`Steering::stop`]) ends it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::monitor::sampler::MachineSampler;
use crate::monitor::Recorder;
use crate::pool::PoolError;
use crate::sync::{lock, wait_timeout};
use crate::tune::controller::{ControlSample, Controller, ControllerConfig};

/// How often the loop samples by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// What the steering loop needs of an executor: its recorder, its concurrency, and a way to set
/// it. Implemented by each pool's internals and by the command runner's slot gate.
pub trait Steerable: Send + Sync + 'static {
    /// The run's recorder.
    fn recorder(&self) -> &Recorder;
    /// The concurrency in effect now (workers alive, slots open).
    fn live(&self) -> usize;
    /// Asks for a new concurrency.
    fn set_target(&self, n: usize) -> Result<(), PoolError>;
    /// Tasks not finished yet, running ones included, when the executor knows.
    fn tasks_left(&self) -> Option<u64> {
        None
    }
}

/// A running steering loop; dropping it stops the loop and waits for its thread.
#[derive(Debug)]
pub struct Steering {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Steering {
    /// Starts steering `target` with a controller built from `config`, sampling every
    /// `interval`. The controller's first target is applied at once.
    pub fn start<S: Steerable>(
        target: S,
        config: ControllerConfig,
        interval: Duration,
    ) -> std::io::Result<Steering> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let interval = interval.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("pardo-steer".into())
            .spawn(move || run(target, Some(Controller::new(config)), interval, &flag))?;
        Ok(Steering {
            stop,
            thread: Some(thread),
        })
    }

    /// Starts a loop that only samples `target` every `interval` and never changes its
    /// concurrency: a fixed-size run gets the same time series (running, queued, CPU) for its
    /// reports as a steered one, for one short read of the counters and `/proc` per interval.
    pub fn sample_only<S: Steerable>(target: S, interval: Duration) -> std::io::Result<Steering> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let interval = interval.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("pardo-sample".into())
            .spawn(move || run(target, None, interval, &flag))?;
        Ok(Steering {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the loop and waits for it. Samples and changes already taken stay in the records.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            // Never join from the loop's own thread (a target dropped inside a callback).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Cumulative figures at the previous sample, for the per-window latency.
#[derive(Default)]
struct Previous {
    done: u64,
    busy_ns: u64,
}

fn run<S: Steerable>(
    target: S,
    mut ctl: Option<Controller>,
    interval: Duration,
    stop: &(Mutex<bool>, Condvar),
) {
    let rec = target.recorder().clone();
    let mut machine = MachineSampler::new();
    // The busy fraction needs two readings: take the first now.
    let _ = machine.sample();
    let mut current = target.live();
    if let Some(first) = ctl.as_ref().map(Controller::target) {
        if first != current && target.set_target(first).is_ok() {
            rec.note_change(
                current as u64,
                first as u64,
                "start at the core count".into(),
            );
            current = first;
        }
    }
    let mut prev = Previous::default();
    // Sample quickly for the first `interval` and then slow down to it: a short run must not
    // spend its whole life at the starting count waiting for the first samples (the jump for
    // waiting tasks needs one completion per worker, which 20 ms tasks give after 20 ms, and
    // the rise on idle cores multiplies the count by about four per sample: 200 × `sleep
    // 0.05` at 12 ms per sample spent its first 40 ms under 30 jobs, while two idle cores
    // could have been starting them). A sample costs a few reads of `/proc`, tens of µs.
    // A fixed count, only sampled, has nothing to decide early.
    let fast = (interval / if ctl.is_some() { 25 } else { 8 }).max(Duration::from_millis(1));
    let mut wait = fast;
    let mut waited = Duration::ZERO;
    // The controller's first sample only marks where the run starts: take it at once, so the
    // first sample after `fast` can already decide.
    let mut mark_now = ctl.is_some();
    loop {
        if !std::mem::take(&mut mark_now) {
            let stopped = lock(&stop.0);
            if *stopped {
                return;
            }
            let stopped = wait_timeout(&stop.1, stopped, wait);
            waited += wait;
            if waited >= interval {
                wait = (wait * 2).min(interval);
            }
            if *stopped {
                return;
            }
        }
        let totals = rec.totals();
        let counters = rec.counters();
        let m = machine.sample();
        let done = counters.done;
        let busy_ns = totals.busy_ns;
        let mean_latency = (done > prev.done).then(|| {
            Duration::from_nanos(busy_ns.saturating_sub(prev.busy_ns) / (done - prev.done))
        });
        prev = Previous { done, busy_ns };
        let s = ControlSample {
            elapsed: Duration::from_nanos(rec.now_ns()),
            completions: done,
            tasks_left: target.tasks_left(),
            running: counters.running,
            queued: counters.queued(),
            task_cpu: Duration::from_nanos(totals.cpu_ns),
            task_cpu_wait: totals.cpu_wait_ns.map(Duration::from_nanos),
            task_wall: Duration::from_nanos(busy_ns),
            errors: counters.failed,
            mean_latency,
            ..ControlSample::default()
        }
        .with_machine(&m);
        let Some(ctl) = ctl.as_mut() else {
            let live = target.live() as u64;
            push_sample(&rec, &totals, &m, live, live);
            continue;
        };
        let decision = ctl.observe(&s);
        if decision.target != current {
            match target.set_target(decision.target) {
                Ok(()) => {
                    rec.note_change(
                        current as u64,
                        decision.target as u64,
                        decision.reason.to_string(),
                    );
                    current = decision.target;
                }
                // The executor refused (e.g. a worker process could not start): keep what runs;
                // the controller sees the live count at the next sample.
                Err(_) => current = target.live(),
            }
        }
        push_sample(
            &rec,
            &totals,
            &m,
            decision.target as u64,
            target.live() as u64,
        );
    }
}

fn push_sample(
    rec: &Recorder,
    totals: &crate::monitor::Totals,
    m: &crate::monitor::sampler::MachineSample,
    target: u64,
    live: u64,
) {
    let mut sample = rec.sample_counters(target, live);
    sample.task_cpu_ns = totals.cpu_ns;
    sample.machine_busy = m.busy;
    sample.mem_available_bytes = m.mem_available_bytes;
    sample.load_avg = m.load_avg;
    rec.push_sample(sample);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{Retention, RunRecord};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An executor that only remembers the target it was given.
    struct Fake {
        rec: Recorder,
        live: Arc<AtomicUsize>,
    }

    impl Steerable for Fake {
        fn recorder(&self) -> &Recorder {
            &self.rec
        }
        fn live(&self) -> usize {
            self.live.load(Ordering::Relaxed)
        }
        fn set_target(&self, n: usize) -> Result<(), PoolError> {
            self.live.store(n, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn the_loop_applies_the_first_target_samples_and_stops_when_dropped() {
        let rec = Recorder::new(RunRecord::now("test", 1), true, Retention::All);
        let live = Arc::new(AtomicUsize::new(1));
        let cfg = ControllerConfig::new(3, 64);
        let steering = Steering::start(
            Fake {
                rec: rec.clone(),
                live: Arc::clone(&live),
            },
            cfg,
            Duration::from_millis(1),
        )
        .unwrap();
        // Wait (bounded) for a few samples rather than for a span of time.
        for _ in 0..10_000 {
            if rec.samples().len() >= 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(steering);
        let samples = rec.samples();
        assert!(samples.len() >= 3, "{samples:?}");
        assert_eq!(live.load(Ordering::Relaxed), 3, "started at the core count");
        let changes = rec.changes();
        assert_eq!((changes[0].from, changes[0].to), (1, 3), "{changes:?}");
        // Stopped: no sample is added after the drop returned.
        let n = rec.samples().len();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(rec.samples().len(), n);
    }
}
