//! The concurrency controller against simulated workloads: it finds the best count, stays
//! there, and keeps every bound. Simulated time only: one step is 100 ms of the simulation.

use std::time::Duration;

use pardo::tune::controller::{
    timeline, ControlSample, Controller, ControllerConfig, Decision, Mode, Reason,
};
use pardo::tune::sim::{Model, Sim};
use proptest::prelude::*;

const CORES: usize = 4;
/// A server that serves 40 requests of 50 ms at once: best at 40 in flight.
const CAPACITY: u64 = 40;

struct Step {
    /// The target the sample was taken at.
    ran_at: usize,
    sample: ControlSample,
    decision: Decision,
}

/// Runs `steps` samples of `sim` under `c`, from its start.
fn drive(c: &mut Controller, sim: &mut Sim, steps: usize) -> Vec<Step> {
    let target = c.observe(&sim.first_sample()).target;
    drive_on(c, sim, target, steps)
}

/// Runs `steps` more samples of `sim` under `c`, which last chose `target`.
fn drive_on(c: &mut Controller, sim: &mut Sim, mut target: usize, steps: usize) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let sample = sim.step(target);
        let decision = c.observe(&sample);
        out.push(Step {
            ran_at: target,
            sample,
            decision,
        });
        target = decision.target;
    }
    out
}

