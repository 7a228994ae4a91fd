//! Library tasks on many machines: the same program is the pool's caller and, started with
//! `serve`, a worker serving its task functions. Needs a Redis (`redis-server --port 6379`).
//!
//! ```text
//! # on each worker machine (or in two shells here):
//! cargo run --release -p pardo --features cluster --example cluster_pool -- serve redis://127.0.0.1:6379/0
//! # the caller: squares 1..=N and prints the sum, the report and the rate
//! cargo run --release -p pardo --features cluster --example cluster_pool -- run redis://127.0.0.1:6379/0 100000
//! ```
//!
//! `serve URL [SLOTS]` serves until killed (SLOTS tasks at once, default one per core);
//! `run URL [N]` runs N tasks of `Square` and prints what it took. `bench/cluster/library.sh`
//! uses it with no-op tasks (`noop URL N`).

use std::time::Instant;

use pardo::cluster::{ClusterPool, ServeOptions, Server};
use pardo::{Executor, RunTask, ShutdownMode};

pardo::task_fn! {
    /// x², the example's work.
    pub Square(x: u64) -> u64 { x.wrapping_mul(x) }
}

pardo::task_fn! {
    /// Nothing: what the queue itself costs per task.
    pub Noop(_x: u64) -> () {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("run");
    let url = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    match mode {
        "serve" => {
            let mut opts = ServeOptions::default();
            if let Some(s) = args.get(3) {
                opts.slots = s.parse()?;
            }
            let server = Server::new(&url, opts)?;
            eprintln!(
                "serving {} as {}",
                pardo::cluster::redact(&url),
                server.name()
            );
            server.serve()?;
        }
        "run" | "noop" => {
            let n: u64 = args
                .get(3)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(10_000);
            // The one line that differs from a ProcessPool program:
            let pool = ClusterPool::connect(&url)?;
            let t0 = Instant::now();
            let summary = if mode == "run" {
                let sum = pool
                    .map_task(1..=n, Square)
                    .try_fold(0u64, |acc, r| r.map(|v| acc.wrapping_add(v)))?;
                format!("sum of squares 1..={n}: {sum}")
            } else {
                let done = pool
                    .map_task(0..n, Noop)
                    .try_fold(0u64, |acc, r| r.map(|()| acc + 1))?;
                format!("{done} no-op tasks")
            };
            let secs = t0.elapsed().as_secs_f64();
            let slots = pool.worker_names().len();
            let report = pool.report();
            pool.shutdown(ShutdownMode::Wait);
            println!("{summary}");
            println!(
                "{n} tasks in {secs:.3} s: {:.0} tasks/s on {slots} serving slots ({} records)",
                n as f64 / secs,
                report.tasks
            );
        }
        other => return Err(format!("unknown mode {other:?}: serve, run or noop").into()),
    }
    Ok(())
}
