//! Async pool under I/O: 10,000 tasks, each awaiting one HTTP GET to a loopback server
//! (127.0.0.1, answering at once), 256 in flight. Prints throughput and the runner's CPU per
//! task: the pool's measured poll time per task, and the whole process's CPU per task (which
//! also counts the server and the client I/O, so it is an upper bound).
//!
//! A plain `main` rather than criterion: one run of 10,000 requests is the measurement, and
//! repeating it dozens of times would leave ~10^5 sockets in TIME_WAIT.
//! Run: `cargo bench -p pardo-demo --bench async_pool`

use std::time::{Duration, Instant};

use pardo::{pool_stream, AsyncPool, ShutdownMode};
use pardo_demo::loopback::{get, LoopbackServer};

const TASKS: u64 = 10_000;
const IN_FLIGHT: usize = 256;

fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too, so keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let tasks = if quick { 200 } else { TASKS };
    let server = LoopbackServer::start(Duration::ZERO).expect("start the loopback server");
    let addr = server.addr();
    let pool = AsyncPool::builder()
        .workers(2)
        .max_in_flight(IN_FLIGHT)
        .build()
        .expect("start the pool");
    let cpu0 = process_cpu_ns();
    let t0 = Instant::now();
    let failed = pool.block_on(async {
        let mut results = pool.map(pool_stream(0..tasks), move |_| get(addr));
        let mut failed = 0u64;
        while let Some(r) = results.next().await {
            if !matches!(r, Ok(Ok(_))) {
                failed += 1;
            }
        }
        failed
    });
    let wall = t0.elapsed();
    let cpu = process_cpu_ns() - cpu0;
    let report = pool.shutdown(ShutdownMode::Wait);
    let poll_cpu = report.cpu_user_ns + report.cpu_sys_ns;
    println!("async_pool: {tasks} loopback HTTP GETs, {IN_FLIGHT} in flight, 2 runtime threads");
    println!("  wall            {:.3} s", wall.as_secs_f64());
    println!(
        "  throughput      {:.0} tasks/s",
        tasks as f64 / wall.as_secs_f64()
    );
    println!(
        "  poll CPU/task   {:.1} µs (pool records)",
        poll_cpu as f64 / tasks as f64 / 1e3
    );
    println!(
        "  process CPU/task {:.1} µs (runner + server + I/O)",
        cpu as f64 / tasks as f64 / 1e3
    );
    println!("  failed          {failed}");
    println!(
        "  verdict         {} (cpu/wall {:.2})",
        report.workload,
        report.cpu_ratio.unwrap_or(0.0)
    );
    assert_eq!(failed, 0, "every request succeeded");
}
