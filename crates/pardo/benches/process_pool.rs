//! Process pool round trip on a warm pool: submit a small payload, wait for the result. The
//! target is ≤ 50 µs per task (BENCHMARKS.md, "Process and async pools").
//!
//! The workers are this bench binary re-executed, hence a `main` of our own with
//! `pardo::worker_hook()` first instead of `criterion_main!`.

use criterion::{black_box, criterion_group, Criterion};
use pardo::{ProcessPool, ThreadPool};

pardo::task_fn! {
    /// A small payload: 16 bytes in, 8 out.
    pub Mix((a, b): (u64, u64)) -> u64 { a.rotate_left(17) ^ b }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    for workers in [1, 2] {
        let pool = ProcessPool::builder()
            .workers(workers)
            .build()
            .expect("start the pool");
        // Warm: every worker has started and served once.
        for _ in 0..4 * workers {
            let _ = pool.submit(Mix, (1, 2)).wait();
        }
        group.bench_function(format!("process_pool/{workers}_workers"), |b| {
            let mut x = 0u64;
            b.iter(|| {
                x += 1;
                black_box(pool.submit(Mix, (x, 7)).wait().expect("round trip"))
            })
        });
    }
    // For scale: the same round trip on a thread pool.
    let threads = ThreadPool::builder()
        .workers(2)
        .build()
        .expect("start the pool");
    group.bench_function("thread_pool/2_workers", |b| {
        let mut x = 0u64;
        b.iter(|| {
            x += 1;
            let y = x;
            black_box(
                threads
                    .submit(move || y.rotate_left(17) ^ 7)
                    .wait()
                    .expect("round trip"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, round_trip);

fn main() {
    pardo::worker_hook();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