/// The changes of target, for failure messages.
fn trace(run: &[Step]) -> String {
    run.iter()
        .enumerate()
        .filter(|(_, s)| s.decision.changed)
        .map(|(i, s)| {
            format!(
                "#{i}: {}->{} ({})",
                s.ran_at, s.decision.target, s.decision.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Share of the steps in `run` that ran at a count within `lo..=hi`.
fn share_within(run: &[Step], lo: usize, hi: usize) -> f64 {
    let inside = run.iter().filter(|s| (lo..=hi).contains(&s.ran_at)).count();
    inside as f64 / run.len() as f64
}

/// First step from which the count stays within `lo..=hi` for the next `hold` steps.
fn first_settled(run: &[Step], lo: usize, hi: usize, hold: usize) -> Option<usize> {
    (0..run.len().saturating_sub(hold)).find(|&i| {
        run[i..i + hold]
            .iter()
            .all(|s| (lo..=hi).contains(&s.ran_at))
    })
}

fn throughput_share(sim: &Sim, run: &[Step]) -> f64 {
    let best = sim.throughput_at(sim.best());
    let mean = run.iter().map(|s| sim.throughput_at(s.ran_at)).sum::<f64>() / run.len() as f64;
    mean / best
}

fn server() -> Model {
    Model::server(Duration::from_millis(50), CAPACITY)
}

/// The same server, with throughput falling beyond its capacity or failing above a count.
fn server_with(contention: f64, errors_above: Option<u64>) -> Model {
    Model::Server {
        service: Duration::from_millis(50),
        capacity: CAPACITY,
        cpu_per_task: Duration::from_micros(500),
        contention,
        errors_above,
    }
}

fn cpu() -> Model {
    Model::cpu(Duration::from_millis(20))
}

fn latency_config() -> ControllerConfig {
    let mut cfg = ControllerConfig::new(CORES, 256);
    cfg.mode = Mode::Latency;
    cfg
}

#[test]
fn cpu_bound_work_settles_at_the_core_count() {
    let mut sim = Sim::new(cpu(), CORES);
    assert_eq!(sim.best(), CORES);
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    let run = drive(&mut c, &mut sim, 600);
    let t = trace(&run);
    // The machine is full at the cores, so the controller never adds a worker above them.
    assert!(run.iter().all(|s| s.ran_at <= CORES), "{t}");
    // Settled within 3 s of simulated time; afterwards only a probe one below, now and then.
    let settled = first_settled(&run, CORES, CORES, 100).expect(&t);
    assert!(settled <= 30, "settled at step {settled}\n{t}");
    let after = &run[settled..];
    assert!(after.iter().all(|s| s.ran_at >= CORES - 1), "{t}");
    assert!(share_within(after, CORES, CORES) >= 0.95, "{t}");
    assert!(throughput_share(&sim, after) >= 0.95, "{t}");
}

#[test]
fn latency_bound_work_climbs_to_the_server_capacity() {
    let mut sim = Sim::new(server(), CORES);
    assert_eq!(sim.best(), CAPACITY as usize);
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    let run = drive(&mut c, &mut sim, 600);
    let t = trace(&run);
    // Tasks barely use the CPU: the first completions make it jump far above the cores.
    assert!(
        matches!(run[0].decision.reason, Reason::JumpForWaiting { .. }),
        "{t}"
    );
    // Within 10 s (about 7,000 completions) it holds between the capacity and 20 % above.
    let (lo, hi) = (CAPACITY as usize, CAPACITY as usize * 12 / 10);
    let settled = first_settled(&run, lo, hi, 100).expect(&t);
    assert!(settled <= 100, "settled at step {settled}\n{t}");
    // Once settled it strays only for short probes, at most a quarter below or above.
    let after = &run[settled..];
    assert!(share_within(after, lo, hi) >= 0.9, "{t}");
    assert!(share_within(after, lo * 3 / 4, hi * 5 / 4) == 1.0, "{t}");
    assert!(throughput_share(&sim, after) >= 0.95, "{t}");
}

#[test]
fn falling_throughput_beyond_the_capacity_brings_the_count_back() {
    let mut sim = Sim::new(server_with(0.5, None), CORES);
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    let run = drive(&mut c, &mut sim, 600);
    let t = trace(&run);
    let settled = first_settled(&run, 30, 48, 100).expect(&t);
    assert!(settled <= 150, "settled at step {settled}\n{t}");
    assert!(throughput_share(&sim, &run[settled..]) >= 0.9, "{t}");
}

#[test]
fn latency_mode_holds_near_the_capacity() {
    let mut sim = Sim::new(server(), CORES);
    let mut c = Controller::new(latency_config());
    let run = drive(&mut c, &mut sim, 600);
    let t = trace(&run);
    let (lo, hi) = (CAPACITY as usize, CAPACITY as usize * 5 / 4);
    let settled = first_settled(&run, lo, hi, 100).expect(&t);
    assert!(settled <= 50, "settled at step {settled}\n{t}");
    assert!(share_within(&run[settled..], lo, hi) == 1.0, "{t}");
}

#[test]
fn latency_mode_backs_off_on_errors() {
    let mut sim = Sim::new(server_with(0.0, Some(20)), CORES);
    let mut c = Controller::new(latency_config());
    let run = drive(&mut c, &mut sim, 600);
    let t = trace(&run);
    assert!(
        run.iter()
            .any(|s| matches!(s.decision.reason, Reason::ErrorBackoff { .. })),
        "{t}"
    );
    // Additive increase, multiplicative decrease: a sawtooth just around the error threshold.
    let after = &run[100..];
    assert!(share_within(after, 16, 22) == 1.0, "{t}");
}

#[test]
fn latency_mode_copes_with_noise() {
    for seed in [11, 12, 13, 14, 15, 16, 17] {
        let mut sim = Sim::new(server(), CORES);
        sim.noise = 0.3;
        sim.seed(seed);
        let mut c = Controller::new(latency_config());
        let run = drive(&mut c, &mut sim, 1000);
        let t = trace(&run);
        let after = &run[100..];
        let (lo, hi) = (CAPACITY as usize * 3 / 4, CAPACITY as usize * 3 / 2);
        assert!(share_within(after, lo, hi) >= 0.9, "seed {seed}\n{t}");
        assert!(throughput_share(&sim, after) >= 0.9, "seed {seed}\n{t}");
    }
}

#[test]
fn phase_change_from_waiting_to_cpu_comes_down_to_the_cores() {
    for measures_cpu_wait in [true, false] {
        let switch_after = 20_000;
        let mut sim = Sim::new(Model::phase(server(), cpu(), switch_after), CORES);
        sim.measures_cpu_wait = measures_cpu_wait;
        let mut c = Controller::new(ControllerConfig::new(CORES, 256));
        let run = drive(&mut c, &mut sim, 1200);
        let t = trace(&run);
        let switched = run
            .iter()
            .position(|s| s.sample.completions >= switch_after)
            .expect(&t);
        assert!(run[switched - 1].ran_at >= CAPACITY as usize, "{t}");
        // Without the wait-for-a-core measure it takes the slow way: load, then climbing down.
        let limit = if measures_cpu_wait { 50 } else { 150 };
        let settled = first_settled(&run[switched..], CORES, CORES, 100).expect(&t);
        assert!(
            settled <= limit,
            "wait measured: {measures_cpu_wait}; settled {settled} steps after the switch\n{t}"
        );
    }
}

#[test]
fn noisy_throughput_still_finds_the_capacity() {
    for seed in 1..=8 {
        let mut sim = Sim::new(server(), CORES);
        // ±30 % on every 100 ms: the controller lengthens its windows until a gain shows.
        sim.noise = 0.3;
        sim.seed(seed);
        let mut c = Controller::new(ControllerConfig::new(CORES, 256));
        let run = drive(&mut c, &mut sim, 1500);
        let t = trace(&run);
        // Settled within 60 s. On the flat part beyond the capacity, noise this large hides
        // the difference between 48 and 64, so the band is wider above than below.
        let after = &run[600..];
        let (lo, hi) = (CAPACITY as usize * 4 / 5, CAPACITY as usize * 2);
        assert!(share_within(after, lo, hi) >= 0.9, "seed {seed}\n{t}");
        assert!(throughput_share(&sim, after) >= 0.95, "seed {seed}\n{t}");
    }
}

/// Steps until every task of `sim` finished, at a fixed count or under a controller.
fn steps_to_finish(mut sim: Sim, mut controller: Option<Controller>, fixed: usize) -> usize {
    let mut target = match controller.as_mut() {
        Some(c) => c.observe(&sim.first_sample()).target,
        None => fixed,
    };
    for step in 1..=100_000 {
        let s = sim.step(target);
        if s.tasks_left == Some(0) {
            return step;
        }
        if let Some(c) = controller.as_mut() {
            target = c.observe(&s).target;
        }
    }
    panic!("the run never finished");
}

#[test]
fn automatic_is_within_ten_percent_of_the_best_fixed_count() {
    // The benchmark shapes: 200 and 2,000 sleeps of 50 ms on 2 cores, and CPU-bound work.
    let cases = [
        (Model::server(Duration::from_millis(50), 100_000), 200),
        (Model::server(Duration::from_millis(50), 100_000), 2000),
        (Model::cpu(Duration::from_millis(20)), 500),
    ];
    for (model, tasks) in cases {
        let new_sim = || {
            let mut sim = Sim::new(model.clone(), 2);
            sim.tasks = Some(tasks);
            sim
        };
        let best_fixed = [1, 2, 4, 8, 16, 32, 64]
            .into_iter()
            .map(|j| steps_to_finish(new_sim(), None, j))
            .min()
            .unwrap_or(usize::MAX);
        let auto = steps_to_finish(
            new_sim(),
            Some(Controller::new(ControllerConfig::new(2, 256))),
            0,
        );
        // Steps are 100 ms, so one step of rounding is allowed on top of the 10 %.
        assert!(
            auto as f64 <= best_fixed as f64 * 1.1 + 1.0,
            "{model:?} × {tasks}: automatic {auto} steps, best fixed {best_fixed}"
        );
    }
}

#[test]
fn never_above_the_maximum() {
    for mode in [Mode::Throughput, Mode::Latency] {
        let mut sim = Sim::new(server(), CORES);
        let mut cfg = ControllerConfig::new(CORES, 16);
        cfg.mode = mode;
        let mut c = Controller::new(cfg);
        let run = drive(&mut c, &mut sim, 300);
        let t = trace(&run);
        assert!(run.iter().all(|s| s.decision.target <= 16), "{t}");
        // The best it may reach is the maximum, and it gets there.
        assert!(share_within(&run[100..], 16, 16) >= 0.9, "{mode:?}\n{t}");
    }
}

#[test]
fn never_more_workers_than_tasks_left() {
    for mode in [Mode::Throughput, Mode::Latency] {
        let mut sim = Sim::new(server(), CORES);
        sim.tasks = Some(500);
        let mut cfg = ControllerConfig::new(CORES, 256);
        cfg.mode = mode;
        let mut c = Controller::new(cfg);
        let run = drive(&mut c, &mut sim, 300);
        let t = trace(&run);
        for s in &run {
            let left = s.sample.tasks_left.unwrap_or(0).max(1) as usize;
            assert!(s.decision.target <= left, "{mode:?}\n{t}");
        }
        assert_eq!(sim.completions(), 500, "{t}");
        // The tail of the run is one entry in the history, not one per sample.
        let capped = c
            .history()
            .iter()
            .filter(|h| matches!(h.reason, Reason::CappedByTasksLeft { .. }))
            .count();
        assert!(capped <= 1, "{t}");
    }
}

#[test]
fn memory_floor_keeps_the_count_where_memory_lasts() {
    let mut sim = Sim::new(server(), CORES);
    sim.memory_bytes = 4 << 30;
    sim.memory_per_task_bytes = 100 << 20;
    let floor: u64 = 1 << 30;
    let mut cfg = ControllerConfig::new(CORES, 256);
    cfg.memory_floor_bytes = Some(floor);
    let mut c = Controller::new(cfg);
    let mut run = drive(&mut c, &mut sim, 300);
    let t = trace(&run);
    // What the first tasks took tells how many fit: the jump stops short of the floor.
    assert!(
        run.iter()
            .all(|s| s.sample.mem_available_bytes.unwrap_or(0) >= floor),
        "{t}"
    );
    // 28 fit above the floor with its margin; probes go a quarter below.
    assert!(
        run[100..].iter().all(|s| (21..=28).contains(&s.ran_at)),
        "{t}"
    );

    // Something else takes 2 GiB: the count comes down at once, not a window later.
    sim.memory_bytes -= 2 << 30;
    let at = run.last().map_or(1, |s| s.decision.target);
    let more = drive_on(&mut c, &mut sim, at, 300);
    run.extend(more);
    let t = trace(&run);
    assert!(
        matches!(run[300].decision.reason, Reason::MemoryFloor { .. }) && run[300].decision.changed,
        "{t}"
    );
    let under = run[300..]
        .iter()
        .filter(|s| s.sample.mem_available_bytes.unwrap_or(0) < floor)
        .count();
    assert!(under <= 15, "{under} samples under the floor\n{t}");
    // 2 GiB less 100 MiB per task stays above 1 GiB up to 10 tasks.
    assert!(run[400..].iter().all(|s| s.ran_at <= 10), "{t}");
}

#[test]
fn overloaded_run_queue_stops_the_count_at_the_cores() {
    let mut sim = Sim::new(server(), CORES);
    sim.other_load = 3.0 * CORES as f64;
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    let run = drive(&mut c, &mut sim, 300);
    let t = trace(&run);
    assert!(run.iter().all(|s| s.decision.target <= CORES), "{t}");
}

#[test]
fn reasons_read_as_short_sentences() {
    let r = Reason::JumpForWaiting { cpu_ratio: 0.02 };
    assert_eq!(
        r.to_string(),
        "tasks mostly wait (cpu/wall 0.02), so more fit"
    );
    let r = Reason::HoldMachineBusy { busy: 0.97 };
    assert_eq!(r.to_string(), "machine CPU 97 % busy, no more workers");
}

fn arb_sample() -> impl Strategy<Value = ControlSample> {
    let f = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        any::<f64>(),
        0.0..2.0f64
    ];
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<Option<u64>>(),
            any::<u64>(),
        ),
        (any::<u64>(), any::<Option<u64>>(), any::<u64>()),
        (
            proptest::option::of(f.clone()),
            any::<Option<u64>>(),
            proptest::option::of(f),
        ),
        (any::<u64>(), any::<Option<u64>>()),
    )
        .prop_map(
            |((t, done, left, running), (cpu, wait, wall), (busy, mem, load), (errors, lat))| {
                let mut s = ControlSample::default();
                // Small times often, so windows close and moves happen; huge ones sometimes.
                s.elapsed = Duration::from_nanos(t % 4_000_000_000_000);
                s.completions = done % 1_000_000;
                s.tasks_left = left.map(|l| l % 1000);
                s.running = running;
                s.queued = running / 2;
                s.task_cpu = Duration::from_nanos(cpu);
                s.task_cpu_wait = wait.map(Duration::from_nanos);
                s.task_wall = Duration::from_nanos(wall);
                s.machine_busy = busy;
                s.mem_available_bytes = mem;
                s.load_avg = load;
                s.errors = errors % 100;
                s.mean_latency = lat.map(Duration::from_nanos);
                s
            },
        )
}

proptest! {
    #[test]
    fn target_stays_within_bounds_whatever_the_samples(
        min in 0usize..8,
        max in 0usize..600,
        cores in 0usize..64,
        latency in any::<bool>(),
        floor in any::<Option<u64>>(),
        samples in proptest::collection::vec(arb_sample(), 1..200),
        sorted in any::<bool>(),
    ) {
        let mut cfg = ControllerConfig::new(cores, max);
        cfg.min = min;
        cfg.memory_floor_bytes = floor;
        cfg.mode = if latency { Mode::Latency } else { Mode::Throughput };
        let mut c = Controller::new(cfg);
        let lo = min.max(1);
        let hi = max.max(lo);
        let mut samples = samples;
        if sorted {
            // Time and counters going forward, as a real run's do.
            samples.sort_by_key(|s| s.elapsed);
            let mut done = 0;
            for s in &mut samples {
                done += s.completions % 100;
                s.completions = done;
            }
        }
        for s in &samples {
            let d = c.observe(s);
            prop_assert!((lo..=hi).contains(&d.target), "target {} outside {lo}..={hi}", d.target);
            prop_assert_eq!(d.target, c.target());
        }
        for h in c.history() {
            prop_assert!((lo..=hi).contains(&h.to));
        }
    }
}

#[test]
fn the_timeline_line_leaves_out_probes() {
    let mut sim = Sim::new(server(), CORES);
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    let run = drive(&mut c, &mut sim, 600);
    let end = run.last().map_or(Duration::ZERO, |s| s.sample.elapsed);
    let line = timeline(c.history(), end, Duration::from_secs(1));
    println!("{line}");
    assert!(line.starts_with("j: 4 → 256 → "), "{line}");
    let last = c.target().to_string();
    assert!(line.contains(&format!("→ {last} (")), "{line}");
    // Probes last one window (0.5 s) and are not in the line.
    assert!(!line.contains("→ 52 "), "{line}");
}

/// A sample `ms` into a run where `done` tasks of 50 ms wall and 0.5 ms CPU each finished.
fn waiting_sample(ms: u64, done: u64, busy: f64, load: f64) -> ControlSample {
    let mut s = ControlSample::default();
    s.elapsed = Duration::from_millis(ms);
    s.completions = done;
    s.task_wall = Duration::from_millis(50 * done);
    s.task_cpu = Duration::from_micros(500 * done);
    s.machine_busy = Some(busy);
    s.load_avg = Some(load);
    s
}

#[test]
fn a_long_run_queue_beside_idle_cores_does_not_stop_waiting_tasks() {
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    c.observe(&waiting_sample(0, 0, 0.1, 12.0));
    let d = c.observe(&waiting_sample(100, 8, 0.1, 12.0));
    assert!(matches!(d.reason, Reason::JumpForWaiting { .. }), "{d:?}");
    assert!(d.target > CORES);
}

#[test]
fn an_overloaded_run_queue_on_a_busy_machine_cuts_workers_above_the_cores() {
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    c.observe(&waiting_sample(0, 0, 0.1, 0.0));
    let jumped = c.observe(&waiting_sample(100, 8, 0.1, 0.0)).target;
    assert!(jumped > CORES);
    // The same waiting tasks, but the machine fills up and its queue grows.
    let d = c.observe(&waiting_sample(200, 16, 1.0, 3.0 * CORES as f64));
    assert!(matches!(d.reason, Reason::Overloaded { .. }), "{d:?}");
    assert!(d.target < jumped && d.target >= CORES, "{d:?}");
    // Before the load can have moved, no second cut.
    let d = c.observe(&waiting_sample(300, 24, 1.0, 3.0 * CORES as f64));
    assert!(!d.changed, "{d:?}");
}
