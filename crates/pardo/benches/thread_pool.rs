//! Thread pool against rayon, side by side in one run. `bench/criterion_ratios.py` turns the
//! results into the ratios recorded in BENCHMARKS.md.
//!
//! Run: `cargo bench -p pardo --bench thread_pool`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pardo::ThreadPool;
use rayon::prelude::*;

const ITEMS: u64 = 1_000_000;

/// One benchmarked call on a pool.
type Work<'a> = dyn Fn(&ThreadPool) + 'a;

fn workers() -> usize {
    pardo::monitor::available_cores()
}

/// A million trivial items: rayon's `par_iter().map(..).collect()` against pardo's indexed
/// `map_slice` and its streaming `map`, on the same Vec with one worker per core; then each of
/// pardo's with monitoring on against off.
fn map_trivial(c: &mut Criterion) {
    let input: Vec<u64> = (0..ITEMS).collect();
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers())
        .build()
        .expect("rayon pool");
    let on = ThreadPool::builder()
        .workers(workers())
        .build()
        .expect("pardo pool");
    let off = ThreadPool::builder()
        .workers(workers())
        .monitoring(false)
        .build()
        .expect("pardo pool");
    let slice = |p: &ThreadPool| {
        black_box(
            p.map_slice(&input, |x| x.wrapping_mul(3) ^ 7)
                .expect("no task fails"),
        );
    };
    let stream = |p: &ThreadPool| {
        let out: Vec<u64> = p
            .map(input.iter().copied(), |x| x.wrapping_mul(3) ^ 7)
            .collect::<Result<_, _>>()
            .expect("no task fails");
        black_box(out);
    };

    let mut g = c.benchmark_group("map_1m_trivial");
    g.throughput(Throughput::Elements(ITEMS));
    g.bench_function("rayon_par_iter_collect", |b| {
        b.iter(|| {
            let out: Vec<u64> =
                rayon_pool.install(|| input.par_iter().map(|x| x.wrapping_mul(3) ^ 7).collect());
            black_box(out)
        })
    });
    // The fair anchor for a streaming map over an arbitrary iterator: rayon's par_bridge pulls
    // from a plain iterator too (but gives up order).
    g.bench_function("rayon_par_bridge_collect", |b| {
        b.iter(|| {
            let out: Vec<u64> = rayon_pool.install(|| {
                input
                    .iter()
                    .copied()
                    .par_bridge()
                    .map(|x| x.wrapping_mul(3) ^ 7)
                    .collect()
            });
            black_box(out)
        })
    });
    g.bench_function("pardo_map", |b| b.iter(|| stream(&on)));
    g.bench_function("pardo_map_slice", |b| b.iter(|| slice(&on)));
    g.finish();

    // What monitoring costs: the same call on a pool with records on and on one with them off.
    // The two alternate call by call inside one measurement and each side times only its own
    // calls, each from parked workers. Run one after the other, the two sides drifted by ±10 %
    // from run to run on this VM, more than the cost to be measured.
    let mut g = c.benchmark_group("monitoring_1m_trivial");
    g.throughput(Throughput::Elements(ITEMS));
    let works: [(&str, &Work); 2] = [("map", &stream), ("map_slice", &slice)];
    for (name, work) in works {
        for (side, timed, other) in [("on", &on, &off), ("off", &off, &on)] {
            g.bench_function(format!("{name}_{side}"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        work(other);
                        // Until the other pool's idle workers have parked: spinning, they
                        // would compete with the timed pool's for the cores.
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        let t0 = std::time::Instant::now();
                        work(timed);
                        spent += t0.elapsed();
                    }
                    spent
                })
            });
        }
    }
    g.finish();
}

/// One small task submitted and waited for: pardo's `submit` + `wait` against rayon's `spawn`
/// with a channel back.
fn submit_wait(c: &mut Criterion) {
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers())
        .build()
        .expect("rayon pool");
    let pool = ThreadPool::builder()
        .workers(workers())
        .build()
        .expect("pardo pool");
    let mut g = c.benchmark_group("submit_wait_one");
    g.bench_function("rayon_spawn_channel", |b| {
        b.iter_batched(
            || std::sync::mpsc::sync_channel(1),
            |(tx, rx)| {
                rayon_pool.spawn(move || {
                    let _ = tx.send(black_box(41u64) + 1);
                });
                black_box(rx.recv().expect("rayon task ran"))
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("pardo_submit_wait", |b| {
        b.iter(|| {
            black_box(
                pool.submit(|| black_box(41u64) + 1)
                    .wait()
                    .expect("task ran"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, map_trivial, submit_wait);
criterion_main!(benches);
