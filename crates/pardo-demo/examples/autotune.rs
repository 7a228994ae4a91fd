//! One run of a thread pool on a demo workload, at a fixed worker count or automatic: what
//! `bench/autotune/library.sh` times with hyperfine, side by side.
//!
//! Usage: `autotune cpu|sleep auto|N` — `cpu`: 96 hashes of 4 MiB; `sleep`: 200 waits of
//! 20 ms. Prints the worker counts the run went through on stderr.

use std::process::ExitCode;
use std::time::Duration;

use pardo::{ShutdownMode, ThreadPool};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(workload), Some(workers)) = (args.first(), args.get(1)) else {
        eprintln!("usage: autotune cpu|sleep auto|N");
        return ExitCode::from(2);
    };
    let (tasks, run): (u64, fn(u64)) = match workload.as_str() {
        "cpu" => (96, |i| {
            std::hint::black_box(pardo_demo::workloads::hash_block(i, 4 << 20));
        }),
        "sleep" => (200, |_| {
            pardo_demo::workloads::wait_for(Duration::from_millis(20))
        }),
        other => {
            eprintln!("autotune: unknown workload {other:?}: expected cpu or sleep");
            return ExitCode::from(2);
        }
    };
    let builder = ThreadPool::builder();
    let builder = match workers.as_str() {
        "auto" => builder.auto(),
        n => match n.parse::<usize>() {
            Ok(n) if n > 0 => builder.workers(n),
            _ => {
                eprintln!("autotune: bad worker count {n:?}: expected auto or a number above 0");
                return ExitCode::from(2);
            }
        },
    };
    let pool = match builder.build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("autotune: {e}");
            return ExitCode::from(1);
        }
    };
    for r in pool.map(0..tasks, run).chunk_size(1) {
        if let Err(e) = r {
            eprintln!("autotune: {e}");
            return ExitCode::from(1);
        }
    }
    let report = pool.shutdown(ShutdownMode::Wait);
    let path: Vec<String> = report
        .concurrency
        .first()
        .map(|c| c.from)
        .into_iter()
        .chain(report.concurrency.iter().map(|c| c.to))
        .map(|n| n.to_string())
        .collect();
    eprintln!("{workload} {workers}: workers {}", path.join(" → "));
    ExitCode::SUCCESS
}
