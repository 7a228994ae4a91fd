//! `pardo demo`: pardo's built-in workloads, run and measured, with the verdicts side by side.

use std::process::ExitCode;
use std::time::Duration;

use pardo::monitor::export::RunLog;
use pardo::monitor::{available_cores, format_duration};
use pardo::{Report, ShutdownMode, ThreadPool};
use pardo_demo::compare::{compare, Scenario};

/// One workload of the demo: a name and the task to run `tasks` times.
struct Workload {
    name: String,
    tasks: u64,
    run: fn(u64),
    /// Where the HTML report of its automatic run goes, in the current directory.
    report_file: &'static str,
}

const HASH_BYTES: usize = 4 << 20;
const WAIT: Duration = Duration::from_millis(20);

fn hash_task(i: u64) {
    std::hint::black_box(pardo_demo::workloads::hash_block(i, HASH_BYTES));
}

fn wait_task(_: u64) {
    pardo_demo::workloads::wait_for(WAIT);
}

/// How many workers a demo run gets: a fixed count, or pardo's own choice.
#[derive(Clone, Copy, PartialEq)]
enum Workers {
    Fixed(usize),
    Auto,
}

/// Runs `w` on a fresh thread pool and returns the pool's report.
fn measure(w: &Workload, workers: Workers) -> anyhow::Result<Report> {
    Ok(measure_logged(w, workers)?.0)
}

/// As [`measure`], and everything the pool recorded, for the HTML report.
fn measure_logged(w: &Workload, workers: Workers) -> anyhow::Result<(Report, RunLog)> {
    let builder = ThreadPool::builder();
    let pool = match workers {
        Workers::Fixed(n) => builder.workers(n),
        Workers::Auto => builder.auto().max_workers(w.tasks as usize),
    }
    .build()?;
    pool.recorder()
        .set_setting("command", &format!("pardo demo: {}", w.name));
    for result in pool.map(0..w.tasks, w.run).chunk_size(1) {
        result?;
    }
    let recorder = pool.recorder().clone();
    let report = pool.shutdown(ShutdownMode::Wait);
    let mut log = RunLog::from_recorder(&recorder);
    log.summary = Some(report.clone());
    Ok((report, log))
}

/// Writes the HTML report of one demo run into the current directory and returns its path.
fn write_report(log: &RunLog, file: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::path::PathBuf::from(file);
    crate::see::write_file(&path, "the demo's report to", |out| log.write_html(out))?;
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cores = available_cores();
    let cpu = Workload {
        name: format!("hash {} MiB", HASH_BYTES >> 20),
        tasks: 16 * cores as u64,
        run: hash_task,
        report_file: "pardo-demo-cpu.html",
    };
    let io = Workload {
        name: format!("wait {} ms", WAIT.as_millis()),
        tasks: 64,
        run: wait_task,
        report_file: "pardo-demo-io.html",
    };

    println!(
        "pardo demo: the thread pool on {cores} core(s), each workload at 1 worker, at more, \
         and at the count pardo picks itself (auto)\n"
    );
    println!(
        "{:<16} {:>7} {:>6} {:>10} {:>11} {:>10} {:>9}  verdict",
        "workload", "workers", "tasks", "wall", "vs 1 worker", "efficiency", "cpu/wall"
    );
    let mut last = Vec::new();
    let mut written = Vec::new();
    for w in [&cpu, &io] {
        let one = measure(w, Workers::Fixed(1))?;
        let mut sizes = vec![Workers::Fixed(1), Workers::Fixed(cores)];
        // Ask the one-worker run what it recommends and show that too, measured.
        if let Some(suggested) = suggested_workers(&one) {
            if !sizes.contains(&Workers::Fixed(suggested)) {
                sizes.push(Workers::Fixed(suggested));
            }
        }
        sizes.push(Workers::Auto);
        let mut reports = vec![(Workers::Fixed(1), one)];
        for &n in &sizes[1..] {
            if n == Workers::Auto {
                let (report, log) = measure_logged(w, n)?;
                written.push((w.name.clone(), write_report(&log, w.report_file)?));
                reports.push((n, report));
            } else {
                reports.push((n, measure(w, n)?));
            }
        }
        // Speedup as a user means it: the one-worker run's wall time over this run's, both
        // measured here; efficiency divides it by the (mean) worker count.
        let base = reports[0].1.wall_ns as f64;
        for (n, r) in &reports {
            let vs_one = base / r.wall_ns.max(1) as f64;
            let label = match n {
                Workers::Fixed(n) => n.to_string(),
                Workers::Auto => format!("auto {:.0}", r.workers),
            };
            println!(
                "{:<16} {:>7} {:>6} {:>10} {:>10.2}x {:>9.0}% {:>9}  {}",
                w.name,
                label,
                r.tasks,
                format_duration(r.wall_ns),
                vs_one,
                vs_one / r.workers.max(1.0) * 100.0,
                r.cpu_ratio.map_or("-".to_owned(), |c| format!("{c:.2}")),
                r.workload
            );
        }
        if let Some((n, best)) = reports.iter().min_by_key(|(_, r)| r.wall_ns) {
            let at = match n {
                Workers::Fixed(n) => format!("{n} worker(s)"),
                Workers::Auto => "pardo's own choice".to_owned(),
            };
            last.push(format!(
                "{}: fastest at {at}, {:.1}x the wall-clock speed of 1 worker",
                w.name,
                base / best.wall_ns.max(1) as f64
            ));
        }
        if let Some((_, auto)) = reports.iter().find(|(n, _)| *n == Workers::Auto) {
            if let Some(line) = crate::run::concurrency_line(auto) {
                last.push(format!("{}, auto: {line}", w.name));
            }
        }
        if let Some((n, r)) = reports.iter().rev().find(|(n, _)| *n != Workers::Auto) {
            let n = match n {
                Workers::Fixed(n) => *n,
                Workers::Auto => 0,
            };
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
    println!("\nHTML reports of the automatic runs (open them in a browser; they work offline):");
    for (name, path) in written {
        println!("  {name}: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Choose by workload: the same CPU-bound and I/O-bound jobs on threads, processes and async,
/// one table each, every number from the pools' own reports.
fn compare_executors(cores: usize) -> anyhow::Result<()> {
    println!("\nthe same workloads on each executor (thread / process / async pool)\n");
    let cpu = compare(Scenario::Cpu {
        tasks: 8 * cores as u64,
        bytes: HASH_BYTES as u64,
        workers: cores,
    })?;
    println!("{cpu}");
    let io = compare(Scenario::Http {
        // 8 threads (and processes) against async with 8 and with 80 requests in flight:
        // 40 rounds of 8, so each row's time is its concurrency at work, not start-up.
        requests: 320,
        delay: WAIT,
        concurrency: 8,
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
