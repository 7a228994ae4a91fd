//! `pardo demo`: pardo's built-in workloads, run and measured, with the verdicts side by side.

use std::process::ExitCode;
use std::time::Duration;

use pardo::monitor::{available_cores, format_duration};
use pardo::{Report, ShutdownMode, ThreadPool};
use pardo_demo::compare::{compare, Workload as CompareWorkload};

/// One workload of the demo: a name and the task to run `tasks` times.
struct Workload {
    name: String,
    tasks: u64,
    run: fn(u64),
}

const HASH_BYTES: usize = 4 << 20;
const WAIT: Duration = Duration::from_millis(20);

fn hash_task(i: u64) {
    std::hint::black_box(pardo_demo::workloads::hash_block(i, HASH_BYTES));
}

fn wait_task(_: u64) {
    pardo_demo::workloads::wait_for(WAIT);
}

/// Runs `w` on a fresh thread pool of `workers` and returns the pool's report.
fn measure(w: &Workload, workers: usize) -> anyhow::Result<Report> {
    let pool = ThreadPool::builder().workers(workers).build()?;
    for result in pool.map(0..w.tasks, w.run).chunk_size(1) {
        result?;
    }
    Ok(pool.shutdown(ShutdownMode::Wait))
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cores = available_cores();
    let cpu = Workload {
        name: format!("hash {} MiB", HASH_BYTES >> 20),
        tasks: 16 * cores as u64,
        run: hash_task,
    };
    let io = Workload {
        name: format!("wait {} ms", WAIT.as_millis()),
        tasks: 64,
        run: wait_task,
    };

    println!(
        "pardo demo: the thread pool on {cores} core(s), each workload at 1 worker and more\n"
    );
    println!(
        "{:<16} {:>7} {:>6} {:>10} {:>8} {:>10} {:>9}  verdict",
        "workload", "workers", "tasks", "wall", "speedup", "efficiency", "cpu/wall"
    );
    let mut last = Vec::new();
    for w in [&cpu, &io] {
        let one = measure(w, 1)?;
        let mut sizes = vec![1, cores];
        // Ask the one-worker run what it recommends and show that too, measured.
        if let Some(suggested) = suggested_workers(&one) {
            if !sizes.contains(&suggested) {
                sizes.push(suggested);
            }
        }
        let mut reports = vec![(1, one)];
        for &n in &sizes[1..] {
            reports.push((n, measure(w, n)?));
        }
        for (n, r) in &reports {
            println!(
                "{:<16} {:>7} {:>6} {:>10} {:>8.2} {:>9.0}% {:>9}  {}",
                w.name,
                n,
                r.tasks,
                format_duration(r.wall_ns),
                r.speedup,
                r.efficiency * 100.0,
                r.cpu_ratio.map_or("-".to_owned(), |c| format!("{c:.2}")),
                r.workload
            );
        }
        let base = reports[0].1.wall_ns as f64;
        if let Some((n, best)) = reports.iter().min_by_key(|(_, r)| r.wall_ns) {
            last.push(format!(
                "{}: fastest at {n} worker(s), {:.1}x the wall-clock speed of 1 worker",
                w.name,
                base / best.wall_ns.max(1) as f64
            ));
        }
        if let Some((n, r)) = reports.last() {
            for f in &r.findings {
                last.push(format!("{} at {n} worker(s): {f}", w.name));
            }
        }
    }
    println!();
    for line in last {
        println!("- {line}");
    }
    compare_executors(cores)?;
    Ok(ExitCode::SUCCESS)
}

/// Choose by workload: the same CPU-bound and I/O-bound jobs on threads, processes and async,
/// one table each, every number from the pools' own reports.
fn compare_executors(cores: usize) -> anyhow::Result<()> {
    println!("\nthe same workloads on each executor (thread / process / async pool)\n");
    let cpu = compare(CompareWorkload::Cpu {
        tasks: 8 * cores as u64,
        bytes: HASH_BYTES as u64,
        workers: cores,
    })?;
    println!("{cpu}");
    let io = compare(CompareWorkload::Http {
        requests: 200,
        delay: WAIT,
        concurrency: 16,
        workers: cores,
    })?;
    println!("{io}");
    Ok(())
}

/// The worker count a report's findings recommend, if any, capped for a demo.
fn suggested_workers(r: &Report) -> Option<usize> {
    r.findings.iter().find_map(|f| match f {
        pardo::Finding::IoBound {
            suggested_workers, ..
        } => Some((*suggested_workers).min(64)),
        _ => None,
    })
}
