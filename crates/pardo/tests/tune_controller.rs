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

/// The bench's `mixed` jobs on 2 cores (`bench/autotune`): a gzip of 128 KiB, about 8 ms of
/// CPU, then `sleep 0.05`.
fn bench_mixed() -> Model {
    Model::mixed(Duration::from_millis(8), Duration::from_millis(50))
}

/// The bench's `sleep` jobs: `sleep 0.05`, whose shell and process starts take about 1.5 ms of
/// CPU.
fn bench_sleep() -> Model {
    Model::mixed(Duration::from_micros(1500), Duration::from_millis(50))
}

/// Where the cores fill on average: `cores × (cpu + wait) / cpu` in flight.
fn knee(cpu: Duration, wait: Duration, cores: usize) -> f64 {
    cores as f64 * (cpu + wait).as_secs_f64() / cpu.as_secs_f64()
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
        (bench_mixed(), 200),
        (bench_mixed(), 2000),
        (bench_sleep(), 200),
        (bench_sleep(), 2000),
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
fn waiting_work_jumps_past_the_knee_into_the_band_of_best_counts() {
    // The bench's two shapes that missed 1.10× by landing at the knee (15 and 46 jobs).
    let shapes = [
        ("mixed", bench_mixed(), Duration::from_millis(8)),
        ("sleep", bench_sleep(), Duration::from_micros(1500)),
    ];
    for (name, model, cpu) in shapes {
        // Pools measure the wait for a core, commands do not.
        for measures_cpu_wait in [true, false] {
            let mut sim = Sim::new(model.clone(), 2);
            sim.tasks = Some(200);
            sim.measures_cpu_wait = measures_cpu_wait;
            let knee = knee(cpu, Duration::from_millis(50), 2);
            // The band of counts within 5 % of the peak begins past the knee.
            let lo = sim.enough(0.95);
            assert!(lo as f64 > knee, "{name}: band from {lo}, knee {knee}");
            let mut c = Controller::new(ControllerConfig::new(2, 256));
            let run = drive(&mut c, &mut sim, 100);
            let t = trace(&run);
            let what = format!("{name}, wait measured: {measures_cpu_wait}\n{t}");
            assert_eq!(sim.completions(), 200, "{what}");
            // The first sample (4 completions at most, at 2 workers) makes it jump into the band,
            // and no further than twice the knee.
            let first = &run[0];
            assert!(first.sample.completions <= 4, "{what}");
            assert!(
                matches!(first.decision.reason, Reason::JumpForWaiting { .. }),
                "{what}"
            );
            let hi = (2.0 * knee).ceil() as usize;
            // It stays there until the run drains: no move back down on the queue it made.
            for s in run.iter().skip(1) {
                if s.sample.tasks_left.unwrap_or(0) <= s.ran_at as u64 {
                    break;
                }
                assert!((lo..=hi).contains(&s.ran_at), "band {lo}..={hi}: {what}");
            }
        }
    }
}

#[test]
fn waiting_work_queued_on_the_cores_settles_in_the_band_on_a_long_run() {
    for measures_cpu_wait in [true, false] {
        let mut sim = Sim::new(bench_mixed(), 2);
        sim.measures_cpu_wait = measures_cpu_wait;
        let lo = sim.enough(0.95);
        let mut c = Controller::new(ControllerConfig::new(2, 256));
        let run = drive(&mut c, &mut sim, 600);
        let t = trace(&run);
        let what = format!("wait measured: {measures_cpu_wait}\n{t}");
        // Climbing trims the jump's overshoot, but not below the band: within 6 s (about 1,500
        // completions) it holds there, leaving it only for short probes.
        let settled = first_settled(&run, lo, 4 * lo, 100).expect(&what);
        assert!(settled <= 60, "settled at step {settled}\n{what}");
        let after = &run[settled..];
        assert!(share_within(after, lo, 4 * lo) >= 0.9, "{what}");
        assert!(throughput_share(&sim, after) >= 0.95, "{what}");
        println!("{what}");
    }
}

#[test]
fn cpu_hungry_tasks_on_an_idle_machine_do_not_jump_the_count_down() {
    // Tasks of 0.5 ms CPU in 50 ms make it jump far up; then the tasks read CPU-bound.
    let hungry = |ms, done, busy| sample_of(Duration::from_millis(50), ms, done, busy, 0.0);
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    c.observe(&waiting_sample(0, 0, 0.1, 0.0));
    let jumped = c.observe(&waiting_sample(100, 8, 0.1, 0.0));
    assert!(
        matches!(jumped.reason, Reason::JumpForWaiting { .. }),
        "{jumped:?}"
    );
    let mut at = |ms, done, busy| {
        let mut s = hungry(ms, done, busy);
        // The first 8 tasks waited, the rest used the CPU all along.
        s.task_cpu = Duration::from_micros(500) * 8 + Duration::from_millis(50) * (done - 8) as u32;
        c.observe(&s)
    };
    // The cores stay idle: whatever the tasks report, the CPU is not what limits them.
    let d = at(800, 200, 0.2);
    assert!(!matches!(d.reason, Reason::JumpForCpu { .. }), "{d:?}");
    assert_eq!(d.target, jumped.target, "{d:?}");
    // The cores fill up: now the count comes down to them.
    let d = at(1500, 400, 1.0);
    assert!(matches!(d.reason, Reason::JumpForCpu { .. }), "{d:?}");
    assert_eq!(d.target, CORES, "{d:?}");
}

#[test]
fn the_queue_a_jump_made_does_not_make_it_jump_again() {
    // Commands do not measure the wait for a core: queueing for the cores shows as a longer
    // wall time, so the same CPU over more wall reads as tasks that wait more.
    let cpu = Duration::from_millis(10);
    let mut c = Controller::new(ControllerConfig::new(CORES, 1024));
    c.observe(&sample_of(cpu, 0, 0, 0.1, 0.0));
    let jumped = c.observe(&sample_of(cpu, 100, 8, 0.1, 0.0));
    assert!(
        matches!(jumped.reason, Reason::JumpForWaiting { .. }),
        "{jumped:?}"
    );
    // After the first 8, each task takes 200 ms for its 10 ms of CPU.
    let slower = |ms, done: u64, busy| {
        let mut s = sample_of(cpu, ms, done, busy, 0.0);
        s.task_wall = Duration::from_millis(50 * 8 + 200 * (done - 8));
        s
    };
    // On full cores that is the queue for them: no second jump.
    let d = c.observe(&slower(800, 200, 1.0));
    assert!(!matches!(d.reason, Reason::JumpForWaiting { .. }), "{d:?}");
    assert_eq!(d.target, jumped.target, "{d:?}");
    // Beside idle cores the tasks really wait on something else, and more of them fit.
    let d = c.observe(&slower(1500, 400, 0.3));
    assert!(matches!(d.reason, Reason::JumpForWaiting { .. }), "{d:?}");
    assert!(d.target > jumped.target, "{d:?}");
}

#[test]
fn a_jump_leaves_no_short_last_wave() {
    // 2 ms of CPU in 50 ms on 2 cores: the knee is at 50, the jump at 98; with 198 tasks left
    // that is three waves (98, 98, 2), and 99 makes it two.
    let mut c = Controller::new(ControllerConfig::new(2, 256));
    let at = |ms, done| {
        let mut s = sample_of(Duration::from_millis(2), ms, done, 0.1, 0.0);
        s.tasks_left = Some(200 - done);
        s
    };
    c.observe(&at(0, 0));
    let d = c.observe(&at(60, 2));
    assert!(matches!(d.reason, Reason::JumpForWaiting { .. }), "{d:?}");
    assert_eq!(d.target, 99, "{d:?}");
}

/// A sample `ms` into a run of `left` tasks on 2 cores, before any finished: `running` of
/// them running, `runnable` threads runnable on the machine (the sampler included).
fn before_any_ended(ms: u64, left: u64, running: u64, runnable: u64) -> ControlSample {
    let mut s = ControlSample::default();
    s.elapsed = Duration::from_millis(ms);
    s.tasks_left = Some(left);
    s.running = running;
    s.queued = left - running;
    s.machine_busy = Some(0.05);
    s.runnable = Some(runnable);
    s
}

#[test]
fn waiting_tasks_on_idle_cores_raise_the_count_before_any_finishes() {
    let mut c = Controller::new(ControllerConfig::new(2, 256));
    assert_eq!(c.observe(&before_any_ended(0, 200, 0, 1)).target, 2);
    // Every worker busy, nothing but the sampler runnable: the tasks wait.
    let d = c.observe(&before_any_ended(13, 200, 2, 1));
    assert!(
        matches!(
            d.reason,
            Reason::IdleCores {
                wanting: 0,
                running: 2
            }
        ) && d.target > 2,
        "{d:?}"
    );
    let first = d.target;
    // Not all of the new workers started yet: nothing to judge by.
    let d = c.observe(&before_any_ended(25, 200, first as u64 - 1, 1));
    assert_eq!(d.target, first);
    // A sample while the runner starts them (it wants a core) holds the count too.
    let d = c.observe(&before_any_ended(
        38,
        200,
        first as u64,
        1 + first as u64 / 2,
    ));
    assert_eq!(d.target, first);
    // Started, and waiting: up again, as far as the tasks left allow at most.
    let d = c.observe(&before_any_ended(50, 200, first as u64, 1));
    assert!(d.target > first && d.target <= 200, "{d:?}");
}

#[test]
fn cpu_bound_tasks_do_not_rise_before_they_finish() {
    let mut c = Controller::new(ControllerConfig::new(2, 256));
    c.observe(&before_any_ended(0, 24, 0, 1));
    for ms in [13, 25, 38, 50, 63] {
        // Each running task wants a core, and so does the sampler.
        let d = c.observe(&before_any_ended(ms, 24, 2, 3));
        assert_eq!(d.target, 2, "{d:?}");
    }
    // One core's worth of demand on two tasks is no evidence of waiting either.
    let d = c.observe(&before_any_ended(75, 24, 2, 2));
    assert_eq!(d.target, 2, "{d:?}");
}

#[test]
fn a_count_raised_on_idle_cores_goes_where_the_measured_demand_says() {
    // Tasks of 2.5 ms CPU in 50 ms: demand 0.05, the knee at 40.
    let finished = |c: &mut Controller, ms: u64, done: u64, cpu_ms: u64| {
        let mut s = before_any_ended(ms, 200 - done, c.target() as u64, 1);
        s.completions = done;
        s.task_cpu = Duration::from_millis(cpu_ms * done);
        s.task_wall = Duration::from_millis(50 * done);
        s.machine_busy = Some(0.9);
        c.observe(&s)
    };
    let mut waiting = Controller::new(ControllerConfig::new(2, 256));
    waiting.observe(&before_any_ended(0, 200, 0, 1));
    let risen = waiting.observe(&before_any_ended(13, 200, 2, 1)).target;
    assert!(risen < 40, "{risen}");
    // The first completions measure the demand: the jump goes past the knee, though the
    // count is no longer half of it.
    let d = finished(&mut waiting, 55, 4, 2);
    assert!(
        matches!(d.reason, Reason::JumpForWaiting { .. }) && d.target > 40,
        "{d:?}"
    );

    // Tasks that turn out to want the CPU (50 ms of it in 50 ms) come back to the cores.
    let mut hungry = Controller::new(ControllerConfig::new(2, 256));
    hungry.observe(&before_any_ended(0, 200, 0, 1));
    let mut up = 2;
    for ms in [13, 25, 38] {
        up = hungry
            .observe(&before_any_ended(ms, 200, up as u64, 1))
            .target;
    }
    assert!(up >= 8, "{up}");
    let d = finished(&mut hungry, 55, 8, 50);
    assert!(
        matches!(d.reason, Reason::JumpForCpu { .. }) && d.target <= 2,
        "{d:?}"
    );
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
    // Tasks that spend half their time on the CPU: adding them would lengthen the queue.
    let model = Model::Server {
        service: Duration::from_millis(50),
        capacity: CAPACITY,
        cpu_per_task: Duration::from_millis(25),
        contention: 0.0,
        errors_above: None,
    };
    let mut sim = Sim::new(model, CORES);
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
        (any::<u64>(), any::<Option<u64>>(), any::<Option<u64>>()),
    )
        .prop_map(
            |(
                (t, done, left, running),
                (cpu, wait, wall),
                (busy, mem, load),
                (errors, lat, runnable),
            )| {
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
                s.runnable = runnable.map(|r| r % 300);
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
    sample_of(Duration::from_micros(500), ms, done, busy, load)
}

/// As [`waiting_sample`], with `cpu` of CPU in each task.
fn sample_of(cpu: Duration, ms: u64, done: u64, busy: f64, load: f64) -> ControlSample {
    let mut s = ControlSample::default();
    s.elapsed = Duration::from_millis(ms);
    s.completions = done;
    s.task_wall = Duration::from_millis(50 * done);
    s.task_cpu = cpu * done as u32;
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
    // Tasks on the CPU for 20 of their 50 ms: enough to add to the queue.
    let at = |ms, done, busy, load| sample_of(Duration::from_millis(20), ms, done, busy, load);
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    c.observe(&at(0, 0, 0.1, 0.0));
    let jumped = c.observe(&at(100, 8, 0.1, 0.0)).target;
    assert!(jumped > CORES);
    // The same tasks, but the machine fills up and its queue grows.
    let d = c.observe(&at(200, 16, 1.0, 3.0 * CORES as f64));
    assert!(matches!(d.reason, Reason::Overloaded { .. }), "{d:?}");
    assert!(d.target < jumped && d.target >= CORES, "{d:?}");
    // Before the load can have moved, no second cut.
    let d = c.observe(&at(300, 24, 1.0, 3.0 * CORES as f64));
    assert!(!d.changed, "{d:?}");
}

#[test]
fn other_programs_queue_does_not_cut_tasks_that_barely_use_the_cpu() {
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    c.observe(&waiting_sample(0, 0, 1.0, 3.0 * CORES as f64));
    let jumped = c.observe(&waiting_sample(100, 8, 1.0, 3.0 * CORES as f64));
    assert!(
        matches!(jumped.reason, Reason::JumpForWaiting { .. }),
        "{jumped:?}"
    );
    let d = c.observe(&waiting_sample(1200, 200, 1.0, 3.0 * CORES as f64));
    assert!(!matches!(d.reason, Reason::Overloaded { .. }), "{d:?}");
    assert!(d.target >= jumped.target, "{d:?}");
}

/// The demo's shape: 64 tasks that wait 20 ms each, on 2 cores.
fn short_waiting_run(other_load: f64) -> Sim {
    let mut sim = Sim::new(Model::server(Duration::from_millis(20), 100_000), 2);
    sim.tasks = Some(64);
    sim.other_load = other_load;
    // Where others keep the cores busy, a task that wakes waits for one: 15 % of its time
    // (what the demo's waits showed on a machine with a load of 20 on 2 cores).
    if other_load >= 2.0 {
        sim.others_wait_share = 0.15;
    }
    sim
}

#[test]
fn a_short_waiting_run_jumps_on_its_first_completions_even_on_a_machine_others_keep_busy() {
    // Other programs keep both cores busy (and the run queue a little long); these tasks barely
    // use the CPU, so that is no reason to leave them at 2 workers.
    for other_load in [0.0, 2.0, 2.9, 6.0] {
        let mut sim = short_waiting_run(other_load);
        let mut c = Controller::new(ControllerConfig::new(2, 256));
        let run = drive(&mut c, &mut sim, 30);
        let t = trace(&run);
        assert!(
            matches!(run[0].decision.reason, Reason::JumpForWaiting { .. }),
            "other load {other_load}\n{t}"
        );
        // Never above the tasks left: 64 less what finished in the first 100 ms at 2 workers.
        let left = run[0].sample.tasks_left.unwrap_or(0) as usize;
        assert_eq!(run[0].decision.target, left, "other load {other_load}\n{t}");
        let best = (1..=64)
            .map(|j| steps_to_finish(short_waiting_run(other_load), None, j))
            .min()
            .unwrap_or(usize::MAX);
        let auto = steps_to_finish(
            short_waiting_run(other_load),
            Some(Controller::new(ControllerConfig::new(2, 256))),
            0,
        );
        assert!(auto <= best + 1, "auto {auto} steps, best {best}\n{t}");
    }
}

#[test]
fn cpu_bound_work_on_a_machine_others_keep_busy_stays_at_the_cores() {
    let mut sim = Sim::new(cpu(), CORES);
    sim.other_load = CORES as f64;
    let mut c = Controller::new(ControllerConfig::new(CORES, 256));
    let run = drive(&mut c, &mut sim, 300);
    let t = trace(&run);
    assert!(run.iter().all(|s| s.decision.target <= CORES), "{t}");
}
